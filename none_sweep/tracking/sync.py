"""Make MLflow agree with Ray: shared by the live callback (after a restore) and ``none-sweep sync-mlflow``.

Ray's own records are the source of truth: each trial's status, config and last result in the experiment
state, its per-epoch results in ``result.json``, its checkpoints in storage. :func:`backfill_trial` creates
the child run when MLflow has none, logs the epochs MLflow lacks, attaches the model from the latest
checkpoint and closes the run the way Ray ended the trial.
"""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, StorageError, TrackingError
from .layout import EARLY_STOP_TAG, NODE_TAG, POINT_TAG, SYNC_TAG, step_of

logger = logging.getLogger(__name__)

MODEL_STATE = "model_state.pt"  # written by none_sweep.sweep.trainable next to each checkpoint
POINT_KEY = "_point"


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
        return f"{type(cause).__name__}: {cause}".splitlines()[0][:1000]
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
            state = Path(folder) / MODEL_STATE
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


def backfill_trial(tracker: Any, space: Any, trial: Any, run: Any | None, stats: SyncStats, *,
                   history: list[dict] | None = None, mark: bool = True) -> str:  # fmt: skip
    """Bring one trial's child run in line with Ray's record of it; returns the run id."""
    status = final_status(trial)
    if run is None:
        run_id = create_child(tracker, space, trial)
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
        if not tracker.has_model(run_id):
            cfg = _resolved(space, trial)
            if cfg is not None and latest_model_state(trial)(lambda p: tracker.log_model(run_id, cfg, p)):
                stats.models += 1
    if mlflow_status != status:
        tracker.finish_child(run_id, status, error=error_reason(trial) if status == "FAILED" else None, tags=tags)
        stats.closed += 1
    return run_id


def create_child(tracker: Any, space: Any, trial: Any) -> str:
    """The child run of ``trial``; a sampled config the schema rejects still gets a run (params as sampled)."""
    point = trial.config.get(POINT_KEY)
    tags = {POINT_TAG: point} if point else {}
    try:
        cfg = space.trial_config(trial.config, source=f"trial {trial.trial_id}")
    except ConfigError as exc:
        tags["none_sweep.config_error"] = str(exc)[:5000]
        cfg = None
    sampled = {k: v for k, v in trial.config.items() if not k.startswith("_")}
    return tracker.create_child(trial.trial_id, str(trial), cfg, tags=tags, sampled=sampled)


def _resolved(space: Any, trial: Any) -> dict[str, Any] | None:
    from ..config import to_dict

    try:
        return to_dict(space.trial_config(trial.config, source=f"trial {trial.trial_id}"))
    except ConfigError:
        return None


def node_tags(result: dict[str, Any]) -> dict[str, str]:
    node = result.get("node_id")
    return {NODE_TAG: str(node)} if node else {}


# ---------------------------------------------------------------------- none-sweep sync-mlflow
def sync_sweep(storage: Any, name: str, tracking_uri: str | None, say: Callable[[str], None]) -> SyncStats:
    """Back-fill the tracking store from the Ray experiment at ``storage``/``name``."""
    from ray.tune import ExperimentAnalysis

    from ..sweep.runner import SweepSpec, finish_tracking, quiet_analysis
    from .store import SweepTracker

    spec = SweepSpec.load(storage)
    uri = tracking_uri or spec.tracking_uri
    try:
        with quiet_analysis():
            analysis = ExperimentAnalysis(storage.experiment_path)
    except Exception as exc:  # ValueError when no experiment state exists yet
        raise StorageError(f"no Ray experiment state at {storage.experiment_path} ({exc})") from None
    tracker = SweepTracker(uri, name)
    try:
        if tracker.find_parent() is None:
            tracker.start_parent(spec.parent_params(), spec.space.text, resume=False)
            say(f"created the parent run of sweep {name!r}")
        parent = tracker.client.get_run(tracker.parent_id)
        baseline = storage.read_json("baseline.json")
        if baseline and "baseline_clean_acc" not in parent.data.metrics:
            tracker.log_baseline(baseline)
        children = tracker.children()
        stats = SyncStats()
        for trial in analysis.trials:
            backfill_trial(tracker, spec.space, trial, children.get(trial.trial_id), stats)
        statuses = [t.status for t in analysis.trials]
        ended = all(s in ("TERMINATED", "ERROR") for s in statuses)
        complete = bool(statuses) and ended and len(statuses) >= spec.num_samples
        if complete and parent.data.tags.get("none_sweep.status") != "finished":
            finish_tracking(tracker, spec, storage, analysis.trials, "finished", say)
    except TrackingError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("mlflow"):
            raise TrackingError(f"MLflow at {uri}: {exc}".splitlines()[0]) from None
        raise
    return stats
