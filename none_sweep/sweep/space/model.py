"""A space once resolved: plain data the driver, the searcher, the trainable and the report read.

Nothing here parses or validates the file again (that happened once, in :mod:`.load`); the properties are
views of the fields. The configs a trial runs with are built through :func:`none_sweep.experiment.resolve_config`,
the one door to a checked :class:`~none_sweep.config.ExperimentConfig`.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...config import ExperimentConfig
from ...config.validation import set_dotted
from ...experiment import resolve_config
from .params import Param
from .schema import ResourceSettings, SchedulerSettings, SearchSettings


@dataclass(frozen=True)
class Objective:
    """A metric of the final report, minimised or maximised."""

    metric: str
    mode: str  # "min" | "max"


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric <= threshold`` or ``metric >= threshold``; Optuna's convention: feasible when the violation <= 0."""

    metric: str
    op: str  # "<=" | ">="
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Constraint | None:
        """``"clean_acc_drop <= 0.02"`` as a constraint; None when it is not of that form."""
        m = _CONSTRAINT.match(text)
        return cls(m.group(1), m.group(2), float(m.group(3))) if m else None

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def violation(self, value: float) -> float:
        """How far ``value`` is on the wrong side of the threshold (negative: inside, with room to spare)."""
        return value - self.threshold if self.op == "<=" else self.threshold - value

    def feasible(self, value: float) -> bool:
        """Whether ``value`` meets the constraint; a missing (NaN) value never does."""
        return not math.isnan(value) and self.violation(value) <= 0


@dataclass(frozen=True)
class Point:
    """A configuration evaluated first (e.g. the paper's defaults)."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Variant:
    """An attack variant every trial also runs against: the dotted base keys it changes."""

    name: str
    set: dict[str, Any]


@dataclass
class SweepSpace:
    """A loaded, validated space file: everything the driver, the searcher and the trainable need.

    ``params`` are in suggestion order (a conditional key after the keys its ``when`` reads). ``max_concurrent``
    is what the file says; the runner caps it at ``num_samples``.
    """

    path: str
    text: str
    base: dict[str, Any]
    params: list[Param]
    objectives: list[Objective]
    constraints: list[Constraint]
    points: list[Point]
    search: SearchSettings
    scheduler: SchedulerSettings
    resources: ResourceSettings
    num_samples: int
    max_concurrent: int | None
    max_failures: int
    description: str = ""
    variants: list[Variant] = field(default_factory=list)
    log_models: str = "front"
    keep_checkpoints: int = 3

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    @property
    def scheduler_metric(self) -> str:
        """What early stopping watches: ``scheduler.metric``, else the first objective (each epoch report must
        carry it)."""
        return self.scheduler.metric or self.objectives[0].metric

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def param(self, key: str) -> Param | None:
        """The searched param at ``key``, or None when ``key`` is not searched."""
        return next((p for p in self.params if p.key == key), None)

    def trial_data(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """``base`` with the sampled dotted keys set (keys starting with ``_`` are bookkeeping, skipped)."""
        data = copy.deepcopy(self.base)
        for key, value in sampled.items():
            if not key.startswith("_"):
                set_dotted(data, key, value)
        return data

    def trial_config(self, sampled: Mapping[str, Any], source: str = "trial") -> ExperimentConfig:
        """The config a trial with ``sampled`` values runs (raises ConfigError naming ``source``)."""
        return resolve_config(self.trial_data(sampled), source=source)

    def variant_configs(self, sampled: Mapping[str, Any], source: str = "trial") -> dict[str, ExperimentConfig]:
        """Per variant, the config a trial with ``sampled`` values runs (empty when the space has no variants)."""
        out = {}
        for v in self.variants:
            data = self.trial_data({**v.set, **sampled})
            out[v.name] = resolve_config(data, source=f"{source}, variant {v.name}")
        return out

    def baseline_configs(self) -> dict[str, ExperimentConfig]:
        """The undefended run per variant (see :meth:`baseline_config`); one entry, ``""``, without variants."""
        if not self.variants:
            return {"": self.baseline_config()}
        return self.variant_configs({"defense.enabled": False}, source=f"{self.path}: baseline")

    def base_config(self) -> ExperimentConfig:
        return resolve_config(copy.deepcopy(self.base), source=f"{self.path}: base")

    def baseline_config(self) -> ExperimentConfig:
        """The undefended run every trial is compared with: the same base, ``defense.enabled=false``."""
        return resolve_config(self.trial_data({"defense.enabled": False}), source=f"{self.path}: baseline")
