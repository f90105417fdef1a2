"""The Ray Tune side of a sweep: the trainable with its resources, the Tuner (new or restored), the scheduler."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .record import SweepRecord
from .space import SweepSpace
from .storage import JOURNAL_FILE, SweepStorage

RunFactory = Callable[..., Any]  # ``(cfg, pretrain_cache=, progress=) -> run``, see ``SweepOptions.run_factory``


def fit(record: SweepRecord, storage: SweepStorage, baseline: Mapping[str, Any], resume: bool,
        total: Mapping[str, float], verbose: bool = False, run_factory: RunFactory | None = None) -> float:  # fmt: skip
    """Run (or continue) the Tuner until every trial ended or the user interrupted; returns the wall time.

    ``run_factory``: what trains each trial (``SweepOptions.run_factory``; None: ``ExperimentRun``).
    """
    journal = storage.journal_path()
    if not storage.is_local and resume and not journal.exists():
        storage.copy_from(JOURNAL_FILE, journal)
    if not verbose:
        quiet_libraries()
    t0 = time.time()
    trainable = _trainable(record, storage, baseline, run_factory)
    tuner = _restored(storage, trainable) if resume else _new(record, storage, trainable, total, verbose)
    tuner.fit()
    if not storage.is_local and journal.exists():
        storage.copy_to(journal, JOURNAL_FILE)
    return time.time() - t0


def _trainable(record: SweepRecord, storage: SweepStorage, baseline: Mapping[str, Any],
               run_factory: RunFactory | None = None) -> Any:  # fmt: skip
    from ray import tune

    from .trainable import train_trial

    space = record.space
    trainable = tune.with_parameters(
        train_trial, space=space, baseline=dict(baseline), cache_root=storage.pretrain_cache_root, storage=storage,
        run_factory=run_factory,
    )  # fmt: skip
    return tune.with_resources(trainable, {"cpu": space.resources.cpu, "gpu": space.resources.gpu})


def _restored(storage: SweepStorage, trainable: Any) -> Any:
    from ray import tune

    from .trials import quiet_analysis

    with quiet_analysis():
        return tune.Tuner.restore(storage.experiment_path, trainable, resume_unfinished=True, resume_errored=True)


def _new(record: SweepRecord, storage: SweepStorage, trainable: Any, total: Mapping[str, float],
         verbose: bool) -> Any:  # fmt: skip
    """A new Tuner. Quiet by default: one line per trial event (:mod:`.progress`) instead of Ray's tables."""
    from ray import tune

    from ..tracking import MlflowSweepCallback
    from .progress import ProgressLines
    from .search import SweepSearcher

    journal = storage.journal_path()
    if journal.exists():
        journal.unlink()  # left by a start that died before Ray recorded anything: start the study afresh
    space = record.space
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=SweepSearcher(space, journal, study_name=record.name),
            num_samples=record.num_samples,
            max_concurrent_trials=record.concurrency(total["CPU"], total["GPU"]),
            scheduler=scheduler(space),
            reuse_actors=True,  # a trial starts in a warm worker (torch and the data code already imported)
        ),
        run_config=tune.RunConfig(
            name=record.name,
            storage_path=storage.root,
            callbacks=[
                MlflowSweepCallback(
                    record.tracking_uri, record.name, record.resolved_config, models_at_close=space.log_models == "all"
                ),
                *([] if verbose else [ProgressLines(record.num_samples)]),
            ],
            verbose=None if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=space.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=space.keep_checkpoints),
        ),
    )


def quiet_libraries() -> None:
    """Ray's boxed experiment table and TensorBoard hint, and Optuna's "new study" line, are not news here.

    ``RAY_AIR_NEW_OUTPUT=0`` selects Ray Tune's classic reporter, which ``verbose=0`` silences completely (the
    new one prints its header at every verbosity); a value the user set is kept.
    """
    import os

    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def scheduler(space: SweepSpace) -> Any:
    """ASHA on one scalar metric (the first objective unless named), or None."""
    s = space.scheduler
    if s.name != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    metric = space.scheduler_metric
    mode = s.mode or next((o.mode for o in space.objectives if o.metric == metric), "min")
    return ASHAScheduler(metric=metric, mode=mode, grace_period=s.grace_period, reduction_factor=s.reduction_factor,
                         max_t=s.max_t, time_attr="training_iteration")  # fmt: skip
