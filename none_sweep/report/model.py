"""What the report works on: a sweep's trials read back from MLflow, and the goals the sweep optimised.

:class:`Goals` are the sweep's objectives and constraints, taken from its record (``sweep.json`` on the parent
run); its front and knee are :func:`none_sweep.sweep.pareto.pareto_front` and :func:`~none_sweep.sweep.pareto.knee`
over the trials' final metrics, the very rule the sweep's own summary applies to its Optuna study. A sweep made
before the record existed gets :data:`DEFAULT_GOALS` (asr min, clean_acc max, no constraint), and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..sweep import pareto
from ..sweep.record import SweepRecord
from ..sweep.space import Constraint, Objective
from ..tracking.layout import BASELINE_PREFIX, EARLY_STOP_TAG, PARENT_TAG, TRIAL_ID_TAG
from ..train.metrics import backdoor_metric

#: Where the goals came from, as the report prints it.
FROM_RECORD = "the sweep record"


@dataclass(frozen=True)
class Trial:
    """One run: a trial's resolved params (parsed back from strings) and final metrics."""

    run_id: str
    run_name: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    start_time: int | None = None
    end_time: int | None = None
    baseline_clean_acc: float | None = None

    @property
    def trial_id(self) -> str | None:
        return self.tags.get(TRIAL_ID_TAG)

    @property
    def parent_id(self) -> str | None:
        return self.tags.get(PARENT_TAG)

    @property
    def asr(self) -> float | None:
        return pareto.finite(self.metrics.get("asr"))

    @property
    def clean_acc(self) -> float | None:
        return pareto.finite(self.metrics.get("clean_acc"))

    @property
    def clean_acc_drop(self) -> float | None:
        """Logged ``clean_acc_drop``, else baseline clean accuracy minus this trial's."""
        drop = pareto.finite(self.metrics.get("clean_acc_drop"))
        if drop is None and self.clean_acc is not None and self.baseline_clean_acc is not None:
            drop = self.baseline_clean_acc - self.clean_acc
        return drop

    @property
    def final_metrics(self) -> dict[str, Any]:
        """The metrics the goals are judged on (``clean_acc_drop`` derived from the baseline when not logged)."""
        out: dict[str, Any] = dict(self.metrics)
        if self.clean_acc_drop is not None:
            out["clean_acc_drop"] = self.clean_acc_drop
        return out

    @property
    def complete(self) -> bool:
        """Trained to its last epoch: FINISHED and not stopped early by the scheduler (Optuna: PRUNED)."""
        return self.status == "FINISHED" and self.tags.get(EARLY_STOP_TAG) != "true"

    @property
    def finished(self) -> bool:
        """Complete with ASR and clean accuracy logged: the trials the ASR rules (``--max-asr``/``--max-drop``)
        consider."""
        return self.complete and self.asr is not None and self.clean_acc is not None

    @property
    def label(self) -> str:
        return f"run {self.run_id}" + (f" (trial {self.trial_id})" if self.trial_id else "")

    def describe_metrics(self, extra: Sequence[str] = ()) -> str:
        """``asr=0.0150 clean_acc=0.9550 clean_acc_drop=0.0150`` (then any ``extra`` metrics); ``reasr=`` first
        instead where no trigger was injected but trigger inversion ran (natural backdoors)."""
        values = self.final_metrics
        keys = dict.fromkeys([backdoor_metric(values) or "asr", "clean_acc", "clean_acc_drop", *extra])
        return " ".join(f"{key}={fmt(pareto.finite(values.get(key)))}" for key in keys)


def fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


@dataclass(frozen=True)
class Goals:
    """A sweep's objectives and constraints, and where they came from (``source``, for the report's text)."""

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    source: str = FROM_RECORD

    @classmethod
    def of(cls, record: SweepRecord | None, note: str = "") -> Goals:
        """The record's goals, else :data:`DEFAULT_GOALS` with ``note`` saying why there is no record."""
        if record is None:
            return DEFAULT_GOALS if not note else Goals(DEFAULT_GOALS.objectives, (), f"{DEFAULT_SOURCE}: {note}")
        return cls(tuple(record.space.objectives), tuple(record.space.constraints))

    @property
    def from_record(self) -> bool:
        return self.source == FROM_RECORD

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def columns(self) -> list[str]:
        """The metrics a table of trials shows: objectives, constraint metrics, then ``clean_acc_drop``."""
        return list(dict.fromkeys([*self.metrics, *(c.metric for c in self.constraints), "clean_acc_drop"]))

    def describe(self) -> str:
        """``asr min, clean_acc max; feasible: clean_acc_drop <= 0.05`` (the sweep's own front header)."""
        text = ", ".join(f"{o.metric} {o.mode}" for o in self.objectives)
        if self.constraints:
            text += "; feasible: " + ", ".join(c.text for c in self.constraints)
        return text

    def values(self, trial: Trial) -> list[float] | None:
        return pareto.objective_values(trial.final_metrics, self.objectives)

    def scored(self, trials: Sequence[Trial]) -> list[Trial]:
        """Complete trials with every objective logged: the ones the front, knee and importances consider."""
        return [t for t in trials if t.complete and self.values(t) is not None]

    def feasible(self, trial: Trial) -> bool:
        return pareto.is_feasible(trial.final_metrics, self.constraints)

    def front(self, trials: Sequence[Trial]) -> list[Trial]:
        """The feasible Pareto front of the complete ``trials``, best first on the first objective."""
        scored = self.scored(trials)
        return [scored[i] for i in pareto.pareto_front(self._metrics(scored), self.objectives, self.constraints)]

    def knee(self, trials: Sequence[Trial]) -> Trial | None:
        """The front trial nearest the ideal point (:func:`none_sweep.sweep.pareto.knee`); None: empty front."""
        scored = self.scored(trials)
        index = pareto.knee(self._metrics(scored), self.objectives, self.constraints)
        return None if index is None else scored[index]

    @staticmethod
    def _metrics(trials: Sequence[Trial]) -> list[Mapping[str, Any]]:
        return [t.final_metrics for t in trials]


DEFAULT_SOURCE = "defaults (asr min, clean_acc max, no constraint)"
DEFAULT_GOALS = Goals(
    (Objective("asr", "min"), Objective("clean_acc", "max")), (), f"{DEFAULT_SOURCE}: the sweep has no record"
)


@dataclass
class Sweep:
    """A sweep's experiment: its parent run(s), every trial run in start order, and the sweep's record.

    ``record`` is None for a sweep made before the record existed (or whose record this code cannot read);
    ``record_note`` then says why, and :attr:`goals` are the defaults.
    """

    experiment_id: str
    name: str
    tracking_uri: str
    parents: list[Trial] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    record: SweepRecord | None = None
    record_note: str = ""

    @property
    def parent(self) -> Trial | None:
        """The latest sweep run (a sweep re-run under the same name adds another)."""
        return self.parents[-1] if self.parents else None

    @property
    def goals(self) -> Goals:
        return Goals.of(self.record, self.record_note)

    @property
    def baseline(self) -> dict[str, float]:
        if self.parent is None:
            return {}
        metrics = self.parent.metrics
        return {k: v for k, v in metrics.items() if k.startswith(BASELINE_PREFIX) and pareto.finite(v) is not None}

    @property
    def finished(self) -> list[Trial]:
        """Complete trials with the sweep's objectives logged."""
        return self.goals.scored(self.trials)

    def count(self, *statuses: str) -> int:
        return sum(t.status in statuses for t in self.trials)
