"""Damaged checkpoints are detected on load, never resumed from silently.

- ``none_sweep.train`` checkpoint files (``none-sweep train --resume``): truncated, bit-flipped, foreign, or
  a pickle smuggled in: each a one-line ``CheckpointError`` naming the file, exit 2 (fast tests).
- A Ray trial checkpoint (slow, real processes): the running trial's latest checkpoint in storage is
  truncated, then the trial's worker process is killed, so Ray restores the trial from that checkpoint. The
  trainable must detect the damage, say so, and restart the trial from scratch (``checkpoint_discarded=1``
  in its results): the trial completes, with one FINISHED MLflow run and one COMPLETE Optuna trial.
"""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from support.faults import space_file, sweep_args
from support.processes import Proc, environ_of, processes, ray_sandbox, wait_for
from support.results import checkpointed, children_by_trial, mlflow_runs, outcomes, ray_trials

from none_sweep.cli import main

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- none-sweep train checkpoints (fast)
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 2-epoch digits run: OUT/checkpoint.pt and OUT/config.yaml."""
    out = tmp_path_factory.mktemp("train") / "run"
    code = main(["train", "--set", "data.name=digits", "--set", "data.train_subset=200", "--set", "data.test_subset=60",
                 "--set", "train.epochs=2", "--set", "defense.enabled=false", "--set", "train.num_threads=1",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    return out


def resume(out: Path, capsys) -> tuple[int, str]:
    code = main(["train", str(out / "config.yaml"), "--out", str(out), "--resume", "--quiet"])
    return code, capsys.readouterr().err.strip()


def damaged_copy(trained: Path, tmp_path: Path, damage) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text((trained / "config.yaml").read_text())
    data = (trained / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(damage(data))
    return out


def flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda d: d[: len(d) // 3], "unreadable checkpoint"),
    (lambda d: d[:10], "unreadable checkpoint"),
    (lambda d: b"", "unreadable checkpoint"),
    (flip, "checkpoint"),
], ids=["truncated-third", "truncated-header", "empty", "bit-flip"])  # fmt: skip
def test_damaged_train_checkpoint_is_one_clear_line(trained: Path, tmp_path: Path, capsys, damage, expected) -> None:
    out = damaged_copy(trained, tmp_path, damage)
    before = (out / "checkpoint.pt").read_bytes()
    code, err = resume(out, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("none-sweep train: error: ") and str(out / "checkpoint.pt") in err and expected in err, err
    assert err.endswith("move it away and run without --resume to start fresh"), err
    assert (out / "checkpoint.pt").read_bytes() == before, "a refused checkpoint is left as it was, for inspection"
    assert not (out / "metrics.json").exists()


def test_checkpoint_of_another_config_is_refused(trained: Path, tmp_path: Path, capsys) -> None:
    out = damaged_copy(trained, tmp_path, lambda d: d)
    (out / "config.yaml").write_text((out / "config.yaml").read_text().replace("epochs: 2", "epochs: 3"))
    code, err = resume(out, capsys)
    assert code == 2 and "checkpoint belongs to a different config; start a fresh run" in err, err


def test_a_valid_checkpoint_still_resumes(trained: Path, tmp_path: Path, capsys) -> None:
    out = damaged_copy(trained, tmp_path, lambda d: d)
    code, err = resume(out, capsys)
    assert code == 0, err
    assert (out / "metrics.json").exists()


def test_forged_digest_cannot_smuggle_a_pickled_object(tmp_path: Path, capsys) -> None:
    """A checkpoint whose payload pickles an object (with a matching digest) is refused by weights_only=True."""
    import hashlib

    from none_sweep.errors import CheckpointError
    from none_sweep.train.checkpoint import FORMAT, load_state

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    buf = io.BytesIO()
    torch.save({"model": Boom()}, buf)
    payload = buf.getvalue()
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "digest": hashlib.sha256(payload).hexdigest(), "payload": payload}, path)
    with pytest.raises(CheckpointError, match="payload unreadable"):
        load_state(path)
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------- a Ray trial checkpoint (slow)
def trial_processes(marker: str) -> list[int]:
    """Pids of the Ray trial actors (process title ``ray::ImplicitFunc...``) of the sandbox with RAY_TMPDIR ``marker``."""
    return [pid for pid, cmdline in processes()
            if cmdline.startswith("ray::ImplicitFunc") and environ_of(pid).get("RAY_TMPDIR") == marker]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_corrupt_ray_trial_checkpoint_is_detected_and_the_trial_restarts_from_scratch(tmp_path: Path) -> None:
    from none_sweep.sweep.search import RAY_TRIAL_ATTR, open_study

    space = space_file(
        tmp_path,
        base={"data": {"name": "digits", "train_subset": 1000, "test_subset": 120},
              "defense": {"pretrain_epochs": 2, "after_reset": "finetune", "reset_interval": 40, "rounds": 1,
                          "finetune_lr": 0.01}},
        num_samples=1, max_concurrent=1, max_failures=2,
    )  # fmt: skip
    storage, name, uri = tmp_path / "ray", "corrupt", f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.monotonic()
    with ray_sandbox() as env:
        proc = Proc(sweep_args(space, name, storage, uri), tmp_path, env, "sweep")
        try:
            tid = wait_for("the trial's first checkpoint", lambda: next(iter(checkpointed(storage, name)), None),
                           300, proc, every=0.1)  # fmt: skip
            (folder,) = [p for p in (storage / name).glob(f"train_trial_{tid}_*/checkpoint_000000")]
            state = wait_for(
                "its run state", lambda: (folder / "run.ckpt").is_file() and folder / "run.ckpt", 10, proc, every=0.05
            )
            time.sleep(0.5)  # the driver registers the reported checkpoint as the trial's latest
            state.write_bytes(state.read_bytes()[:200])  # truncated, as by a full disk or a killed copy
            (actor,) = wait_for(
                "the trial's worker process", lambda: trial_processes(env["RAY_TMPDIR"]), 30, proc, every=0.1
            )
            assert not outcomes(storage, name), "the trial finished before the fault could be injected"
            os.kill(actor, signal.SIGKILL)  # Ray restores the trial from its latest checkpoint: the damaged one
            code = proc.wait(420)
        finally:
            proc.close()
    assert code == 0, proc.tail()
    (trial,) = ray_trials(storage, name)
    assert trial.status == "TERMINATED" and trial.last_result["final"] == 1
    assert trial.last_result.get("checkpoint_discarded") == 1, "the restart must say it discarded the checkpoint"
    assert trial.last_result["epoch"] == 2 + 40
    assert "unreadable checkpoint" in proc.err and "restarting the trial from scratch" in proc.err, proc.tail()
    (run,) = children_by_trial(mlflow_runs(uri, name))[tid]
    assert run.info.status == "FINISHED" and run.data.metrics["checkpoint_discarded"] == 1
    assert "none_sweep.last_retry_error" in run.data.tags  # the retry is on record too
    study = open_study(storage / name / "optuna.journal", name)
    assert [(t.state.name, t.user_attrs[RAY_TRIAL_ATTR]) for t in study.trials] == [("COMPLETE", tid)]
    print(f"\ncorrupt Ray checkpoint: detected, restarted from scratch, finished in {time.monotonic() - t0:.0f}s")
