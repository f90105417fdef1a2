"""Experiment configs: dataclasses by concern, schema-validated on load (see :mod:`.schema`).

The bottom floor: nothing here knows a dataset, attack or model. :mod:`none_sweep.experiment` turns a mapping
into a fully checked config (registries, attack params, file paths) and reads config files.
"""

from .load import apply_overrides, check_cross_fields, config_from_dict, dump_config, parse_overrides, read_yaml
from .paths import allowed_roots, check_path, default_root
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
    "allowed_roots",
    "apply_overrides",
    "check_cross_fields",
    "check_path",
    "config_from_dict",
    "default_root",
    "dump_config",
    "flatten",
    "parse_overrides",
    "read_yaml",
    "to_dict",
]
