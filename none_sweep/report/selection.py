"""Selection rules: which finished trial is "the best defense".

- ``max_asr X``: among trials with ``asr <= X``, the highest clean accuracy (ties: lower ASR).
- ``max_drop X``: among trials with ``clean_acc_drop <= X``, the lowest ASR (ties: higher clean accuracy).
- ``knee``: the knee of the sweep's feasible Pareto front on its own objectives (:meth:`.model.Goals.knee`, the
  rule of :func:`none_sweep.sweep.pareto.knee`).

The two threshold rules are about ASR, whatever the sweep optimised; the knee follows the sweep's record. A rule
no trial meets raises :class:`TrackingError` naming the closest trial and its metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError, TrackingError
from .model import DEFAULT_GOALS, Goals, Trial

#: The rule ``export``/``report`` use when none is given, and the one ``ls`` summarises.
DEFAULT_MAX_DROP = 0.02
KINDS = ("max_asr", "max_drop", "knee")


@dataclass(frozen=True)
class Rule:
    kind: str  # "max_asr" | "max_drop" | "knee"
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule {self.kind!r}")
        if self.kind != "knee" and (self.threshold is None or self.threshold < 0):
            raise ConfigError(f"--{self.kind.replace('_', '-')} must be a number >= 0, got {self.threshold}")

    @property
    def limit(self) -> float:
        """The threshold of a threshold rule (``__post_init__`` made sure there is one)."""
        return float(self.threshold or 0.0)

    def describe(self, goals: Goals = DEFAULT_GOALS) -> str:
        if self.kind == "max_asr":
            return f"max-asr {self.limit:g}: highest clean_acc among trials with asr <= {self.limit:g}"
        if self.kind == "max_drop":
            return f"max-drop {self.limit:g}: lowest asr among trials with clean_acc_drop <= {self.limit:g}"
        ideal = ", ".join(f"{o.mode} {o.metric}" for o in goals.objectives)
        feasible = "feasible " if goals.constraints else ""
        scaled = "both axes" if len(goals.objectives) == 2 else "each objective"
        return f"knee: {feasible}Pareto-front trial closest to ({ideal}), {scaled} min-max normalised"

    def meets(self, trial: Trial, goals: Goals = DEFAULT_GOALS) -> bool:
        if self.kind == "knee":
            return trial.complete and goals.values(trial) is not None and goals.feasible(trial)
        if not trial.finished or trial.asr is None:
            return False
        if self.kind == "max_asr":
            return trial.asr <= self.limit
        drop = trial.clean_acc_drop
        return drop is not None and drop <= self.limit


def rule_from_args(max_asr: float | None, max_drop: float | None, use_knee: bool) -> Rule:
    """The rule named on the command line (argparse keeps the three mutually exclusive)."""
    if max_asr is not None:
        return Rule("max_asr", max_asr)
    if use_knee:
        return Rule("knee")
    return Rule("max_drop", DEFAULT_MAX_DROP if max_drop is None else max_drop)


def select(trials: Sequence[Trial], rule: Rule, *, sweep_name: str = "", goals: Goals = DEFAULT_GOALS) -> Trial:
    """The trial ``rule`` picks among ``trials`` (all of them; unfinished ones are ignored).

    ``goals``: the sweep's objectives and constraints (``Sweep.goals``), which the knee follows.
    """
    where = f" in sweep {sweep_name!r}" if sweep_name else ""
    if rule.kind == "knee":
        return _knee(trials, goals, where)
    finished = [t for t in trials if t.finished]
    if not finished:
        raise TrackingError(f"no finished trials{where} ({_status_counts(trials, ['asr', 'clean_acc'])}); "
                            "wait for the sweep or check its failed trials")  # fmt: skip
    if rule.kind == "max_asr":
        return _max_asr(finished, rule, where)
    return _max_drop(finished, rule, where)


def _knee(trials: Sequence[Trial], goals: Goals, where: str) -> Trial:
    scored = goals.scored(trials)
    if not scored:
        raise TrackingError(f"no finished trials{where} ({_status_counts(trials, goals.metrics)}); "
                            "wait for the sweep or check its failed trials")  # fmt: skip
    chosen = goals.knee(scored)
    if chosen is None:
        raise TrackingError(f"no finished trial{where} is feasible ({', '.join(c.text for c in goals.constraints)}; "
                            f"{len(scored)} checked), so the Pareto front is empty")  # fmt: skip
    return chosen


def _max_asr(finished: list[Trial], rule: Rule, where: str) -> Trial:
    meeting = [t for t in finished if rule.meets(t)]
    if meeting:
        return max(meeting, key=lambda t: (t.clean_acc or 0.0, -(t.asr or 0.0)))
    closest = min(finished, key=lambda t: (t.asr or 0.0, -(t.clean_acc or 0.0)))
    raise TrackingError(
        f"no finished trial{where} has asr <= {rule.limit:g} ({len(finished)} checked); closest: "
        f"{closest.label} with {closest.describe_metrics()}"
    )


def _max_drop(finished: list[Trial], rule: Rule, where: str) -> Trial:
    meeting = [t for t in finished if rule.meets(t)]
    if meeting:
        return min(meeting, key=lambda t: (t.asr or 0.0, -(t.clean_acc or 0.0)))
    with_drop = [t for t in finished if t.clean_acc_drop is not None]
    if not with_drop:
        raise TrackingError(
            f"no finished trial{where} has clean_acc_drop (nor does the sweep run log baseline_clean_acc); "
            "use --max-asr or --knee"
        )
    closest = min(with_drop, key=lambda t: (t.clean_acc_drop or 0.0, t.asr or 0.0))
    raise TrackingError(
        f"no finished trial{where} has clean_acc_drop <= {rule.limit:g} ({len(finished)} checked); closest: "
        f"{closest.label} with {closest.describe_metrics()}"
    )


def _status_counts(trials: Sequence[Trial], metrics: Sequence[str]) -> str:
    if not trials:
        return "no trial runs at all"
    counts: dict[str, int] = {}
    for t in trials:
        key = t.status.lower()
        if t.status == "FINISHED":
            key = f"finished without {'/'.join(metrics)}" if t.complete else "stopped early"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
