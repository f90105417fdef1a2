"""Optuna inside Ray Tune, made strict: no trial silently leaves the study.

Ray's ``OptunaSearch`` tells Optuna only what a trial's last result says; when an objective is missing or
NaN the ``tell`` fails, Ray logs a warning and the trial is simply gone from the study. Here:

- an errored trial is told ``FAIL``; a final result missing an objective or constraint metric, or holding a
  non-finite one, is told ``FAIL`` (with the reason as user attr ``fail_reason``);
- a trial stopped by the scheduler before its last epoch is told ``PRUNED`` (its metrics are intermediate);
- constraints are set with ``Trial.set_constraint`` before ``tell`` (Optuna ≥ 5 reads them in every sampler;
  the samplers' ``constraints_func`` is deprecated there), so ``study.best_trials`` is the feasible front;
- each Optuna trial carries user attrs ``ray_trial_id`` and, for the points evaluated first, ``none_sweep.point``;
- the study lives in an Optuna journal file (NFS-friendly); the searcher's checkpoint keeps only the journal
  path and the Ray→Optuna trial mapping, and on restore trials asked but never recorded by Ray are failed.

The search space is define-by-run (:class:`SpaceSampler`), which is what makes ``when`` conditions possible.
"""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from ..config import flatten, to_dict
from .space import Param, SweepSpace

logger = logging.getLogger(__name__)

RAY_TRIAL_ATTR = "ray_trial_id"
POINT_ATTR = "none_sweep.point"
FAIL_ATTR = "fail_reason"
METRICS_ATTR = "metrics"
POINT_KEY = "_point"  # config key naming the point a trial was enqueued from (skipped by trial_config)


class SpaceSampler:
    """Define-by-run space: suggest each key in order, skipping keys whose ``when`` does not hold."""

    def __init__(self, params: list[Param], base_flat: Mapping[str, Any]) -> None:
        self.params = list(params)
        self.base_flat = dict(base_flat)

    def __call__(self, trial: Any) -> None:
        current = dict(self.base_flat)
        for p in self.params:
            if p.active(current):
                current[p.key] = p.suggest(trial)
        return None


def make_sampler(space: SweepSpace) -> optuna.samplers.BaseSampler:
    s = space.search
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials)
    if s.sampler == "nsga2":
        size = s.population_size or max(2, min(50, space.num_samples // 2))
        return optuna.samplers.NSGAIISampler(seed=s.seed, population_size=size)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    return optuna.samplers.GridSampler({p.key: p.grid() for p in space.params}, seed=s.seed)


def journal_storage(path: str | Path) -> optuna.storages.JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def open_study(journal: str | Path, name: str) -> optuna.Study:
    """The sweep's Optuna study, read back from its journal (for tests, ``report`` and the Pareto table)."""
    return optuna.load_study(study_name=name, storage=journal_storage(journal))


class SweepSearch(OptunaSearch):
    """``OptunaSearch`` over a :class:`SweepSpace`, with the strict outcome rules above."""

    def __init__(self, space: SweepSpace, journal: str | Path, study_name: str) -> None:
        self._sweep_space = space
        self._journal = str(Path(journal).resolve())
        base_flat = flatten(to_dict(space.base_config()))
        super().__init__(
            space=SpaceSampler(space.params, base_flat),
            metric=space.metrics,
            mode=space.modes,
            sampler=make_sampler(space),
            study_name=study_name,
            storage=journal_storage(self._journal),
        )
        self._outcomes: dict[str, str] = {}
        if not self._ot_study.trials:
            for point in space.points:
                self._ot_study.enqueue_trial(point.params, user_attrs={POINT_ATTR: point.name})

    # ------------------------------------------------------------------ asking
    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = self._ot_trials[trial_id]
        ot_trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        point = ot_trial.user_attrs.get(POINT_ATTR)
        if point:
            config[POINT_KEY] = point
        return config

    # ------------------------------------------------------------------ telling
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            logger.warning("Optuna has no trial for Ray trial %s; its outcome is not recorded", trial_id)
            return
        state, values, reason = self.judge(result, error)
        frozen = self._storage.get_trial(ot_trial._trial_id)
        if frozen.state.is_finished():
            self._retell(trial_id, frozen, state, values, result)
            return
        if state == TrialState.COMPLETE:
            for c in self._sweep_space.constraints:
                ot_trial.set_constraint(c.text, c.violation(float(result[c.metric])))
        if result:
            ot_trial.set_user_attr(METRICS_ATTR, _known_metrics(result, self._sweep_space))
        if reason:
            ot_trial.set_user_attr(FAIL_ATTR, reason)
            log = logger.info if state == TrialState.PRUNED else logger.warning
            log("Optuna: Ray trial %s told %s: %s", trial_id, state.name, reason)
        try:
            self._ot_study.tell(ot_trial, values, state=state)
        except Exception as exc:  # never lose the trial: whatever went wrong, it ends FAIL
            logger.warning("Optuna tell(%s) for Ray trial %s failed (%s); telling FAIL", state.name, trial_id, exc)
            ot_trial.set_user_attr(FAIL_ATTR, f"tell failed: {exc}")
            self._ot_study.tell(ot_trial, None, state=TrialState.FAIL)
            state = TrialState.FAIL
        self._completed_trials.add(trial_id)
        self._outcomes[trial_id] = state.name

    def judge(self, result: Mapping[str, Any] | None, error: bool) -> tuple[TrialState, list[float] | None, str]:
        """The Optuna outcome of a Ray trial: (state, values for COMPLETE, reason otherwise)."""
        if error:
            return TrialState.FAIL, None, "the Ray trial errored"
        if not result:
            return TrialState.FAIL, None, "the Ray trial ended without any result"
        if not result.get("final"):
            return TrialState.PRUNED, None, f"stopped early at epoch {result.get('epoch')} by the scheduler"
        needed = list(self._sweep_space.metrics) + [c.metric for c in self._sweep_space.constraints]
        for metric in needed:
            value = result.get(metric)
            if value is None:
                return TrialState.FAIL, None, f"final result has no {metric}"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return TrialState.FAIL, None, f"final result has {metric}={value!r}"
        return TrialState.COMPLETE, [float(result[m]) for m in self._sweep_space.metrics], ""

    def _retell(self, trial_id: str, frozen: Any, state: TrialState, values: list[float] | None, result: Any) -> None:
        """A trial Optuna already closed ends again (told before a driver kill, or an errored trial resumed)."""
        self._completed_trials.add(trial_id)
        if state != TrialState.COMPLETE or frozen.state == TrialState.COMPLETE:
            return
        constraints = {c.text: c.violation(float(result[c.metric])) for c in self._sweep_space.constraints}
        user_attrs = {**frozen.user_attrs, METRICS_ATTR: _known_metrics(result, self._sweep_space)}
        user_attrs.pop(FAIL_ATTR, None)
        self._ot_study.add_trial(
            optuna.trial.create_trial(
                params=frozen.params, distributions=frozen.distributions, values=values,
                user_attrs=user_attrs, constraints=constraints or None, state=TrialState.COMPLETE,
            )
        )  # fmt: skip
        logger.info("Optuna: Ray trial %s completed after a failed attempt; added as a new COMPLETE trial", trial_id)

    # ------------------------------------------------------------------ checkpointing
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_ot_study", None)
        state.pop("_storage", None)
        trials = state.pop("_ot_trials", {})
        state["_trial_numbers"] = {rid: t._trial_id for rid, t in trials.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        numbers = state.pop("_trial_numbers", {})
        self.__dict__.update(state)
        self._storage = journal_storage(self._journal)
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage, sampler=self._sampler)
        self._ot_trials = {rid: optuna.Trial(self._ot_study, tid) for rid, tid in numbers.items()}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__getstate__(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__setstate__(pickle.load(handle))
        self.fail_orphans()

    def fail_orphans(self) -> int:
        """Optuna trials still RUNNING that no Ray trial owns (asked just before a driver died): FAIL them."""
        owned = {t._trial_id for t in self._ot_trials.values()}
        count = 0
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen._trial_id not in owned:
                self._storage.set_trial_user_attr(frozen._trial_id, FAIL_ATTR, "orphaned by a driver restart")
                self._ot_study.tell(frozen.number, None, state=TrialState.FAIL)
                count += 1
        if count:
            logger.info("Optuna: failed %d trial(s) asked before the driver stopped but never run", count)
        return count


def _known_metrics(result: Mapping[str, Any], space: SweepSpace) -> dict[str, float | None]:
    keys = list(space.metrics) + [c.metric for c in space.constraints] + ["clean_acc", "asr", "clean_acc_drop"]
    out = {}
    for k in dict.fromkeys(keys):
        v = result.get(k)
        out[k] = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
    return out
