"""``report.md``: the report's ``summary.json`` as a page a reader skims (plot, points, front, importances)."""

from __future__ import annotations

from typing import Any

#: Metrics shown in percent (fractions in [0, 1]); any other metric is shown as a plain number.
PERCENT = ("asr", "clean_acc", "clean_acc_drop", "reasr", "robust_acc")


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _value(metric: str, x: Any) -> str:
    if x is None:
        return "n/a"
    return _pct(x) if metric in PERCENT else f"{x:.4g}"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _row(label: str, p: dict[str, Any] | None, columns: list[str]) -> str:
    if p is None:
        return f"| {label} | – |" + " – |" * len(columns)
    return f"| {label} | `{p['run_id'][:12]}` | " + " | ".join(_value(c, p.get(c)) for c in columns) + " |"


def _header(s: dict[str, Any]) -> list[str]:
    n, base = s["trials"], s["baseline"]
    goals = ", ".join(f"{o['metric']} {o['mode']}" for o in s["objectives"])
    if s["constraints"]:
        goals += "; feasible: " + ", ".join(s["constraints"])
    alt = " vs ".join(o["metric"] for o in s["objectives"][:2])
    return [
        f"# Sweep report: {s['experiment']}",
        "",
        f"Generated {s['generated']} by {s['code_version']} from `{s['tracking_uri']}` "
        f"(parent run `{s['parent_run_id']}`).",
        "",
        f"Objectives ({s['goals_source']}): {goals}.",
        "",
        f"Trials: {n['total']} ({n['finished']} finished, {n['failed']} failed, {n['running']} running). "
        f"Undefended baseline: ASR {_pct(base.get('baseline_asr'))}, "
        f"clean accuracy {_pct(base.get('baseline_clean_acc'))}.",
        "",
        "![ASR vs clean accuracy](pareto.png)" if alt == "asr vs clean_acc" else f"![{alt}](pareto.png)",
        "",
    ]


def _points(s: dict[str, Any]) -> list[str]:
    cols = s["columns"]
    paper = "paper defaults" + (" (evaluated point)" if s["paper_defaults_tagged"] else " (nearest trial)")
    lines = ["## Points", "", "| point | run | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    lines += [_row(f"chosen ({s['rule']})", s["chosen"], cols), _row("knee of the front", s["knee"], cols),
              _row(paper, s["paper_defaults"], cols), ""]  # fmt: skip
    if s["rule_note"]:
        lines += [f"No trial meets the rule: {s['rule_note']}", ""]
    if s["chosen"]:
        lines += ["Chosen settings: " + ", ".join(f"`{k}={v}`" for k, v in s["chosen"]["params"].items()), ""]
    return lines


def _front(s: dict[str, Any]) -> list[str]:
    cols, keys = s["columns"], s["searched_params"]
    lines = [f"## Pareto front ({len(s['front'])} trials)", "",
             "| run | " + " | ".join([*cols, *keys]) + " |", "|---|" + "---|" * (len(cols) + len(keys))]  # fmt: skip
    for p in s["front"]:
        cells = [_value(c, p.get(c)) for c in cols] + [_short(p["params"].get(k)) for k in keys]
        lines.append(f"| `{p['run_id'][:12]}` | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _importances(s: dict[str, Any]) -> list[str]:
    lines = [f"## Parameter importance ({s['importance_evaluator']} evaluator, Optuna, on the sweep's study)", ""]
    imps = s["importances"]
    if s["importance_note"]:
        return [*lines, f"Skipped: {s['importance_note']}.", ""]
    if not any(imps.values()):
        return [*lines, "Not enough completed trials (or no varying parameter) to estimate importances.", ""]
    objectives = list(imps)
    params = list(dict.fromkeys(p for scores in imps.values() for p in scores))
    lines += ["| parameter | " + " | ".join(objectives) + " |", "|---|" + "---|" * len(objectives)]
    for param in params:
        lines.append(f"| {param} | " + " | ".join(f"{imps[o].get(param, 0.0):.3f}" for o in objectives) + " |")
    return [*lines, ""]


def _stability(s: dict[str, Any]) -> list[str]:
    st = s["stability"]
    lines = ["## Stability", "",
             f"- {st['meeting']} of {st['finished']} finished trials ({100 * st['share_meeting']:.1f}%) "
             f"meet the rule ({st['rule']})."]  # fmt: skip
    if st["note"]:
        lines.append(f"- {st['note']}.")
    if st["spread"]:
        parts = [
            f"{m} {_value(m, v['mean'])} ± {_value(m, v['sd'])} (range {_value(m, v['min'])}–{_value(m, v['max'])})"
            for m, v in st["spread"].items()
        ]
        lines.append(f"- Among the {len(st['neighbours'])} trials nearest to the chosen one in normalised parameter "
                     f"space: " + ", ".join(parts) + ".")  # fmt: skip
    return lines


def render_markdown(s: dict[str, Any]) -> str:
    return "\n".join([*_header(s), *_points(s), *_front(s), *_importances(s), *_stability(s)]) + "\n"
