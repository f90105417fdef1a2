"""The searched parameter space, recovered from the trials themselves.

A parameter is "searched" when its value differs between finished trials. Numbers become Optuna
``IntDistribution``/``FloatDistribution`` over the observed range (log scale when every value is positive and
the range spans at least two decades, as learning rates do); everything else (strings, booleans, null, lists)
becomes a ``CategoricalDistribution``. The same scales give the normalised distance used for neighbours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from .runs import Trial

LOG_SPAN = 100.0


@dataclass(frozen=True)
class Axis:
    """One searched parameter: numeric (``low``..``high``, maybe log) or categorical (``choices``)."""

    name: str
    kind: str  # "int" | "float" | "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def scale(self, value: Any) -> float:
        """A numeric value mapped to [0, 1] along this axis."""
        if self.high <= self.low:
            return 0.0
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def distance(self, a: Any, b: Any) -> float:
        if self.kind == "categorical":
            return 0.0 if categorical_value(a) == categorical_value(b) else 1.0
        return abs(self.scale(a) - self.scale(b))

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        if self.kind == "float":
            return FloatDistribution(float(self.low), float(self.high), log=self.log)
        return CategoricalDistribution(self.choices)


def categorical_value(value: Any) -> Any:
    """Optuna choices must be None/bool/int/float/str: lists and mappings become their text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def infer_axes(trials: Sequence[Trial]) -> list[Axis]:
    """The parameters that vary across ``trials``, sorted by name."""
    names = sorted({k for t in trials for k in t.params})
    axes = []
    for name in names:
        values = [t.params.get(name) for t in trials]
        distinct = {repr(categorical_value(v)) for v in values}
        if len(distinct) < 2:
            continue
        if all(_is_number(v) for v in values):
            lo, hi = min(values), max(values)
            log = lo > 0 and hi / lo >= LOG_SPAN
            kind = "int" if all(isinstance(v, int) for v in values) else "float"
            axes.append(Axis(name, kind, lo, hi, log))
        else:
            seen: dict[str, Any] = {}
            for v in values:
                seen.setdefault(repr(categorical_value(v)), categorical_value(v))
            axes.append(Axis(name, "categorical", choices=tuple(seen[k] for k in sorted(seen))))
    return axes


def distance(axes: Sequence[Axis], a: Trial, b: Trial) -> float:
    """Euclidean distance between two trials in the normalised searched space."""
    return math.sqrt(sum(ax.distance(a.params.get(ax.name), b.params.get(ax.name)) ** 2 for ax in axes))


def trial_params(axes: Sequence[Axis], trial: Trial) -> dict[str, Any]:
    """The trial's values on ``axes`` in the form its Optuna distribution accepts."""
    out = {}
    for ax in axes:
        v = trial.params.get(ax.name)
        out[ax.name] = categorical_value(v) if ax.kind == "categorical" else (int(v) if ax.kind == "int" else float(v))
    return out
