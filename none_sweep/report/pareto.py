"""The ASR / clean-accuracy trade-off: Pareto front, knee point, and the plot.

Objectives: attack success rate (lower is better) and clean accuracy (higher is better). A trial is on the
front when no other trial is at least as good on both and strictly better on one.

Knee: normalise each axis to [0, 1] over all finished trials (min–max; a constant axis counts as 0), so the
ideal point is (asr 0, clean_acc 1); the knee is the front point closest to it in Euclidean distance
(ties: lower ASR, then higher clean accuracy).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from .runs import Trial

Point = tuple[float, float]  # (asr, clean_acc)


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse on both objectives and strictly better on one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, by ascending ASR (O(n log n)); duplicates all stay."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best: Point | None = None  # the point with the highest clean_acc so far (lowest asr among equals)
    for i in order:
        p = points[i]
        if best is None or not dominates(best, p):
            front.append(i)
            if best is None or p[1] > best[1]:
                best = p
    return front


def front_trials(trials: Sequence[Trial]) -> list[Trial]:
    points = [(t.asr, t.clean_acc) for t in trials]
    return [trials[i] for i in pareto_front(points)]  # type: ignore[arg-type]


def normaliser(trials: Sequence[Trial]):
    """``f(trial) -> (asr_n, acc_n)`` scaled to [0, 1] by the spread of ``trials``."""
    asrs = [t.asr for t in trials]
    accs = [t.clean_acc for t in trials]
    lo_a, hi_a, lo_c, hi_c = min(asrs), max(asrs), min(accs), max(accs)

    def scale(x: float, lo: float, hi: float) -> float:
        return (x - lo) / (hi - lo) if hi > lo else 0.0

    def f(t: Trial) -> Point:
        return scale(t.asr, lo_a, hi_a), scale(t.clean_acc, lo_c, hi_c)

    return f


def knee_distance(trials: Sequence[Trial]):
    """``d(trial)``: normalised distance to the ideal (min ASR, max clean accuracy) of ``trials``."""
    norm = normaliser(trials)
    has_acc_spread = max(t.clean_acc for t in trials) > min(t.clean_acc for t in trials)

    def d(t: Trial) -> float:
        a, c = norm(t)
        return math.hypot(a, (1.0 - c) if has_acc_spread else 0.0)

    return d


def knee(trials: Sequence[Trial]) -> Trial:
    """The knee of the front of ``trials`` (finished trials; at least one)."""
    d = knee_distance(trials)
    return min(front_trials(trials), key=lambda t: (d(t), t.asr, -t.clean_acc))


def plot_pareto(
    trials: Sequence[Trial],
    path: str | Path,
    *,
    title: str,
    baseline: Point | None = None,
    paper: Trial | None = None,
    chosen: Trial | None = None,
    chosen_label: str = "chosen",
    paper_label: str = "paper defaults (nearest trial)",
) -> Path:
    """ASR vs clean accuracy for every finished trial; front highlighted and connected. Writes a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    front = front_trials(trials)
    on_front = {t.run_id for t in front}
    rest = [t for t in trials if t.run_id not in on_front]
    ax.scatter([100 * t.asr for t in rest], [100 * t.clean_acc for t in rest], s=22, c="#9aa5b1",
               alpha=0.8, label=f"other finished trials ({len(rest)})")
    ax.plot([100 * t.asr for t in front], [100 * t.clean_acc for t in front], "-o", c="#d1495b", ms=6,
            lw=1.5, label=f"Pareto front ({len(front)})")
    if baseline is not None:
        ax.scatter([100 * baseline[0]], [100 * baseline[1]], marker="X", s=140, c="black", zorder=5,
                   label="undefended baseline")
    if paper is not None:
        ax.scatter([100 * paper.asr], [100 * paper.clean_acc], marker="D", s=90, facecolors="none",
                   edgecolors="#00798c", linewidths=2, zorder=6, label=paper_label)
    if chosen is not None:
        ax.scatter([100 * chosen.asr], [100 * chosen.clean_acc], marker="*", s=260, c="#edae49",
                   edgecolors="black", zorder=7, label=chosen_label)
    ax.set_xlabel("attack success rate (%) — lower is better")
    ax.set_ylabel("clean accuracy (%) — higher is better")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
