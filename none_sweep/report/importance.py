"""Per-parameter importance for each objective, computed by Optuna from the MLflow trials.

The finished trials are replayed into an in-memory two-objective Optuna study (minimise ASR, maximise clean
accuracy) with ``optuna.trial.create_trial``; ``optuna.importance.get_param_importances`` then scores each
searched parameter with ``target=`` one objective. The evaluator is Optuna's default (PED-ANOVA in Optuna 5;
``fanova`` is available and uses scikit-learn's random forests, which this project already depends on).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

from .runs import Trial
from .space import Axis, infer_axes, trial_params

OBJECTIVES = (("asr", "minimize"), ("clean_acc", "maximize"))
MIN_TRIALS = 4
#: Importance of reaching the Pareto front, both objectives at once (PED-ANOVA only).
FRONT = "pareto_front"


def build_study(trials: Sequence[Trial], axes: Sequence[Axis]) -> Any:
    """An in-memory Optuna study holding ``trials`` (finished ones) over ``axes``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[d for _, d in OBJECTIVES])
    dists = {ax.name: ax.distribution() for ax in axes}
    for t in trials:
        if not t.finished:
            continue
        study.add_trial(optuna.trial.create_trial(
            values=[t.asr, t.clean_acc],
            params=trial_params(axes, t),
            distributions=dists,
            user_attrs={"mlflow_run_id": t.run_id},
        ))
    return study


def _evaluator(name: str) -> Any:
    from optuna import importance

    if name == "default":
        return None
    if name == "fanova":
        return importance.FanovaImportanceEvaluator(seed=0)
    if name == "mdi":
        return importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    if name == "ped-anova":
        return importance.PedAnovaImportanceEvaluator()
    raise ValueError(f"unknown importance evaluator {name!r}")


EVALUATORS = ("default", "ped-anova", "fanova", "mdi")


def param_importances(trials: Sequence[Trial], evaluator: str = "default") -> dict[str, dict[str, float]]:
    """``{objective: {param: importance}}`` (each normalised to sum 1, sorted high to low).

    Objectives: ``asr``, ``clean_acc`` and, with PED-ANOVA, ``pareto_front``.

    Empty per objective when fewer than ``MIN_TRIALS`` finished trials or no parameter varies.
    """
    import optuna

    finished = [t for t in trials if t.finished]
    axes = infer_axes(finished)
    out: dict[str, dict[str, float]] = {name: {} for name, _ in OBJECTIVES}
    if len(finished) < MIN_TRIALS or not axes:
        return out
    study = build_study(finished, axes)
    targets: list[tuple[str, Any]] = []
    for index, (name, direction) in enumerate(OBJECTIVES):
        # Optuna's evaluators take lower target values as better: negate the maximised objective.
        sign = 1.0 if direction == "minimize" else -1.0
        targets.append((name, lambda t, i=index, s=sign: s * t.values[i]))
    if evaluator in ("default", "ped-anova"):
        # Without a target PED-ANOVA scores reaching the Pareto front (non-domination rank).
        targets.append((FRONT, None))
    for name, target in targets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                scores = optuna.importance.get_param_importances(
                    study, evaluator=_evaluator(evaluator), target=target)
            except (RuntimeError, ValueError):
                scores = {}
        out[name] = dict(sorted(scores.items(), key=lambda kv: -kv[1]))
    return out
