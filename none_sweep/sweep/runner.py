"""``none-sweep sweep``: preflight, the baseline, the Tuner (or its restore), and the summary.

The flow, each step one function below: resolve the sweep (a new one from the space file, or the stored
spec of the one being resumed) → preflight → ``ray.init`` → resources → MLflow parent run → baseline →
``Tuner(...).fit()`` or ``Tuner.restore(...).fit()`` → Pareto front, parent run closed, where to look.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config import parse_overrides
from ..errors import ConfigError, NoneSweepError, StorageError, TrackingError
from .space import SweepSpace, describe_param, load_space, space_from_dict
from .storage import JOURNAL_FILE, SPEC_FILE, SweepStorage

logger = logging.getLogger(__name__)

Say = Callable[[str], None]


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


@dataclass
class SweepSpec:
    """How a sweep was started, stored as ``sweep.json``: a resume (or ``sync-mlflow``) rebuilds it exactly."""

    name: str
    space_path: str
    space_text: str
    overrides: list[str]
    tracking_uri: str
    num_samples: int
    max_concurrent: int | None
    storage: str
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def space(self) -> SweepSpace:
        data = yaml.safe_load(self.space_text) or {}
        space = space_from_dict(data, self.space_path, parse_overrides(self.overrides), self.space_text)
        space.num_samples = self.num_samples
        space.max_concurrent = self.max_concurrent
        return space

    def save(self, storage: SweepStorage) -> None:
        storage.write_json(SPEC_FILE, asdict(self))

    @classmethod
    def load(cls, storage: SweepStorage) -> "SweepSpec":
        data = storage.read_json(SPEC_FILE)
        if data is None:
            raise StorageError(
                f"no sweep {storage.name!r} in {storage.root} ({SPEC_FILE} missing); check --name and --storage"
            )
        return cls(**data)

    def parent_params(self) -> dict[str, Any]:
        space = self.space
        params: dict[str, Any] = {
            "sweep.space_file": self.space_path,
            "sweep.num_samples": self.num_samples,
            "sweep.max_concurrent": self.max_concurrent,
            "sweep.sampler": space.search.sampler,
            "sweep.objectives": ", ".join(f"{o.metric} {o.mode}" for o in space.objectives),
            "sweep.constraints": "; ".join(c.text for c in space.constraints) or "none",
            "sweep.scheduler": space.scheduler.name,
            "sweep.storage": self.storage,
            "sweep.overrides": " ".join(self.overrides) or "none",
        }
        params.update({f"version.{k}": v for k, v in self.versions.items()})
        return params


def versions() -> dict[str, str]:
    import mlflow
    import optuna
    import ray
    import torch

    from .. import __version__

    return {"none_sweep": __version__, "ray": ray.__version__, "optuna": optuna.__version__,
            "mlflow": mlflow.__version__, "torch": torch.__version__, "python": sys.version.split()[0]}  # fmt: skip


# ---------------------------------------------------------------------- entry point
def run_sweep(opts: SweepOptions, say: Say = lambda line: print(line, flush=True)) -> int:
    """Run (or resume) a sweep; returns the exit code (0 done, 130 interrupted)."""
    from ..tracking.store import default_tracking_uri

    os.environ.pop("MLFLOW_RUN_ID", None)  # never let an outer MLflow run capture the sweep or leak to workers
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative data paths keep working inside trials
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # snapshots are cheap here
    log_to_stderr()
    spec, storage = resolve_sweep(opts, default_tracking_uri("."))
    resume_cmd = resume_command(spec, storage)
    state: dict[str, Any] = {}
    try:
        return _run(spec, storage, opts, say, resume_cmd, state)
    except KeyboardInterrupt:
        _close_parent(state, "interrupted")
        say(f"\ninterrupted. Resume with:\n  {resume_cmd}")
        return 130
    except BaseException:
        _close_parent(state, "failed")  # e.g. the baseline diverged: the parent run must not stay RUNNING
        raise


def log_to_stderr() -> None:
    """Our own warnings (MLflow unreachable, a trial told FAIL to Optuna) on stderr, whatever Ray did to logging."""
    package = logging.getLogger("none_sweep")
    if not any(getattr(h, "_none_sweep", False) for h in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("none-sweep: %(message)s"))
        handler._none_sweep = True  # type: ignore[attr-defined]
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        package.propagate = False


def resolve_sweep(opts: SweepOptions, default_uri: str) -> tuple[SweepSpec, SweepStorage]:
    """A new sweep's spec from the space file, or the stored spec of the sweep ``--resume`` names."""
    from ray import tune

    if opts.resume:
        if not opts.name:
            raise ConfigError("--resume needs --name (the sweep to resume)")
        storage = SweepStorage(opts.storage, opts.name)
        spec = SweepSpec.load(storage)
        changed = [flag for flag, value in (("--set", opts.overrides), ("--num-samples", opts.num_samples),
                                            ("--max-concurrent", opts.max_concurrent)) if value]  # fmt: skip
        if changed:
            raise ConfigError(
                f"--resume continues the sweep as it was started; {', '.join(changed)} cannot change it "
                "(start a new --name instead)"
            )
        if opts.tracking_uri and opts.tracking_uri != spec.tracking_uri:
            raise ConfigError(
                f"sweep {opts.name!r} records to {spec.tracking_uri}; resume without --tracking-uri "
                f"(afterwards, none-sweep sync-mlflow --tracking-uri ... copies it elsewhere)"
            )
        if not tune.Tuner.can_restore(storage.experiment_path):
            raise StorageError(
                f"{storage.experiment_path}: no Ray experiment state to resume; start it again without --resume"
            )
        _warn_if_space_changed(opts.space_path, spec)
        return spec, storage

    space = load_space(opts.space_path, parse_overrides(opts.overrides))
    name = opts.name or f"{Path(opts.space_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = SweepStorage(opts.storage, name)
    if tune.Tuner.can_restore(storage.experiment_path):
        raise StorageError(
            f"sweep {name!r} already exists in {storage.root}; continue it with --resume, or choose another --name"
        )
    spec = SweepSpec(
        name=name, space_path=str(opts.space_path), space_text=space.text, overrides=list(opts.overrides),
        tracking_uri=opts.tracking_uri or default_uri, num_samples=opts.num_samples or space.num_samples,
        max_concurrent=opts.max_concurrent or space.max_concurrent, storage=storage.root,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )  # fmt: skip
    return spec, storage


def _warn_if_space_changed(path: str, spec: SweepSpec) -> None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return
    if text != spec.space_text:
        logger.warning("%s changed since sweep %s started; resuming with the space it started with", path, spec.name)
        print(f"note: {path} changed since the sweep started; resuming with the stored space", file=sys.stderr)


def resume_command(spec: SweepSpec, storage: SweepStorage) -> str:
    return " ".join(["none-sweep", "sweep", shlex.quote(spec.space_path), "--name", shlex.quote(spec.name),
                     "--storage", shlex.quote(storage.root), "--resume"])  # fmt: skip


def _run(spec: SweepSpec, storage: SweepStorage, opts: SweepOptions, say: Say, resume_cmd: str,
         state: dict[str, Any]) -> int:  # fmt: skip
    from . import preflight

    space = spec.space
    # ---- preflight (before any trial, each failure one line, exit 2)
    preflight.check_storage(storage)
    tracker = preflight.check_tracking(spec.tracking_uri, spec.name)
    if not opts.address:
        preflight.check_dataset(space)  # here, before Ray starts: this machine is where the trials run
    import ray

    with preflight.dropping(preflight.RAY_AUTH_LOGGER, preflight.RAY_AUTH_ENABLED_NOTICE):
        ray.init(
            address=opts.address or None,
            ignore_reinit_error=True,
            include_dashboard=False if not opts.address else None,
            runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}},
            logging_level=logging.WARNING,
        )
    total = preflight.check_resources(space)
    if opts.address:
        preflight.check_dataset_on_cluster(space)  # where the trials run, not on the machine that submitted
    if not spec.versions:
        spec.versions = versions()
    if not opts.resume:
        spec.save(storage)

    _header(spec, space, storage, total, say, opts)
    with preflight.env(preflight.SWEEP_ENV, override=False):
        try:
            tracker.start_parent(spec.parent_params(), space.text, resume=opts.resume)
        except Exception as exc:
            raise _tracking_error(spec.tracking_uri, "creating the sweep's parent run", exc) from None
        state["tracker"] = tracker
        from .baseline import measure_baseline

        baseline = measure_baseline(space, storage, say)
        _tracking_best_effort(lambda: _log_baseline_once(tracker, baseline), "logging the baseline", say)
        results, elapsed = _tune(spec, space, storage, baseline, opts.resume, total, say)
        return _summarise(spec, space, storage, tracker, results, elapsed, resume_cmd, say, state)


def _log_baseline_once(tracker: Any, baseline: dict[str, Any]) -> None:
    parent = tracker.client.get_run(tracker.parent_id)
    if "baseline_clean_acc" not in parent.data.metrics:
        tracker.log_baseline(baseline)


def _header(spec: SweepSpec, space: SweepSpace, storage: SweepStorage, total: dict[str, float], say: Say,
            opts: SweepOptions) -> None:  # fmt: skip
    verb = "resuming" if opts.resume else "starting"
    r = space.resources
    say(f"none-sweep: {verb} sweep {spec.name!r}: {spec.num_samples} trials of {space.path} on "
        f"{total['CPU']:g} CPUs / {total['GPU']:g} GPUs ({r.cpu:g} CPU, {r.gpu:g} GPU per trial)")  # fmt: skip
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives)
    constraints = "; ".join(c.text for c in space.constraints) or "none"
    say(f"  objectives: {objectives}; constraints: {constraints}; sampler: {space.search.sampler}")
    for p in space.params:
        say(f"  {p.key}: {describe_param(p)}")
    if space.scheduler.name == "asha":
        metric = space.scheduler.metric or space.objectives[0].metric
        note = " (several objectives: early stopping looks at this one only)" if len(space.objectives) > 1 else ""
        say(f"  scheduler: ASHA on {metric}{note}")
    if storage.pretrain_cache_root is None:
        say("  note: shared pre-training is off: object-store storage has no shared file system for its cache")
    if opts.address and storage.is_local:
        say(f"  note: every node must see {storage.root} (NFS): Ray syncs nothing to the head node")
    say(f"  Ray results: {storage.experiment_path}")
    say(f"  MLflow: {spec.tracking_uri} (experiment {spec.name!r})")


# ---------------------------------------------------------------------- the Tuner
def _tune(spec: SweepSpec, space: SweepSpace, storage: SweepStorage, baseline: dict[str, Any], resume: bool,
          total: dict[str, float], say: Say) -> tuple[Any, float]:  # fmt: skip
    from ray import tune

    from ..tracking.callback import MlflowSweepCallback
    from .trainable import train_trial

    journal = storage.journal_path()
    if not storage.is_local and resume and not journal.exists():
        storage.copy_from(JOURNAL_FILE, journal)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, space=space, baseline=baseline, cache_root=storage.pretrain_cache_root,
                             storage=storage),
        {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )
    t0 = time.time()
    if resume:
        with quiet_analysis():
            tuner = tune.Tuner.restore(storage.experiment_path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        if journal.exists():
            journal.unlink()  # left by a start that died before Ray recorded anything: start the study afresh
        from .search import SweepSearch

        searcher = SweepSearch(space, journal, study_name=spec.name)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=spec.num_samples,
                max_concurrent_trials=_concurrency(spec, space, total),
                scheduler=_scheduler(space),
                reuse_actors=True,  # a trial starts in a warm worker (torch and the data code already imported)
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=storage.root,
                callbacks=[MlflowSweepCallback(spec.tracking_uri, spec.name, space)],
                failure_config=tune.FailureConfig(max_failures=space.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=3),
            ),
        )
    results = tuner.fit()
    if not storage.is_local and journal.exists():
        storage.copy_to(journal, JOURNAL_FILE)
    return results, time.time() - t0


def _concurrency(spec: SweepSpec, space: SweepSpace, total: dict[str, float]) -> int:
    """``max_concurrent``, else as many trials as the cluster's CPUs (and GPUs) hold at once."""
    if spec.max_concurrent:
        return spec.max_concurrent
    fits = [math.floor(total["CPU"] / space.resources.cpu + 1e-9)]
    if space.resources.gpu > 0:
        fits.append(math.floor(total["GPU"] / space.resources.gpu + 1e-9))
    return max(1, min(min(fits), spec.num_samples))


def _scheduler(space: SweepSpace) -> Any:
    s = space.scheduler
    if s.name != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    metric = s.metric or space.objectives[0].metric
    mode = s.mode or next((o.mode for o in space.objectives if o.metric == metric), "min")
    return ASHAScheduler(metric=metric, mode=mode, grace_period=s.grace_period, reduction_factor=s.reduction_factor,
                         max_t=s.max_t, time_attr="training_iteration")  # fmt: skip


# ---------------------------------------------------------------------- the end
def _summarise(spec: SweepSpec, space: SweepSpace, storage: SweepStorage, tracker: Any, results: Any, elapsed: float,
               resume_cmd: str, say: Say, state: dict[str, Any]) -> int:  # fmt: skip
    from ..tracking.callback import MlflowSweepCallback

    trials = ray_trials(storage)
    statuses = [t.status for t in trials]
    done = sum(s == "TERMINATED" for s in statuses)
    failed = sum(s == "ERROR" for s in statuses)
    interrupted = len(trials) < spec.num_samples or any(s not in ("TERMINATED", "ERROR") for s in statuses)
    saved = sum(float((t.last_result or {}).get("pretrain_saved_s") or 0.0) for t in trials)
    status = "interrupted" if interrupted else "finished"
    rows = finish_tracking(tracker, spec, storage, trials, status, say, elapsed=elapsed)
    say("")
    say(f"sweep {spec.name!r} {status}: {len(trials)}/{spec.num_samples} trials, {done} completed, {failed} failed, "
        f"in {elapsed:.0f}s; shared pre-training saved {saved:.0f}s")  # fmt: skip
    if rows is not None:
        from .pareto import format_table

        objectives = ", ".join(f"{o.metric} {o.mode}" for o in space.objectives)
        feasible = f"; feasible: {'; '.join(c.text for c in space.constraints)}" if space.constraints else ""
        say(f"Pareto front ({objectives}{feasible}):")
        say(format_table(rows, space))
    say("")
    say(where_to_look(spec.tracking_uri, spec.name))
    say(f"Ray results: {storage.experiment_path}   Optuna study: {storage.journal_path()} (study {spec.name!r})")
    callback = MlflowSweepCallback.active(spec.name)
    missed = sorted(callback.missed) if callback is not None else []
    if missed:
        say(f"warning: MLflow missed parts of {len(missed)} trial(s) while it was unreachable; back-fill with:")
        say(f"  none-sweep sync-mlflow --name {shlex.quote(spec.name)} --storage {shlex.quote(storage.root)}")
    if interrupted:
        say(f"interrupted. Resume with:\n  {resume_cmd}")
        return 130
    state.pop("tracker", None)
    return 0


def where_to_look(uri: str, name: str) -> str:
    """The MLflow UI for this store: a tracking server is its own UI; a database needs ``mlflow ui``."""
    if uri.startswith(("http://", "https://")):
        return f"MLflow experiment {name!r}: open {uri} in a browser"
    return (f"MLflow experiment {name!r}; open the UI with:\n"
            f"  mlflow ui --backend-store-uri {shlex.quote(uri)} --host 127.0.0.1 --port 5000\n"
            f"  then http://127.0.0.1:5000 (experiment {name!r}; Chart view: asr vs clean_acc)")  # fmt: skip


def ray_trials(storage: SweepStorage) -> list[Any]:
    """Ray's record of every trial (status, config, last result, checkpoint), read back from storage."""
    from ray.tune import ExperimentAnalysis

    with quiet_analysis():
        return list(ExperimentAnalysis(storage.experiment_path).trials)


class quiet_analysis:
    """Ray warns for every trial that has not reported yet when it reads an experiment back: not news here."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        self.logger.setLevel(self.level)


def finish_tracking(tracker: Any, spec: SweepSpec, storage: SweepStorage, trials: list[Any], status: str, say: Say,
                    elapsed: float | None = None) -> list[dict[str, Any]] | None:  # fmt: skip
    """Close the Optuna study's loose ends, write the Pareto front and close the parent run."""
    from .pareto import front_rows, to_csv

    space = spec.space
    rows = None
    journal = storage.journal_path()
    if journal.exists():
        from .search import open_study

        study = open_study(journal, spec.name)
        if status == "finished":
            _fail_unfinished(study)
        rows = front_rows(study, space)
    saved = sum(float((t.last_result or {}).get("pretrain_saved_s") or 0.0) for t in trials)
    metrics = {
        "pretrain_saved_s": saved,
        "trials_completed": float(sum(t.status == "TERMINATED" for t in trials)),
        "trials_failed": float(sum(t.status == "ERROR" for t in trials)),
        "pareto_size": float(len(rows or [])),
    }
    if elapsed is not None:
        metrics["sweep_wall_s"] = elapsed
    _tracking_best_effort(
        lambda: tracker.finish_parent(status, metrics, to_csv(rows) if rows is not None else None),
        "closing the parent run", say,
    )
    return rows


def _fail_unfinished(study: Any) -> None:
    from optuna.trial import TrialState

    from .search import FAIL_ATTR

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(t._trial_id, FAIL_ATTR, "never completed: the sweep ended")
            study.tell(t.number, None, state=TrialState.FAIL)


def _close_parent(state: dict[str, Any], status: str) -> None:
    tracker = state.get("tracker")
    if tracker is not None:
        try:
            tracker.finish_parent(status)
        except Exception:  # best effort while the user is interrupting
            pass


def _tracking_best_effort(fn: Callable[[], Any], what: str, say: Say) -> None:
    try:
        fn()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        say(f"warning: MLflow {what} failed ({type(exc).__name__}: {first}); none-sweep sync-mlflow back-fills it")


def _tracking_error(uri: str, what: str, exc: Exception) -> NoneSweepError:
    if isinstance(exc, NoneSweepError):
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return TrackingError(f"{what} in {uri} failed ({type(exc).__name__}: {first})")
