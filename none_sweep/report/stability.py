"""How robust is the chosen point? Two numbers a reader can check against the plot.

- the share of finished trials that meet the selection rule (a rule met by 1 trial in 200 is luck-prone);
- the spread of ASR and clean accuracy among the ``k`` trials nearest to the chosen one in the normalised
  searched space (:mod:`.space`): if neighbours differ wildly, the chosen settings sit on a cliff.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .runs import Trial
from .selection import Rule
from .space import Axis, distance, infer_axes

DEFAULT_K = 5


@dataclass
class Spread:
    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
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
    asr: Spread | None = None
    clean_acc: Spread | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nearest(trials: Sequence[Trial], centre: Trial, k: int, axes: Sequence[Axis]) -> list[tuple[float, Trial]]:
    """The ``k`` finished trials closest to ``centre`` (itself excluded), nearest first."""
    others = [t for t in trials if t.finished and t.run_id != centre.run_id]
    ranked = sorted(((distance(axes, centre, t), t) for t in others), key=lambda p: (p[0], p[1].run_id))
    return ranked[:k]


def stability(trials: Sequence[Trial], chosen: Trial | None, rule: Rule, k: int = DEFAULT_K) -> Stability:
    finished = [t for t in trials if t.finished]
    meeting = sum(rule.meets(t) for t in finished)
    result = Stability(rule.describe(), meeting, len(finished), meeting / len(finished) if finished else 0.0, k)
    if chosen is None or not finished:
        return result
    axes = infer_axes(finished)
    near = nearest(finished, chosen, k, axes)
    result.neighbours = [
        {"run_id": t.run_id, "distance": round(d, 6), "asr": t.asr, "clean_acc": t.clean_acc} for d, t in near
    ]
    if near:
        result.asr = Spread.of([t.asr for _, t in near])  # type: ignore[misc]
        result.clean_acc = Spread.of([t.clean_acc for _, t in near])  # type: ignore[misc]
    return result
