"""``none-sweep sync-mlflow``: rebuild a sweep's MLflow projection from its record and Ray's results.

MLflow is never the source of truth (``docs/architecture.md``), so after a tracking outage, or to copy a sweep
into another tracking store, everything it should hold is derived again here: the parent run from the sweep
record, each child run from Ray's record of the trial, the front from the Optuna journal.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..errors import TrackingError
from ..text import first_line
from ..tracking import SweepTracker, SyncStats, backfill_trial
from ..tracking.layout import RECORD_ARTIFACT, SPACE_ARTIFACT, STATUS_TAG
from .record import SweepRecord
from .storage import BASELINE_FILE, SweepStorage
from .summary import attach_front_models, finish, sweep_front
from .trials import all_ended, ray_trials


def sync_sweep(storage: SweepStorage, tracking_uri: str | None, say: Callable[[str], None]) -> SyncStats:
    """Back-fill the tracking store (default: the sweep's own) from the sweep at ``storage``."""
    record = SweepRecord.load(storage)
    uri = tracking_uri or record.tracking_uri
    trials = ray_trials(storage)
    tracker = SweepTracker(uri, record.name)
    try:
        if tracker.find_parent() is None:
            artifacts = {RECORD_ARTIFACT: json.dumps(record.to_json(), indent=2), SPACE_ARTIFACT: record.space_text}
            tracker.start_parent(record.parent_params(), artifacts, resume=False)
            say(f"created the parent run of sweep {record.name!r}")
        baseline = storage.read_json(BASELINE_FILE)
        if baseline:
            tracker.log_baseline(baseline)
        children = tracker.children()
        stats = SyncStats()
        every_model = record.space.log_models == "all"
        for trial in trials:
            run = children.get(trial.trial_id)
            backfill_trial(tracker, record.resolved_config, trial, run, stats, attach_model=every_model)
        parent = tracker.client.get_run(tracker.parent_id)
        if all_ended(trials, record.num_samples) and parent.data.tags.get(STATUS_TAG) != "finished":
            finish(record, storage, tracker, trials, "finished")  # attaches the front's models
        elif not every_model:
            front = sweep_front(record, storage.journal_path(), close_unfinished=False) or []
            stats.models += attach_front_models(record, tracker, trials, front)
    except TrackingError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("mlflow"):
            raise TrackingError(f"MLflow at {uri}: {first_line(exc)}") from None
        raise
    return stats
