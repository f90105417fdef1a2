"""``none-sweep ls``: one line per sweep (parent run) in a tracking store."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..tracking.layout import BASELINE_PREFIX, ROLE_SWEEP, ROLE_TAG, STATUS_TAG, child_filter
from .runs import iter_runs, to_trial, tracking_call
from .selection import Rule


@dataclass
class SweepRow:
    name: str
    run_id: str
    status: str
    finished: int
    failed: int
    running: int
    best_asr: float | None
    best_run_id: str | None
    started_ms: int | None
    ended_ms: int | None


def list_sweeps(client: Any, uri: str, max_drop: float) -> list[SweepRow]:
    """Every sweep parent run in the store, newest first, with its trial counts and best ASR under the rule."""
    exps = tracking_call("listing experiments", uri, client.search_experiments, max_results=1000)
    ids = [e.experiment_id for e in exps]
    names = {e.experiment_id: e.name for e in exps}
    rule = Rule("max_drop", max_drop)
    rows = []
    for start in range(0, len(ids), 100):  # MLflow caps the experiments per search
        for page in iter_runs(
            client, uri, ids[start : start + 100], filter_string=f"tags.`{ROLE_TAG}` = '{ROLE_SWEEP}'"
        ):
            for run in page:
                rows.append(_row(client, uri, run, names.get(run.info.experiment_id, "?"), rule))
    return sorted(rows, key=lambda r: -(r.started_ms or 0))


def _row(client: Any, uri: str, parent: Any, exp_name: str, rule: Rule) -> SweepRow:
    pid = parent.info.run_id
    base = parent.data.metrics.get(f"{BASELINE_PREFIX}clean_acc")
    trials = []
    for page in iter_runs(client, uri, [parent.info.experiment_id], filter_string=child_filter(pid)):
        trials += [to_trial(r, base) for r in page]
    meeting = [t for t in trials if rule.meets(t)]
    best = min(meeting, key=lambda t: (t.asr or 0.0, -(t.clean_acc or 0.0))) if meeting else None
    return SweepRow(
        name=exp_name,
        run_id=pid,
        status=parent.data.tags.get(STATUS_TAG) or parent.info.status.lower(),
        finished=sum(t.status == "FINISHED" for t in trials),
        failed=sum(t.status in ("FAILED", "KILLED") for t in trials),
        running=sum(t.status in ("RUNNING", "SCHEDULED") for t in trials),
        best_asr=best.asr if best else None,
        best_run_id=best.run_id if best else None,
        started_ms=parent.info.start_time,
        ended_ms=parent.info.end_time,
    )


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(start_ms: int | None, end_ms: int | None, now_s: float | None = None) -> str:
    if not start_ms:
        return "-"
    end = end_ms / 1000 if end_ms else (now_s if now_s is not None else time.time())
    seconds = max(0, int(end - start_ms / 1000))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    text = f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
    return text if end_ms else f"{text} (running)"


def format_table(rows: Sequence[SweepRow], max_drop: float) -> str:
    header = [
        "SWEEP",
        "STATUS",
        "FINISHED",
        "FAILED",
        "RUNNING",
        f"BEST ASR (drop<={max_drop:g})",
        "STARTED",
        "DURATION",
    ]
    body = [
        [
            r.name,
            r.status,
            str(r.finished),
            str(r.failed),
            str(r.running),
            "-" if r.best_asr is None else f"{r.best_asr:.4f}",
            _when(r.started_ms),
            _duration(r.started_ms, r.ended_ms),
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *body])
    return "\n".join(line.rstrip() for line in lines)
