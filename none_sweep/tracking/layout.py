"""The MLflow layout of a sweep, declared once: tracking writes it, report reads it, tests check it.

- experiment = the sweep name, tagged :data:`EXPERIMENT_KIND_TAG` = :data:`EXPERIMENT_KIND` (MLflow 3 then opens
  it on its runs table, not on the GenAI overview);
- one parent run per sweep (run name = sweep name): tags :data:`ROLE_TAG` = ``sweep``, :data:`SWEEP_TAG`,
  :data:`STATUS_TAG`; params ``sweep.*`` and ``version.*``; metrics ``baseline_<metric>`` and the sweep's totals;
  artifacts :data:`RECORD_ARTIFACT` (the sweep record), :data:`SPACE_ARTIFACT`, :data:`FRONT_ARTIFACT`,
  :data:`BASELINE_ARTIFACT`;
- one nested child run per Ray trial: tags :data:`ROLE_TAG` = ``trial``, :data:`SWEEP_TAG`, :data:`TRIAL_ID_TAG`,
  :data:`PARENT_TAG` and the optional ones below; params = the flattened resolved config; metrics per epoch at
  ``step=epoch`` and the final ones; artifacts :data:`CONFIG_ARTIFACT` and the model :data:`MODEL_NAME`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

ROLE_TAG = "none_sweep.role"  # ROLE_SWEEP (the parent) | ROLE_TRIAL (a child)
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
SWEEP_TAG = "none_sweep.sweep"  # the sweep name, on the parent and every child
STATUS_TAG = "none_sweep.status"  # parent: one of PARENT_STATUSES
PARENT_STATUSES = ("running", "finished", "interrupted", "failed")
ERROR_TAG = "none_sweep.error"  # failed child: the reason in one line
CONFIG_ERROR_TAG = "none_sweep.config_error"  # child whose sampled values made no valid config
POINT_TAG = "none_sweep.point"  # child evaluated from search.points_to_evaluate: the point's name
EARLY_STOP_TAG = "none_sweep.stopped_early"  # child stopped by the scheduler before its last epoch
NODE_TAG = "none_sweep.node_id"  # the Ray node the trial (last) ran on
SYNC_TAG = "none_sweep.synced"  # written by `none-sweep sync-mlflow` when it back-filled the run
RETRY_TAG = "none_sweep.last_retry_error"  # the error of the attempt Ray retried from a checkpoint
TRIAL_ID_TAG = "ray.trial_id"
PARENT_TAG = "mlflow.parentRunId"

RECORD_ARTIFACT = "sweep.json"
SPACE_ARTIFACT = "space.yaml"
FRONT_ARTIFACT = "pareto_front.csv"
BASELINE_ARTIFACT = "baseline_config.yaml"
CONFIG_ARTIFACT = "config.yaml"
MODEL_NAME = "model"

# Names the trials hand to tracking (they reach MLflow through Ray, not through sweep code):
POINT_KEY = "_point"  # the sampled-config key naming the starting point a trial evaluates (-> POINT_TAG)
MODEL_STATE_FILE = "model_state.pt"  # the model's weights beside each trial checkpoint (-> the logged model)
PLOT_ARTIFACT = "pareto.png"  # parent: the Pareto plot of `sweep --export` (also under REPORT_FOLDER)
CHOSEN_ARTIFACT = "best_defense.yaml"  # parent: the defense `sweep --export` chose
NOTE_TAG = "mlflow.note.content"  # parent: MLflow's run description (baseline, chosen point, how to export)
REPORT_FOLDER = "report"  # parent: `none-sweep report`'s files (pareto.png, front.csv, summary.json, report.md)

# tags of a model version registered by `none-sweep export --register-model` (besides SWEEP_TAG)
MODEL_RUN_TAG = "none_sweep.run_id"
MODEL_TRIAL_TAG = "none_sweep.trial_id"
MODEL_RULE_TAG = "none_sweep.rule"
MODEL_EXPORTED_BY_TAG = "none_sweep.exported_by"

BASELINE_PREFIX = "baseline_"  # parent metrics: baseline_clean_acc, baseline_asr, ...
SWEEP_PARAM_PREFIX = "sweep."  # parent params: sweep.num_samples, sweep.objectives, ...
NUM_SAMPLES_PARAM = "sweep.num_samples"
PARENT_STATUS_OF = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED", "running": "RUNNING"}

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


def param_value(value: Any, secrets: Sequence[str] | None = None) -> str:
    """MLflow stores params as text; ``str`` so that ``ast.literal_eval`` reads them back (:func:`parse_param`).

    Credentials never become params: see :func:`redact` (``secrets``: :func:`secret_env_values`, read once for
    a run's ~60 params instead of once per value).
    """
    return redact(str(value), secrets)[:6000]


def parse_param(text: str) -> Any:
    """The inverse of :func:`param_value`: ``"0.05"`` → 0.05, ``"True"`` → True, ``"None"`` → None."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;][a-z0-9_.-]*(?:secret|passw|token|key|credential|signature|sig)[a-z0-9_.-]*=)[^&;\s]*"
)
_SECRET_ENV = re.compile(r"(?i)secret|passw|token|credential|private_key|access_key|api_key")


def secret_env_values() -> list[str]:
    """Values of the environment variables whose names look secret (8 characters or more): what :func:`redact`
    removes. Reading ``os.environ`` decodes every variable, so callers redacting many values read it once."""
    return [value for name, value in os.environ.items() if len(value) >= 8 and _SECRET_ENV.search(name)]


def redact(text: str, secrets: Sequence[str] | None = None) -> str:
    """``text`` without credentials: URL passwords (``user:***@``), secret-looking query values
    (``secret_key=***``, ``token=***``, ...) and the value of any environment variable whose name looks
    secret (``AWS_SECRET_ACCESS_KEY``, ``MLFLOW_TRACKING_PASSWORD``, ``*_TOKEN``, ...)."""
    out = _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1:***@", text))
    for value in secret_env_values() if secrets is None else secrets:
        if value in out:
            out = out.replace(value, "***")
    return out


def child_filter(parent_id: str) -> str:
    """MLflow's search filter for the trial runs of one parent."""
    return f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}' and tags.`{PARENT_TAG}` = '{parent_id}'"


def parent_filter(sweep: str) -> str:
    """MLflow's search filter for a sweep's parent run(s)."""
    quoted = sweep.replace("'", "\\'")
    return f"tags.`{ROLE_TAG}` = '{ROLE_SWEEP}' and tags.`{SWEEP_TAG}` = '{quoted}'"


def ui_route(experiment_id: str) -> str:
    """The MLflow UI route of a sweep's runs table. MLflow 3's UI picks its landing page from a workflow type
    (default: GenAI's overview), so the route names the model-training one."""
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
