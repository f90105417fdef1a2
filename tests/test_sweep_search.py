"""The sweep's searcher, driven the way Ray drives it (suggest → on_trial_complete, save/restore), on a real journal.

No Ray cluster: ``Searcher`` methods are plain calls. Each outcome rule, the orphan rule, re-telling, and the
promise that a searcher restored from its checkpoint continues the study exactly as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import ConcurrencyLimiter

from none_sweep.sweep.pareto import pareto_front
from none_sweep.sweep.search import (
    FAIL_ATTR,
    METRICS_ATTR,
    POINT_ATTR,
    POINT_KEY,
    RAY_TRIAL_ATTR,
    SweepSearcher,
    fail_reason,
    fail_unfinished,
    open_study,
)
from none_sweep.sweep.space import SweepSpace, load_space

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"


def final(asr: float, clean_acc: float, drop: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"asr": asr, "clean_acc": clean_acc, "clean_acc_drop": drop, "final": 1, "epoch": 10, **extra}


def fake_result(config: dict[str, Any]) -> dict[str, Any]:
    """A deterministic final result of a config, so the sampler's history depends on what it suggested."""
    return final(config["defense.lamda_l"], 1.0 - config["defense.max_reset_fraction"], config["defense.lamda_h"] / 20)


@pytest.fixture(scope="module")
def space() -> SweepSpace:
    return load_space(DIGITS)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "optuna.journal"


@pytest.fixture
def searcher(space: SweepSpace, journal: Path) -> SweepSearcher:
    return SweepSearcher(space, journal, study_name="t")


def by_ray(journal: Path) -> dict[str, list[FrozenTrial]]:
    out: dict[str, list[FrozenTrial]] = {}
    for t in open_study(journal, "t").trials:
        out.setdefault(t.user_attrs.get(RAY_TRIAL_ATTR, ""), []).append(t)
    return out


def only(trials: list[FrozenTrial]) -> FrozenTrial:
    assert len(trials) == 1, trials
    return trials[0]


# ---------------------------------------------------------------------- asking
def test_points_first_then_conditional_define_by_run(searcher: SweepSearcher, space: SweepSpace, journal: Path) -> None:
    first = searcher.suggest("r0")
    assert first is not None and first[POINT_KEY] == "paper_defaults" and first["defense.lamda_l"] == 0.1
    seen_without_removal = seen_with_removal = False
    for i in range(1, 12):
        cfg = searcher.suggest(f"r{i}")
        assert cfg is not None and 0.05 <= cfg["defense.lamda_l"] <= 0.3 and POINT_KEY not in cfg
        if cfg["defense.filter_samples"]:
            assert cfg["defense.removal"] in ("cumulative", "per_round")
            seen_with_removal = True
        else:
            assert "defense.removal" not in cfg  # conditional: only sampled when filter_samples is true
            seen_without_removal = True
        space.trial_config(cfg)  # every suggestion is a valid experiment config
    assert seen_with_removal and seen_without_removal
    trials = by_ray(journal)
    assert only(trials["r0"]).user_attrs[POINT_ATTR] == "paper_defaults"
    assert POINT_ATTR not in only(trials["r3"]).user_attrs
    assert all(only(trials[f"r{i}"]).state == TrialState.RUNNING for i in range(12))


def test_plain_load_study_shows_directions_distributions_and_states(searcher: SweepSearcher, journal: Path) -> None:
    searcher.suggest("a")
    searcher.on_trial_complete("a", final(0.1, 0.95))
    searcher.suggest("b")
    study = optuna.load_study(study_name="t", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert study.directions == [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    dist = study.trials[0].distributions
    assert dist["defense.max_reset_fraction"] == FloatDistribution(0.02, 0.3, step=0.01)
    assert dist["defense.finetune_lr"] == FloatDistribution(0.001, 0.05, log=True)
    assert dist["defense.rounds"] == IntDistribution(1, 2)
    assert dist["defense.reset_mode"] == CategoricalDistribution(["zero", "reinit"])


# ---------------------------------------------------------------------- telling
def test_each_ending_is_told_by_the_outcome_rules(searcher: SweepSearcher, space: SweepSpace, journal: Path) -> None:
    for i in range(7):
        searcher.suggest(f"r{i}")
    searcher.on_trial_complete("r0", final(0.02, 0.97, 0.01))  # complete, feasible
    searcher.on_trial_complete("r1", final(0.50, 0.99, 0.00))  # complete, feasible
    searcher.on_trial_complete("r2", final(0.01, 0.80, 0.19))  # complete, infeasible (drop > 0.05)
    searcher.on_trial_complete("r3", final(0.01, 0.99), error=True)  # errored with a last result: FAIL
    searcher.on_trial_complete("r4", final(math.nan, 0.98))  # NaN objective: FAIL
    searcher.on_trial_complete("r5", {"clean_acc": 0.9, "final": 1, "clean_acc_drop": 0.0})  # no asr: FAIL
    early = {"asr": 0.9, "clean_acc": 0.9, "clean_acc_drop": 0.0, "final": 0, "epoch": 3}
    searcher.on_trial_complete("r6", early)  # stopped by the scheduler: PRUNED
    trials = {rid: only(ts) for rid, ts in by_ray(journal).items()}
    assert {rid: t.state.name for rid, t in trials.items()} == {
        "r0": "COMPLETE", "r1": "COMPLETE", "r2": "COMPLETE", "r3": "FAIL", "r4": "FAIL", "r5": "FAIL", "r6": "PRUNED",
    }  # fmt: skip
    assert "errored" in trials["r3"].user_attrs[FAIL_ATTR]
    assert "asr=nan" in trials["r4"].user_attrs[FAIL_ATTR]
    assert "no asr" in trials["r5"].user_attrs[FAIL_ATTR]
    assert "epoch 3" in trials["r6"].user_attrs[FAIL_ATTR]
    assert trials["r2"].constraints == {"clean_acc_drop <= 0.05": pytest.approx(0.14)}
    assert trials["r4"].user_attrs[METRICS_ATTR] == {"asr": None, "clean_acc": 0.98, "clean_acc_drop": 0.0}
    # Optuna's front is the feasible non-dominated set (r2 is out though its asr is lowest), and so is ours
    study = open_study(journal, "t")
    assert {t.user_attrs[RAY_TRIAL_ATTR] for t in study.best_trials} == {"r0", "r1"}
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    ours = pareto_front([t.user_attrs[METRICS_ATTR] for t in complete], space.objectives, space.constraints)
    assert [complete[i].user_attrs[RAY_TRIAL_ATTR] for i in ours] == ["r0", "r1"]


def test_a_trial_ending_again_is_re_added_once_as_complete(searcher: SweepSearcher, journal: Path) -> None:
    searcher.suggest("a")
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("a", final(0.1, 0.95, 0.0))  # resume_errored re-ran it successfully
    searcher.on_trial_complete("a", final(0.1, 0.95, 0.0))  # its final result replayed after a restart: no copy
    fail, complete = open_study(journal, "t").trials
    assert fail.state == TrialState.FAIL and complete.state == TrialState.COMPLETE
    assert complete.params == fail.params and complete.distributions == fail.distributions
    assert complete.user_attrs[RAY_TRIAL_ATTR] == "a" and FAIL_ATTR not in complete.user_attrs
    assert complete.constraints == {"clean_acc_drop <= 0.05": pytest.approx(-0.05)}
    assert [t.user_attrs[RAY_TRIAL_ATTR] for t in open_study(journal, "t").best_trials] == ["a"]


# ---------------------------------------------------------------------- checkpoints
def test_restore_keeps_the_map_and_fails_orphans(searcher: SweepSearcher, tmp_path: Path, journal: Path) -> None:
    searcher.suggest("a")
    searcher.suggest("b")
    ckpt = tmp_path / "searcher.ckpt"
    searcher.save(str(ckpt))
    searcher.suggest("c")  # asked after the last checkpoint: Ray never recorded it (driver killed)
    searcher.on_trial_complete("a", final(0.1, 0.95))  # told before the kill
    restored = pickle.loads(pickle.dumps(searcher))  # what Ray's tuner.pkl does, then restore_from_dir
    restored.restore(str(ckpt))
    c = only(by_ray(journal)["c"])
    assert c.state == TrialState.FAIL and "orphaned" in (fail_reason(open_study(journal, "t"), c) or "")
    assert only(by_ray(journal)["b"]).state == TrialState.RUNNING  # owned: Ray resumes it
    restored.on_trial_complete("a", final(0.1, 0.95))  # re-completion after resume: no second COMPLETE
    restored.on_trial_complete("b", final(0.2, 0.96, 0.09))  # asked by the dead driver, completes now
    trials = by_ray(journal)
    assert [t.state.name for t in trials["a"]] == ["COMPLETE"]
    old_b, new_b = trials["b"]
    assert old_b.state == TrialState.FAIL and new_b.state == TrialState.COMPLETE and new_b.params == old_b.params
    assert new_b.constraints == {"clean_acc_drop <= 0.05": pytest.approx(0.04)}
    assert new_b.user_attrs[METRICS_ATTR]["clean_acc_drop"] == 0.09
    assert f"trial {new_b.number}" in (fail_reason(open_study(journal, "t"), old_b) or "")


def test_fail_unfinished_fails_running_trials_with_a_reason(space: SweepSpace, journal: Path) -> None:
    searcher = SweepSearcher(space, journal, study_name="t")
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("b", final(0.1, 0.95))
    study = open_study(journal, "t")
    assert fail_unfinished(study, "never completed: the sweep ended") == [0]
    a = only(by_ray(journal)["a"])
    assert a.state == TrialState.FAIL and fail_reason(open_study(journal, "t"), a) == "never completed: the sweep ended"
    assert only(by_ray(journal)["b"]).state == TrialState.COMPLETE


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_a_restored_searcher_continues_the_same_study(sampler: str, space: SweepSpace, tmp_path: Path) -> None:
    space = dataclasses.replace(space, search=dataclasses.replace(space.search, sampler=sampler, population_size=2))

    def cycles(s: SweepSearcher, ids: range) -> list[dict[str, Any]]:
        out = []
        for i in ids:
            config = s.suggest(f"t{i}")
            assert config is not None
            s.on_trial_complete(f"t{i}", fake_result(config))
            out.append(config)
        return out

    uninterrupted = cycles(SweepSearcher(space, tmp_path / "a.journal", "t"), range(8))
    first = SweepSearcher(space, tmp_path / "b.journal", "t")
    before = cycles(first, range(4))
    first.save_to_dir(str(tmp_path))  # what Ray's experiment checkpoint calls
    del first  # the driver dies: nothing of the sampler's memory survives
    restored = pickle.loads(pickle.dumps(SweepSearcher(space, tmp_path / "b.journal", "t")))
    restored.restore_from_dir(str(tmp_path))
    assert before + cycles(restored, range(4, 8)) == uninterrupted
    assert len({tuple(sorted(c.items())) for c in uninterrupted}) > 4  # a real search, not one repeated point


def test_a_grid_is_visited_once_across_a_restore(space: SweepSpace, tmp_path: Path) -> None:
    """The grid sampler numbers its points after shuffling with the seed: every ask must shuffle alike."""
    grid = [p for p in space.params if p.key in ("defense.rounds", "defense.reset_mode", "defense.pretrain_epochs")]
    space = dataclasses.replace(space, params=grid, points=[], search=dataclasses.replace(space.search, sampler="grid"))
    searcher = SweepSearcher(space, tmp_path / "j", "t")
    seen = []
    for i in range(8):
        if i == 4:
            searcher.save(str(tmp_path / "ckpt"))
            searcher = SweepSearcher(space, tmp_path / "j", "t")
            searcher.restore(str(tmp_path / "ckpt"))
        config = searcher.suggest(f"t{i}")
        assert config is not None
        seen.append(tuple(sorted(config.items())))
        searcher.on_trial_complete(f"t{i}", final(0.1, 0.9))  # the last one exhausts the grid: still told
    assert len(set(seen)) == 8
    assert [t.state for t in open_study(tmp_path / "j", "t").trials] == [TrialState.COMPLETE] * 8


# ---------------------------------------------------------------------- Ray's side
def test_it_keeps_ray_s_concurrency_limit_and_hears_every_ending(
    searcher: SweepSearcher, tmp_path: Path, journal: Path
) -> None:
    """``TuneConfig(max_concurrent_trials=n)`` wraps a ``Searcher`` in a ``ConcurrencyLimiter``; the searcher takes
    the limit, so the limiter passes on the ending of a trial it would no longer count (an errored one resumed)."""
    limited = ConcurrencyLimiter(searcher, max_concurrent=2)
    assert limited.metric == ["asr", "clean_acc"] and limited.mode == ["min", "max"]
    assert limited.suggest("a") is not None and limited.suggest("b") is not None and limited.suggest("c") is None
    limited.on_trial_complete("a", None, error=True)
    assert limited.suggest("c") is not None
    limited.on_trial_result("a", final(0.1, 0.9))  # Ray resumed the errored trial: it runs again
    assert limited.suggest("d") is None
    limited.on_trial_complete("a", final(0.1, 0.9))
    assert [t.state.name for t in by_ray(journal)["a"]] == ["FAIL", "COMPLETE"]
    searcher.save(str(tmp_path / "ckpt"))
    restored = ConcurrencyLimiter(SweepSearcher(load_space(DIGITS), journal, "t"), max_concurrent=2)
    restored.restore(str(tmp_path / "ckpt"))
    assert restored.suggest("d") is None  # b and c still run: Ray resumes them


def test_search_properties_from_ray_keep_the_sweeps_objectives(searcher: SweepSearcher) -> None:
    assert searcher.set_search_properties(None, None, {"plain": 1}) is False  # the space is already set
    assert searcher.set_search_properties(["asr", "clean_acc"], ["min", "max"], {}) is False
    with pytest.raises(ValueError, match="objectives"):
        searcher.set_search_properties("loss", "min", {})


def test_asha_takes_one_scalar_metric_and_every_report_carries_the_searched_ones() -> None:
    from ray.tune.schedulers import ASHAScheduler

    from none_sweep.sweep.trainable import required_metrics
    from none_sweep.sweep.tuner import scheduler

    asha = load_space(ROOT / "search_spaces" / "cifar10_resnet18_badnets.yaml")
    assert isinstance(scheduler(asha), ASHAScheduler) and scheduler(asha).metric == "asr"
    assert required_metrics(asha) == ["asr", "clean_acc", "clean_acc_drop"]
    assert scheduler(load_space(DIGITS)) is None
    natural = load_space(ROOT / "search_spaces" / "fmnist_natural.yaml")
    assert required_metrics(natural) == ["reasr", "clean_acc", "clean_acc_drop"]
