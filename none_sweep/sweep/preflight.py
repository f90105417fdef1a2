"""Checks before any trial starts: each failure is one NoneSweepError line and exit code 2.

Order: cheap and local first (space file, storage, tracking store, dataset), then the cluster's resources
once Ray is up. Every check names what it tried and how to fix it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError, ResourceError, TrackingError
from ..text import first_line
from .space import SweepSpace
from .storage import SweepStorage

#: Tracking probes must fail in seconds, not after MLflow's default 7 retries with back-off.
PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
#: During the sweep the driver-side callback retries a little, then gives up and remembers (never blocks long).
#: MLflow's client prints two "View run / View experiment" links each time a run on a tracking server ends: two
#: lines per trial in a console that has one line per trial event. The sweep prints the UI link once.
SWEEP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
             "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # fmt: skip


#: MLflow announces the creation of a new SQLite store at INFO on stderr; a failing preflight must stay one line.
DB_SETUP_LOGGERS = ("mlflow.store.db.utils", "alembic")


@contextlib.contextmanager
def quiet(names: tuple[str, ...], level: int = logging.WARNING) -> Iterator[None]:
    """Raise the named loggers to ``level`` for a block."""
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


#: Ray 2.59+ announces, at WARNING, that token authentication is on for a new local instance: the safe
#: default, not news, and it would precede a preflight error's one line. Its warning that authentication is
#: *off* is kept.
RAY_AUTH_ENABLED_NOTICE = "Token authentication is enabled"


@contextlib.contextmanager
def dropping(prefix: str, logger_name: str = "ray") -> Iterator[None]:
    """Drop records whose message starts with ``prefix`` from every handler of ``logger_name`` for a block.

    A filter on the handlers sees the records of every child logger too, so no (private) module logger of a
    library needs to be named. Import the library first: its handlers must exist when the block starts.
    """

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(prefix)

    handlers = list(dict.fromkeys(logging.getLogger(logger_name).handlers + logging.getLogger().handlers))
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


@contextlib.contextmanager
def env(values: Mapping[str, str], override: bool = True) -> Iterator[None]:
    """Set environment variables for a block (``override=False`` keeps values the user set)."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if override or k not in os.environ:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, previous in old.items():
            if previous is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = previous


def check_storage(storage: SweepStorage) -> None:
    storage.check_writable()


def check_tracking(uri: str, sweep: str) -> Any:
    """Open the store and create (or find) the sweep's experiment; returns the tracker on success."""
    from ..tracking import SweepTracker, sqlite_file

    db = sqlite_file(uri)
    if db is not None:
        folder = db.expanduser().resolve().parent
        if not folder.is_dir():
            raise TrackingError(
                f"--tracking-uri {uri}: folder {folder} does not exist; create it or choose another path"
            )
        if not os.access(folder, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise TrackingError(f"--tracking-uri {uri}: {db} is not writable")
    with env(PROBE_ENV), quiet(DB_SETUP_LOGGERS):
        try:
            tracker = SweepTracker(uri, sweep)
            tracker.experiment_id  # noqa: B018  (creates the experiment: a real write)
        except TrackingError:
            raise
        except Exception as exc:  # MlflowException, requests' ConnectionError, sqlalchemy errors
            why = f"{type(exc).__name__}: {first_line(exc)}"
            raise TrackingError(f"--tracking-uri {uri}: cannot use the tracking store ({why})") from None
    return tracker


def check_dataset(space: SweepSpace) -> None:
    """Load the base config's dataset once (it raises DataError saying how to get it)."""
    from ..data import load_dataset

    cfg = space.base_config()
    try:
        load_dataset(cfg.data, cfg.seed)
    except DataError as exc:
        raise DataError(f"{space.path}: base data: {exc}") from None
    except ConfigError:
        raise


def check_dataset_on_cluster(space: SweepSpace) -> None:
    """The dataset check as a Ray task with one trial's resources, so it runs on a node trials would use."""
    import ray

    from ..config import to_dict

    r = space.resources
    task = ray.remote(num_cpus=r.cpu, num_gpus=r.gpu, max_retries=0)(_load_base_data)
    try:
        ray.get(task.remote(to_dict(space.base_config()), space.path))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DataError):
            raise DataError(str(cause)) from None
        raise


def _load_base_data(cfg: dict[str, Any], path: str) -> None:
    from ..data import load_dataset
    from ..experiment import resolve_config

    base = resolve_config(cfg, source=path)
    try:
        load_dataset(base.data, base.seed)
    except DataError as exc:
        raise DataError(f"{path}: base data on a Ray node: {exc}") from None


def check_resources(space: SweepSpace) -> dict[str, float]:
    """Per-trial cpu/gpu must fit the largest alive node; returns the cluster's total CPU/GPU."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        raise ResourceError("the Ray cluster has no alive node")
    largest_cpu = max(float(n["Resources"].get("CPU", 0)) for n in nodes)
    largest_gpu = max(float(n["Resources"].get("GPU", 0)) for n in nodes)
    r = space.resources
    if r.cpu > largest_cpu:
        raise ResourceError(
            f"{space.path}: resources.cpu={r.cpu:g} per trial, but the largest Ray node has {largest_cpu:g} CPUs; "
            f"lower resources.cpu or add a bigger node"
        )
    if r.gpu > largest_gpu:
        have = "no GPU" if largest_gpu == 0 else f"{largest_gpu:g} GPUs"
        raise ResourceError(
            f"{space.path}: resources.gpu={r.gpu:g} per trial, but the largest Ray node has {have}; "
            f"set resources.gpu=0 (CPU) or run on a GPU cluster (--address)"
        )
    total = ray.cluster_resources()
    return {"CPU": float(total.get("CPU", 0)), "GPU": float(total.get("GPU", 0))}


def resolve_path(path: str) -> str:
    return str(Path(path).expanduser().resolve())
