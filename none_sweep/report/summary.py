"""``none-sweep report``: the Pareto plot, importances and stability of one sweep, as files.

Writes into ``out_dir``: ``pareto.png``, ``front.csv``, ``summary.json`` and ``report.md``; the same files
are logged to the sweep's parent run under ``report/``. The front, the knee and the plot follow the sweep's
objectives and constraints from its record (:attr:`.model.Sweep.goals`), so they are the front the sweep printed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import TrackingError
from ..tracking.layout import BASELINE_PREFIX, POINT_TAG
from .importance import param_importances
from .markdown import render_markdown
from .model import Goals, Sweep, Trial
from .pareto import marker, plot_pareto, plot_title
from .provenance import code_version, utc_now
from .runs import tracking_call
from .selection import Rule, select
from .stability import DEFAULT_K, Axes, stability

#: NONE's published defaults; the report marks the trial nearest to them.
PAPER_DEFAULTS = {
    "defense.max_reset_fraction": 0.05,
    "defense.lamda_l": 0.1,
    "defense.lamda_h": 0.9,
    "defense.finetune_lr": 1e-4,
}
PAPER_POINT = "paper_defaults"
FILES = ("pareto.png", "front.csv", "summary.json", "report.md")
#: Metrics every point of ``summary.json`` carries (when the trial logged them), besides the sweep's own.
POINT_METRICS = ("asr", "clean_acc", "clean_acc_drop", "robust_acc", "der")


def paper_defaults_trial(trials: Sequence[Trial], axes: Axes) -> Trial | None:
    """The trial tagged ``none_sweep.point=paper_defaults``, else the one nearest to :data:`PAPER_DEFAULTS`
    over the numeric searched keys among them (None when the sweep searches none of them)."""
    for t in trials:
        if t.tags.get(POINT_TAG) == PAPER_POINT:
            return t
    near = Axes({k: d for k, d in axes.distributions.items() if k in PAPER_DEFAULTS and axes.numeric(k)})
    if not near.names or not trials:
        return None
    return min(trials, key=lambda t: (near.distance(t.params, PAPER_DEFAULTS), t.run_id))


def searched_keys(sweep: Sweep, axes: Axes) -> list[str]:
    """The record's searched keys; for a sweep without a record, the params that differ between its trials."""
    if axes.names:
        return axes.names
    trials = sweep.finished
    names = sorted({k for t in trials for k in t.params})
    return [k for k in names if len({repr(t.params.get(k)) for t in trials}) > 1]


def point(t: Trial | None, goals: Goals, keys: Sequence[str]) -> dict[str, Any] | None:
    if t is None:
        return None
    values = t.final_metrics
    metrics = {m: _number(values.get(m)) for m in dict.fromkeys([*POINT_METRICS, *goals.columns])}
    return {"run_id": t.run_id, "trial_id": t.trial_id, "run_name": t.run_name, **metrics,
            "feasible": goals.feasible(t), "params": {k: t.params.get(k) for k in keys}}  # fmt: skip


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def choose(sweep: Sweep, rule: Rule) -> tuple[Trial | None, str]:
    """The trial the rule picks, or None and why; a sweep with no scored trial at all is an error."""
    goals = sweep.goals
    if not goals.scored(sweep.trials):
        select(sweep.trials, Rule("knee"), sweep_name=sweep.name, goals=goals)  # raises "no finished trials"
    try:
        return select(sweep.trials, rule, sweep_name=sweep.name, goals=goals), ""
    except TrackingError as exc:
        return None, str(exc)


def build_report(
    sweep: Sweep,
    rule: Rule,
    out_dir: str | Path,
    *,
    k: int = DEFAULT_K,
    evaluator: str = "default",
    client: Any = None,
    say: Callable[[str], None] = lambda _line: None,
) -> dict[str, Any]:
    """Compute everything, write :data:`FILES` into ``out_dir``, log them to the parent run (``client``)."""
    chosen, rule_note = choose(sweep, rule)
    goals, finished = sweep.goals, sweep.finished
    axes = Axes.of(sweep.record)
    keys = searched_keys(sweep, axes)
    paper = paper_defaults_trial(finished, axes)
    say(f"objectives from {goals.source}: {goals.describe()}")
    say(f"computing importances over {len(keys)} searched parameters")
    importances = param_importances(sweep.record, goals, evaluator)
    if importances.note:
        say(importances.note)

    def pt(t: Trial | None) -> dict[str, Any] | None:
        return point(t, goals, keys)

    summary = {
        "experiment": sweep.name,
        "experiment_id": sweep.experiment_id,
        "tracking_uri": sweep.tracking_uri,
        "parent_run_id": sweep.parent.run_id if sweep.parent else None,
        "generated": utc_now(),
        "code_version": code_version(),
        "objectives": [{"metric": o.metric, "mode": o.mode} for o in goals.objectives],
        "constraints": [c.text for c in goals.constraints],
        "goals_source": goals.source,
        "columns": goals.columns,
        "trials": {
            "total": len(sweep.trials),
            "finished": len(finished),
            "failed": sweep.count("FAILED", "KILLED"),
            "running": sweep.count("RUNNING", "SCHEDULED"),
        },
        "baseline": sweep.baseline,
        "searched_params": keys,
        "rule": rule.describe(goals),
        "rule_note": rule_note,
        "chosen": pt(chosen),
        "knee": pt(goals.knee(finished)),
        "paper_defaults": pt(paper),
        "paper_defaults_tagged": paper is not None and paper.tags.get(POINT_TAG) == PAPER_POINT,
        "front": [pt(t) for t in goals.front(finished)],
        "importance_evaluator": evaluator,
        "importances": importances.scores,
        "importance_note": importances.note,
        "stability": stability(finished, chosen, rule, goals, axes, k).to_dict(),
    }
    write_files(sweep, summary, Path(out_dir), chosen, paper)
    if client is not None and sweep.parent is not None:
        for name in FILES:
            tracking_call("logging the report to the sweep run", sweep.tracking_uri, client.log_artifact,
                          sweep.parent.run_id, str(Path(out_dir) / name), "report")  # fmt: skip
        say(f"logged {len(FILES)} files to run {sweep.parent.run_id} under report/")
    return summary


def paper_label(summary: dict[str, Any]) -> str:
    return "paper defaults" + (" (evaluated point)" if summary["paper_defaults_tagged"] else " (nearest trial)")


def write_files(sweep: Sweep, summary: dict[str, Any], out: Path, chosen: Trial | None, paper: Trial | None) -> None:
    """``pareto.png``, ``front.csv``, ``summary.json`` and ``report.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    goals = sweep.goals
    base = sweep.baseline
    baseline = {m: base[f"{BASELINE_PREFIX}{m}"] for m in goals.metrics if f"{BASELINE_PREFIX}{m}" in base}
    marks = [
        marker("undefended baseline", baseline if len(baseline) == len(goals.metrics) else None, "baseline"),
        marker(paper_label(summary), paper.final_metrics if paper else None, "paper"),
        marker(f"chosen ({summary['rule'].split(':')[0]})", chosen.final_metrics if chosen else None, "chosen"),
    ]
    title = f"{sweep.name}: {plot_title(goals)}"
    plot_pareto(sweep.finished, goals, out / "pareto.png", title=title, marks=marks)
    write_front_csv(summary, out / "front.csv")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(summary), encoding="utf-8")


def write_front_csv(summary: dict[str, Any], path: Path) -> None:
    columns, keys = summary["columns"], summary["searched_params"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run_id", "trial_id", *columns, *keys])
        for p in summary["front"]:
            row = [p["run_id"], p["trial_id"] or "", *("" if p[c] is None else p[c] for c in columns)]
            writer.writerow(row + [p["params"].get(k) for k in keys])
