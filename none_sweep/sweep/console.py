"""What the user sees of a sweep on the console: the header, the closing summary, where to look next."""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..tracking.layout import ui_route
from .pareto import format_table
from .record import SweepRecord
from .storage import SweepStorage
from .summary import metric_columns

Say = Callable[[str], None]


def say_line(line: str) -> None:
    print(line, flush=True)


class _OurHandler(logging.StreamHandler):
    """Marks the handler none-sweep installed, so a second sweep in one process does not add another."""


def log_to_stderr() -> None:
    """Our own warnings (MLflow unreachable, a trial told FAIL to Optuna) on stderr, whatever Ray did to logging."""
    package = logging.getLogger("none_sweep")
    if not any(isinstance(h, _OurHandler) for h in package.handlers):
        handler = _OurHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("none-sweep: %(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)
        package.propagate = False


def header(record: SweepRecord, storage: SweepStorage, total: Mapping[str, float], resume: bool,
           on_cluster: bool, say: Say) -> None:  # fmt: skip
    space = record.space
    r = space.resources
    verb = "resuming" if resume else "starting"
    say(f"none-sweep: {verb} sweep {record.name!r}: {record.num_samples} trials of {space.path} on "
        f"{total['CPU']:g} CPUs / {total['GPU']:g} GPUs ({r.cpu:g} CPU, {r.gpu:g} GPU per trial)")  # fmt: skip
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives)
    constraints = "; ".join(c.text for c in space.constraints) or "none"
    say(f"  objectives: {objectives}; constraints: {constraints}; sampler: {space.search.sampler}")
    for p in space.params:
        say(f"  {p.key}: {p.describe()}")
    if space.scheduler.name == "asha":
        metric = space.scheduler_metric
        note = " (several objectives: early stopping looks at this one only)" if len(space.objectives) > 1 else ""
        say(f"  scheduler: ASHA on {metric}{note}")
    if storage.pretrain_cache_root is None:
        say("  note: shared pre-training is off: object-store storage has no shared file system for its cache")
    if on_cluster and storage.is_local:
        say(f"  note: every node must see {storage.root} (NFS): Ray syncs nothing to the head node")
    say(f"  Ray results: {storage.experiment_path}")
    say(f"  MLflow: {record.tracking_uri} (experiment {record.name!r})")


def closing(record: SweepRecord, storage: SweepStorage, status: str, totals: Mapping[str, float], ran: int,
            elapsed: float, rows: Sequence[Mapping[str, Any]] | None, say: Say,
            experiment_id: str | None = None) -> None:  # fmt: skip
    space = record.space
    say("")
    say(f"sweep {record.name!r} {status}: {ran}/{record.num_samples} trials, "
        f"{totals['trials_completed']:.0f} completed, {totals['trials_failed']:.0f} failed, in {elapsed:.0f}s; "
        f"shared pre-training saved {totals['pretrain_saved_s']:.0f}s")  # fmt: skip
    if rows is not None:
        objectives = ", ".join(f"{o.metric} {o.mode}" for o in space.objectives)
        feasible = f"; feasible: {'; '.join(c.text for c in space.constraints)}" if space.constraints else ""
        say(f"Pareto front ({objectives}{feasible}):")
        params = [p.key for p in space.params if any(p.key in r for r in rows)][:4]
        say(format_table(rows, metric_columns(space), params))
    say("")
    say(where_to_look(record.tracking_uri, record.name, experiment_id))
    say(f"Ray results: {storage.experiment_path}   Optuna study: {storage.journal_path()} (study {record.name!r})")


def sync_hint(record: SweepRecord, stale: Sequence[str] | None, say: Say) -> None:
    """``stale``: the trials MLflow lacks; None when MLflow could not even be asked."""
    what = "the sweep's trials" if stale is None else f"{len(stale)} trial(s)"
    say(f"warning: MLflow missed parts of {what} while it was unreachable; back-fill with:")
    say(f"  none-sweep sync-mlflow --name {shlex.quote(record.name)} --storage {shlex.quote(record.storage)}")


def where_to_look(uri: str, name: str, experiment_id: str | None = None) -> str:
    """The MLflow UI for this store: a tracking server is its own UI; a database needs ``mlflow ui``.

    With the experiment's id the link opens its runs table (MLflow 3 otherwise lands on its GenAI overview).
    """
    route = f"/{ui_route(experiment_id)}" if experiment_id else ""
    if uri.startswith(("http://", "https://")):
        return f"MLflow experiment {name!r}: open {uri.rstrip('/')}{route} in a browser"
    return (f"MLflow experiment {name!r}; open the UI with:\n"
            f"  mlflow ui --backend-store-uri {shlex.quote(uri)} --host 127.0.0.1 --port 5000\n"
            f"  then http://127.0.0.1:5000{route} (Chart view: asr vs clean_acc)")  # fmt: skip
