"""Reading a space file: parse, resolve and check it once, into a :class:`~.model.SweepSpace`.

Every problem is one :class:`~none_sweep.errors.ConfigError` naming the file and the key. ``check_paths``
confines the files the space names (its base and its searched values, see ``none_sweep/config/paths.py``):
done when a sweep starts; a stored space read back later (resume, ``report`` in another folder) passes
``check_paths=False``, its paths having been checked where and when the sweep started.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ...config import apply_overrides, flatten, to_dict
from ...config.validation import ConfigIssue, build, fail
from ...errors import ConfigError
from ...experiment import resolve_config
from ...text import did_you_mean
from ...train.metrics import FINAL_METRICS
from .checks import check_metric, check_space
from .compose import compose_file, composed_text
from .model import Constraint, Objective, Point, SweepSpace, Variant
from .params import Condition, Param, parse_param
from .schema import ObjectiveSpec, ParamSpec, SpaceFile, VariantSpec

_VARIANT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # it prefixes metric names: train.variants.variant_key


def load_space(path: str | Path, overrides: Mapping[str, Any] | None = None, *, check_paths: bool = True) -> SweepSpace:
    """Read and validate a space file; ``overrides`` (``--set``) change its ``base``."""
    path = Path(path)
    data, sources = compose_file(path)
    text = composed_text(data, sources, path.read_text(encoding="utf-8"))
    return _parse(data, str(path), text, overrides, check_paths)


def space_from_dict(
    data: Mapping[str, Any],
    source: str = "<space>",
    overrides: Mapping[str, Any] | None = None,
    text: str | None = None,
    *,
    check_paths: bool = True,
) -> SweepSpace:
    """Like :func:`load_space` for an in-memory mapping (tests; a stored space read back, with ``check_paths=False``)."""
    if text is None:
        text = yaml.safe_dump(dict(data), sort_keys=False)
    return _parse(data, source, text, overrides, check_paths)


def _parse(data: Mapping[str, Any], source: str, text: str, overrides: Mapping[str, Any] | None,
           check_paths: bool) -> SweepSpace:  # fmt: skip
    try:
        raw = build(SpaceFile, dict(data))
        return _resolve(raw, source, text, dict(overrides or {}), check_paths)
    except ConfigIssue as issue:
        raise ConfigError(f"{source}: {issue.message}") from None


def _resolve(raw: SpaceFile, source: str, text: str, overrides: dict[str, Any], check_paths: bool) -> SweepSpace:
    base = copy.deepcopy(raw.base)
    for key in overrides:
        if key in raw.space:
            raise fail(key, f"--set {key}: that key is searched (space[{key}]); remove it from the space or the --set")
    try:
        apply_overrides(base, overrides)
    except ConfigError as exc:
        raise fail("base", str(exc)) from None
    base_cfg = resolve_config(copy.deepcopy(base), source=f"{source}: base", check_paths=check_paths)
    base_flat = flatten(to_dict(base_cfg))
    if not raw.space:
        raise fail("space", "space must name at least one config key to search, e.g. defense.max_reset_fraction")
    space = SweepSpace(
        path=source, text=text, base=base, params=_order([_param(k, v, base_flat) for k, v in raw.space.items()]),
        objectives=_objectives(raw.objectives), constraints=[_constraint(i, c) for i, c in enumerate(raw.constraints)],
        points=[_point(i, p) for i, p in enumerate(raw.search.points_to_evaluate)], search=raw.search,
        scheduler=raw.scheduler, resources=raw.resources, num_samples=raw.num_samples,
        max_concurrent=raw.max_concurrent, max_failures=raw.max_failures, description=raw.description,
        variants=[_variant(i, v, raw.space) for i, v in enumerate(raw.variants)], log_models=raw.log_models,
        keep_checkpoints=raw.keep_checkpoints,
    )  # fmt: skip
    _check_variants(space)
    check_space(space, base_cfg, base_flat, check_paths=check_paths)
    return space


def _variant(i: int, raw: Mapping[str, Any], searched: Mapping[str, Any]) -> Variant:
    where = f"variants[{i}]"
    v = build(VariantSpec, dict(raw), prefix=f"{where}.")
    if not _VARIANT_NAME.match(v.name):
        raise fail(f"{where}.name", f"{where}.name must be letters, digits, '_' or '-' (it prefixes metric "
                                    f"names), got {v.name!r}")  # fmt: skip
    clash = sorted(k for k in v.set if k in searched or k.startswith("defense."))
    if clash:
        raise fail(f"{where}.set", f"{where}.set changes {clash}: a variant changes the attack or data a defense "
                                   f"faces, never the defense itself")  # fmt: skip
    return Variant(v.name, dict(v.set))


def _check_variants(space: SweepSpace) -> None:
    names = [v.name for v in space.variants]
    if len(set(names)) != len(names):
        raise fail("variants", f"variants: each name may appear once, got {names}")
    for i, v in enumerate(space.variants):  # each variant builds a valid experiment config, trained and not
        for sampled in ({}, {"defense.enabled": False}):
            try:
                resolve_config(space.trial_data({**v.set, **sampled}), source=f"variants[{i}]")
            except ConfigError as exc:
                raise fail(f"variants[{i}]", str(exc)) from None


def _is_key(key: Any, base_flat: Mapping[str, Any]) -> bool:
    """A config key a space may name: one of the base's, or an attack param (each attack has its own)."""
    return isinstance(key, str) and (key in base_flat or key.startswith("attack.params."))


def _param(key: str, value: Any, base_flat: Mapping[str, Any]) -> Param:
    where = f"space[{key}]"
    if not _is_key(key, base_flat):
        known = sorted(k for k in base_flat if not isinstance(base_flat[k], (list, dict)))
        section = str(key).split(".")[0] + "."
        nearby = [k for k in known if k.startswith(section)] or known
        hint = did_you_mean(str(key), known)
        raise fail(where, f"{where}: {key!r} is not a config key{hint}; keys there: {nearby}")
    if isinstance(base_flat.get(key), (list, dict)):
        raise fail(where, f"{where}: {key} holds a {type(base_flat[key]).__name__}, which cannot be searched")
    spec = build(ParamSpec, value, prefix=f"{where}.")
    return parse_param(key, spec, _when(where, key, spec.when, base_flat))


def _when(where: str, key: str, raw: Mapping[str, Any], base_flat: Mapping[str, Any]) -> Condition:
    out = []
    for cond_key, allowed in raw.items():
        if not _is_key(cond_key, base_flat):
            raise fail(f"{where}.when", f"{where}.when: {cond_key!r} is not a config key")
        if cond_key == key:
            raise fail(f"{where}.when", f"{where}.when cannot depend on the key itself")
        out.append((cond_key, tuple(allowed) if isinstance(allowed, list) else (allowed,)))
    return tuple(out)


def _order(params: list[Param]) -> list[Param]:
    """File order, except that a key comes after the searched keys its ``when`` depends on."""
    keys = {p.key for p in params}
    done: list[Param] = []
    pending = list(params)
    while pending:
        placed = {p.key for p in done}
        ready = [p for p in pending if all(k in placed or k not in keys for k, _ in p.when)]
        if not ready:
            cycle = ", ".join(p.key for p in pending)
            raise fail("space", f"space: the when conditions of {cycle} depend on each other in a cycle")
        done.append(ready[0])
        pending.remove(ready[0])
    return done


def _objectives(items: list[dict[str, Any]]) -> list[Objective]:
    if not items:
        raise fail("objectives", "objectives must name at least one {metric, mode}")
    out = []
    for i, item in enumerate(items):
        o = build(ObjectiveSpec, item, prefix=f"objectives[{i}].")
        check_metric(f"objectives[{i}].metric", o.metric, FINAL_METRICS)
        if not o.mode:
            raise fail(f"objectives[{i}].mode", f"objectives[{i}].mode is required: min or max")
        out.append(Objective(o.metric, o.mode))
    if len({o.metric for o in out}) != len(out):
        raise fail("objectives", "objectives: each metric may appear once")
    return out


def _constraint(i: int, text: str) -> Constraint:
    c = Constraint.parse(text)
    if c is None:
        hint = "write e.g. 'clean_acc_drop <= 0.02' (<= or >=)"
        raise fail(f"constraints[{i}]", f"constraints[{i}]: cannot parse {text!r}; {hint}")
    check_metric(f"constraints[{i}]", c.metric, FINAL_METRICS)
    return c


def _point(i: int, raw: Mapping[str, Any]) -> Point:
    where = f"search.points_to_evaluate[{i}]"
    if set(raw) and set(raw) <= {"name", "params"} and "params" in raw:
        name, params = raw.get("name") or f"point{i}", raw["params"]
        if not isinstance(params, Mapping) or not isinstance(name, str):
            raise fail(where, f"{where}: expected {{name: TEXT, params: {{key: value}}}}")
        return Point(name, dict(params))
    return Point(f"point{i}", dict(raw))
