"""The MLflow layout of a sweep (``docs/architecture.md``): tag names and which result keys become metrics.

``none_sweep.report`` reads what is written here; keep the two in step.
"""

from __future__ import annotations

import math
import os
import re
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
    """MLflow stores params as text; ``str`` so that ``ast.literal_eval`` reads them back (report/runs.py).

    Credentials never become params: see :func:`redact`.
    """
    return redact(str(value))[:6000]


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_SECRET_QUERY = re.compile(r"(?i)([?&;][a-z0-9_.-]*(?:secret|passw|token|key|credential|signature|sig)[a-z0-9_.-]*=)[^&;\s]*")
_SECRET_ENV = re.compile(r"(?i)secret|passw|token|credential|private_key|access_key|api_key")


def redact(text: str) -> str:
    """``text`` without credentials: URL passwords (``user:***@``), secret-looking query values
    (``secret_key=***``, ``token=***``, ...) and the value of any environment variable whose name looks
    secret (``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_TRACKING_PASSWORD``, ``*_TOKEN``, ...)."""
    out = _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1:***@", text))
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_ENV.search(name) and value in out:
            out = out.replace(value, "***")
    return out
