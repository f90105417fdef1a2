"""Per-parameter importance for each objective, computed by Optuna on the sweep's own study.

The study is the one the searcher kept in the sweep's journal (``<storage>/<name>/optuna.journal``, found through
the sweep record): its trials carry the real distributions they were sampled from, so a key declared as a choice
of two values is scored as such even when only one was drawn. ``optuna.importance.get_param_importances`` scores
each searched key with ``target=`` one objective (negated when maximised: Optuna's evaluators take lower as
better). The evaluator is Optuna's default (PED-ANOVA in Optuna 5); ``fanova`` uses scikit-learn's random forests.

When the journal is not reachable from where ``report`` runs (another machine, an object store, a sweep made
before records), importances are skipped with one line saying so: they are never guessed from MLflow's params.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..sweep.record import SweepRecord
from ..text import first_line
from .model import Goals

MIN_TRIALS = 4
#: Importance of reaching the Pareto front, every objective at once (PED-ANOVA only).
FRONT = "pareto_front"
EVALUATORS = ("default", "ped-anova", "fanova", "mdi")


@dataclass
class Importances:
    """``scores``: ``{objective: {param: importance}}``, each normalised to sum 1 and sorted high to low; empty
    per objective when fewer than :data:`MIN_TRIALS` trials completed. ``note`` says why there are none."""

    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""
    trials: int = 0


def open_journal_study(record: SweepRecord | None) -> tuple[Any | None, str]:
    """The sweep's Optuna study from its journal, or None and one line saying why not."""
    if record is None:
        return None, "no sweep record, so no Optuna journal to read importances from"
    journal = record.open_storage().journal_path()
    if not journal.is_file():
        return None, f"the sweep's Optuna journal {journal} is not reachable from here; importances skipped"
    from ..sweep.search import open_study

    try:
        return open_study(journal, record.name), ""
    except Exception as exc:  # Optuna raises KeyError for an unknown study, OSError/ValueError for a bad file
        return None, f"the Optuna journal {journal} cannot be read ({type(exc).__name__}: {first_line(exc)})"


def _evaluator(name: str) -> Any:
    from optuna import importance

    if name == "default":
        return None
    if name == "fanova":
        return importance.FanovaImportanceEvaluator(seed=0)
    if name == "mdi":
        return importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    if name == "ped-anova":
        return importance.PedAnovaImportanceEvaluator()
    raise ValueError(f"unknown importance evaluator {name!r}")


def _target(index: int, sign: float) -> Callable[[Any], float]:
    def value(trial: Any) -> float:
        return sign * float(trial.values[index])

    return value


def targets(goals: Goals, evaluator: str) -> list[tuple[str, Callable[[Any], float] | None]]:
    """One target per objective (lower is better), and the front's for PED-ANOVA on several objectives."""
    out: list[tuple[str, Callable[[Any], float] | None]] = [
        (o.metric, _target(i, 1.0 if o.mode == "min" else -1.0)) for i, o in enumerate(goals.objectives)
    ]
    if evaluator in ("default", "ped-anova") and len(goals.objectives) > 1:
        out.append((FRONT, None))  # without a target PED-ANOVA scores reaching the front (non-domination rank)
    return out


def study_importances(study: Any, goals: Goals, evaluator: str = "default") -> Importances:
    """Importances of ``study``'s searched keys for each of ``goals``' objectives."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out = Importances({name: {} for name, _ in targets(goals, evaluator)}, trials=len(complete))
    if len(complete) < MIN_TRIALS:
        out.note = f"{len(complete)} completed trials in the study; importances need at least {MIN_TRIALS}"
        return out
    for name, target in targets(goals, evaluator):
        scorer = _evaluator(evaluator)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                scores = optuna.importance.get_param_importances(study, evaluator=scorer, target=target)
            except (RuntimeError, ValueError):
                scores = {}
        out.scores[name] = dict(sorted(scores.items(), key=lambda kv: -kv[1]))
    return out


def param_importances(record: SweepRecord | None, goals: Goals, evaluator: str = "default") -> Importances:
    """Importances from the sweep's journal study, or none and why (one line)."""
    study, note = open_journal_study(record)
    if study is None:
        return Importances({name: {} for name, _ in targets(goals, evaluator)}, note=note)
    return study_importances(study, goals, evaluator)
