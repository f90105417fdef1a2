"""The trade-off picture: every scored trial on the sweep's first two objectives, the feasible front joined.

The front itself is :meth:`.model.Goals.front` (:func:`none_sweep.sweep.pareto.pareto_front` with the sweep's
objectives and constraints), so the plot shows the front the sweep printed. With ``asr`` and ``clean_acc`` as
objectives it is the familiar ASR vs clean-accuracy picture, in percent; any other pair is plotted the same way,
axes named after the metrics and their modes. A single-objective sweep plots its objective against the trials'
order. Infeasible trials are drawn hollow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sweep.space import Objective
from .model import Goals, Trial

#: Metrics that are fractions in [0, 1]: plotted in percent, under these names.
PERCENT = {
    "asr": "attack success rate",
    "clean_acc": "clean accuracy",
    "reasr": "REASR",
    "robust_acc": "robust accuracy",
    "clean_acc_drop": "clean-accuracy drop",
}


@dataclass(frozen=True)
class Marked:
    """A highlighted point: the chosen trial, the paper's defaults, or the undefended baseline."""

    label: str
    metrics: dict[str, Any]
    style: dict[str, Any]


def axis_label(objective: Objective) -> str:
    """``attack success rate (%) — lower is better``; ``loss — lower is better`` for a metric we do not know."""
    better = "lower" if objective.mode == "min" else "higher"
    name = f"{PERCENT[objective.metric]} (%)" if objective.metric in PERCENT else objective.metric
    return f"{name} — {better} is better"


def plot_title(goals: Goals) -> str:
    """``ASR vs clean accuracy`` for the usual pair, ``reasr vs clean_acc`` otherwise."""
    names = goals.metrics[:2]
    if names == ["asr", "clean_acc"]:
        return "ASR vs clean accuracy"
    return " vs ".join(names) if len(names) == 2 else f"{names[0]} per trial"


def _coord(metrics: dict[str, Any], objective: Objective) -> float | None:
    value = metrics.get(objective.metric)
    if value is None:
        return None
    return 100 * float(value) if objective.metric in PERCENT else float(value)


def _xy(goals: Goals, metrics: dict[str, Any], order: int) -> tuple[float, float] | None:
    objs = goals.objectives
    if len(objs) == 1:
        y = _coord(metrics, objs[0])
        return None if y is None else (float(order), y)
    x, y = _coord(metrics, objs[0]), _coord(metrics, objs[1])
    return None if x is None or y is None else (x, y)


def marker(label: str, metrics: dict[str, Any] | None, kind: str) -> Marked | None:
    """A highlighted point of ``kind`` baseline | paper | chosen (None when there is nothing to mark)."""
    styles = {
        "baseline": {"marker": "X", "s": 140, "c": "black", "zorder": 5},
        "paper": {"marker": "D", "s": 90, "facecolors": "none", "edgecolors": "#00798c", "linewidths": 2,
                  "zorder": 6},
        "chosen": {"marker": "*", "s": 260, "c": "#edae49", "edgecolors": "black", "zorder": 7},
    }  # fmt: skip
    return None if metrics is None else Marked(label, metrics, styles[kind])


def plot_pareto(
    trials: Sequence[Trial], goals: Goals, path: str | Path, *, title: str, marks: Sequence[Marked | None] = ()
) -> Path:
    """Every scored trial, the front highlighted (and joined, for two objectives), ``marks`` on top. A PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    scored = goals.scored(trials)
    order = {t.run_id: i for i, t in enumerate(scored)}
    front = goals.front(scored)
    on_front = {t.run_id for t in front}
    _scatter(ax, goals, [t for t in scored if t.run_id not in on_front and goals.feasible(t)], order,
             {"s": 22, "c": "#9aa5b1", "alpha": 0.8}, "other feasible trials")  # fmt: skip
    _scatter(ax, goals, [t for t in scored if not goals.feasible(t)], order,
             {"s": 22, "facecolors": "none", "edgecolors": "#9aa5b1"}, "infeasible trials")  # fmt: skip
    points = [p for t in front if (p := _xy(goals, t.final_metrics, order[t.run_id])) is not None]
    style = "-o" if len(goals.objectives) == 2 else "o"
    ax.plot([p[0] for p in points], [p[1] for p in points], style, c="#d1495b", ms=6, lw=1.5,
            label=f"Pareto front ({len(front)})")  # fmt: skip
    for mark in marks:
        if mark is not None and (p := _xy(goals, mark.metrics, -1)) is not None and len(goals.objectives) > 1:
            ax.scatter([p[0]], [p[1]], label=mark.label, **mark.style)
    objs = goals.objectives
    ax.set_xlabel(axis_label(objs[0]) if len(objs) > 1 else "trial (start order)")
    ax.set_ylabel(axis_label(objs[1] if len(objs) > 1 else objs[0]))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def _scatter(
    ax: Any, goals: Goals, trials: Sequence[Trial], order: dict[str, int], style: dict[str, Any], label: str
) -> None:
    points = [p for t in trials if (p := _xy(goals, t.final_metrics, order[t.run_id])) is not None]
    if points:
        ax.scatter([p[0] for p in points], [p[1] for p in points], label=f"{label} ({len(points)})", **style)
