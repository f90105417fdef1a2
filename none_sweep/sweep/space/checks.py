"""The checks across a space's sections, run once when it is loaded, so a sweep never starts doomed.

- every edge of every key (both bounds, each choice) builds a valid experiment config, with the key's
  condition made true; searched values that name files obey the same confinement as the base's;
- every ``when`` can hold; every point to evaluate lies inside the space and builds a valid config;
- the scheduler, resources and sampler settings fit together;
- the objectives and constraints can be met and measured at all (a sweep spent on trials that all end FAIL or
  infeasible is refused before the first one).

They read the space and raise :class:`~none_sweep.config.validation.ConfigIssue`; none changes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ...attacks import injects_trigger
from ...config import ExperimentConfig, config_from_dict
from ...config.validation import ConfigIssue, fail
from ...errors import ConfigError
from ...experiment import check_config_paths
from ...text import did_you_mean
from ...train.metrics import EPOCH_METRICS, TRIGGER_METRICS, measures_reasr
from .model import SweepSpace
from .params import Param


def check_space(space: SweepSpace, base: ExperimentConfig, base_flat: Mapping[str, Any], *, check_paths: bool) -> None:
    """All the checks, in the order a user fixes things: keys, conditions, points, settings, satisfiability."""
    check_edges(space, check_paths=check_paths)
    check_conditions(space, base_flat)
    check_points(space)
    check_settings(space)
    check_satisfiable(space, base)


def check_metric(where: str, metric: str, allowed: Sequence[str]) -> None:
    if metric not in allowed:
        hint = did_you_mean(metric, allowed)
        raise fail(where, f"{where}: unknown metric {metric!r}{hint}; choose from {list(allowed)}")


def _condition_values(param: Param) -> dict[str, Any]:
    return {key: allowed[0] for key, allowed in param.when}


def check_edges(space: SweepSpace, *, check_paths: bool) -> None:
    """Build the experiment config at every edge of every key (with its condition made true)."""
    for p in space.params:
        for value in p.edges():
            sampled = {**_condition_values(p), p.key: value}
            if check_paths and isinstance(value, str):  # only a text can name a file; confined before it is opened
                _check_confined(space, sampled, f"space[{p.key}]")
            _build_or_fail(space, sampled, f"space[{p.key}]", f"{p.key}={value!r}")


def _check_confined(space: SweepSpace, sampled: Mapping[str, Any], where: str) -> None:
    try:
        cfg = config_from_dict(space.trial_data(sampled))
        check_config_paths(cfg)
    except ConfigError:
        return  # not a config at all: the edge check says why
    except ConfigIssue as issue:
        raise fail(where, f"{where}: {issue.message}") from None


def check_conditions(space: SweepSpace, base_flat: Mapping[str, Any]) -> None:
    """A ``when`` on a key that is not searched must hold for the base; on a searched key, for some value."""
    for p in space.params:
        where = f"space[{p.key}].when"
        for cond_key, allowed in p.when:
            searched = space.param(cond_key)
            if searched is None and base_flat.get(cond_key) not in allowed:
                raise fail(where, f"{where} can never hold: {cond_key} is not searched and the base has "
                                  f"{cond_key}={base_flat.get(cond_key)!r}, not one of {list(allowed)}")  # fmt: skip
            if searched is not None and not searched.can_take(allowed):
                raise fail(where, f"{where} can never hold: space[{cond_key}] takes no value in {list(allowed)}")


def check_points(space: SweepSpace) -> None:
    names = set()
    for i, point in enumerate(space.points):
        where = f"search.points_to_evaluate[{i}]"
        if point.name in names:
            raise fail(where, f"{where}: the name {point.name!r} is used twice")
        names.add(point.name)
        for key, value in point.params.items():
            p = space.param(key)
            if p is None:
                raise fail(where, f"{where}: {key!r} is not a searched key; searched: {space.keys}")
            if not p.contains(value):
                raise fail(where, f"{where}: {key}={value!r} is outside space[{key}]: {p.body()}")
        _build_or_fail(space, point.params, where, point.name)


def _build_or_fail(space: SweepSpace, sampled: Mapping[str, Any], where: str, what: str) -> None:
    try:
        space.trial_config(sampled, source="")
    except ConfigError as exc:
        message = str(exc).lstrip(": ").strip()
        raise fail(where, f"{where}: with {what} the experiment config is invalid: {message}") from None


def check_settings(space: SweepSpace) -> None:
    """Scheduler, resources and sampler. ``max_concurrent`` above ``num_samples`` is left as written: the
    runner never starts more trials than there are (a check reads the space, it does not change it)."""
    sch = space.scheduler
    if sch.name == "asha":
        check_metric("scheduler.metric", space.scheduler_metric, EPOCH_METRICS)
        if sch.grace_period > sch.max_t:
            message = f"scheduler.grace_period ({sch.grace_period}) must not exceed max_t ({sch.max_t})"
            raise fail("scheduler.grace_period", message)
    r = space.resources
    if r.gpu > 1 and not float(r.gpu).is_integer():
        raise fail("resources.gpu", f"resources.gpu must be a fraction in (0, 1] or a whole number, got {r.gpu:g}")
    if space.search.sampler == "grid":
        for p in space.params:
            try:
                p.grid()
            except ConfigError as exc:
                raise fail("search.sampler", str(exc)) from None


def check_satisfiable(space: SweepSpace, base: ExperimentConfig) -> None:
    """Objectives and constraints that no trial could ever meet or measure are refused before any trial runs.

    Without this every trial would end FAIL in Optuna ("final result has asr=nan") or infeasible: a whole sweep
    spent for nothing. Only the base config is judged; a searched ``attack.name`` / ``evaluation.reasr`` is left
    to the trials (a final result missing an objective fails that trial, in Ray, Optuna and MLflow alike).
    """
    _check_constraints_meet(space)
    searched = set(space.keys)
    needed = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(space.objectives)]
    needed += [(f"constraints[{i}]", c.metric) for i, c in enumerate(space.constraints)]
    if space.scheduler.name == "asha":  # every epoch report must carry it, or Ray stops the trial
        needed.append(("scheduler.metric", space.scheduler_metric))
    name, reasr = base.attack.name, base.evaluation.reasr
    trigger = injects_trigger(name)
    for where, metric in needed:
        if metric in TRIGGER_METRICS and not trigger and "attack.name" not in searched:
            raise fail(where, f"{where}: {metric} is never measured with attack.name {name} (no trigger to test); "
                              f"use reasr (natural backdoors) and clean_acc, or set base.attack.name")  # fmt: skip
        unsearched = not searched & {"attack.name", "evaluation.reasr"}
        if metric == "reasr" and not measures_reasr(reasr, trigger) and unsearched:
            raise fail(where, f"{where}: reasr is never measured with evaluation.reasr {reasr} and attack.name "
                              f"{name}; set base.evaluation.reasr: always")  # fmt: skip


def _check_constraints_meet(space: SweepSpace) -> None:
    bounds: dict[str, tuple[float, float]] = {}
    for c in space.constraints:
        low, high = bounds.get(c.metric, (-math.inf, math.inf))
        bounds[c.metric] = (max(low, c.threshold), high) if c.op == ">=" else (low, min(high, c.threshold))
    for metric, (low, high) in bounds.items():
        if low > high:
            raise fail("constraints", f"constraints: {metric} >= {low:g} and {metric} <= {high:g} cannot both hold, so "
                                      f"no trial could be feasible; loosen or drop one of them")  # fmt: skip
