"""Selection rules: which finished trial is "the best defense".

- ``max_asr X``: among trials with ``asr <= X``, the highest clean accuracy (ties: lower ASR).
- ``max_drop X``: among trials with ``clean_acc_drop <= X``, the lowest ASR (ties: higher clean accuracy).
- ``knee``: the knee of the Pareto front (see :mod:`.pareto`).

A rule no trial meets raises :class:`TrackingError` naming the closest trial and its metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError, TrackingError
from .pareto import knee
from .runs import Trial

#: The rule ``export``/``report`` use when none is given, and the one ``ls`` summarises.
DEFAULT_MAX_DROP = 0.02


@dataclass(frozen=True)
class Rule:
    kind: str  # "max_asr" | "max_drop" | "knee"
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("max_asr", "max_drop", "knee"):
            raise ValueError(f"unknown rule {self.kind!r}")
        if self.kind != "knee" and (self.threshold is None or self.threshold < 0):
            raise ConfigError(f"--{self.kind.replace('_', '-')} must be a number >= 0, got {self.threshold}")

    def describe(self) -> str:
        if self.kind == "max_asr":
            return f"max-asr {self.threshold:g}: highest clean_acc among trials with asr <= {self.threshold:g}"
        if self.kind == "max_drop":
            return (f"max-drop {self.threshold:g}: lowest asr among trials with "
                    f"clean_acc_drop <= {self.threshold:g}")
        return "knee: Pareto-front trial closest to (min asr, max clean_acc), both axes min-max normalised"

    def meets(self, trial: Trial) -> bool:
        if not trial.finished:
            return False
        if self.kind == "max_asr":
            return trial.asr <= self.threshold  # type: ignore[operator]
        if self.kind == "max_drop":
            drop = trial.clean_acc_drop
            return drop is not None and drop <= self.threshold  # type: ignore[operator]
        return True


def rule_from_args(max_asr: float | None, max_drop: float | None, use_knee: bool) -> Rule:
    """The rule named on the command line (argparse keeps the three mutually exclusive)."""
    if max_asr is not None:
        return Rule("max_asr", max_asr)
    if use_knee:
        return Rule("knee")
    return Rule("max_drop", DEFAULT_MAX_DROP if max_drop is None else max_drop)


def select(trials: Sequence[Trial], rule: Rule, *, sweep_name: str = "") -> Trial:
    """The trial ``rule`` picks among ``trials`` (all of them; unfinished ones are ignored)."""
    finished = [t for t in trials if t.finished]
    where = f" in sweep {sweep_name!r}" if sweep_name else ""
    if not finished:
        counts = _status_counts(trials)
        raise TrackingError(f"no finished trials{where} ({counts}); wait for the sweep or check its failed trials")
    if rule.kind == "knee":
        return knee(finished)
    meeting = [t for t in finished if rule.meets(t)]
    if rule.kind == "max_asr":
        if meeting:
            return max(meeting, key=lambda t: (t.clean_acc, -t.asr))
        closest = min(finished, key=lambda t: (t.asr, -t.clean_acc))
        raise TrackingError(
            f"no finished trial{where} has asr <= {rule.threshold:g} ({len(finished)} checked); closest: "
            f"{closest.label} with {closest.describe_metrics()}"
        )
    if meeting:
        return min(meeting, key=lambda t: (t.asr, -t.clean_acc))
    with_drop = [t for t in finished if t.clean_acc_drop is not None]
    if not with_drop:
        raise TrackingError(
            f"no finished trial{where} has clean_acc_drop (nor does the sweep run log baseline_clean_acc); "
            "use --max-asr or --knee"
        )
    closest = min(with_drop, key=lambda t: (t.clean_acc_drop, t.asr))
    raise TrackingError(
        f"no finished trial{where} has clean_acc_drop <= {rule.threshold:g} ({len(finished)} checked); closest: "
        f"{closest.label} with {closest.describe_metrics()}"
    )


def _status_counts(trials: Sequence[Trial]) -> str:
    if not trials:
        return "no trial runs at all"
    counts: dict[str, int] = {}
    for t in trials:
        key = "finished without asr/clean_acc" if t.status == "FINISHED" else t.status.lower()
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
