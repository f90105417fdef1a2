"""``none-sweep sweep``: one trial's path from suggestion to MLflow starts here.

The flow, each step one call: the sweep record (a new one from the space file, or the stored one of the sweep
being resumed) → preflight → ``ray.init`` → resources → the MLflow parent run (a context manager: Ctrl-C or an
error never leave it RUNNING) → the undefended baseline → the Tuner (our Optuna searcher suggests, the trainable
trains and reports to Ray, the MLflow callback projects each report) → the front, the parent run closed.

Which store holds what (``docs/architecture.md``): the record in ``sweep.json``; what trials reported in Ray's
results; the search state in the Optuna journal; MLflow is a projection of the two, rebuilt by ``sync-mlflow``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, StorageError
from ..text import first_line
from ..tracking.layout import RECORD_ARTIFACT, SPACE_ARTIFACT
from . import console, preflight, summary, tuner
from .baseline import measure_baseline
from .console import Say
from .record import SweepRecord
from .storage import SweepStorage
from .trials import all_ended, ray_trials, tally

if TYPE_CHECKING:
    from ..tracking import SweepTracker

logger = logging.getLogger(__name__)


@dataclass
class SweepOptions:
    """What the command line asked for (see ``none_sweep/cli/sweep.py``)."""

    space_path: str
    name: str | None = None
    num_samples: int | None = None
    max_concurrent: int | None = None
    storage: str = "./ray_results"
    tracking_uri: str | None = None
    address: str | None = None
    resume: bool = False
    overrides: list[str] = field(default_factory=list)
    verbose: bool = False  # Ray's own trial tables instead of one line per trial event
    #: What trains a trial and the baseline: an importable top-level callable ``(cfg, pretrain_cache=, progress=)``
    #: returning an object with :class:`~none_sweep.train.ExperimentRun`'s interface (``epochs()``, ``result()``,
    #: ``save_checkpoint``, ``load_checkpoint``, ``model``); None is ExperimentRun. It lets ``bench/bench_scale.py``
    #: time the sweep machinery itself with a synthetic objective. Not recorded: pass it again on ``resume``.
    run_factory: Callable[..., Any] | None = None


def run_sweep(opts: SweepOptions, say: Say = console.say_line) -> int:
    """Run (or resume) a sweep; returns the exit code (0 done, 130 interrupted)."""
    return sweep_and_record(opts, say)[0]


def sweep_and_record(opts: SweepOptions, say: Say = console.say_line) -> tuple[int, SweepRecord]:
    """:func:`run_sweep`, also returning the sweep's record (its name, tracking store, objectives)."""
    from ..tracking import default_tracking_uri

    os.environ.pop("MLFLOW_RUN_ID", None)  # never let an outer MLflow run capture the sweep or leak to workers
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative data paths keep working inside trials
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # snapshots are cheap
    console.log_to_stderr()
    record = resolve_sweep(opts, default_tracking_uri("."))
    try:
        return _run(record, opts, say), record
    except KeyboardInterrupt:
        say(f"\ninterrupted. Resume with:\n  {record.resume_command()}")
        return 130, record


def resolve_sweep(opts: SweepOptions, default_uri: str) -> SweepRecord:
    """A new sweep's record from the space file, or the stored record of the sweep ``--resume`` names."""
    from ray import tune

    if not opts.resume:
        storage_root = SweepStorage(opts.storage, "_").root
        record = SweepRecord.start(
            opts.space_path, name=opts.name, overrides=list(opts.overrides), storage=storage_root,
            tracking_uri=opts.tracking_uri or default_uri, num_samples=opts.num_samples,
            max_concurrent=opts.max_concurrent,
        )  # fmt: skip
        if tune.Tuner.can_restore(record.open_storage().experiment_path):
            raise StorageError(f"sweep {record.name!r} already exists in {storage_root}; continue it with --resume, "
                               "or choose another --name")  # fmt: skip
        return record
    if not opts.name:
        raise ConfigError("--resume needs --name (the sweep to resume)")
    storage = SweepStorage(opts.storage, opts.name)
    record = SweepRecord.load(storage)
    changed = [flag for flag, value in (("--set", opts.overrides), ("--num-samples", opts.num_samples),
                                        ("--max-concurrent", opts.max_concurrent)) if value]  # fmt: skip
    if changed:
        raise ConfigError(f"--resume continues the sweep as it was started; {', '.join(changed)} cannot change it "
                          "(start a new --name instead)")  # fmt: skip
    if opts.tracking_uri and opts.tracking_uri != record.tracking_uri:
        raise ConfigError(f"sweep {opts.name!r} records to {record.tracking_uri}; resume without --tracking-uri "
                          "(afterwards, none-sweep sync-mlflow --tracking-uri ... copies it elsewhere)")  # fmt: skip
    if not tune.Tuner.can_restore(storage.experiment_path):
        raise StorageError(f"{storage.experiment_path}: no Ray experiment state to resume; start it again "
                           "without --resume")  # fmt: skip
    _note_if_space_changed(opts.space_path, record)
    return record


def _note_if_space_changed(path: str, record: SweepRecord) -> None:
    try:
        with open(path, encoding="utf-8") as handle:
            changed = handle.read() != record.space_text
    except OSError:
        return
    if changed:
        logger.warning("%s changed since sweep %s started; resuming with the space it started with", path, record.name)


def _run(record: SweepRecord, opts: SweepOptions, say: Say) -> int:
    storage = record.open_storage()
    space = record.space
    preflight.check_storage(storage)
    tracker = preflight.check_tracking(record.tracking_uri, record.name)
    if not opts.address:
        preflight.check_dataset(space)  # here, before Ray starts: this machine is where the trials run
    _start_ray(opts.address)
    total = preflight.check_resources(space)
    if opts.address:
        preflight.check_dataset_on_cluster(space)  # where the trials run, not on the machine that submitted
    if not opts.resume:
        record.save(storage)
    console.header(record, storage, total, opts.resume, bool(opts.address), say)
    artifacts = {RECORD_ARTIFACT: json.dumps(record.to_json(), indent=2), SPACE_ARTIFACT: space.text}
    with (
        preflight.env(preflight.SWEEP_ENV, override=False),
        tracker.parent_run(record.parent_params(), artifacts, resume=opts.resume),
    ):
        baseline = measure_baseline(space, storage, say, opts.run_factory)
        _best_effort(lambda: tracker.log_baseline(baseline), "logging the baseline", say)
        elapsed = tuner.fit(record, storage, baseline, opts.resume, total, opts.verbose, opts.run_factory)
        return _summarise(record, storage, tracker, elapsed, say)


def _start_ray(address: str | None) -> None:
    import ray

    with preflight.dropping(preflight.RAY_AUTH_ENABLED_NOTICE):
        ray.init(
            address=address or None,
            ignore_reinit_error=True,
            include_dashboard=False if not address else None,
            runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}},
            logging_level=logging.WARNING,
        )


def _summarise(record: SweepRecord, storage: SweepStorage, tracker: SweepTracker, elapsed: float, say: Say) -> int:
    from ..tracking import out_of_step

    trials = ray_trials(storage)
    status = "finished" if all_ended(trials, record.num_samples) else "interrupted"
    rows: list[dict[str, object]] | None = None

    def finish() -> None:
        nonlocal rows
        rows = summary.finish(record, storage, tracker, trials, status, elapsed=elapsed)

    _best_effort(finish, "closing the parent run", say)
    experiment_id = tracker.known_experiment_id
    console.closing(record, storage, status, tally(trials), len(trials), elapsed, rows, say, experiment_id)
    try:
        stale: list[str] | None = out_of_step(tracker.children(), trials)
    except Exception:  # MLflow is still down: it cannot say what it lacks, so everything may need a back-fill
        stale = None
    if stale is None or stale:
        console.sync_hint(record, stale, say)
    if status == "interrupted":
        say(f"interrupted. Resume with:\n  {record.resume_command()}")
        return 130
    return 0


def _best_effort(fn: Callable[[], object], what: str, say: Say) -> None:
    """MLflow is a projection: failing to write it warns, and ``sync-mlflow`` rebuilds it later."""
    try:
        fn()
    except Exception as exc:
        say(f"warning: MLflow {what} failed ({type(exc).__name__}: {first_line(exc, 200)}); "
            "none-sweep sync-mlflow back-fills it")  # fmt: skip
