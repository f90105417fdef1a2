"""The sweep's searcher: a Ray Tune ``Searcher`` on Optuna's public ask/tell API, its study in a journal file.

Ray asks (:meth:`SweepSearcher.suggest`) and reports endings (:meth:`SweepSearcher.on_trial_complete`); the
Optuna study in the journal file (NFS-friendly, readable by ``optuna.load_study`` and optuna-dashboard) is the
search state. The rules of an ending are in :mod:`.outcomes`. What the searcher adds:

- the points of ``search.points_to_evaluate`` are enqueued when the study is created, so they run first; each
  is tagged with user attr ``none_sweep.point`` and its trial's config with the key ``_point``;
- the space is define-by-run: its params are suggested in order, skipping those whose ``when`` does not hold
  over the base config and the values sampled so far;
- every suggestion is a function of (seed, study history): a sampler keeps its random state in memory, so each
  ask builds a fresh one seeded from the base seed and the study's size. A searcher restored from its checkpoint
  after a driver restart therefore continues the same study as an uninterrupted run would;
- the checkpoint holds only the journal path, the study name, the seed and the Ray trial id → Optuna trial
  number map; on restore, RUNNING trials no Ray trial owns (asked just before the driver died) are told FAIL.

Optuna's public API writes user attrs and constraints only through the ``Trial`` that ``ask`` returned in this
process. A trial asked by an earlier driver can only be told its state: its reason is kept as the study's
user attr ``fail_reason:<number>`` (:func:`fail_reason` reads both places), and when it completes after the
restart it is told FAIL and re-added, complete with its metrics and constraints, as a new trial
(``add_trial``). The same re-adding records a trial that completes after Optuna already closed it (told before a
driver kill, or an errored trial that Ray resumed).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from ..config import flatten, to_dict
from ..tracking.layout import POINT_KEY
from .outcomes import FAIL_ATTR, METRICS_ATTR, POINT_ATTR, RAY_TRIAL_ATTR, Outcome, judge
from .space import SweepSpace

__all__ = ["FAIL_ATTR", "METRICS_ATTR", "POINT_ATTR", "POINT_KEY", "RAY_TRIAL_ATTR", "SweepSearcher",
           "fail_reason", "fail_unfinished", "journal_storage", "make_sampler", "open_study"]  # fmt: skip

logger = logging.getLogger(__name__)

DIRECTIONS = {"min": StudyDirection.MINIMIZE, "max": StudyDirection.MAXIMIZE}
ORPHANED = "orphaned by a driver restart: asked but never recorded by Ray"


# ---------------------------------------------------------------------- the study
def journal_storage(path: str | Path) -> JournalStorage:
    """Optuna's journal file storage at ``path`` (its folder created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_study(journal: str | Path, name: str) -> optuna.Study:
    """The sweep's Optuna study, read back from its journal (for the runner, ``report`` and tests)."""
    return optuna.load_study(study_name=name, storage=journal_storage(journal))


def make_sampler(space: SweepSpace, seed: int | None, n_trials: int = 0) -> optuna.samplers.BaseSampler:
    """The space's sampler for the ask after ``n_trials`` trials, seeded from (``seed``, ``n_trials``).

    The grid sampler keeps the base seed: it numbers the grid after shuffling it with the seed, and the
    numbers of the visited points are in the study.
    """
    s = space.search
    if s.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: p.grid() for p in space.params}, seed=seed)
    ask_seed = _ask_seed(seed, n_trials)
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=ask_seed, n_startup_trials=s.n_startup_trials)
    if s.sampler == "nsga2":
        size = s.population_size or max(2, min(50, space.num_samples // 2))
        return optuna.samplers.NSGAIISampler(seed=ask_seed, population_size=size)
    return optuna.samplers.RandomSampler(seed=ask_seed)


def _ask_seed(seed: int | None, n_trials: int) -> int | None:
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, n_trials]).generate_state(1)[0])


def fail_reason(study: optuna.Study, trial: FrozenTrial) -> str | None:
    """Why ``trial`` was told FAIL or PRUNED: its own user attr, or the study's for a trial told without a handle."""
    reason = trial.user_attrs.get(FAIL_ATTR)
    return reason if reason is not None else study.user_attrs.get(_reason_key(trial.number))


def fail_unfinished(study: optuna.Study, reason: str, keep: Collection[int] = ()) -> list[int]:
    """Tell FAIL to every RUNNING trial (but those numbered in ``keep``); the numbers failed.

    The reason goes to the study's user attrs (see :func:`fail_reason`): Optuna writes a trial's user attrs only
    through the ``Trial`` its ``ask`` returned, which the caller of this function does not hold.
    """
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.number not in keep:
            _tell_without_handle(study, t.number, TrialState.FAIL, reason)
            failed.append(t.number)
    return failed


def _tell_without_handle(study: optuna.Study, number: int, state: TrialState, reason: str) -> None:
    study.set_user_attr(_reason_key(number), reason)
    study.tell(number, None, state=state, skip_if_finished=True)


def _reason_key(number: int) -> str:
    return f"{FAIL_ATTR}:{number}"


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


# ---------------------------------------------------------------------- the searcher
class SweepSearcher(Searcher):
    """Ray Tune's searcher for a :class:`SweepSpace`, over the Optuna study ``study_name`` in ``journal``.

    The study is created (with the space's directions, and its points enqueued) or, when the journal already
    holds it, continued. The objectives are the space's: Ray's ``metric`` / ``mode`` are its lists.
    """

    def __init__(self, space: SweepSpace, journal: str | Path, study_name: str) -> None:
        super().__init__(metric=space.metrics, mode=space.modes)  # type: ignore[arg-type]  # lists: multi-objective
        self._space = space
        self._base_flat = flatten(to_dict(space.base_config()))
        self._journal = str(Path(journal).resolve())
        self._name = study_name
        self._seed = space.search.seed if space.search.seed is not None else secrets.randbelow(2**31)
        self._numbers: dict[str, int] = {}  # Ray trial id → Optuna trial number
        self._live: dict[str, optuna.Trial] = {}  # trials asked by this process, not told yet
        self._open: set[str] = set()  # Ray trials suggested or resumed, not ended yet
        self._max_concurrent = 0  # 0: no limit of ours
        self._storage: JournalStorage | None = None
        study = optuna.create_study(
            study_name=study_name,
            storage=self._open_storage(),
            directions=[DIRECTIONS[m] for m in space.modes],
            load_if_exists=True,
        )
        if not study.get_trials(deepcopy=False):
            for point in space.points:
                study.enqueue_trial(point.params, user_attrs={POINT_ATTR: point.name})

    # ------------------------------------------------------------------ what Ray calls
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Ray offers the Tuner's ``metric``, ``mode`` and ``param_space``; the space file already set all three.

        ``False`` tells Ray the space is set: it then refuses a ``param_space`` with search domains, and merges
        plain values into each trial's config. A different metric or mode would optimise something else: refused.
        """
        if (metric and metric != self.metric) or (mode and mode != self.mode):
            raise ValueError(f"the sweep's objectives are {self.metric} ({self.mode}); Ray was given {metric} ({mode})")
        return False

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Ray's ``max_concurrent_trials`` (through its ``ConcurrencyLimiter``): the searcher keeps the limit itself.

        ``True`` makes the limiter pass every call through. Its own bookkeeping would drop the ending of a trial
        it no longer counts as live (an errored trial Ray resumes, a trial replayed after a driver restart), and
        those endings are what :meth:`on_trial_complete` re-tells.
        """
        self._max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Ask the study for a trial (an enqueued point first) and sample the space for it; None at the limit."""
        if self._max_concurrent and len(self._open) >= self._max_concurrent:
            return None
        trial = self._study().ask()
        trial.set_user_attr(RAY_TRIAL_ATTR, trial_id)
        self._numbers[trial_id] = trial.number
        self._live[trial_id] = trial
        self._open.add(trial_id)
        try:
            config = self._sample(trial)
        except Exception as exc:  # a bad point or space: the trial must not stay RUNNING
            self._open.discard(trial_id)
            self._tell(self._study(), self._live.pop(trial_id), Outcome(TrialState.FAIL, reason=f"sampling: {exc}"),
                       trial_id)  # fmt: skip
            raise
        point = trial.user_attrs.get(POINT_ATTR)
        if point:
            config[POINT_KEY] = point
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """A trial reports: one Ray resumed after Optuna closed it (an errored one) counts as running again."""
        if trial_id in self._numbers:
            self._open.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell Optuna how the trial ended (see :func:`.outcomes.judge`); never lose a trial."""
        self._open.discard(trial_id)
        number = self._numbers.get(trial_id)
        if number is None:
            logger.warning("Optuna has no trial for Ray trial %s; its outcome is not recorded", trial_id)
            return
        outcome = judge(result, error, self._space)
        study = self._study()
        live = self._live.pop(trial_id, None)
        if live is not None and not _trial(study, number).state.is_finished():
            self._tell(study, live, outcome, trial_id)
        else:
            self._tell_again(study, trial_id, _trial(study, number), outcome)

    def save(self, checkpoint_path: str) -> None:
        """The searcher's state, small: the study itself is in the journal."""
        state = {"journal": self._journal, "study_name": self._name, "seed": self._seed,
                 "trials": self._numbers}  # fmt: skip
        Path(checkpoint_path).write_text(json.dumps(state, indent=1), encoding="utf-8")

    def restore(self, checkpoint_path: str) -> None:
        """Continue the study from a checkpoint; FAIL the trials asked after it (no Ray trial owns them)."""
        state = json.loads(Path(checkpoint_path).read_text(encoding="utf-8"))
        self._journal, self._name, self._seed = state["journal"], state["study_name"], state["seed"]
        self._numbers = {str(k): int(v) for k, v in state["trials"].items()}
        self._live, self._storage = {}, None
        study = self._study()
        failed = fail_unfinished(study, ORPHANED, keep=set(self._numbers.values()))
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        self._open = {rid for rid, number in self._numbers.items() if number in running}
        if failed:
            logger.info("Optuna: failed %d trial(s) asked before the driver stopped but never run", len(failed))

    def __getstate__(self) -> dict[str, Any]:
        """What Ray pickles with the experiment: plain data; the storage and the live trials are reopened."""
        return {**self.__dict__, "_storage": None, "_live": {}}

    # ------------------------------------------------------------------ asking
    def _open_storage(self) -> JournalStorage:
        if self._storage is None:
            self._storage = journal_storage(self._journal)
        return self._storage

    def _study(self) -> optuna.Study:
        """The study with the sampler for its next ask: seeded from the base seed and the study's size."""
        storage = self._open_storage()
        counter = optuna.Study(self._name, storage, sampler=optuna.samplers.RandomSampler())
        n_trials = len(counter.get_trials(deepcopy=False))
        return optuna.Study(self._name, storage, sampler=make_sampler(self._space, self._seed, n_trials))

    def _sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run: each param in order, when its condition holds over the base and the values so far."""
        current = dict(self._base_flat)
        config: dict[str, Any] = {}
        for p in self._space.params:
            if p.active(current):
                current[p.key] = config[p.key] = p.suggest(trial)
        return config

    # ------------------------------------------------------------------ telling
    def _tell(self, study: optuna.Study, trial: optuna.Trial, outcome: Outcome, trial_id: str) -> None:
        """Record ``outcome`` on a trial this process asked: user attrs, constraints, then its state."""
        if outcome.metrics:
            trial.set_user_attr(METRICS_ATTR, outcome.metrics)
        for key, violation in outcome.constraints.items():
            trial.set_constraint(key, violation)
        if outcome.reason:
            trial.set_user_attr(FAIL_ATTR, outcome.reason)
            log = logger.info if outcome.state == TrialState.PRUNED else logger.warning
            log("Optuna: Ray trial %s told %s: %s", trial_id, outcome.state.name, outcome.reason)
        try:
            study.tell(trial.number, outcome.values, state=outcome.state)
        except Exception as exc:
            if _trial(study, trial.number).state == outcome.state:
                return  # stored: a sampler's after-trial hook raised (GridSampler calls stop() when exhausted)
            logger.warning("Optuna tell(%s) for Ray trial %s failed (%s); telling FAIL", outcome.state.name,
                           trial_id, exc)  # fmt: skip
            trial.set_user_attr(FAIL_ATTR, f"tell failed: {exc}")
            study.tell(trial.number, None, state=TrialState.FAIL, skip_if_finished=True)

    def _tell_again(self, study: optuna.Study, trial_id: str, frozen: FrozenTrial, outcome: Outcome) -> None:
        """A trial this process holds no handle for: asked by an earlier driver, or already closed by Optuna."""
        completed_before = any(
            t.user_attrs.get(RAY_TRIAL_ATTR) == trial_id
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        )
        if completed_before:
            return  # its final result was recorded: a replay after a restart
        if outcome.state != TrialState.COMPLETE:
            if not frozen.state.is_finished():
                _tell_without_handle(study, frozen.number, outcome.state, outcome.reason)
            return
        if not frozen.state.is_finished():
            reason = f"completed after a driver restart: recorded as trial {len(study.get_trials(deepcopy=False))}"
            _tell_without_handle(study, frozen.number, TrialState.FAIL, reason)
        user_attrs = {k: v for k, v in frozen.user_attrs.items() if k != FAIL_ATTR}
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE,
                values=outcome.values,
                params=frozen.params,
                distributions=frozen.distributions,
                user_attrs={**user_attrs, METRICS_ATTR: outcome.metrics},
                constraints=outcome.constraints or None,
            )
        )
        logger.info("Optuna: Ray trial %s completed after Optuna closed its trial; added as a new COMPLETE trial",
                    trial_id)  # fmt: skip
