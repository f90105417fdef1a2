"""Read, override, schema-validate and dump experiment configs.

Everything here runs before any data is loaded or any model built, so a typo costs a second,
not a training run. Errors name the file and the dotted key. This is the bottom floor: it knows no
registry; :mod:`none_sweep.experiment` adds the dataset, attack and model checks and reads files
(``load_experiment``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..text import first_line
from .schema import EvalConfig, ExperimentConfig
from .validation import ConfigIssue, build, fail, set_dotted, to_dict

LAYER_TYPES = ("conv", "linear")


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
        problem = getattr(exc, "problem", None) or first_line(exc)
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


def config_from_dict(data: Mapping[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Validate a plain mapping against the schema into an :class:`ExperimentConfig`; ``source`` names it in errors.

    Only what the schema itself can judge: keys, types, ranges and the checks spanning fields. Registry names
    (dataset, attack, model), attack params and file paths are checked one floor up, by
    :func:`none_sweep.experiment.resolve_config`, which every caller that trains or records a config uses.
    """
    try:
        cfg = build(ExperimentConfig, dict(data))
        check_cross_fields(cfg)
    except ConfigIssue as issue:
        raise ConfigError(f"{source}: {issue.message}") from None
    return cfg


def dump_config(cfg: ExperimentConfig, path: str | Path | None = None, header: str = "") -> str:
    """The fully resolved config as YAML (runnable as-is by ``none-sweep train``)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def check_cross_fields(cfg: ExperimentConfig) -> None:
    """Checks that span fields but need no registry; raises ConfigIssue naming the key."""
    d = cfg.defense
    if d.lamda_l >= d.lamda_h:
        raise fail("defense.lamda_l", f"defense.lamda_l ({d.lamda_l}) must be below defense.lamda_h ({d.lamda_h})")
    for kind in d.layer_types:
        if kind not in LAYER_TYPES:
            raise fail("defense.layer_types", f"defense.layer_types entries must be 'conv' or 'linear', got {kind!r}")
    if not d.layer_types:
        raise fail("defense.layer_types", f"defense.layer_types must name at least one of {list(LAYER_TYPES)}")
    _check_reasr(cfg.evaluation)
    pretrain = cfg.train.epochs if d.pretrain_epochs is None else d.pretrain_epochs
    if d.enabled and pretrain < 1:
        raise fail(
            "defense.pretrain_epochs", "defense.pretrain_epochs must be at least 1: the analysis needs a trained model"
        )
    if d.enabled and d.after_reset == "continue":
        last_reset = pretrain + (d.rounds - 1) * d.reset_interval
        if last_reset >= cfg.train.epochs:
            raise fail(
                "defense.rounds",
                f"with after_reset=continue every reset must fall inside train.epochs={cfg.train.epochs}, "
                f"but the last is at epoch {last_reset} (pretrain_epochs + (rounds-1)*reset_interval); "
                "lower rounds/reset_interval/pretrain_epochs or raise train.epochs",
            )


def _check_reasr(e: EvalConfig) -> None:
    """The REASR pre-screen's settings agree: its steps apply only with ``reasr_labels`` and fit ``reasr_steps``."""
    if e.reasr_screen_steps is None:
        return
    if e.reasr_labels is None:
        raise fail(
            "evaluation.reasr_screen_steps",
            "evaluation.reasr_screen_steps is the pre-screen before evaluation.reasr_labels labels go on; "
            "it does nothing without reasr_labels (null: every label, no screen); set both or neither",
        )
    if e.reasr_screen_steps > e.reasr_steps:
        raise fail(
            "evaluation.reasr_screen_steps",
            f"evaluation.reasr_screen_steps ({e.reasr_screen_steps}) must not exceed evaluation.reasr_steps "
            f"({e.reasr_steps}): the screen is the first part of the optimisation",
        )
