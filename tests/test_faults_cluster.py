"""A worker node of a two-node Ray cluster dies mid-sweep: every trial still finishes.

Two nodes on this machine, started with ``ray start`` (head: 1 CPU; worker: 1 CPU, its raylet on a
``--node-manager-port`` of our choosing), Ray 2.60's token authentication on with a private token
(``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``, shared by both nodes and the driver). The sweep runs two trials
at once, one per node. Once both are past their first checkpoint, the worker's raylet is SIGKILLed (by the
pid found through its ``--node_manager_port``): its trial's worker process dies with it, Ray fails the trial
and, with ``max_failures > 0``, restarts it on the head from its last checkpoint. Clean-up kills only this
test's processes (found by the cluster's private temp dir), never ``ray stop --force``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.faults import space_file, sweep_args
from support.net import free_port
from support.processes import RAY, Proc, kill_group, kill_matching, processes, wait_for
from support.results import checkpointed, children_by_trial, mlflow_runs, outcomes, ray_trials, trial_rows

pytestmark = pytest.mark.slow

INTERVAL = 40  # fine-tuning epochs after the first checkpoint (epoch 2): the window for the kill


@contextmanager
def two_nodes() -> Iterator[dict]:
    """Head and worker via ``ray start``; yields the address, the env to reach them and the worker's raylet."""
    temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port, nm_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI")}
    env.update(
        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1"
    )
    starters: list[subprocess.Popen] = []
    try:
        for args in (["--head", f"--port={port}", f"--temp-dir={temp_dir}", "--include-dashboard=false"],
                     [f"--address=127.0.0.1:{port}", f"--node-manager-port={nm_port}"]):  # fmt: skip
            p = subprocess.Popen([RAY, "start", *args, "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
            starters.append(p)
            out, _ = p.communicate(timeout=180)
            assert p.returncode == 0, out.decode(errors="replace")[-3000:]
        raylet = wait_for("the worker's raylet", lambda: next(
            ((pid, cmd) for pid, cmd in processes() if "/raylet/raylet " in cmd + " "
             and f"--node_manager_port={nm_port}" in cmd), None), 60)  # fmt: skip
        node_id = re.search(r"--node_id=([0-9a-f]+)", raylet[1]).group(1)
        yield {"address": f"127.0.0.1:{port}", "env": env, "raylet_pid": raylet[0], "worker_node": node_id,
               "temp_dir": temp_dir}  # fmt: skip
    finally:
        for p in starters:
            kill_group(p.pid, grace_s=2)
        for _ in range(3):
            if not kill_matching(temp_dir):
                break
            time.sleep(1)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.timeout(720)
def test_worker_node_killed_mid_sweep_every_trial_finishes_from_its_checkpoint(tmp_path: Path) -> None:
    from none_sweep.sweep.search import RAY_TRIAL_ATTR, open_study

    space = space_file(
        tmp_path,
        base={"data": {"name": "digits", "train_subset": 1000, "test_subset": 120},
              "defense": {"pretrain_epochs": 2, "after_reset": "finetune", "reset_interval": INTERVAL, "rounds": 1,
                          "finetune_lr": 0.01}},
        num_samples=3, max_concurrent=2, max_failures=2,
    )  # fmt: skip
    storage, name, uri = tmp_path / "ray", "nodes", f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.monotonic()
    with two_nodes() as cluster:
        proc = Proc(
            sweep_args(space, name, storage, uri, "--address", cluster["address"]), tmp_path, cluster["env"], "sweep"
        )
        try:
            wait_for("two running trials past their first checkpoint",
                     lambda: len(checkpointed(storage, name) - set(outcomes(storage, name))) >= 2, 420, proc, every=0.2)  # fmt: skip
            os.kill(cluster["raylet_pid"], signal.SIGKILL)
            killed_at = time.monotonic() - t0
            code = proc.wait(540)
        finally:
            proc.close()
        worker = cluster["worker_node"]
    assert code == 0, proc.tail()

    trials = ray_trials(storage, name)
    assert len(trials) == 3 and all(t.status == "TERMINATED" for t in trials), [(t.trial_id, t.status) for t in trials]
    rows = trial_rows(storage, name)
    hit = [t for t in trials if any(r.get("node_id") == worker for r in rows[t.trial_id])]
    assert len(hit) == 1, "exactly one trial ran on the killed worker"
    (victim,) = hit
    vrows = rows[victim.trial_id]
    assert victim.last_result["node_id"] != worker and victim.last_result["epoch"] == 2 + INTERVAL
    restarts = [i for i, r in enumerate(vrows) if r["iterations_since_restore"] == 1]
    assert len(restarts) >= 2, "the victim must have been restarted by Ray"
    resumed_at = vrows[restarts[-1]]["epoch"]
    assert resumed_at > 1, "restarted from its checkpoint, not from scratch"
    assert all(r["node_id"] != worker for r in vrows[restarts[-1] :])

    runs = mlflow_runs(uri, name)
    children = children_by_trial(runs)
    assert {tid: len(rs) for tid, rs in children.items()} == {t.trial_id: 1 for t in trials}
    assert all(rs[0].info.status == "FINISHED" for rs in children.values())
    vrun = children[victim.trial_id][0]
    assert "none_sweep.last_retry_error" in vrun.data.tags and vrun.data.tags["none_sweep.node_id"] != worker
    study = open_study(storage / name / "optuna.journal", name)
    assert sorted(t.user_attrs[RAY_TRIAL_ATTR] for t in study.trials if t.state.name == "COMPLETE") == \
        sorted(t.trial_id for t in trials)  # fmt: skip
    print(f"\nworker raylet killed at {killed_at:.0f}s; victim {victim.trial_id} resumed at epoch {resumed_at} "
          f"on the head; sweep done at {time.monotonic() - t0:.0f}s; retry error: "
          f"{vrun.data.tags['none_sweep.last_retry_error'][:120]!r}")  # fmt: skip
