"""The sweep's Pareto front, read from its Optuna study: rows, a CSV for MLflow and a small table."""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from .search import METRICS_ATTR, POINT_ATTR, RAY_TRIAL_ATTR
from .space import SweepSpace


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """``a`` is no worse than ``b`` on every objective and better on one."""
    sa = [x if m == "min" else -x for x, m in zip(a, modes)]
    sb = [x if m == "min" else -x for x, m in zip(b, modes)]
    return all(x <= y for x, y in zip(sa, sb)) and any(x < y for x, y in zip(sa, sb))


def non_dominated(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, modes) for j, q in enumerate(points) if j != i)]


def front_rows(study: Any, space: SweepSpace) -> list[dict[str, Any]]:
    """One row per trial on the feasible front (``study.best_trials``), best first on the first objective."""
    rows = []
    for t in study.best_trials:
        row: dict[str, Any] = {"ray_trial_id": t.user_attrs.get(RAY_TRIAL_ATTR, ""), "optuna_number": t.number}
        row.update({o.metric: v for o, v in zip(space.objectives, t.values)})
        metrics = t.user_attrs.get(METRICS_ATTR) or {}
        for c in space.constraints:
            row.setdefault(c.metric, metrics.get(c.metric))
        if t.user_attrs.get(POINT_ATTR):
            row["point"] = t.user_attrs[POINT_ATTR]
        row.update(t.params)
        rows.append(row)
    first = space.objectives[0]
    rows.sort(key=lambda r: r[first.metric] if first.mode == "min" else -r[first.metric])
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or ["ray_trial_id"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def format_table(rows: list[dict[str, Any]], space: SweepSpace, max_params: int = 4) -> str:
    """A few aligned lines: trial, objectives, constraint metrics, then the searched keys."""
    if not rows:
        return "(no feasible completed trials: the Pareto front is empty)"
    metric_cols = list(dict.fromkeys(space.metrics + [c.metric for c in space.constraints]))
    param_cols = [p.key for p in space.params if any(p.key in r for r in rows)][:max_params]
    header = ["trial"] + metric_cols + [k.split(".")[-1] for k in param_cols]
    body = []
    for r in rows:
        cells = [str(r.get("ray_trial_id") or r.get("optuna_number"))]
        cells += [_fmt(r.get(m)) for m in metric_cols]
        cells += [_fmt(r.get(k)) for k in param_cols]
        body.append(cells)
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header] + body]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
