"""How robust is the chosen point? Two numbers a reader can check against the plot.

- the share of scored trials that meet the selection rule (a rule met by 1 trial in 200 is luck-prone);
- the spread of each objective among the ``k`` trials nearest to the chosen one in the searched space: if
  neighbours differ wildly, the chosen settings sit on a cliff.

Distances use the searched keys' real Optuna distributions (the record's space, :class:`Axes`): a numeric key is
scaled to [0, 1] over its declared range (on a log scale for a log distribution), a choice differs by 0 or 1. A
sweep without a record has no declared ranges, so no neighbours (the report says why).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..sweep.record import SweepRecord
from .model import Goals, Trial
from .selection import Rule

DEFAULT_K = 5


@dataclass(frozen=True)
class Axes:
    """The searched keys and their Optuna distributions: what a distance between two trials is measured in."""

    distributions: Mapping[str, Any]

    @classmethod
    def of(cls, record: SweepRecord | None) -> Axes:
        """The record's searched keys (none without a record)."""
        return cls({} if record is None else {p.key: p.distribution() for p in record.space.params})

    @property
    def names(self) -> list[str]:
        return list(self.distributions)

    def numeric(self, name: str) -> bool:
        from optuna.distributions import CategoricalDistribution

        return not isinstance(self.distributions[name], CategoricalDistribution)

    def coordinate(self, name: str, value: Any) -> float | None:
        """``value`` on the key's axis in [0, 1] (a choice: None, compared by equality)."""
        dist = self.distributions[name]
        if not self.numeric(name) or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        low, high, x = float(dist.low), float(dist.high), float(value)
        if dist.log:  # Optuna's log distributions have low > 0; a value outside the range is clipped to it
            low, high, x = math.log(low), math.log(high), math.log(max(x, low))
        return 0.0 if high <= low else (x - low) / (high - low)

    def gap(self, name: str, a: Any, b: Any) -> float:
        """How far apart two values of one key are, in [0, 1]; a key one trial lacks (a ``when``) counts 1."""
        if a is None or b is None:
            return 0.0 if a is b else 1.0
        ca, cb = self.coordinate(name, a), self.coordinate(name, b)
        if ca is None or cb is None:
            return 0.0 if a == b else 1.0
        return abs(ca - cb)

    def distance(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
        """Euclidean distance between two sets of params over the searched keys."""
        return math.sqrt(sum(self.gap(n, a.get(n), b.get(n)) ** 2 for n in self.names))


@dataclass
class Spread:
    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, min(values), max(values))


@dataclass
class Stability:
    rule: str
    meeting: int
    finished: int
    share_meeting: float
    k: int
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    spread: dict[str, Spread] = field(default_factory=dict)  # objective metric → spread over the neighbours
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest(trials: Sequence[Trial], centre: Trial, k: int, axes: Axes) -> list[tuple[float, Trial]]:
    """The ``k`` trials closest to ``centre`` (itself excluded), nearest first."""
    others = [t for t in trials if t.run_id != centre.run_id]
    ranked = sorted(((axes.distance(centre.params, t.params), t) for t in others), key=lambda p: (p[0], p[1].run_id))
    return ranked[:k]


def stability(
    trials: Sequence[Trial], chosen: Trial | None, rule: Rule, goals: Goals, axes: Axes, k: int = DEFAULT_K
) -> Stability:
    """The share of ``goals.scored(trials)`` meeting ``rule``, and the objectives' spread near ``chosen``."""
    scored = goals.scored(trials)
    meeting = sum(rule.meets(t, goals) for t in scored)
    share = meeting / len(scored) if scored else 0.0
    result = Stability(rule.describe(goals), meeting, len(scored), share, k)
    if chosen is None or not scored:
        return result
    if not axes.names:
        result.note = "no neighbours: the searched keys' ranges are in the sweep record, and this sweep has none"
        return result
    near = nearest(scored, chosen, k, axes)
    result.neighbours = [
        {"run_id": t.run_id, "distance": round(d, 6), **{m: t.final_metrics.get(m) for m in goals.metrics}}
        for d, t in near
    ]
    if near:
        result.spread = {m: Spread.of([float(t.final_metrics[m]) for _, t in near]) for m in goals.metrics}
    return result
