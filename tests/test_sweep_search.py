"""The strict Optuna searcher, driven the way Ray drives it (suggest → on_trial_complete), on a real journal study."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from none_sweep.sweep import load_space
from none_sweep.sweep.pareto import front_rows, non_dominated
from none_sweep.sweep.search import FAIL_ATTR, POINT_KEY, RAY_TRIAL_ATTR, SweepSearch, open_study

DIGITS = Path(__file__).parents[1] / "search_spaces" / "digits_tiny.yaml"


def final(asr: float, clean_acc: float, drop: float = 0.0, **extra) -> dict:
    return {"asr": asr, "clean_acc": clean_acc, "clean_acc_drop": drop, "final": 1, "epoch": 10, **extra}


@pytest.fixture
def searcher(tmp_path: Path) -> SweepSearch:
    return SweepSearch(load_space(DIGITS), tmp_path / "optuna.journal", study_name="t")


def test_points_first_then_conditional_define_by_run(searcher: SweepSearch) -> None:
    first = searcher.suggest("r0")
    assert first[POINT_KEY] == "paper_defaults" and first["defense.lamda_l"] == 0.1
    seen_without_removal = seen_with_removal = False
    for i in range(1, 12):
        cfg = searcher.suggest(f"r{i}")
        assert 0.05 <= cfg["defense.lamda_l"] <= 0.3 and POINT_KEY not in cfg
        if cfg["defense.filter_samples"]:
            assert cfg["defense.removal"] in ("cumulative", "per_round")
            seen_with_removal = True
        else:
            assert "defense.removal" not in cfg  # conditional: only sampled when filter_samples is true
            seen_without_removal = True
        load_space(DIGITS).trial_config(cfg)  # every suggestion is a valid experiment config
    assert seen_with_removal and seen_without_removal
    t = searcher._ot_trials["r3"]
    assert t.user_attrs[RAY_TRIAL_ATTR] == "r3"


def test_outcomes_are_never_silently_dropped(searcher: SweepSearch, tmp_path: Path) -> None:
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
    study = open_study(tmp_path / "optuna.journal", "t")
    by_ray = {t.user_attrs[RAY_TRIAL_ATTR]: t for t in study.trials}
    states = {rid: t.state for rid, t in by_ray.items()}
    assert states == {"r0": TrialState.COMPLETE, "r1": TrialState.COMPLETE, "r2": TrialState.COMPLETE,
                      "r3": TrialState.FAIL, "r4": TrialState.FAIL, "r5": TrialState.FAIL, "r6": TrialState.PRUNED}  # fmt: skip
    assert "errored" in by_ray["r3"].user_attrs[FAIL_ATTR]
    assert "asr=nan" in by_ray["r4"].user_attrs[FAIL_ATTR]
    assert "no asr" in by_ray["r5"].user_attrs[FAIL_ATTR]
    assert by_ray["r2"].constraints == {"clean_acc_drop <= 0.05": pytest.approx(0.14)}
    # the front is the feasible non-dominated set: r2 (infeasible) is out even though its asr is lowest
    assert {t.user_attrs[RAY_TRIAL_ATTR] for t in study.best_trials} == {"r0", "r1"}
    rows = front_rows(study, load_space(DIGITS))
    assert [r["ray_trial_id"] for r in rows] == ["r0", "r1"] and rows[0]["point"] == "paper_defaults"


def test_checkpoint_restore_keeps_mapping_and_fails_orphans(searcher: SweepSearch, tmp_path: Path) -> None:
    searcher.suggest("a")
    searcher.suggest("b")
    ckpt = tmp_path / "searcher.pkl"
    searcher.save(str(ckpt))
    searcher.suggest("c")  # asked after the last checkpoint: Ray never recorded it (driver killed)
    searcher.on_trial_complete("a", final(0.1, 0.95))  # told before the kill

    restored = pickle.loads(pickle.dumps(searcher))  # what Ray's tuner.pkl does
    restored.restore(str(ckpt))
    assert set(restored._ot_trials) == {"a", "b"}
    restored.on_trial_complete("a", final(0.1, 0.95))  # re-completion after resume: no second tell, no error
    restored.on_trial_complete("b", final(0.2, 0.96))
    study = open_study(tmp_path / "optuna.journal", "t")
    states = {t.user_attrs[RAY_TRIAL_ATTR]: t.state for t in study.trials}
    assert states == {"a": TrialState.COMPLETE, "b": TrialState.COMPLETE, "c": TrialState.FAIL}
    assert len(study.trials) == 3


def test_errored_trial_resumed_later_completes_as_a_new_optuna_trial(searcher: SweepSearch, tmp_path: Path) -> None:
    searcher.suggest("a")
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("a", final(0.1, 0.95, 0.0))  # resume_errored re-ran it successfully
    study = open_study(tmp_path / "optuna.journal", "t")
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "FAIL"]
    assert [t.user_attrs[RAY_TRIAL_ATTR] for t in study.best_trials] == ["a"]


def test_non_dominated_helper_matches_optuna() -> None:
    points = [(0.1, 0.9), (0.2, 0.95), (0.3, 0.9), (0.05, 0.8), (0.1, 0.9)]
    assert non_dominated(points, ["min", "max"]) == [0, 1, 3, 4]
    study = optuna.create_study(directions=["minimize", "maximize"])
    for p in points:
        study.add_trial(optuna.trial.create_trial(values=list(p)))
    assert sorted(t.number for t in study.best_trials) == [0, 1, 3, 4]


def test_asha_takes_one_scalar_metric_and_every_report_carries_the_searched_ones() -> None:
    from ray.tune.schedulers import ASHAScheduler

    from none_sweep.sweep.runner import _scheduler
    from none_sweep.sweep.trainable import required_metrics

    space = load_space(Path(__file__).parents[1] / "search_spaces" / "cifar10_resnet18_badnets.yaml")
    scheduler = _scheduler(space)
    assert isinstance(scheduler, ASHAScheduler) and scheduler.metric == "asr" and scheduler._mode == "min"
    assert required_metrics(space) == ["asr", "clean_acc", "clean_acc_drop"]
    assert _scheduler(load_space(DIGITS)) is None
    natural = load_space(Path(__file__).parents[1] / "search_spaces" / "fmnist_natural.yaml")
    assert required_metrics(natural) == ["reasr", "clean_acc", "clean_acc_drop"]
