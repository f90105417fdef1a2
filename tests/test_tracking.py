"""MLflow layout and the driver-side callback on a real SQLite store; outages never stop a sweep."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from none_sweep.config import to_dict
from none_sweep.sweep import load_space
from none_sweep.sweep.preflight import SWEEP_ENV, env
from none_sweep.tracking import MlflowSweepCallback, SweepTracker
from none_sweep.tracking.layout import (
    CONFIG_ARTIFACT,
    ERROR_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    PARENT_TAG,
    POINT_TAG,
    ROLE_TAG,
    ROLE_TRIAL,
    SPACE_ARTIFACT,
    SWEEP_TAG,
    TRIAL_ID_TAG,
    metrics_of,
)

DIGITS = Path(__file__).parents[1] / "search_spaces" / "digits_tiny.yaml"


@dataclass
class StubTrial:
    """The few attributes of ``ray.tune.experiment.Trial`` the callback reads."""

    trial_id: str
    config: dict[str, Any]
    status: str = "RUNNING"
    last_result: dict[str, Any] = field(default_factory=dict)
    checkpoint: Any = None
    local_path: str | None = None
    storage: Any = None
    pickled_error_file: str | None = None
    error_file: str | None = None

    def __str__(self) -> str:
        return f"train_trial_{self.trial_id}"

    def get_pickled_error(self) -> None:
        return None

    def get_error(self) -> str:
        return "Failure # 1\nnone_sweep.errors.TrainingDiverged: loss became nan at epoch 3"


def epoch(e: int, **extra: Any) -> dict[str, Any]:
    return {"asr": 1.0 - 0.1 * e, "clean_acc": 0.9, "loss": 1.0 / e, "epoch": e, "timestamp": time.time(),
            "training_iteration": e, "phase": "pretrain", "node_id": "n1", "final": 0, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def space():
    return load_space(DIGITS)


@dataclass
class Resolver:
    """What the runner hands the callback: sampled values → the resolved config (plain data)."""

    space: Any

    def __call__(self, sampled: dict[str, Any]) -> dict[str, Any]:
        return to_dict(self.space.trial_config(sampled))


def start(tracking_uri: str, name: str, space: Any) -> SweepTracker:
    tracker = SweepTracker(tracking_uri, name)
    tracker.start_parent({}, {SPACE_ARTIFACT: space.text}, resume=False)
    return tracker


def test_layout_parent_children_by_tag_and_resume_without_duplicates(tracking_uri: str, space) -> None:
    tracker = SweepTracker(tracking_uri, "s1")
    parent = tracker.start_parent({"sweep.num_samples": 6}, {SPACE_ARTIFACT: space.text}, resume=False)
    point = {POINT_TAG: "paper_defaults"}
    resolved = to_dict(space.base_config())
    child = tracker.create_child("t1", "train_trial_t1", resolved, sampled={}, tags=point)
    assert tracker.log_results(child, [epoch(1), epoch(2), epoch(3, final=1)]) > 0
    tracker.finish_child(child, "FINISHED")

    again = SweepTracker(tracking_uri, "s1")  # a resumed driver: nothing in memory
    assert again.start_parent({}, {}, resume=True) == parent
    children = again.children()
    assert list(children) == ["t1"] and children["t1"].info.run_id == child
    run = again.client.get_run(child)
    tags = run.data.tags
    assert tags[ROLE_TAG] == ROLE_TRIAL and tags[SWEEP_TAG] == "s1" and tags[TRIAL_ID_TAG] == "t1"
    assert tags[PARENT_TAG] == parent
    assert run.data.params["defense.lamda_l"] == "0.1" and run.data.params["data.name"] == "digits"
    assert [m.step for m in again.client.get_metric_history(child, "asr")] == [1, 2, 3]
    assert run.data.metrics["asr"] == pytest.approx(0.7)  # latest = the final epoch
    assert "phase" not in run.data.metrics and "epoch" not in run.data.metrics
    assert {a.path for a in again.client.list_artifacts(child)} == {CONFIG_ARTIFACT}
    experiment = again.client.get_experiment(again.experiment_id)
    assert experiment.name == "s1" and "mlartifacts" in experiment.artifact_location  # next to the DB, not in cwd
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND  # the UI opens the runs table


def test_metrics_of_keeps_finite_numbers_only() -> None:
    out = metrics_of({"asr": 0.1, "loss": float("nan"), "phase": "finetune", "epoch": 3, "config/x": 1.0,
                      "pretrain_cached": True, "node_id": "abc", "time_total_s": 3.0, "final": 1})  # fmt: skip
    assert out == {"asr": 0.1, "final": 1.0}


def test_callback_records_trials_and_failures(tracking_uri: str, space) -> None:
    start(tracking_uri, "s2", space)
    cb = MlflowSweepCallback(tracking_uri, "s2", Resolver(space))
    trials = [StubTrial("ok", {"defense.lamda_l": 0.2}), StubTrial("bad", {"defense.lamda_l": 0.25, "_point": "p"})]
    cb.setup()
    cb.on_step_begin(0, trials)
    for t in trials:
        cb.on_trial_start(0, trials, t)
    for e in (1, 2):
        for t in trials:
            t.last_result = epoch(e)
            cb.on_trial_result(0, trials, t, t.last_result)
    trials[0].last_result = epoch(3, final=1)
    cb.on_trial_result(0, trials, trials[0], trials[0].last_result)
    trials[0].status = "TERMINATED"
    cb.on_trial_complete(0, trials, trials[0])
    trials[1].status = "ERROR"
    cb.on_trial_error(0, trials, trials[1])
    cb.on_experiment_end(trials)

    runs = SweepTracker(tracking_uri, "s2").children()
    assert set(runs) == {"ok", "bad"} and not cb.missed
    assert runs["ok"].info.status == "FINISHED" and runs["ok"].data.params["defense.lamda_l"] == "0.2"
    assert runs["bad"].info.status == "FAILED"
    assert runs["bad"].data.tags[ERROR_TAG] == "none_sweep.errors.TrainingDiverged: loss became nan at epoch 3"
    assert runs["bad"].data.tags[POINT_TAG] == "p" and runs["bad"].info.run_name == "p (trial bad)"


def test_callback_survives_an_unreachable_server(space, free_port: int) -> None:
    cb = MlflowSweepCallback(f"http://127.0.0.1:{free_port}", "down", Resolver(space), retry_after_s=0.0)
    trial = StubTrial("t", {"defense.lamda_l": 0.2})
    with env(SWEEP_ENV):
        cb.setup()
        cb.on_step_begin(0, [trial])
        cb.on_trial_start(0, [trial], trial)
        cb.on_trial_result(0, [trial], trial, epoch(1))
        trial.status, trial.last_result = "TERMINATED", epoch(2, final=1)
        cb.on_trial_complete(0, [trial], trial)
        cb.on_experiment_end([trial])
    assert cb.missed == {"t"} and cb.warnings >= 3


def test_epochs_logged_during_an_outage_are_sent_when_it_ends(tracking_uri: str, space, monkeypatch) -> None:
    start(tracking_uri, "s3", space)
    cb = MlflowSweepCallback(tracking_uri, "s3", Resolver(space), retry_after_s=0.0, flush_after_s=0.0)
    trial = StubTrial("t", {"defense.lamda_l": 0.2})
    cb.setup()
    cb.on_trial_start(0, [trial], trial)
    real = cb.tracker.client.log_batch
    down = {"on": True}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if down["on"]:
            raise ConnectionError("tracking server went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(cb.tracker.client, "log_batch", flaky)
    for e in (1, 2, 3):
        cb.on_trial_result(0, [trial], trial, epoch(e))  # each write fails; rows are kept
    assert "t" in cb.missed and cb.unsent("t") == 3
    down["on"] = False
    cb.on_step_begin(1, [trial])  # first step: reconcile
    cb.on_step_begin(2, [trial])  # the outage is over: pending rows go out
    trial.status, trial.last_result = "TERMINATED", epoch(4, final=1)
    cb.on_trial_result(0, [trial], trial, trial.last_result)
    cb.on_trial_complete(0, [trial], trial)
    cb.on_experiment_end([trial])
    run = SweepTracker(tracking_uri, "s3").children()["t"]
    steps = [m.step for m in cb.tracker.client.get_metric_history(run.info.run_id, "asr")]
    assert sorted(steps) == [1, 2, 3, 4] and run.info.status == "FINISHED"
    assert not cb.missed


def test_short_epochs_are_sent_together_and_none_is_lost(tracking_uri: str, space, monkeypatch) -> None:
    """One write per epoch would load the run from the store each time: epochs wait up to ``flush_after_s``
    and go out together; a final result, a step after the wait and the trial's end each send what waits."""
    start(tracking_uri, "s5", space)
    cb = MlflowSweepCallback(tracking_uri, "s5", Resolver(space), flush_after_s=3600.0)
    trials = [StubTrial("a", {"defense.lamda_l": 0.2}), StubTrial("b", {"defense.lamda_l": 0.3})]
    cb.setup()
    cb.on_step_begin(0, trials)
    for t in trials:
        cb.on_trial_start(0, trials, t)
    writes: list[str] = []
    real = cb.tracker.client.log_batch
    monkeypatch.setattr(
        cb.tracker.client, "log_batch", lambda run_id, **kw: writes.append(run_id) or real(run_id, **kw)
    )
    for e in (1, 2, 3):
        for t in trials:
            cb.on_trial_result(0, trials, t, epoch(e))
    assert writes == [] and cb.unsent("a") == cb.unsent("b") == 3
    cb.on_trial_result(0, trials, trials[0], epoch(4, final=1))  # a's final result: a's four epochs, one write
    assert len(writes) == 1 and cb.unsent("a") == 0 and cb.unsent("b") == 3
    cb.flush_after_s = 0.0  # b's epochs have now waited long enough: the next step sends them
    cb.on_step_begin(1, trials)
    assert len(writes) == 2 and cb.unsent("b") == 0
    cb.on_trial_result(0, trials, trials[1], epoch(4))
    trials[1].status, trials[1].last_result = "ERROR", epoch(4)
    cb.on_trial_error(0, trials, trials[1])  # the trial's end sends what is left
    runs = SweepTracker(tracking_uri, "s5").children()
    for tid in ("a", "b"):
        steps = [m.step for m in cb.tracker.client.get_metric_history(runs[tid].info.run_id, "asr")]
        assert sorted(steps) == [1, 2, 3, 4], (tid, steps)


def test_a_restored_sweep_discards_runs_ray_has_no_record_of(tracking_uri: str, space) -> None:
    """MLflow is a projection of Ray's records: a run whose trial Ray never recorded (the driver died before
    Ray's snapshot) is not left behind as a FAILED run beside the trials that really ran."""
    tracker = start(tracking_uri, "s4", space)
    kept = tracker.create_child("kept", "train_trial_kept", None, sampled={"defense.lamda_l": 0.2})
    ghost = tracker.create_child("ghost", "train_trial_ghost", None, sampled={"defense.lamda_l": 0.3})
    cb = MlflowSweepCallback(tracking_uri, "s4", Resolver(space))
    trial = StubTrial("kept", {"defense.lamda_l": 0.2})
    cb.setup()
    cb.on_step_begin(0, [trial])  # after Tuner.restore: Ray knows only "kept"
    children = SweepTracker(tracking_uri, "s4").children()
    assert set(children) == {"kept"} and children["kept"].info.run_id == kept
    assert tracker.client.get_run(ghost).info.lifecycle_stage == "deleted"
