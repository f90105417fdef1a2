"""A sweep on four Ray nodes, submitted as a Ray job: trials spread over every worker, storage holds them all.

A head and three workers started with ``ray start`` on loopback (``support.cluster``: own ports, own temp dir,
stopped by pid, never ``ray stop``). As on the cloud configs, the head has no CPUs for trials
(``--num-cpus 0``): it runs the job's driver (the sweep: Optuna, the MLflow callback) and nothing else; each
worker has one CPU and a trial asks for one, so three trials run at once, one per worker. The sweep is
``search_spaces/digits_tiny.yaml`` with 12 trials, submitted with ``ray job submit`` to the head's dashboard
and run by ``cluster/run_sweep.py``, which takes ``--storage`` and ``--tracking-uri`` from the head's
environment (what ``cluster/node_setup.sh``'s env file gives a real head).

Checked: the job succeeded; Ray's results name a worker node (``node_id``) for every trial, every worker ran
trials and the head none; the shared storage holds each trial's results, checkpoints and outcome record; MLflow
has one finished child run per trial tagged with the node Ray reports.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from support.cluster import local_cluster
from support.processes import RAY, ROOT, Proc, no_traceback
from support.results import checkpointed, children_by_trial, mlflow_runs, outcomes, ray_trials, trial_rows

pytestmark = pytest.mark.slow

WORKERS = 3
#: the top of the fine-tuning learning rate range: every trial trains to its end (this test is not about failures)
STABLE_LR = 0.02
TRIALS = 12


def twelve_trials(folder: Path) -> Path:
    data = yaml.safe_load((ROOT / "search_spaces" / "digits_tiny.yaml").read_text())
    data.update(num_samples=TRIALS, max_concurrent=WORKERS, resources={"cpu": 1, "gpu": 0})
    data["space"]["defense.finetune_lr"]["high"] = STABLE_LR  # above ~0.035 fine-tuning can diverge to NaN
    path = folder / "digits_four_nodes.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.timeout(2400)
def test_twelve_trials_submitted_as_a_job_run_on_every_worker(tmp_path: Path) -> None:
    name, storage, uri = "four", tmp_path / "ray", f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = twelve_trials(tmp_path)
    node_env = {"NONE_SWEEP_STORAGE": str(storage), "MLFLOW_TRACKING_URI": uri, "NONE_SWEEP_HOME": str(ROOT)}
    submission = f"none-sweep-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    with local_cluster(WORKERS, head_cpus=0, worker_cpus=1, env=node_env) as cluster:
        assert cluster.dashboard is not None
        job = Proc([RAY, "job", "submit", "--address", cluster.dashboard, "--submission-id", submission, "--",
                    sys.executable, str(ROOT / "cluster" / "run_sweep.py"), str(space), "--name", name],
                   tmp_path, cluster.env, "job")  # fmt: skip
        try:
            job.wait(2100)
        finally:
            job.close()
        status = subprocess.run([RAY, "job", "status", "--address", cluster.dashboard, submission],
                                capture_output=True, text=True, env=cluster.env, timeout=120)  # fmt: skip
        head, workers = cluster.head_node, cluster.worker_nodes
    elapsed = time.monotonic() - t0
    logs = job.out
    assert "succeeded" in (status.stdout + status.stderr).lower(), status.stdout + status.stderr + job.tail()
    assert no_traceback(logs), job.tail()
    # run_sweep.py ran on the head as the job's driver, with the head's settings
    assert f"--storage {storage} --tracking-uri {uri}" in logs, job.tail()
    assert len(set(workers)) == WORKERS and head not in workers

    trials = ray_trials(storage, name)
    states = [(t.trial_id, t.status) for t in trials]
    assert len(trials) == TRIALS and all(t.status == "TERMINATED" for t in trials), states
    rows = trial_rows(storage, name)
    ids = {t.trial_id for t in trials}
    assert set(rows) == ids  # every trial's result.json in the shared storage
    assert checkpointed(storage, name) == ids and set(outcomes(storage, name)) == ids
    assert all((storage / name / "trial_outcomes" / tid / "model_state.pt").is_file() for tid in ids)
    nodes_of = {tid: {r["node_id"] for r in rs} for tid, rs in rows.items()}
    assert all(len(n) == 1 for n in nodes_of.values()), nodes_of  # nobody failed over: one node per trial
    per_node = Counter(next(iter(n)) for n in nodes_of.values())
    assert set(per_node) == set(workers), (per_node, workers, head)  # every worker, never the head

    children = children_by_trial(mlflow_runs(uri, name))
    assert {tid: len(rs) for tid, rs in children.items()} == {tid: 1 for tid in ids}
    for t in trials:
        (run,) = children[t.trial_id]
        assert run.info.status == "FINISHED", t.trial_id
        assert run.data.tags["none_sweep.node_id"] == t.last_result["node_id"], t.trial_id
        assert run.data.metrics["clean_acc"] == pytest.approx(t.last_result["clean_acc"]), t.trial_id
    print(f"\nfour nodes: {TRIALS} trials per worker node {sorted(per_node.values())}, head ran none; "
          f"job {submission} succeeded; {elapsed:.0f}s in all")  # fmt: skip
