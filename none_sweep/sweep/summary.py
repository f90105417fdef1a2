"""The end of a sweep: its Pareto front from the Optuna study, its totals, the parent run closed.

The front is computed by :func:`none_sweep.sweep.pareto.pareto_front` with the record's objectives and
constraints, over the study's completed trials (the searcher's ``metrics`` user attr holds each trial's final
metrics): the same rule ``none-sweep report`` applies to the MLflow runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .pareto import pareto_front, to_csv
from .record import SweepRecord
from .search import METRICS_ATTR, POINT_ATTR, RAY_TRIAL_ATTR, fail_unfinished, open_study
from .space import SweepSpace
from .storage import BASELINE_FILE, SweepStorage
from .trials import tally

Say = Callable[[str], None]
SUMMARY_FILE = "summary.json"


def front_rows(study: Any, space: SweepSpace) -> list[dict[str, Any]]:
    """One row per trial on the feasible front, best first on the first objective."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    metrics = [{**(t.user_attrs.get(METRICS_ATTR) or {}), **dict(zip(space.metrics, t.values))} for t in complete]
    rows = []
    for i in pareto_front(metrics, space.objectives, space.constraints):
        t = complete[i]
        row: dict[str, Any] = {"trial": t.user_attrs.get(RAY_TRIAL_ATTR) or f"#{t.number}", "optuna_number": t.number}
        row.update({m: metrics[i].get(m) for m in metric_columns(space)})
        if t.user_attrs.get(POINT_ATTR):
            row["point"] = t.user_attrs[POINT_ATTR]
        row.update(t.params)
        rows.append(row)
    return rows


def metric_columns(space: SweepSpace) -> list[str]:
    """The objectives, then the constraint metrics: what a front table shows."""
    return list(dict.fromkeys(space.metrics + [c.metric for c in space.constraints]))


def sweep_front(record: SweepRecord, journal: Path, *, close_unfinished: bool) -> list[dict[str, Any]] | None:
    """The front of the recorded study (None before the study exists); a finished sweep fails loose ends first."""
    if not journal.exists():
        return None
    study = open_study(journal, record.name)
    if close_unfinished:
        fail_unfinished(study, "never completed: the sweep ended")
    return front_rows(study, record.space)


def attach_front_models(record: SweepRecord, tracker: Any, trials: list[Any], rows: list[dict[str, Any]]) -> int:
    """Log the models of the front's trials (``log_models: front``): a handful per sweep, not one per trial.

    The trials' checkpoints stay in Ray's storage, so a model the front lost later can still be logged by
    ``export --register-model``. Returns how many models were logged."""
    from ..tracking import attach_model_of

    on_front = {str(row["trial"]) for row in rows}
    by_id = {t.trial_id: t for t in trials if t.trial_id in on_front and t.status == "TERMINATED"}
    if not by_id:
        return 0
    runs = tracker.children()
    return sum(
        attach_model_of(tracker, record.resolved_config, trial, runs[tid].info.run_id)
        for tid, trial in by_id.items()
        if tid in runs
    )


def finish(
    record: SweepRecord,
    storage: SweepStorage,
    tracker: Any,
    trials: list[Any],
    status: str,
    elapsed: float | None = None,
) -> list[dict[str, Any]] | None:
    """Write the front and the totals (``summary.json``, the parent run) and close the parent run."""
    rows = sweep_front(record, storage.journal_path(), close_unfinished=status == "finished")
    if record.space.log_models == "front":
        attach_front_models(record, tracker, trials, rows or [])
    metrics = {**tally(trials), "pareto_size": float(len(rows or []))}
    if elapsed is not None:
        metrics["sweep_wall_s"] = elapsed
    baseline = storage.read_json(BASELINE_FILE) or {}
    storage.write_json(
        SUMMARY_FILE,
        {"name": record.name, "status": status, "totals": metrics, "front": rows or [],
         "baseline": baseline.get("metrics", {}), "objectives": [o.metric for o in record.space.objectives]},
    )  # fmt: skip
    tracker.finish_parent(status, metrics, to_csv(rows) if rows is not None else None)
    return rows
