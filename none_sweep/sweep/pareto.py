"""The one Pareto rule of a sweep: which finished trials are on its feasible front.

A trial is *feasible* when every constraint of the sweep holds on its final metrics; the front is the feasible
trials that no other feasible trial dominates on the sweep's objectives. The sweep's own summary (from the
Optuna study) and ``none-sweep report`` (from MLflow) both call :func:`pareto_front` with the objectives and
constraints of the sweep's record, so they cannot disagree.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class ObjectiveLike(Protocol):
    @property
    def metric(self) -> str: ...
    @property
    def mode(self) -> str: ...  # "min" | "max"


class ConstraintLike(Protocol):
    @property
    def metric(self) -> str: ...
    def violation(self, value: float) -> float: ...


Metrics = Mapping[str, Any]


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """``a`` is no worse than ``b`` on every objective and strictly better on one."""
    sa = [x if m == "min" else -x for x, m in zip(a, modes)]
    sb = [x if m == "min" else -x for x, m in zip(b, modes)]
    return all(x <= y for x, y in zip(sa, sb)) and any(x < y for x, y in zip(sa, sb))


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def objective_values(metrics: Metrics, objectives: Sequence[ObjectiveLike]) -> list[float] | None:
    """The objective values of one trial, or None when one of them is missing or not finite."""
    values = [finite(metrics.get(o.metric)) for o in objectives]
    return None if any(v is None for v in values) else [float(v) for v in values if v is not None]


def is_feasible(metrics: Metrics, constraints: Sequence[ConstraintLike]) -> bool:
    """Every constraint holds (Optuna's convention: violation <= 0); a missing metric is infeasible."""
    for c in constraints:
        value = finite(metrics.get(c.metric))
        if value is None or c.violation(value) > 0:
            return False
    return True


def pareto_front(
    trials: Sequence[Metrics], objectives: Sequence[ObjectiveLike], constraints: Sequence[ConstraintLike] = ()
) -> list[int]:
    """Indices of the feasible, non-dominated trials, best first on the first objective.

    Trials whose objectives are missing are ignored; duplicates of a front point all stay on the front.
    """
    modes = [o.mode for o in objectives]
    points = {
        i: v
        for i, m in enumerate(trials)
        if (v := objective_values(m, objectives)) is not None and is_feasible(m, constraints)
    }
    front = [i for i, p in points.items() if not any(dominates(q, p, modes) for j, q in points.items() if j != i)]
    sign = 1.0 if modes[0] == "min" else -1.0
    return sorted(front, key=lambda i: (sign * points[i][0], i))


def knee(
    trials: Sequence[Metrics], objectives: Sequence[ObjectiveLike], constraints: Sequence[ConstraintLike] = ()
) -> int | None:
    """The front point closest to the ideal point, each objective min–max scaled over the feasible trials.

    The ideal point is the best value of every objective; ties go to the point earlier on the front (better on
    the first objective). None when the front is empty.
    """
    front = pareto_front(trials, objectives, constraints)
    if not front:
        return None
    feasible = [v for m in trials if (v := objective_values(m, objectives)) is not None and is_feasible(m, constraints)]
    spans = []
    for k, o in enumerate(objectives):
        column = [v[k] for v in feasible]
        spans.append((min(column), max(column), o.mode))

    def distance(i: int) -> float:
        values = objective_values(trials[i], objectives) or []
        total = 0.0
        for value, (lo, hi, mode) in zip(values, spans):
            if hi <= lo:
                continue  # a constant objective says nothing about the trade-off
            scaled = (value - lo) / (hi - lo)
            total += (scaled if mode == "min" else 1.0 - scaled) ** 2
        return math.sqrt(total)

    return min(front, key=lambda i: (distance(i), front.index(i)))


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts) as CSV, columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or ["trial"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def format_table(rows: Sequence[Mapping[str, Any]], metric_cols: Sequence[str], param_cols: Sequence[str]) -> str:
    """A few aligned lines: trial, the given metrics, then the given searched keys (short names)."""
    if not rows:
        return "(no feasible completed trials: the Pareto front is empty)"
    header = ["trial", *metric_cols, *(k.split(".")[-1] for k in param_cols)]
    body = [
        [str(r.get("trial") or ""), *(_fmt(r.get(m)) for m in metric_cols), *(_fmt(r.get(k)) for k in param_cols)]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *body])


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
