"""A mapping (or a config file) in, a fully checked :class:`~none_sweep.config.ExperimentConfig` out.

The config floor judges what the schema can (keys, types, ranges, fields against each other). This floor,
above the registries, adds what needs them: the dataset, attack and model names, the target class against the
dataset, the attack's params built by its own ``Params`` dataclass (so every trigger parameter is recorded,
not only the ones a file named), the attack's own checks, and, where a config enters from a file or the
command line, the files it names confined to the allowed folders (the attack says which params are files).
Everything above that trains, records or exports a config takes it from here, so a bad one fails in a
second, before any data is read, with one line naming its source and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .attacks import ATTACKS
from .config import ExperimentConfig, apply_overrides, config_from_dict, read_yaml
from .config.paths import check_path
from .config.validation import ConfigIssue, build, fail, to_dict
from .data import DATASETS, dataset_info
from .errors import ConfigError
from .models import check_model_name


def resolve_config(data: Mapping[str, Any], source: str = "<config>", check_paths: bool = False) -> ExperimentConfig:
    """Validate ``data`` into an :class:`ExperimentConfig` with every registry check; ``source`` names it in errors.

    ``check_paths``: also confine the file paths it names (``config/paths.py``); done where a config enters
    from a file or the command line, not for the configs of trials built from an already-checked space.
    """
    cfg = config_from_dict(data, source)
    try:
        check_registered(cfg, check_paths)
    except ConfigIssue as issue:
        raise ConfigError(f"{source}: {issue.message}") from None
    return cfg


def load_experiment(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read ``path`` (or the defaults), apply ``--set`` overrides, validate everything, paths included."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides or {})
    return resolve_config(data, source=str(path) if path is not None else "<defaults>", check_paths=True)


def check_registered(cfg: ExperimentConfig, check_paths: bool = False) -> None:
    """The checks that need the registries; normalises ``cfg.attack.params`` in place; raises ConfigIssue.

    Paths are confined before the attack's own checks, which open the files they name (the blend pattern).
    """
    if cfg.data.name not in DATASETS:
        raise fail("data.name", f"data.name: {DATASETS.unknown_message(cfg.data.name)}")
    info = dataset_info(cfg.data.name)
    a = cfg.attack
    if a.name not in ATTACKS:
        raise fail("attack.name", f"attack.name: {ATTACKS.unknown_message(a.name)}")
    if a.target >= info.num_classes:
        raise fail("attack.target", f"attack.target must be in [0, {info.num_classes - 1}] for {cfg.data.name}, "
                                    f"got {a.target}")  # fmt: skip
    attack = ATTACKS.get(a.name)
    a.params = to_dict(build(attack.Params, a.params, prefix="attack.params."))
    if check_paths:
        check_config_paths(cfg)
    attack.check(a, info)
    try:
        check_model_name(cfg.model.name)
    except ConfigError as exc:
        raise fail("model.name", f"model.name: {exc}") from None


def check_config_paths(cfg: ExperimentConfig) -> None:
    """Every path the config names: ``data.root`` and the attack params its attack declares files."""
    if cfg.data.root:
        check_path("data.root", cfg.data.root)
    for name, value in ATTACKS.get(cfg.attack.name).path_params(cfg.attack.params).items():
        check_path(f"attack.params.{name}", value)


__all__ = ["check_config_paths", "check_registered", "load_experiment", "resolve_config"]
