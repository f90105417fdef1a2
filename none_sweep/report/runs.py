"""Read a sweep back from MLflow, following the layout in ``docs/architecture.md``.

One experiment per sweep; a parent run tagged ``none_sweep.role=sweep`` (baseline metrics) and one child
run per trial tagged ``none_sweep.role=trial`` (flattened config as params, final metrics, ``config.yaml``
and a ``model``). Everything else in :mod:`none_sweep.report` works on the :class:`Sweep` built here, so
only this module knows how MLflow pages runs and stores params as strings.
"""

from __future__ import annotations

import ast
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import TrackingError

ROLE = "none_sweep.role"
SWEEP_TAG = "none_sweep.sweep"
STATUS_TAG = "none_sweep.status"
ERROR_TAG = "none_sweep.error"
POINT_TAG = "none_sweep.point"
PARENT_TAG = "mlflow.parentRunId"
TRIAL_ID_TAG = "ray.trial_id"

#: Runs fetched per MLflow request (one progress line per page).
PAGE_SIZE = 200

Progress = Callable[[int, "int | None"], None]


def parse_param(text: str) -> Any:
    """MLflow stores params as ``str(value)``: ``"0.05"`` → 0.05, ``"True"`` → True, ``"None"`` → None."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


@dataclass(frozen=True)
class Trial:
    """One child run: a trial's resolved params (parsed back from strings) and final metrics."""

    run_id: str
    run_name: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    start_time: int | None = None
    end_time: int | None = None
    baseline_clean_acc: float | None = None

    @property
    def trial_id(self) -> str | None:
        return self.tags.get(TRIAL_ID_TAG)

    @property
    def parent_id(self) -> str | None:
        return self.tags.get(PARENT_TAG)

    @property
    def asr(self) -> float | None:
        return _finite(self.metrics.get("asr"))

    @property
    def clean_acc(self) -> float | None:
        return _finite(self.metrics.get("clean_acc"))

    @property
    def clean_acc_drop(self) -> float | None:
        """Logged ``clean_acc_drop``, else baseline clean accuracy minus this trial's."""
        drop = _finite(self.metrics.get("clean_acc_drop"))
        if drop is None and self.clean_acc is not None and self.baseline_clean_acc is not None:
            drop = self.baseline_clean_acc - self.clean_acc
        return drop

    @property
    def finished(self) -> bool:
        """Completed with both objectives logged: the trials every rule and plot considers."""
        return self.status == "FINISHED" and self.asr is not None and self.clean_acc is not None

    @property
    def label(self) -> str:
        return f"run {self.run_id}" + (f" (trial {self.trial_id})" if self.trial_id else "")

    def describe_metrics(self) -> str:
        parts = [f"{key}={_fmt(getattr(self, key))}" for key in ("asr", "clean_acc", "clean_acc_drop")]
        return " ".join(parts)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


@dataclass
class Sweep:
    """A sweep's experiment: its parent run(s) and every trial run, in start order."""

    experiment_id: str
    name: str
    tracking_uri: str
    parents: list[Trial] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)

    @property
    def parent(self) -> Trial | None:
        """The latest sweep run (a sweep re-run under the same name adds another)."""
        return self.parents[-1] if self.parents else None

    @property
    def baseline(self) -> dict[str, float]:
        if self.parent is None:
            return {}
        return {k: v for k, v in self.parent.metrics.items() if k.startswith("baseline_") and _finite(v) is not None}

    @property
    def finished(self) -> list[Trial]:
        return [t for t in self.trials if t.finished]

    def count(self, *statuses: str) -> int:
        return sum(t.status in statuses for t in self.trials)


def open_client(tracking_uri: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` for ``tracking_uri`` (default: ``MLFLOW_TRACKING_URI`` or MLflow's default).

    A ``sqlite:///`` URI naming a file that does not exist is refused rather than silently created.
    """
    import mlflow
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in one-line CLI output
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
    if uri.startswith("sqlite:"):
        db = sqlite_path(uri)
        if db is not None and not db.is_file():
            raise TrackingError(f"no MLflow store at {uri} ({db} does not exist); pass --tracking-uri")
    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def sqlite_path(uri: str) -> Path | None:
    """``sqlite:////abs/x.db`` → ``/abs/x.db``; ``sqlite:///rel.db`` → ``rel.db``; in-memory → None."""
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def tracking_call(what: str, uri: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one MLflow call, turning store/connection failures into one-line TrackingErrors."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        raise TrackingError(f"{what} at {uri} failed: {_first_line(exc.message)}") from None
    except (OSError, ConnectionError) as exc:
        raise TrackingError(
            f"{what}: cannot reach the tracking store {uri} ({exc.__class__.__name__}: {exc})") from None


def _first_line(text: str) -> str:
    return (str(text).strip().splitlines() or [""])[0]


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
        )
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


def load_sweep(client: Any, uri: str, name: str, progress: Progress | None = None) -> Sweep:
    """Every run of experiment ``name``, split into parents and trials; ``progress(read, expected)`` per page."""
    exp = find_experiment(client, uri, name)
    runs: list[Any] = []
    expected: int | None = None
    for page in iter_runs(client, uri, [exp.experiment_id]):
        runs.extend(page)
        if expected is None:
            expected = _expected_runs(runs)
        if progress is not None:
            progress(len(runs), expected)
    parents = [to_trial(r) for r in runs if r.data.tags.get(ROLE) == "sweep"]
    baselines = {p.run_id: _finite(p.metrics.get("baseline_clean_acc")) for p in parents}
    fallback = baselines[parents[-1].run_id] if parents else None
    trials = []
    for run in runs:
        if run.data.tags.get(ROLE) != "trial":
            continue
        parent = run.data.tags.get(PARENT_TAG)
        trials.append(to_trial(run, baselines.get(parent, fallback)))
    return Sweep(exp.experiment_id, name, uri, parents, trials)


def _expected_runs(runs: list[Any]) -> int | None:
    """The sweep's planned trial count (+ parent) when the parent logged one, for ``read 200/1000 runs``."""
    for run in runs:
        if run.data.tags.get(ROLE) != "sweep":
            continue
        for key, value in run.data.params.items():
            if key.split(".")[-1] in ("num_samples", "trials", "n_trials"):
                parsed = parse_param(value)
                if isinstance(parsed, int) and parsed > 0:
                    return parsed + 1
    return None


def load_trial(client: Any, uri: str, run_id: str) -> tuple[Trial, Sweep]:
    """One trial run by id, with the sweep it belongs to (parent runs only; other trials not read)."""
    run = tracking_call(f"looking up run {run_id}", uri, client.get_run, run_id)
    exp = tracking_call("looking up the run's experiment", uri, client.get_experiment, run.info.experiment_id)
    sweep = Sweep(exp.experiment_id, exp.name, uri)
    parent_id = run.data.tags.get(PARENT_TAG)
    if parent_id:
        sweep.parents.append(to_trial(tracking_call("looking up the parent run", uri, client.get_run, parent_id)))
    baseline = sweep.parent.metrics.get("baseline_clean_acc") if sweep.parent else None
    trial = to_trial(run, _finite(baseline))
    sweep.trials.append(trial)
    return trial, sweep


def print_progress(stream: Any) -> Progress:
    """A progress callback writing ``read 200/1000 runs`` lines to ``stream``."""

    def report(read: int, expected: int | None) -> None:
        total = f"/{max(expected, read)}" if expected else ""
        print(f"read {read}{total} runs", file=stream, flush=True)

    return report
