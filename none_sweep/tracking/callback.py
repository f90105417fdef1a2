"""The Ray Tune callback that records a sweep in MLflow, from the driver only.

One process writes (the driver), so a SQLite store never sees competing writers. Runs are found by tags,
not remembered: after ``Tuner.restore`` the trial → run map is rebuilt from the store (``ray.trial_id``
under the sweep's parent), runs of resumed trials are reopened, runs of trials Ray finished while nobody
was listening are back-filled, and RUNNING runs no Ray trial owns any more are marked FAILED.

MLflow being unreachable never stops the sweep: a failed write is a warning, the trial is remembered, its
unsent epochs are kept and retried (at most every ``retry_after_s``); at the end the driver compares MLflow with
Ray's records (:func:`none_sweep.tracking.sync.out_of_step`) and prints the ``none-sweep sync-mlflow`` command
when something is still missing. The callback knows nothing of the sweep's space: ``resolve`` turns a trial's
sampled values into its resolved config.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from ..text import first_line
from .layout import EARLY_STOP_TAG, NODE_TAG, RETRY_TAG
from .sync import Resolver, SyncStats, backfill_trial, create_child, error_reason, latest_model_state, resolved_or_none

logger = logging.getLogger(__name__)
#: How long a trial's epochs may wait to be sent together (see ``MlflowSweepCallback``).
FLUSH_AFTER_S = 5.0


class MlflowSweepCallback(Callback):
    """Parent run per sweep (created by the runner), nested child per trial; see ``docs/architecture.md``."""

    def __init__(self, tracking_uri: str, sweep: str, resolve: Resolver, retry_after_s: float = 30.0,
                 models_at_close: bool = True, flush_after_s: float = FLUSH_AFTER_S) -> None:  # fmt: skip
        """``models_at_close``: log each finished trial's model as it ends (~1.6 s of driver time each); off, the
        sweep attaches models later (its front's, when it ends; ``export`` any it registers).

        ``flush_after_s``: a trial's epochs go to MLflow once the oldest unsent one has waited this long, and
        always when the trial reports its final result or ends. Every write loads the run (its ~60 params) in
        the tracking store, so short epochs are sent a few at a time, not one write per epoch; 0 sends each."""
        self.tracking_uri = tracking_uri
        self.sweep = sweep
        self.resolve = resolve
        self.retry_after_s = retry_after_s
        self.models_at_close = models_at_close
        self.flush_after_s = flush_after_s
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._tracker: Any = None
        self._runs: dict[str, str] = {}  # Ray trial id -> MLflow run id
        self._pending: dict[str, list[dict[str, Any]]] = {}  # results not yet in MLflow
        self._waiting_since: dict[str, float] = {}  # when the oldest of them arrived (monotonic)
        self._statuses: dict[str, str] = {}  # MLflow status of each known run
        self._closed: set[str] = set()
        self.missed: set[str] = set()  # trials MLflow may be missing something of
        self._down_until = 0.0
        self._reconciled = False
        self._read_at_setup: dict[str, Any] | None = None
        self.warnings = 0

    # The callback is pickled into Ray's tuner.pkl: keep only its settings.
    def __getstate__(self) -> dict[str, Any]:
        keys = ("tracking_uri", "sweep", "resolve", "retry_after_s", "models_at_close", "flush_after_s")
        return {k: self.__dict__[k] for k in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"models_at_close": True, "flush_after_s": FLUSH_AFTER_S, **state})
        self._init_runtime()

    # ------------------------------------------------------------------ guarded MLflow access
    def _call(
        self, what: str, trial_id: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> tuple[bool, Any]:
        if time.monotonic() < self._down_until:
            if trial_id:
                self.missed.add(trial_id)
            return False, None
        try:
            if self._tracker is None:
                from .store import SweepTracker

                self._tracker = SweepTracker(self.tracking_uri, self.sweep)
            return True, fn(*args, **kwargs)
        except Exception as exc:  # MLflow raises MlflowException, requests' errors, sqlite OperationalError, ...
            self._down_until = time.monotonic() + self.retry_after_s
            self.warnings += 1
            if trial_id:
                self.missed.add(trial_id)
            logger.warning("MLflow: %s failed (%s: %s); the sweep goes on, retrying in %.0fs",
                           what, type(exc).__name__, first_line(exc), self.retry_after_s)  # fmt: skip
            return False, None

    def unsent(self, trial_id: str) -> int:
        """How many results of ``trial_id`` wait for MLflow to come back."""
        return len(self._pending.get(trial_id, []))

    @property
    def tracker(self) -> Any:
        if self._tracker is None:
            from .store import SweepTracker

            self._tracker = SweepTracker(self.tracking_uri, self.sweep)
        return self._tracker

    # ------------------------------------------------------------------ Ray hooks
    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:  # fmt: skip
        ok, children = self._call("reading the sweep's runs", None, lambda: self.tracker.children())
        if ok:
            self._runs = {tid: run.info.run_id for tid, run in children.items()}
            self._statuses = {tid: run.info.status for tid, run in children.items()}
            self._read_at_setup = children  # the first step's reconcile starts from it: one query, not two

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if not self._reconciled:
            self._reconcile(trials)
        elif self._pending and time.monotonic() >= self._down_until:
            now = time.monotonic()
            due = {tid for tid, since in self._waiting_since.items() if now - since >= self.flush_after_s}
            for trial in trials if due else ():
                if trial.trial_id in due:
                    self._flush(trial)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ensure_run(trial)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:  # fmt: skip
        tid = trial.trial_id
        self._pending.setdefault(tid, []).append(dict(result))
        since = self._waiting_since.setdefault(tid, time.monotonic())
        if result.get("final") or time.monotonic() - since >= self.flush_after_s:
            self._flush(trial)

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        run_id = self._ensure_run(trial)
        if run_id:
            reason = error_reason(trial)
            set_tag = self.tracker.client.set_tag
            self._call("tagging a retry", trial.trial_id, set_tag, run_id, RETRY_TAG, reason[:5000])

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._close(trial, "FAILED")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._down_until = 0.0
        for trial in trials:
            if self._pending.get(trial.trial_id):
                self._flush(trial)
        self._reconcile(trials)

    # ------------------------------------------------------------------ internals
    def _ensure_run(self, trial: Any) -> str | None:
        tid = trial.trial_id
        if tid in self._runs:
            if self._statuses.get(tid) not in (None, "RUNNING"):
                ok, _ = self._call("reopening a run", tid, self.tracker.reopen_child, self._runs[tid])
                if ok:
                    self._statuses[tid] = "RUNNING"
            self._closed.discard(tid)
            return self._runs[tid]
        ok, run_id = self._call("creating a trial run", tid, create_child, self.tracker, self.resolve, trial)
        if ok:
            self._runs[tid] = run_id
            self._statuses[tid] = "RUNNING"
            return run_id
        return None

    def _flush(self, trial: Any) -> None:
        tid = trial.trial_id
        rows = self._pending.get(tid)
        if not rows:
            return
        run_id = self._ensure_run(trial)
        if run_id is None:
            return
        ok, _ = self._call("logging epoch metrics", tid, self.tracker.log_results, run_id, rows)
        if ok:
            self._pending.pop(tid, None)
            self._waiting_since.pop(tid, None)

    def _close(self, trial: Any, status: str) -> None:
        tid = trial.trial_id
        self._flush(trial)
        run_id = self._ensure_run(trial)
        if run_id is None or self._pending.get(tid):
            return  # MLflow is down: the end-of-sweep reconcile (or sync-mlflow) closes it
        tags = {}
        last = trial.last_result or {}
        if last.get("node_id"):
            tags[NODE_TAG] = str(last["node_id"])
        if status == "FINISHED":
            if not last.get("final"):
                tags[EARLY_STOP_TAG] = "true"
            if self.models_at_close:
                self._attach_model(trial, run_id)
            ok, _ = self._call("closing a trial run", tid, self.tracker.finish_child, run_id, "FINISHED", None, tags)
        else:
            reason = error_reason(trial)
            finish = self.tracker.finish_child
            ok, _ = self._call("closing a failed trial run", tid, finish, run_id, "FAILED", reason, tags)
        if ok:
            self._closed.add(tid)
            self._statuses[tid] = status

    def _attach_model(self, trial: Any, run_id: str) -> None:
        tid = trial.trial_id
        config = resolved_or_none(self.resolve, trial)
        ok, has = self._call("looking up the model", tid, self.tracker.has_model, run_id)
        if config is not None and ok and not has:

            def log(path: Any) -> None:
                self.tracker.log_model(run_id, config, path)

            self._call("logging the model", tid, latest_model_state(trial), log)

    def _reconcile(self, trials: list[Any]) -> None:
        """Runs vs Ray trials: back-fill trials Ray finished unheard, fail runs no trial owns."""
        children, self._read_at_setup = self._read_at_setup, None
        if children is None:
            ok, children = self._call("reading the sweep's runs", None, lambda: self.tracker.children())
            if not ok:
                return
        by_id = {t.trial_id: t for t in trials}
        stats = SyncStats()
        for tid, run in children.items():
            self._runs.setdefault(tid, run.info.run_id)
            if run.info.status == "RUNNING" and tid not in by_id:  # Ray has no record of it: not part of the sweep
                self._call("discarding an orphaned run", tid, self.tracker.discard_child, run.info.run_id,
                           "orphaned: the sweep driver stopped before Ray recorded this trial")  # fmt: skip
                self._runs.pop(tid, None)
        for tid, trial in by_id.items():
            terminal = trial.status in ("TERMINATED", "ERROR")
            run = children.get(tid)
            if terminal and (run is None or run.info.status == "RUNNING" or tid in self.missed):
                ok, run_id = self._call("back-filling a trial", tid, backfill_trial, self.tracker, self.resolve, trial,
                                        run, stats, mark=False, attach_model=self.models_at_close)  # fmt: skip
                if ok:
                    self._runs[tid] = run_id
                    self._closed.add(tid)
                    self.missed.discard(tid)
                    self._pending.pop(tid, None)
                    self._waiting_since.pop(tid, None)
        self._reconciled = True
        if stats.created or stats.closed:
            logger.info("MLflow: reconciled with Ray: %s", stats.line())
