"""``none-sweep report``: the Pareto plot, importances and stability of one sweep, as files.

Writes into ``out_dir``: ``pareto.png``, ``front.csv``, ``summary.json`` and ``report.md``; the same files
are logged to the sweep's parent run under ``report/``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import TrackingError
from .importance import param_importances
from .pareto import front_trials, knee, plot_pareto
from .provenance import code_version, utc_now
from .runs import POINT_TAG, Sweep, Trial, tracking_call
from .selection import Rule, select
from .space import Axis, infer_axes
from .stability import DEFAULT_K, stability

#: NONE's published defaults; the report marks the trial nearest to them.
PAPER_DEFAULTS = {
    "defense.max_reset_fraction": 0.05,
    "defense.lamda_l": 0.1,
    "defense.lamda_h": 0.9,
    "defense.finetune_lr": 1e-4,
}
FILES = ("pareto.png", "front.csv", "summary.json", "report.md")


def paper_defaults_trial(trials: Sequence[Trial], axes: Sequence[Axis] | None = None) -> Trial | None:
    """The trial tagged ``none_sweep.point=paper_defaults``, else the one nearest to :data:`PAPER_DEFAULTS`
    over the searched ones among those parameters (None when the sweep searches none of them)."""
    for t in trials:
        if t.tags.get(POINT_TAG) == "paper_defaults" and t.finished:
            return t
    axes = [ax for ax in (axes if axes is not None else infer_axes(trials))
            if ax.name in PAPER_DEFAULTS and ax.kind != "categorical"]
    if not axes:
        return None

    def d(t: Trial) -> float:
        return math.sqrt(sum(ax.distance(t.params[ax.name], PAPER_DEFAULTS[ax.name]) ** 2 for ax in axes))

    return min(trials, key=lambda t: (d(t), t.run_id))


def _point(t: Trial | None, axes: Sequence[Axis]) -> dict[str, Any] | None:
    if t is None:
        return None
    return {
        "run_id": t.run_id, "trial_id": t.trial_id, "run_name": t.run_name,
        "asr": t.asr, "clean_acc": t.clean_acc, "clean_acc_drop": t.clean_acc_drop,
        "robust_acc": t.metrics.get("robust_acc"), "der": t.metrics.get("der"),
        "params": {ax.name: t.params.get(ax.name) for ax in axes},
    }


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
    finished = sweep.finished
    if not finished:
        select(sweep.trials, rule, sweep_name=sweep.name)  # raises the "no finished trials" error
    try:
        chosen: Trial | None = select(finished, rule, sweep_name=sweep.name)
        rule_note = ""
    except TrackingError as exc:
        chosen, rule_note = None, str(exc)
    axes = infer_axes(finished)
    front = front_trials(finished)
    knee_trial = knee(finished)
    paper = paper_defaults_trial(finished, axes)
    base = sweep.baseline
    baseline = ((base["baseline_asr"], base["baseline_clean_acc"])
                if "baseline_asr" in base and "baseline_clean_acc" in base else None)
    say(f"computing importances over {len(axes)} searched parameters")
    importances = param_importances(finished, evaluator)
    stab = stability(finished, chosen, rule, k)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tagged = paper is not None and paper.tags.get(POINT_TAG) == "paper_defaults"
    plot_pareto(finished, out / "pareto.png", title=f"{sweep.name}: ASR vs clean accuracy",
                baseline=baseline, paper=paper, chosen=chosen, chosen_label=f"chosen ({rule.kind})",
                paper_label="paper defaults" + (" (evaluated point)" if tagged else " (nearest trial)"))
    _write_front_csv(front, axes, out / "front.csv")
    summary = {
        "experiment": sweep.name,
        "experiment_id": sweep.experiment_id,
        "tracking_uri": sweep.tracking_uri,
        "parent_run_id": sweep.parent.run_id if sweep.parent else None,
        "generated": utc_now(),
        "code_version": code_version(),
        "trials": {
            "total": len(sweep.trials), "finished": len(finished),
            "failed": sweep.count("FAILED", "KILLED"), "running": sweep.count("RUNNING", "SCHEDULED"),
        },
        "baseline": base,
        "searched_params": [ax.name for ax in axes],
        "rule": rule.describe(),
        "rule_note": rule_note,
        "chosen": _point(chosen, axes),
        "knee": _point(knee_trial, axes),
        "paper_defaults": _point(paper, axes),
        "paper_defaults_tagged": tagged,
        "front": [_point(t, axes) for t in front],
        "importance_evaluator": evaluator,
        "importances": importances,
        "stability": stab.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_markdown(summary), encoding="utf-8")
    if client is not None and sweep.parent is not None:
        for name in FILES:
            tracking_call("logging the report to the sweep run", sweep.tracking_uri, client.log_artifact,
                          sweep.parent.run_id, str(out / name), "report")
        say(f"logged {len(FILES)} files to run {sweep.parent.run_id} under report/")
    return summary


def _write_front_csv(front: Sequence[Trial], axes: Sequence[Axis], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run_id", "trial_id", "asr", "clean_acc", "clean_acc_drop", *[ax.name for ax in axes]])
        for t in front:
            writer.writerow([t.run_id, t.trial_id or "", t.asr, t.clean_acc,
                             "" if t.clean_acc_drop is None else t.clean_acc_drop,
                             *[t.params.get(ax.name) for ax in axes]])


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _row(label: str, p: dict[str, Any] | None) -> str:
    if p is None:
        return f"| {label} | – | – | – | – |"
    return (f"| {label} | `{p['run_id'][:12]}` | {_pct(p['asr'])} | {_pct(p['clean_acc'])} | "
            f"{_pct(p['clean_acc_drop'])} |")


def render_markdown(s: dict[str, Any]) -> str:
    n = s["trials"]
    base = s["baseline"]
    lines = [
        f"# Sweep report: {s['experiment']}",
        "",
        f"Generated {s['generated']} by {s['code_version']} from `{s['tracking_uri']}` "
        f"(parent run `{s['parent_run_id']}`).",
        "",
        f"Trials: {n['total']} ({n['finished']} finished, {n['failed']} failed, {n['running']} running). "
        f"Undefended baseline: ASR {_pct(base.get('baseline_asr'))}, "
        f"clean accuracy {_pct(base.get('baseline_clean_acc'))}.",
        "",
        "![ASR vs clean accuracy](pareto.png)",
        "",
        "## Points",
        "",
        "| point | run | ASR | clean acc | clean-acc drop |",
        "|---|---|---|---|---|",
        _row(f"chosen ({s['rule']})", s["chosen"]),
        _row("knee of the front", s["knee"]),
        _row("paper defaults" + (" (evaluated point)" if s["paper_defaults_tagged"] else " (nearest trial)"),
             s["paper_defaults"]),
        "",
    ]
    if s["rule_note"]:
        lines += [f"No trial meets the rule: {s['rule_note']}", ""]
    if s["chosen"]:
        lines += ["Chosen settings: " + ", ".join(f"`{k}={v}`" for k, v in s["chosen"]["params"].items()), ""]
    lines += [f"## Pareto front ({len(s['front'])} trials)", "",
              "| run | ASR | clean acc | " + " | ".join(s["searched_params"]) + " |",
              "|---|---|---|" + "---|" * len(s["searched_params"])]
    for p in s["front"]:
        vals = " | ".join(_short(p["params"].get(k)) for k in s["searched_params"])
        lines.append(f"| `{p['run_id'][:12]}` | {_pct(p['asr'])} | {_pct(p['clean_acc'])} | {vals} |")
    lines += ["", f"## Parameter importance ({s['importance_evaluator']} evaluator, Optuna)", ""]
    imps = s["importances"]
    if not any(imps.values()):
        lines += ["Not enough finished trials (or no varying parameter) to estimate importances.", ""]
    else:
        objectives = list(imps)
        lines += ["| parameter | " + " | ".join(objectives) + " |", "|---|" + "---|" * len(objectives)]
        for param in s["searched_params"]:
            lines.append(f"| {param} | " + " | ".join(f"{imps[o].get(param, 0.0):.3f}" for o in objectives) + " |")
        lines.append("")
    st = s["stability"]
    lines += ["## Stability", "",
              f"- {st['meeting']} of {st['finished']} finished trials ({100 * st['share_meeting']:.1f}%) "
              f"meet the rule ({st['rule']})."]
    if st["asr"]:
        a, c = st["asr"], st["clean_acc"]
        lines.append(
            f"- Among the {len(st['neighbours'])} trials nearest to the chosen one in normalised parameter space: "
            f"ASR {_pct(a['mean'])} ± {_pct(a['sd'])} (range {_pct(a['min'])}–{_pct(a['max'])}), clean accuracy "
            f"{_pct(c['mean'])} ± {_pct(c['sd'])} (range {_pct(c['min'])}–{_pct(c['max'])})."
        )
    return "\n".join(lines) + "\n"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
