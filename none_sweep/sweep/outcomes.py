"""What a finished Ray trial means to Optuna: the strict outcome rules, and the names the study records them under.

Ray's own ``OptunaSearch`` tells Optuna only what a trial's last result says; when an objective is missing or
NaN the ``tell`` fails, Ray logs a warning and the trial silently leaves the study. Here every ending is judged:

- an errored trial is ``FAIL``; a final result missing an objective or constraint metric, or holding a
  non-finite one, is ``FAIL`` with the reason (user attr ``fail_reason``);
- a trial stopped by the scheduler before its last epoch (no ``final`` in its result) is ``PRUNED``: its
  metrics are intermediate, so they must not compete with finished trials;
- a complete trial carries its constraint violations (Optuna's convention: feasible when every value <= 0), so
  ``study.best_trials`` is the feasible front, and the metrics it knows (user attr ``metrics``).

Pure functions of the result and the space: no Ray, no storage, so every rule has a unit test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from .pareto import finite
from .space import SweepSpace

#: User attr: the Ray trial id an Optuna trial was suggested for.
RAY_TRIAL_ATTR = "ray_trial_id"
#: User attr: the name of the point (``search.points_to_evaluate``) a trial was enqueued from.
POINT_ATTR = "none_sweep.point"
#: User attr: why a trial was told FAIL or PRUNED.
FAIL_ATTR = "fail_reason"
#: User attr: the known metrics of a trial's last result (``None`` where missing or non-finite).
METRICS_ATTR = "metrics"
#: Config key naming the point a trial was enqueued from (``SweepSpace.trial_config`` skips ``_`` keys).

#: Metrics recorded for every trial besides the objectives and constraints (the report's columns).
ALWAYS_RECORDED = ("clean_acc", "asr", "clean_acc_drop")


@dataclass(frozen=True)
class Outcome:
    """How Optuna is told about one finished Ray trial."""

    state: TrialState
    values: list[float] | None = None
    reason: str = ""
    metrics: dict[str, float | None] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)


def judge(result: Mapping[str, Any] | None, error: bool, space: SweepSpace) -> Outcome:
    """The Optuna outcome of a Ray trial that ended with ``result`` (its last report) and ``error``."""
    metrics = known_metrics(result, space) if result else {}
    if error:
        return Outcome(TrialState.FAIL, reason="the Ray trial errored", metrics=metrics)
    if not result:
        return Outcome(TrialState.FAIL, reason="the Ray trial ended without any result")
    if not result.get("final"):
        reason = f"stopped early at epoch {result.get('epoch')} by the scheduler"
        return Outcome(TrialState.PRUNED, reason=reason, metrics=metrics)
    for metric in needed_metrics(space):
        value = result.get(metric)
        if value is None:
            return Outcome(TrialState.FAIL, reason=f"final result has no {metric}", metrics=metrics)
        if finite(value) is None:
            return Outcome(TrialState.FAIL, reason=f"final result has {metric}={value!r}", metrics=metrics)
    values = [float(result[m]) for m in space.metrics]
    constraints = {c.text: c.violation(float(result[c.metric])) for c in space.constraints}
    return Outcome(TrialState.COMPLETE, values=values, metrics=metrics, constraints=constraints)


def needed_metrics(space: SweepSpace) -> list[str]:
    """Metrics a final result must hold, finite, to be COMPLETE: the objectives, then the constraints'."""
    return list(dict.fromkeys([*space.metrics, *(c.metric for c in space.constraints)]))


def known_metrics(result: Mapping[str, Any], space: SweepSpace) -> dict[str, float | None]:
    """The recorded metrics of ``result``: each as a float, or ``None`` when missing or not a finite number."""
    return {k: finite(result.get(k)) for k in dict.fromkeys([*needed_metrics(space), *ALWAYS_RECORDED])}
