"""Fault injection on the sweep driver: SIGKILL mid-sweep then ``--resume``; Ctrl+C (SIGINT) then resume.

Real processes: ``none-sweep sweep`` runs as a subprocess with its own local Ray (private ``RAY_TMPDIR``),
real Optuna journal, real MLflow SQLite store. The space evaluates a short point and a long point first,
two at a time, so at the moment of the fault one trial has finished and another is between its first
checkpoint and its end (the window is the long point's 16 fine-tuning epochs).

``tests/test_sweep_resume.py`` (the sweep author's) already kills the driver once a trial has finished and
checks that nothing finished is re-trained or duplicated. These add: a trial interrupted between checkpoints
(resumed from the checkpoint Ray's experiment snapshot recorded, else from scratch), Optuna continuity (every
trial the study knew keeps its state and values; no trial left RUNNING), MLflow runs left RUNNING by the kill
closed (reused, or discarded as orphans), and Ctrl+C sent to the whole process group, as a terminal does, with
the printed resume command run verbatim.
"""

from __future__ import annotations

import os
import shlex
import signal
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from support.faults import space_file, sweep_args
from support.processes import NONE_SWEEP, Proc, no_traceback, ray_sandbox, wait_for
from support.results import (
    checkpointed,
    children_by_trial,
    mlflow_runs,
    outcomes,
    ray_trials,
    snapshotted_checkpoints,
    trial_rows,
)

pytestmark = pytest.mark.slow

SHORT, LONG = 1, 16  # defense.reset_interval of the two points: 3 and 18 epochs in all


def two_speed_space(folder: Path, num_samples: int = 3) -> Path:
    return space_file(
        folder,
        base={"data": {"name": "digits", "train_subset": 1000, "test_subset": 120}},
        space={"defense.reset_interval": {"type": "choice", "values": [SHORT, LONG]},
               "defense.max_reset_fraction": {"type": "uniform", "low": 0.02, "high": 0.3}},
        search={"sampler": "random", "seed": 0, "points_to_evaluate": [
            {"name": "short", "params": {"defense.reset_interval": SHORT, "defense.max_reset_fraction": 0.1}},
            {"name": "long", "params": {"defense.reset_interval": LONG, "defense.max_reset_fraction": 0.1}},
        ]},
        num_samples=num_samples, max_concurrent=2, max_failures=1,
    )  # fmt: skip


def mid_sweep(storage: Path, name: str):
    """True once one trial has finished (its outcome recorded) and another is past a checkpoint, unfinished."""

    def check():
        done = {tid for tid, o in outcomes(storage, name).items() if o.get("final")}
        if not done:
            return None
        for tid in checkpointed(storage, name) - done:
            return done, tid, tid in snapshotted_checkpoints(storage, name)
        return None

    return check


def outcome_files(storage: Path, name: str, tid: str) -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of a trial's outcome record and saved model: they change only if it trains again."""
    folder = storage / name / "trial_outcomes" / tid
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.iterdir())}


def study_of(storage: Path, name: str):
    from none_sweep.sweep.search import open_study

    return open_study(storage / name / "optuna.journal", name)


def snapshot_study(storage: Path, name: str) -> dict[str, tuple[str, tuple[float, ...] | None]]:
    """Optuna trial number → (state, values) as the study knows it right now."""
    return {
        str(t.number): (t.state.name, tuple(t.values) if t.values else None) for t in study_of(storage, name).trials
    }


def check_consistent_after_resume(storage: Path, name: str, uri: str, num_samples: int) -> list:
    """Everything a finished sweep must hold: Ray, Optuna and MLflow agree, nothing RUNNING, no duplicates."""
    from none_sweep.sweep.search import RAY_TRIAL_ATTR

    trials = ray_trials(storage, name)
    assert len(trials) == num_samples and all(t.status == "TERMINATED" for t in trials), [
        (t.trial_id, t.status) for t in trials
    ]
    ids = {t.trial_id for t in trials}
    runs = mlflow_runs(uri, name)
    assert not [r for r in runs if r.info.status == "RUNNING"], "no run may stay RUNNING"
    children = children_by_trial(runs)
    # exactly one run per trial Ray knows, and no other: a run of a trial Ray never recorded (the driver died
    # before Ray's snapshot) is discarded, not left FAILED beside the trials that really ran
    assert set(children) == ids, (sorted(children), sorted(ids))
    for tid in ids:
        assert len(children[tid]) == 1, f"trial {tid}: {len(children[tid])} MLflow runs"
        (run,) = children[tid]
        assert run.info.status == "FINISHED" and "asr" in run.data.metrics and "clean_acc" in run.data.metrics
    parents = [r for r in runs if r.data.tags.get("none_sweep.role") == "sweep"]
    assert len(parents) == 1 and parents[0].data.tags["none_sweep.status"] == "finished"
    study = study_of(storage, name)
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    by_ray: dict[str, int] = {}
    for t in complete:
        by_ray[t.user_attrs[RAY_TRIAL_ATTR]] = by_ray.get(t.user_attrs[RAY_TRIAL_ATTR], 0) + 1
    assert by_ray == {tid: 1 for tid in ids}, by_ray  # each Ray trial exactly one COMPLETE Optuna trial
    return trials


@pytest.mark.timeout(600)
def test_driver_sigkill_then_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    space = two_speed_space(tmp_path)
    storage, name, uri = tmp_path / "ray", "killed", f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.monotonic()
    with ray_sandbox() as env:
        first = Proc(sweep_args(space, name, storage, uri), tmp_path, env, "first")
        try:
            done, running, snapshotted = wait_for("a finished trial and one past its first checkpoint",
                                     mid_sweep(storage, name), 300, first, every=0.2)  # fmt: skip
            os.kill(first.pid, signal.SIGKILL)  # the driver only, as the OOM killer would
            first.wait(30)
        finally:
            first.close()
        killed_at = time.monotonic() - t0
        before_rows = trial_rows(storage, name)
        recorded = {tid: outcome_files(storage, name, tid) for tid in done}
        before_study = snapshot_study(storage, name)
        before_runs = mlflow_runs(uri, name)
        assert first.popen.returncode == -signal.SIGKILL

        second = Proc(sweep_args(space, name, storage, None, "--resume"), tmp_path, env, "resume")
        try:
            code = second.wait(420)
        finally:
            second.close()
    assert code == 0, second.tail()
    assert no_traceback(second.err), second.tail()

    trials = check_consistent_after_resume(storage, name, uri, 3)
    after_rows = trial_rows(storage, name)
    # finished before the kill: not trained again. Ray may restart such a trial (its snapshot missed the
    # ending) and then drops the attempt's rows from result.json; the restart only replays the recorded result,
    # so the outcome record and the model it saved are the very files written before the kill.
    for tid in done:
        assert outcome_files(storage, name, tid) == recorded[tid], f"trial {tid} was trained again"
        trained_before = [r["epoch"] for r in before_rows.get(tid, []) if not r.get("replayed")]
        trained_after = [r["epoch"] for r in after_rows[tid] if not r.get("replayed")]
        assert set(trained_after) <= set(trained_before), (tid, trained_before, trained_after)
    # interrupted mid-trial: completed, resumed from the checkpoint Ray's last experiment snapshot recorded —
    # or from scratch when the kill came before any snapshot recorded one (Ray snapshots every >= 10 s)
    rows = after_rows[running]
    interval = rows[0]["config"]["defense.reset_interval"]
    restarts = [i for i, r in enumerate(rows) if r["iterations_since_restore"] == 1]
    resumed = [r["epoch"] for r in rows[restarts[-1] :]]
    assert resumed == list(range(resumed[0], 2 + interval + 1)), resumed
    if snapshotted:
        assert resumed[0] > 1, "a checkpoint the snapshot recorded must be resumed from"
    # Optuna continued the study it had: every trial it knew is still there, with the same finished values
    after_study = snapshot_study(storage, name)
    for number, (state, values) in before_study.items():
        if state == "COMPLETE":
            assert after_study[number] == (state, values)
        assert number in after_study
    assert len(after_study) >= len(before_study)
    # runs RUNNING at the kill were closed (reused for their trial) or discarded (orphans), none duplicated
    was_running = {r.info.run_id for r in before_runs if r.info.status == "RUNNING"}
    assert was_running, "the kill should have left RUNNING runs to clean up"
    final = {r.info.run_id: r for r in mlflow_runs(uri, name)}
    assert all(final[rid].info.status == "FINISHED" for rid in was_running if rid in final)
    print(f"\nSIGKILL at {killed_at:.0f}s (finished {sorted(done)}, interrupted {running}, its checkpoint "
          f"{'in' if snapshotted else 'not yet in'} Ray's snapshot: resumed at epoch {resumed[0]}); "
          f"total {time.monotonic() - t0:.0f}s; study trials {len(before_study)} -> {len(after_study)}; "
          f"RUNNING runs at the kill: {len(was_running)}; Ray trials: {[(t.trial_id, t.status) for t in trials]}")  # fmt: skip


def just_finished(storage: Path, name: str):
    """True as soon as one trial's final outcome is recorded: its final report is on its way to the driver."""

    def check():
        done = {tid for tid, o in outcomes(storage, name).items() if o.get("final")}
        return done or None

    return check


@pytest.mark.timeout(600)
def test_driver_killed_right_after_a_final_report_trains_nothing_again_one_run_per_trial(tmp_path: Path) -> None:
    """The user's case: the driver dies within a second of a trial's end. After ``--resume`` the trial whose final
    result was recorded is never trained again, and MLflow holds exactly one run per trial that ran."""
    space = two_speed_space(tmp_path, num_samples=4)
    storage, name, uri = tmp_path / "ray", "just-done", f"sqlite:///{tmp_path / 'mlflow.db'}"
    with ray_sandbox() as env:
        first = Proc(sweep_args(space, name, storage, uri), tmp_path, env, "first")
        try:
            done = wait_for("a trial's final outcome", just_finished(storage, name), 300, first, every=0.05)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(30)
        finally:
            first.close()
        before_rows = trial_rows(storage, name)
        recorded = {tid: outcome_files(storage, name, tid) for tid in done}
        second = Proc(sweep_args(space, name, storage, None, "--resume"), tmp_path, env, "resume")
        try:
            code = second.wait(420)
        finally:
            second.close()
    assert code == 0, second.tail()
    assert no_traceback(second.err), second.tail()
    check_consistent_after_resume(storage, name, uri, 4)
    after_rows = trial_rows(storage, name)
    for tid in done:
        assert outcome_files(storage, name, tid) == recorded[tid], f"trial {tid} was trained again"
        trained_before = [r["epoch"] for r in before_rows.get(tid, []) if not r.get("replayed")]
        trained_after = [r["epoch"] for r in after_rows.get(tid, []) if not r.get("replayed")]
        assert set(trained_after) <= set(trained_before), (tid, trained_before, trained_after)


@pytest.mark.timeout(600)
def test_ctrl_c_stops_cleanly_says_how_to_resume_and_the_resume_completes(tmp_path: Path) -> None:
    space = two_speed_space(tmp_path)
    storage, name, uri = tmp_path / "ray", "ctrl-c", f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.monotonic()
    with ray_sandbox() as env:
        first = Proc(sweep_args(space, name, storage, uri), tmp_path, env, "first")
        try:
            wait_for(
                "a finished trial and one past its first checkpoint", mid_sweep(storage, name), 300, first, every=0.2
            )
            os.killpg(first.pid, signal.SIGINT)  # what Ctrl+C in a terminal does: the whole foreground group
            code = first.wait(120)
        finally:
            first.close()
        stopped_in = time.monotonic() - t0
        out, err = first.out, first.err
        assert code == 130, first.tail()
        assert no_traceback(err) and no_traceback(out), first.tail()
        expected = f"none-sweep sweep {space} --name {name} --storage {storage} --resume"
        assert f"interrupted. Resume with:\n  {expected}" in out, first.tail()
        runs = mlflow_runs(uri, name)
        parent = next(r for r in runs if r.data.tags.get("none_sweep.role") == "sweep")
        assert parent.data.tags["none_sweep.status"] == "interrupted" and parent.info.status == "KILLED"

        command = shlex.split(expected)
        command[0] = NONE_SWEEP  # the very command printed, run with this venv's entry point
        second = Proc(command, tmp_path, env, "resume")
        try:
            code = second.wait(420)
        finally:
            second.close()
    assert code == 0, second.tail()
    check_consistent_after_resume(storage, name, uri, 3)
    print(f"\nCtrl+C: stopped with exit 130 at {stopped_in:.0f}s; resumed and finished at {time.monotonic() - t0:.0f}s")
