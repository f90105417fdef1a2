"""Experiment configs: dataclasses by concern, validated on load (see :mod:`.schema`)."""

from .load import apply_overrides, config_from_dict, dump_config, load_config, parse_overrides, read_yaml
from .schema import AttackConfig, DataConfig, DefenseConfig, EvalConfig, ExperimentConfig, ModelConfig, TrainConfig
from .validation import flatten, to_dict

__all__ = [
    "AttackConfig",
    "DataConfig",
    "DefenseConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "dump_config",
    "flatten",
    "load_config",
    "parse_overrides",
    "read_yaml",
    "to_dict",
]
