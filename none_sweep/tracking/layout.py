"""The MLflow layout of a sweep (``docs/architecture.md``): tag names and which result keys become metrics.

``none_sweep.report`` reads what is written here; keep the two in step.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

ROLE_TAG = "none_sweep.role"  # "sweep" (the parent) | "trial" (a child)
SWEEP_TAG = "none_sweep.sweep"  # the sweep name, on the parent and every child
STATUS_TAG = "none_sweep.status"  # parent: running | finished | interrupted | failed
ERROR_TAG = "none_sweep.error"  # failed child: the reason in one line
POINT_TAG = "none_sweep.point"  # child evaluated from search.points_to_evaluate: the point's name
EARLY_STOP_TAG = "none_sweep.stopped_early"  # child stopped by the scheduler before its last epoch
NODE_TAG = "none_sweep.node_id"  # the Ray node the trial (last) ran on
SYNC_TAG = "none_sweep.synced"  # written by `none-sweep sync-mlflow` when it back-filled the run
TRIAL_ID_TAG = "ray.trial_id"
PARENT_TAG = "mlflow.parentRunId"

#: Ray's own result bookkeeping and our non-metric fields: never logged as MLflow metrics.
NOT_METRICS = frozenset({
    "timestamp", "done", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "date", "hostname",
    "node_ip", "time_since_restore", "iterations_since_restore", "checkpoint_dir_name", "should_checkpoint",
    "trial_id", "experiment_tag", "epoch", "config", "phase", "node_id", "episodes_total", "timesteps_total",
    "timesteps_since_restore", "episodes_this_iter", "timesteps_this_iter", "round_end", "cached", "replayed",
})  # fmt: skip


def metrics_of(result: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a Ray result that MLflow records as metrics (``config/...`` excluded)."""
    out = {}
    for key, value in result.items():
        if key in NOT_METRICS or "/" in key or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


def step_of(result: Mapping[str, Any]) -> int:
    """MLflow step of a result: the trial's global epoch (falls back to Ray's iteration)."""
    epoch = result.get("epoch")
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool):
        return int(epoch)
    return int(result.get("training_iteration") or 0)


def param_value(value: Any) -> str:
    """MLflow stores params as text; ``str`` so that ``ast.literal_eval`` reads them back (report/runs.py)."""
    return str(value)[:6000]
