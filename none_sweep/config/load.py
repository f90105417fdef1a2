"""Load, override, validate and dump experiment configs.

Everything here runs before any data is loaded or any model built, so a typo costs a second,
not a training run. Errors name the file and the dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..errors import ConfigError
from .schema import ExperimentConfig
from .validation import ConfigIssue, build, set_dotted, to_dict


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping, turning every I/O or syntax problem into one ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.__class__.__name__}: {exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values, got {type(data).__name__}")
    return data


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["defense.enabled=false", "train.lr=0.1"]`` → ``{"defense.enabled": False, "train.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. defense.max_reset_fraction=0.1")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    for dotted, value in overrides.items():
        try:
            set_dotted(data, dotted, value)
        except ConfigIssue as issue:
            raise ConfigError(f"--set: {issue.message}") from None
    return data


def config_from_dict(data: Mapping[str, Any], source: str = "<config>", check_paths: bool = False) -> ExperimentConfig:
    """Validate a plain mapping into an :class:`ExperimentConfig`; ``source`` names it in errors.

    ``check_paths``: also confine the file paths it names (``config/paths.py``); done where a config enters
    from a file or the command line, not for the configs of trials built from an already-checked space.
    """
    try:
        cfg = build(ExperimentConfig, dict(data))
        if check_paths:  # before the cross-field checks, which open files (the blend pattern)
            from .paths import check_config_paths

            check_config_paths(cfg)
        _check_cross_fields(cfg)
    except ConfigIssue as issue:
        raise ConfigError(f"{source}: {issue.message}") from None
    return cfg


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read ``path`` (or the defaults), apply ``--set`` overrides, validate everything."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides or {})
    return config_from_dict(data, source=str(path) if path is not None else "<defaults>", check_paths=True)


def dump_config(cfg: ExperimentConfig, path: str | Path | None = None, header: str = "") -> str:
    """The fully resolved config as YAML (runnable as-is by ``none-sweep train``)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _check_cross_fields(cfg: ExperimentConfig) -> None:
    """Checks that span fields or need a registry; raises ConfigIssue."""
    from ..attacks import ATTACKS, params_class
    from ..data import DATASETS, dataset_info
    from ..models import check_model_name
    from .validation import fail

    d = cfg.defense
    if d.lamda_l >= d.lamda_h:
        raise fail("defense.lamda_l", f"defense.lamda_l ({d.lamda_l}) must be below defense.lamda_h ({d.lamda_h})")
    for kind in d.layer_types:
        if kind not in ("conv", "linear"):
            raise fail("defense.layer_types", f"defense.layer_types entries must be 'conv' or 'linear', got {kind!r}")
    if not d.layer_types:
        raise fail("defense.layer_types", "defense.layer_types must name at least one of ['conv', 'linear']")
    pretrain = cfg.train.epochs if d.pretrain_epochs is None else d.pretrain_epochs
    if d.enabled and pretrain < 1:
        raise fail("defense.pretrain_epochs", "defense.pretrain_epochs must be at least 1: the analysis needs a trained model")
    if d.enabled and d.after_reset == "continue":
        last_reset = pretrain + (d.rounds - 1) * d.reset_interval
        if last_reset >= cfg.train.epochs:
            raise fail(
                "defense.rounds",
                f"with after_reset=continue every reset must fall inside train.epochs={cfg.train.epochs}, "
                f"but the last is at epoch {last_reset} (pretrain_epochs + (rounds-1)*reset_interval); "
                "lower rounds/reset_interval/pretrain_epochs or raise train.epochs",
            )
    if cfg.data.name not in DATASETS:
        raise fail("data.name", f"data.name: {DATASETS.unknown_message(cfg.data.name)}")
    info = dataset_info(cfg.data.name)
    if cfg.attack.name not in ATTACKS:
        raise fail("attack.name", f"attack.name: {ATTACKS.unknown_message(cfg.attack.name)}")
    a = cfg.attack
    if a.target >= info.num_classes:
        raise fail("attack.target", f"attack.target must be in [0, {info.num_classes - 1}] for {cfg.data.name}, got {a.target}")
    params_cls = params_class(a.name)
    a.params = to_dict(build(params_cls, a.params, prefix="attack.params."))
    ATTACKS.get(a.name).check(a, info)
    try:
        check_model_name(cfg.model.name)
    except ConfigError as exc:
        raise fail("model.name", f"model.name: {exc}") from None
