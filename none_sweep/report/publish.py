"""What a finished sweep leaves where users look: the report and the chosen defense on the parent run, and a verdict.

``none-sweep sweep --export FILE`` calls :func:`publish` once the sweep has ended: the report's files
(``report/pareto.png``, ``front.csv``, ``summary.json``, ``report.md``), the chosen defense (``best_defense.yaml``,
the same text as ``FILE``) and a short description (MLflow's run note: baseline, chosen point, how to export)
are attached to the sweep's parent run, and one line says whether the defense worked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..tracking.layout import BASELINE_PREFIX, CHOSEN_ARTIFACT, NOTE_TAG, PLOT_ARTIFACT, REPORT_FOLDER
from . import export
from .model import Sweep, Trial
from .runs import load_sweep, open_client, tracking_call
from .selection import DEFAULT_MAX_DROP, Rule
from .summary import build_report


@dataclass(frozen=True)
class Verdict:
    """The chosen trial against the undefended baseline."""

    chosen: Trial | None
    baseline: dict[str, float]
    exported_to: Path | None
    why_none: str = ""

    def line(self) -> str:
        if self.chosen is None:
            return f"NONE: no trial met the rule ({self.why_none}); nothing exported"
        b_asr, b_acc = self.baseline.get("asr"), self.baseline.get("clean_acc")
        asr, acc = self.chosen.asr, self.chosen.clean_acc
        drop = self.chosen.clean_acc_drop
        where = f", exported to {self.exported_to}" if self.exported_to else ""
        return (f"NONE: ASR {_pct(b_asr)} → {_pct(asr)}, clean accuracy {_pct(b_acc)} → {_pct(acc)} "
                f"(drop {_pt(drop)}){where}")  # fmt: skip


def drop_rule(sweep: Sweep) -> Rule:
    """Lowest ASR within the sweep's own clean-accuracy-drop constraint (else 2 points). A robust sweep's
    ``clean_acc_drop_max`` is the same limit: a multi-variant trial's ``clean_acc_drop`` is its largest."""
    drops = ("clean_acc_drop", "clean_acc_drop_max")
    limits = [c.threshold for c in sweep.goals.constraints if c.metric in drops and c.op == "<="]
    return Rule("max_drop", min(limits) if limits else DEFAULT_MAX_DROP)


def publish(name: str, tracking_uri: str, out_dir: Path, export_path: Path | None,
            say: Callable[[str], None]) -> Verdict:  # fmt: skip
    """Report, choose, export and describe the sweep ``name`` on its parent run; returns the verdict."""
    client, uri = open_client(tracking_uri)
    sweep = load_sweep(client, uri, name)
    rule = drop_rule(sweep)
    summary = build_report(sweep, rule, out_dir, client=client)
    chosen = _chosen(sweep, summary)
    baseline = {k[len(BASELINE_PREFIX) :]: v for k, v in sweep.baseline.items()}
    exported = None
    if chosen is not None and export_path is not None:
        exported = export.export_config(client, chosen, sweep, rule.describe(sweep.goals), export_path)
    verdict = Verdict(chosen, baseline, exported, summary.get("rule_note") or "")
    if sweep.parent is not None:
        _attach(client, uri, sweep, out_dir, exported, verdict, rule)
    say(f"report: {out_dir} (pareto.png, front.csv, summary.json, report.md); also on the sweep's parent run")
    return verdict


def _chosen(sweep: Sweep, summary: dict[str, Any]) -> Trial | None:
    picked = summary.get("chosen") or {}
    return next((t for t in sweep.trials if t.run_id == picked.get("run_id")), None)


def _attach(client: Any, uri: str, sweep: Sweep, out_dir: Path, exported: Path | None, verdict: Verdict,
            rule: Rule) -> None:  # fmt: skip
    """The plot at the top of the parent's artifacts (where the UI shows it first), the chosen defense, the note."""
    assert sweep.parent is not None
    run_id = sweep.parent.run_id
    tracking_call("logging the Pareto plot", uri, client.log_artifact, run_id, str(out_dir / PLOT_ARTIFACT))
    if exported is not None:
        tracking_call("logging the chosen defense", uri, client.log_artifact, run_id, str(exported))
        if exported.name != CHOSEN_ARTIFACT:
            text = exported.read_text(encoding="utf-8")
            tracking_call("logging the chosen defense", uri, client.log_text, run_id, text, CHOSEN_ARTIFACT)
    tracking_call("describing the sweep run", uri, client.set_tag, run_id, NOTE_TAG, description(sweep, verdict, rule))


def description(sweep: Sweep, verdict: Verdict, rule: Rule) -> str:
    """The parent run's note (Markdown): baseline, best point, where the plot is, how to export."""
    goals = sweep.goals
    lines = [
        f"**NONE sweep `{sweep.name}`** — objectives: {goals.describe()}.",
        "",
        f"- Undefended baseline: ASR {_pct(verdict.baseline.get('asr'))}, "
        f"clean accuracy {_pct(verdict.baseline.get('clean_acc'))}.",
    ]
    if verdict.chosen is not None:
        c = verdict.chosen
        lines.append(f"- Chosen ({rule.describe(goals)}): run `{c.run_id}` ({c.run_name}): ASR {_pct(c.asr)}, "
                     f"clean accuracy {_pct(c.clean_acc)}, drop {_pt(c.clean_acc_drop)}.")  # fmt: skip
    else:
        lines.append(f"- No trial met {rule.describe(goals)}: {verdict.why_none}")
    lines += [
        f"- Pareto plot: artifact `{PLOT_ARTIFACT}`; front table: `{REPORT_FOLDER}/front.csv`; "
        f"chosen defense: `{CHOSEN_ARTIFACT}`.",
        f"- Export again: `none-sweep export --experiment {sweep.name} --max-drop {rule.limit:g} "
        "--out best_defense.yaml`, then `none-sweep train best_defense.yaml`.",
    ]
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _pt(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} pt"
