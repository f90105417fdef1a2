"""Read a sweep back from MLflow, following the layout declared in :mod:`none_sweep.tracking.layout`.

One experiment per sweep; a parent run (baseline metrics, the sweep record ``sweep.json``) and one child run per
trial (flattened config as params, final metrics, ``config.yaml`` and a ``model``). Everything else in
:mod:`none_sweep.report` works on the :class:`~.model.Sweep` built here, so only this module knows how MLflow
pages runs, stores params as strings and hands out artifacts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError, TrackingError
from ..sweep.pareto import finite
from ..sweep.record import SweepRecord
from ..text import first_line
from ..tracking.layout import (
    BASELINE_PREFIX,
    NUM_SAMPLES_PARAM,
    PARENT_TAG,
    RECORD_ARTIFACT,
    ROLE_SWEEP,
    ROLE_TAG,
    ROLE_TRIAL,
    parse_param,
)
from ..tracking.store import sqlite_file
from .model import Sweep, Trial

__all__ = ["PAGE_SIZE", "Sweep", "Trial", "load_sweep", "load_trial", "open_client", "print_progress",
           "read_record", "tracking_call"]  # fmt: skip

#: Runs fetched per MLflow request (one progress line per page).
PAGE_SIZE = 200
BASELINE_CLEAN_ACC = f"{BASELINE_PREFIX}clean_acc"

Progress = Callable[[int, "int | None"], None]


def open_client(tracking_uri: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` for ``tracking_uri`` (default: ``MLFLOW_TRACKING_URI`` or MLflow's default).

    A ``sqlite:///`` URI naming a file that does not exist is refused rather than silently created.
    """
    import mlflow
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in one-line CLI output
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        raise TrackingError(f"no MLflow store at {uri} ({db} does not exist); pass --tracking-uri")
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def tracking_call(what: str, uri: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one MLflow call, turning store/connection failures into one-line TrackingErrors."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        raise TrackingError(f"{what} at {uri} failed: {first_line(str(exc.message))}") from None
    except (OSError, ConnectionError) as exc:
        raise TrackingError(f"{what}: cannot reach the tracking store {uri} ({type(exc).__name__}: {exc})") from None


def experiment_names(client: Any, uri: str) -> list[str]:
    exps = tracking_call("listing experiments", uri, client.search_experiments, max_results=1000)
    return sorted(e.name for e in exps)


def find_experiment(client: Any, uri: str, name: str) -> Any:
    """The MLflow experiment named ``name``; unknown names list the existing ones."""
    exp = tracking_call(f"looking up experiment {name!r}", uri, client.get_experiment_by_name, name)
    if exp is None or exp.lifecycle_stage != "active":
        names = [n for n in experiment_names(client, uri) if n != "Default"]
        known = ", ".join(names) if names else "none"
        raise TrackingError(f"no experiment named {name!r} at {uri}; existing experiments: {known}")
    return exp


def iter_runs(client: Any, uri: str, experiment_ids: list[str], filter_string: str = "") -> Iterator[list[Any]]:
    """Pages of runs (``PAGE_SIZE`` each), oldest first."""
    token = None
    while True:
        page = tracking_call(
            "reading runs", uri, client.search_runs, experiment_ids, filter_string=filter_string,
            max_results=PAGE_SIZE, order_by=["attributes.start_time ASC"], page_token=token,
        )  # fmt: skip
        yield list(page)
        token = page.token
        if not token:
            return


def to_trial(run: Any, baseline_clean_acc: float | None = None) -> Trial:
    info, data = run.info, run.data
    return Trial(
        run_id=info.run_id,
        run_name=info.run_name or "",
        status=info.status,
        params={k: parse_param(v) for k, v in data.params.items()},
        metrics=dict(data.metrics),
        tags=dict(data.tags),
        start_time=info.start_time,
        end_time=info.end_time,
        baseline_clean_acc=baseline_clean_acc,
    )


def read_record(client: Any, uri: str, parent: Trial) -> tuple[SweepRecord | None, str]:
    """The sweep record logged on the parent run, or None and why (no artifact: a sweep made before records)."""
    with tempfile.TemporaryDirectory(prefix="none-sweep-record-") as tmp:
        try:
            local = client.download_artifacts(parent.run_id, RECORD_ARTIFACT, tmp)
        except Exception:  # MLflow raises several types for a missing artifact
            return None, f"the parent run {parent.run_id} has no {RECORD_ARTIFACT} (a sweep made before records)"
        text = Path(local).read_text(encoding="utf-8")
    try:
        return SweepRecord.from_text(text, f"run {parent.run_id} {RECORD_ARTIFACT}"), ""
    except ConfigError as exc:
        return None, f"its {RECORD_ARTIFACT} cannot be read by this none-sweep ({first_line(exc)})"


def load_sweep(client: Any, uri: str, name: str, progress: Progress | None = None) -> Sweep:
    """Every run of experiment ``name``, split into parents and trials, and the latest parent's record;
    ``progress(read, expected)`` per page."""
    exp = find_experiment(client, uri, name)
    runs: list[Any] = []
    expected: int | None = None
    for page in iter_runs(client, uri, [exp.experiment_id]):
        runs.extend(page)
        if expected is None:
            expected = _expected_runs(runs)
        if progress is not None:
            progress(len(runs), expected)
    parents = [to_trial(r) for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_SWEEP]
    baselines = {p.run_id: finite(p.metrics.get(BASELINE_CLEAN_ACC)) for p in parents}
    fallback = baselines[parents[-1].run_id] if parents else None
    trials = [
        to_trial(run, baselines.get(run.data.tags.get(PARENT_TAG), fallback))
        for run in runs
        if run.data.tags.get(ROLE_TAG) == ROLE_TRIAL
    ]
    sweep = Sweep(exp.experiment_id, name, uri, parents, trials)
    _attach_record(client, uri, sweep)
    return sweep


def _attach_record(client: Any, uri: str, sweep: Sweep) -> None:
    if sweep.parent is None:
        sweep.record_note = f"experiment {sweep.name!r} has no sweep run"
        return
    sweep.record, sweep.record_note = read_record(client, uri, sweep.parent)


def _expected_runs(runs: list[Any]) -> int | None:
    """The sweep's planned trial count (+ parent) when the parent logged one, for ``read 200/1000 runs``."""
    for run in runs:
        if run.data.tags.get(ROLE_TAG) != ROLE_SWEEP:
            continue
        parsed = parse_param(run.data.params.get(NUM_SAMPLES_PARAM, ""))
        if isinstance(parsed, int) and not isinstance(parsed, bool) and parsed > 0:
            return parsed + 1
    return None


def load_trial(client: Any, uri: str, run_id: str) -> tuple[Trial, Sweep]:
    """One trial run by id, with the sweep it belongs to (parent run and record only; other trials not read)."""
    run = tracking_call(f"looking up run {run_id}", uri, client.get_run, run_id)
    exp = tracking_call("looking up the run's experiment", uri, client.get_experiment, run.info.experiment_id)
    sweep = Sweep(exp.experiment_id, exp.name, uri)
    parent_id = run.data.tags.get(PARENT_TAG)
    if parent_id:
        sweep.parents.append(to_trial(tracking_call("looking up the parent run", uri, client.get_run, parent_id)))
    _attach_record(client, uri, sweep)
    baseline = sweep.parent.metrics.get(BASELINE_CLEAN_ACC) if sweep.parent else None
    trial = to_trial(run, finite(baseline))
    sweep.trials.append(trial)
    return trial, sweep


def print_progress(stream: Any) -> Progress:
    """A progress callback writing ``read 200/1000 runs`` lines to ``stream``."""

    def report(read: int, expected: int | None) -> None:
        total = f"/{max(expected, read)}" if expected else ""
        print(f"read {read}{total} runs", file=stream, flush=True)

    return report
