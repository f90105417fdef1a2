"""Make MLflow agree with Ray: shared by the live callback (after a restore) and ``none-sweep sync-mlflow``.

MLflow is a projection: Ray's records are the source of truth for what a trial reported (its status, config
and last result in the experiment state, every epoch in ``result.json``, its checkpoints in storage).
:func:`backfill_trial` creates the child run when MLflow has none, logs the epochs MLflow lacks, attaches the
model from the latest checkpoint and closes the run the way Ray ended the trial. Nothing here knows the
sweep's space: a :data:`Resolver` turns a trial's sampled values into its resolved config.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NoneSweepError
from ..text import first_line
from .layout import EARLY_STOP_TAG, MODEL_STATE_FILE, NODE_TAG, POINT_KEY, POINT_TAG, SYNC_TAG, step_of

logger = logging.getLogger(__name__)

#: A trial's sampled values → its resolved config (a plain mapping); raises NoneSweepError when invalid.
Resolver = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def read_history(trial: Any) -> list[dict[str, Any]]:
    """Every result the trial reported (``result.json``), from the driver's copy or from storage."""
    for fs, path in _result_files(trial):
        try:
            with fs.open_input_stream(path) as handle:
                text = handle.read().decode("utf-8")
        except (FileNotFoundError, OSError):
            continue
        rows = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line cut by a kill
        return rows
    return []


def _result_files(trial: Any) -> list[tuple[Any, str]]:
    import pyarrow.fs

    out = []
    try:  # the driver's staging copy; Ray's property asserts a running Ray (sync-mlflow has none)
        local = getattr(trial, "local_path", None)
    except Exception:
        local = None
    if local:
        out.append((pyarrow.fs.LocalFileSystem(), str(Path(local) / "result.json")))
    storage = getattr(trial, "storage", None)
    if storage is not None:
        try:
            out.append((storage.storage_filesystem, posixpath.join(storage.trial_fs_path, "result.json")))
        except Exception:  # a stub trial without a resolved storage
            pass
    return out


def error_reason(trial: Any) -> str:
    """One line saying why a Ray trial errored: ``TrainingDiverged: loss became nan at epoch 3 ...``."""
    exc = _local_pickled_error(trial)
    if exc is None:
        try:
            exc = trial.get_pickled_error()
        except Exception:  # unreadable or from another Ray version
            exc = None
    cause = getattr(exc, "cause", None) or exc
    if cause is not None and not _is_generic(cause):
        return f"{type(cause).__name__}: {first_line(cause, 1000 - len(type(cause).__name__) - 2)}"
    text = ""
    for read in (lambda: Path(trial.error_file).read_text(), lambda: str(trial.get_error() or "")):
        try:
            text = read()
        except Exception:
            continue
        if text:
            break
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "the trial failed (see Ray's error.txt in the trial folder)")[:1000]


def _local_pickled_error(trial: Any) -> BaseException | None:
    """The driver's own copy of the error (storage gets it only at the next experiment snapshot)."""
    try:
        path = trial.pickled_error_file
        if not path or not Path(path).is_file():
            return None
        import ray.cloudpickle as cloudpickle

        with open(path, "rb") as handle:
            return cloudpickle.load(handle)
    except Exception:
        return None


def _is_generic(exc: BaseException) -> bool:
    return type(exc).__name__ in ("RayTaskError", "TuneError", "RayActorError")


def out_of_step(children: Mapping[str, Any], trials: list[Any]) -> list[str]:
    """Ids of the trials Ray ended whose MLflow run is missing or not closed the way Ray ended them."""
    stale = []
    for trial in trials:
        status = final_status(trial)
        run = children.get(trial.trial_id)
        if status is not None and (run is None or run.info.status != status):
            stale.append(trial.trial_id)
    return stale


def final_status(trial: Any) -> str | None:
    """The MLflow status a Ray trial ends with; None while Ray may still run it."""
    return {"TERMINATED": "FINISHED", "ERROR": "FAILED"}.get(trial.status)


def latest_model_state(trial: Any) -> Callable[[Callable[[Path], None]], bool]:
    """Call ``use(path_to_state_dict)`` with the model in the trial's latest checkpoint, if it holds one."""

    def run(use: Callable[[Path], None]) -> bool:
        checkpoint = getattr(trial, "checkpoint", None)
        if checkpoint is None:
            return False
        with checkpoint.as_directory() as folder:
            state = Path(folder) / MODEL_STATE_FILE
            if not state.is_file():
                return False
            use(state)
            return True

    return run


@dataclass
class SyncStats:
    created: int = 0
    epochs: int = 0
    closed: int = 0
    models: int = 0
    skipped: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"created {self.created} child runs, logged {self.epochs} epoch values, closed {self.closed} runs, "
                f"attached {self.models} models")  # fmt: skip


def backfill_trial(
    tracker: Any,
    resolve: Resolver,
    trial: Any,
    run: Any | None,
    stats: SyncStats,
    *,
    history: list[dict[str, Any]] | None = None,
    mark: bool = True,
    attach_model: bool = True,
) -> str:
    """Bring one trial's child run in line with Ray's record of it; returns the run id.

    ``attach_model``: also log the model of a finished trial from its latest checkpoint (a sweep that logs
    only its front's models attaches those with :func:`attach_model_of` instead)."""
    status = final_status(trial)
    if run is None:
        run_id = create_child(tracker, resolve, trial)
        stats.created += 1
        logged: set[int] = set()
        mlflow_status = "RUNNING"
    else:
        run_id = run.info.run_id
        logged = tracker.logged_steps(run_id, "loss") | tracker.logged_steps(run_id, "asr")
        mlflow_status = run.info.status
    rows = history if history is not None else read_history(trial)
    missing = [r for r in rows if step_of(r) not in logged]
    last = trial.last_result or {}
    if not missing and last.get("final") and step_of(last) not in logged:
        missing = [last]  # result.json not synced yet: the last result is in the experiment state
    if missing:
        stats.epochs += tracker.log_results(run_id, missing)
    if status is None:
        return run_id  # Ray may still run it: leave the run open
    tags = node_tags(trial.last_result or {})
    if mark:
        tags[SYNC_TAG] = "true"
    if status == "FINISHED":
        if not (trial.last_result or {}).get("final"):
            tags[EARLY_STOP_TAG] = "true"
        if attach_model and attach_model_of(tracker, resolve, trial, run_id):
            stats.models += 1
    if mlflow_status != status:
        tracker.finish_child(run_id, status, error=error_reason(trial) if status == "FAILED" else None, tags=tags)
        stats.closed += 1
    return run_id


def attach_model_of(tracker: Any, resolve: Resolver, trial: Any, run_id: str) -> bool:
    """Log the model in ``trial``'s latest checkpoint on ``run_id`` unless it has one; whether one was logged."""
    if tracker.has_model(run_id):
        return False
    cfg = resolved_or_none(resolve, trial)
    return cfg is not None and latest_model_state(trial)(lambda p: tracker.log_model(run_id, cfg, p))


def create_child(tracker: Any, resolve: Resolver, trial: Any) -> str:
    """The child run of ``trial``; a sampled config the schema rejects still gets a run (params as sampled)."""
    point = trial.config.get(POINT_KEY)
    tags = {POINT_TAG: point} if point else {}
    error = None
    try:
        resolved: Mapping[str, Any] | None = resolve(trial.config)
    except NoneSweepError as exc:
        resolved, error = None, str(exc)
    sampled = {k: v for k, v in trial.config.items() if not k.startswith("_")}
    return tracker.create_child(
        trial.trial_id, run_name(trial), resolved, sampled=sampled, tags=tags, config_error=error
    )


def run_name(trial: Any) -> str:
    """``train_trial_3f2a1_00001`` or, for a point evaluated first, ``paper_defaults (trial 3f2a1_00001)``."""
    point = trial.config.get(POINT_KEY)
    return f"{point} (trial {trial.trial_id})" if point else str(trial)


def resolved_or_none(resolve: Resolver, trial: Any) -> Mapping[str, Any] | None:
    try:
        return resolve(trial.config)
    except NoneSweepError:
        return None


def node_tags(result: dict[str, Any]) -> dict[str, str]:
    node = result.get("node_id")
    return {NODE_TAG: str(node)} if node else {}
