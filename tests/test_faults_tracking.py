"""The MLflow tracking server as a fault: unreachable at start, gone mid-sweep, and many writers at once.

Real ``mlflow server`` processes on loopback (``--host 127.0.0.1``) backed by SQLite, real sweeps.

- unreachable at start: fail fast, exit 2, one line, nothing started (``test_sweep_preflight`` checks the
  same in-process; here it is the real process's whole output);
- killed mid-sweep: trials keep running and Ray's results stay the source of truth; after the server is back
  (same database, same address), ``none-sweep sync-mlflow`` back-fills every trial with its final metrics;
- 8 processes writing metrics to one server at once: no "database is locked", every value stored. And what
  the sweep itself does: only the driver writes (trial code never imports MLflow).
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.faults import space_file, sweep_args
from support.net import free_port
from support.processes import MLFLOW, NONE_SWEEP, ROOT, Proc, kill_group, no_traceback, ray_sandbox, wait_for
from support.results import checkpointed, children_by_trial, mlflow_runs, ray_trials


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(folder: Path, port: int, tag: str = "server") -> Iterator[subprocess.Popen]:
    """``mlflow server`` on 127.0.0.1:``port`` over ``folder/mlflow.db``, artifacts served from ``folder``."""
    log = open(folder / f"{tag}.log", "ab")  # noqa: SIM115 -- the server writes to it until it ends
    proc = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--host", "127.0.0.1",
         "--port", str(port), "--artifacts-destination", str(folder / "artifacts"), "--workers", "2"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(f"mlflow server on port {port}", lambda: healthy(port) or proc.poll() is not None, 180)
        assert proc.poll() is None, (folder / f"{tag}.log").read_text()[-3000:]
        yield proc
    finally:
        kill_group(proc.pid)
        proc.wait(timeout=30)
        log.close()


# --------------------------------------------------------------------------- unreachable at start
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_unreachable_tracking_server_fails_fast_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # closed once free_port returns: nothing listens there
    with ray_sandbox() as env:
        t0 = time.monotonic()
        proc = Proc(sweep_args(ROOT / "search_spaces" / "digits_tiny.yaml", "down", tmp_path / "ray",
                               f"http://127.0.0.1:{port}"), tmp_path, env, "sweep")  # fmt: skip
        try:
            code = proc.wait(240)
        finally:
            proc.close()
        elapsed = time.monotonic() - t0
    assert code == 2, proc.tail()
    err = proc.err
    assert err.count("\n") == 1 and no_traceback(err), err
    assert err.startswith(
        f"none-sweep sweep: error: --tracking-uri http://127.0.0.1:{port}: cannot use the tracking store"
    )
    assert proc.out == "" and not (tmp_path / "ray" / "down").exists()  # no Ray started, nothing stored
    print(f"\nunreachable tracking server: exit 2 after {elapsed:.1f}s: {err.strip()}")


# --------------------------------------------------------------------------- gone mid-sweep
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tracking_server_killed_mid_sweep_then_sync_mlflow_backfills_everything(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    space = space_file(
        tmp_path,
        base={"defense": {"pretrain_epochs": 2, "after_reset": "finetune", "reset_interval": 6, "rounds": 1,
                          "finetune_lr": 0.01}},
        num_samples=3, max_concurrent=1, max_failures=1,
    )  # fmt: skip
    storage, name = tmp_path / "ray", "outage"
    t0 = time.monotonic()
    with ray_sandbox() as env:
        with mlflow_server(tmp_path, port):
            proc = Proc(sweep_args(space, name, storage, uri), tmp_path, env, "sweep")
            wait_for("the first trial's checkpoint", lambda: checkpointed(storage, name), 360, proc)
            before = {tid: len(rs) for tid, rs in children_by_trial(mlflow_runs(uri, name)).items()}
        outage_at = time.monotonic() - t0  # the server is gone from here on
        try:
            code = proc.wait(540)
        finally:
            proc.close()
        assert code == 0, proc.tail()
        assert no_traceback(proc.err) and no_traceback(proc.out), proc.tail()
        out = proc.out
        assert "warning: MLflow missed parts of" in out and f"none-sweep sync-mlflow --name {name}" in out, proc.tail()
        trials = ray_trials(storage, name)  # the source of truth kept going
        assert len(trials) == 3 and all(t.status == "TERMINATED" for t in trials)

        with mlflow_server(tmp_path, port, tag="server-again"):  # back, same database, same address
            sync = subprocess.run([NONE_SWEEP, "sync-mlflow", "--name", name, "--storage", str(storage)],
                                  cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
            assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
            runs = mlflow_runs(uri, name)
            again = subprocess.run([NONE_SWEEP, "sync-mlflow", "--name", name, "--storage", str(storage)],
                                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
            assert again.returncode == 0 and "created 0 child runs" in again.stdout, again.stdout + again.stderr
    children = children_by_trial(runs)
    assert {tid: len(rs) for tid, rs in children.items()} == {t.trial_id: 1 for t in trials}
    for t in trials:
        (run,) = children[t.trial_id]
        assert run.info.status == "FINISHED", t.trial_id
        for key in ("asr", "clean_acc", "clean_acc_drop", "robust_acc"):
            assert run.data.metrics[key] == pytest.approx(t.last_result[key]), (t.trial_id, key)
    parent = next(r for r in runs if r.data.tags.get("none_sweep.role") == "sweep")
    assert parent.data.tags["none_sweep.status"] == "finished" and "baseline_clean_acc" in parent.data.metrics
    print(
        f"\nMLflow server killed at {outage_at:.0f}s with {sum(before.values())} child run(s) recorded; sweep "
        f"finished without it; sync-mlflow: {sync.stdout.strip().splitlines()[-1]}; total {time.monotonic() - t0:.0f}s"
    )


# --------------------------------------------------------------------------- many writers
WRITER = r"""
import sys, time
from pathlib import Path
from mlflow import MlflowClient
from mlflow.entities import Metric
uri, exp, me, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
client = MlflowClient(tracking_uri=uri)
while not go.exists():
    time.sleep(0.01)
run = client.create_run(exp, run_name=f"writer-{me}").info.run_id
for step in range(STEPS):
    for key in ("loss", "asr", "clean_acc"):
        client.log_metric(run, key, me + step / 1000, step=step)  # one request per value: the worst case
    client.log_batch(run, metrics=[Metric(f"m{j}", float(step * j), 0, step) for j in range(5)])
client.set_terminated(run)
print("done", run)
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_eight_concurrent_writers_to_one_server_lose_nothing(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    writers, steps = 8, 30
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    go = tmp_path / "go"
    with mlflow_server(tmp_path, port):
        exp = MlflowClient(tracking_uri=uri).create_experiment("writers")
        script = WRITER.replace("STEPS", str(steps))
        procs = [subprocess.Popen([sys.executable, "-c", script, uri, exp, str(i), str(go)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for i in range(writers)]  # fmt: skip
        time.sleep(8)  # let all of them import MLflow and wait at the line
        t0 = time.monotonic()
        go.touch()
        results = [p.communicate(timeout=480) for p in procs]
        elapsed = time.monotonic() - t0
        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([exp])
        histories = {r.info.run_name: {k: sorted(m.step for m in client.get_metric_history(r.info.run_id, k))
                                       for k in ("loss", "asr", "clean_acc", "m0", "m4")} for r in runs}  # fmt: skip
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and "done" in out, err[-2000:]
        assert "database is locked" not in err
    assert "database is locked" not in server_log
    assert len(runs) == writers and all(r.info.status == "FINISHED" for r in runs)
    for run_name, hist in histories.items():
        for key, logged in hist.items():
            assert logged == list(range(steps)), (run_name, key, logged)
    values = writers * steps * 8
    print(
        f"\n{writers} writers x {steps} steps x 8 metrics = {values} values through one server in {elapsed:.1f}s; none lost"
    )


def test_the_sweep_writes_mlflow_from_the_driver_only() -> None:
    """Trial code (the trainable, training, data, models, defense) never imports MLflow: only the driver's
    callback and the CLI's read commands talk to the tracking store, so a SQLite store has a single writer."""
    probe = (
        "import sys, none_sweep.sweep.trainable, none_sweep.train, none_sweep.data, none_sweep.models, "
        "none_sweep.defense, none_sweep.attacks; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
    from ray.tune import Callback

    from none_sweep.tracking.callback import MlflowSweepCallback

    assert issubclass(MlflowSweepCallback, Callback)  # Tune runs callbacks in the driver process
