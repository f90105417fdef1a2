"""Resume after really killing the driver (SIGKILL), and a sweep across two Ray nodes (both slow, real processes)."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.net import free_port
from support.results import ray_trials

from none_sweep.sweep.search import RAY_TRIAL_ATTR, open_study
from none_sweep.tracking.store import SweepTracker

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"
CLI = [sys.executable, "-m", "none_sweep"]

# The SIGKILL resume and the two-node `ray job submit` tests run by default (they are the sweep's acceptance
# tests, ~1-2 minutes each); the Ctrl-C and tracking-outage ones are marked slow.


def finished_records(experiment: Path) -> set[str]:
    """Trials whose final outcome the trainable recorded in storage (written just before Ray hears of it)."""
    out = set()
    for path in experiment.glob("trial_outcomes/*/outcome.json"):
        try:
            if json.loads(path.read_text()).get("final"):
                out.add(path.parent.name)
        except ValueError:
            continue
    return out


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the driver, then what is left of the process group it led (its local Ray's agents)."""
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    time.sleep(3)  # Ray's gcs/raylet/workers fate-share with the driver; agents may linger a moment
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def every_model(folder: Path) -> Path:
    """``digits_tiny.yaml`` with ``log_models: all``: each trial's model is logged as it ends (and after a restart)."""
    path = folder / "digits_every_model.yaml"
    path.write_text(DIGITS.read_text() + "\nlog_models: all\n")
    return path


def test_resume_after_sigkill_reruns_nothing_finished_and_duplicates_nothing(tmp_path: Path) -> None:
    storage, uri = tmp_path / "ray", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*CLI, "sweep", str(every_model(tmp_path)), "--name", "r", "--storage", str(storage), "--tracking-uri", uri]
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115 -- the driver writes to it until it is killed
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not finished_records(storage / "r"):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial finished within 10 minutes"
            time.sleep(0.5)
    finally:
        kill_group(proc)
        log.close()
    done_before = finished_records(storage / "r")
    tracker = SweepTracker(uri, "r")
    steps_before = {tid: sorted(m.step for m in tracker.client.get_metric_history(run.info.run_id, "loss"))
                    for tid, run in tracker.children().items()}  # fmt: skip

    second = subprocess.run([*args, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming sweep 'r'" in second.stdout and "baseline: reusing" in second.stdout

    trials = ray_trials(storage, "r")
    ids = [t.trial_id for t in trials]
    assert len(ids) == len(set(ids)) == 6 and all(t.status == "TERMINATED" for t in trials)
    tracker = SweepTracker(uri, "r")
    runs = tracker.client.search_runs([tracker.experiment_id])
    roles = collections.Counter(r.data.tags.get("none_sweep.role") for r in runs)
    assert roles == {"sweep": 1, "trial": 6}, roles
    children = tracker.children()
    assert set(children) == set(ids)  # one child per Ray trial id: nothing duplicated by the restart
    assert all(run.info.status == "FINISHED" for run in children.values())
    for tid in done_before:  # finished before the kill: not trained again (at most its final result replayed)
        steps = sorted(m.step for m in tracker.client.get_metric_history(children[tid].info.run_id, "loss"))
        final_epoch = max(steps)
        counts = collections.Counter(steps)
        assert all(counts[s] == 1 for s in counts if s != final_epoch), (tid, steps)
        if tid in steps_before:  # the driver may have died between the trial's end and logging its last epoch
            before = set(steps_before[tid])
            assert before <= set(steps) and set(steps) - before <= {final_epoch}, (tid, sorted(before), steps)
        assert tracker.has_model(children[tid].info.run_id)
    study = open_study(storage / "r" / "optuna.journal", "r")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs[RAY_TRIAL_ATTR] for t in complete) == sorted(ids)
    assert not [t for t in study.trials if t.state.name == "RUNNING"]


# ---------------------------------------------------------------------- two nodes on this machine
def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _pids_of_cluster(temp_dir: str) -> list[int]:
    """Processes of the cluster this test started: their command line or an open file names its private temp dir
    (Ray's agents rename themselves to ``ray::DashboardAgent``, so the command line alone misses them)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            mine = temp_dir in cmdline
            if not mine:
                mine = any(temp_dir in os.readlink(fd) for fd in (proc / "fd").iterdir())
        except OSError:
            continue
        if mine:
            pids.append(int(proc.name))
    return pids


def _stop_cluster(temp_dir: str, env: dict[str, str]) -> None:
    """Stop only this test's two nodes: `ray stop --force` would also kill other users' Ray on a shared machine."""
    for _ in range(3):
        pids = _pids_of_cluster(temp_dir)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(1)


def _submit_job(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``ray job submit``, retried while the head's job agent is still starting (Ray answers HTTP 500 then)."""
    deadline = time.monotonic() + 180
    while True:
        done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
        if "No available agent to submit job" not in done.stdout + done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(3)


def test_sweep_runs_trials_on_both_nodes_of_a_two_node_cluster(tmp_path: Path) -> None:
    temp_dir = f"/tmp/nsr-{uuid.uuid4().hex[:6]}"  # short: Ray's unix socket paths must stay < 108 chars
    gcs_port, dash_port = free_port(), free_port()
    # Each node's dashboard agent gets its own port: the default (52365) may be held by another Ray on this
    # machine (an earlier test's local instance), and then the head has no agent to take the job.
    head_agent, worker_agent = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}  # Ray >= 2.59: token auth
    ray = _ray_cli()
    storage, uri = tmp_path / "ray", f"sqlite:///{tmp_path / 'mlflow.db'}"
    pytest.importorskip("aiohttp_cors", reason="`ray job submit` needs ray[default] (in the dev extra)")
    try:
        subprocess.run([ray, "start", "--head", f"--port={gcs_port}", "--num-cpus=1", "--resources", '{"head": 1}',
                        f"--temp-dir={temp_dir}", "--include-dashboard=true",
                        f"--dashboard-port={dash_port}", f"--dashboard-agent-listen-port={head_agent}",
                        "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        subprocess.run([ray, "start", f"--address=127.0.0.1:{gcs_port}", "--num-cpus=1", "--resources", '{"worker": 1}',
                        f"--dashboard-agent-listen-port={worker_agent}", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
        sweep = ["none-sweep", "sweep", str(DIGITS), "--name", "two", "--storage", str(storage), "--tracking-uri", uri,
                 "--num-samples", "4", "--address", "auto"]  # fmt: skip
        # submitted as a Ray job to the head, the way a cluster user runs it
        cmd = [ray, "job", "submit", "--address", f"http://127.0.0.1:{dash_port}", "--", *sweep]
        cmd[cmd.index("none-sweep")] = str(Path(sys.executable).with_name("none-sweep"))
        done = _submit_job(cmd, env, tmp_path)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert "succeeded" in done.stdout, done.stdout[-2000:]  # Ray's job-status line: it ran as a job
    finally:
        _stop_cluster(temp_dir, env)
    trials = ray_trials(storage, "two")
    assert len(trials) == 4 and all(t.status == "TERMINATED" for t in trials)
    nodes = {t.last_result["node_id"] for t in trials}
    assert len(nodes) == 2, f"all trials ran on {nodes}"
    children = SweepTracker(uri, "two").children()
    assert {run.data.tags["none_sweep.node_id"] for run in children.values()} == nodes


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_prints_the_resume_command_and_resume_finishes(tmp_path: Path) -> None:
    storage, uri = tmp_path / "ray", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*CLI, "sweep", str(DIGITS), "--name", "c", "--storage", str(storage), "--tracking-uri", uri]
    out = tmp_path / "first.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while "none-sweep: trial" not in out.read_text():
                assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
                time.sleep(0.5)
            time.sleep(5)
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                kill_group(proc)
    text = out.read_text()
    assert code == 130, text[-3000:]
    assert f"none-sweep sweep {DIGITS} --name c --storage {storage} --resume" in text
    tracker = SweepTracker(uri, "c")
    parent = tracker.client.get_run(tracker.parent_id)
    assert parent.data.tags["none_sweep.status"] == "interrupted"

    second = subprocess.run([*args[:-2], "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    trials = ray_trials(storage, "c")
    assert len(trials) == 6 and all(t.status == "TERMINATED" for t in trials)
    tracker = SweepTracker(uri, "c")
    assert set(tracker.children()) == {t.trial_id for t in trials}
    assert tracker.client.get_run(tracker.parent_id).data.tags["none_sweep.status"] == "finished"


# ---------------------------------------------------------------------- a tracking server that goes away
def _start_mlflow_server(folder: Path, port: int) -> subprocess.Popen:
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    proc = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--artifacts-destination", str(folder / "artifacts")],
        stdout=open(folder / f"server-{port}.log", "a"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )  # fmt: skip
    import urllib.request

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None, (folder / f"server-{port}.log").read_text()[-2000:]
            time.sleep(1)
    kill_group(proc)
    raise AssertionError("mlflow server did not come up")


@pytest.mark.slow
def test_tracking_server_down_mid_sweep_then_sync_mlflow_backfills(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _start_mlflow_server(tmp_path, port)
    storage = tmp_path / "ray"
    args = [*CLI, "sweep", str(every_model(tmp_path)), "--name", "o", "--storage", str(storage), "--tracking-uri", uri]
    out = tmp_path / "sweep.log"
    try:
        with open(out, "w") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
            deadline = time.monotonic() + 600
            while not finished_records(storage / "o"):
                assert proc.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
                time.sleep(0.5)
            kill_group(server)  # the tracking server dies mid-sweep
            code = proc.wait(timeout=900)
    finally:
        if server.poll() is None:
            kill_group(server)
    text = out.read_text()
    assert code == 0, text[-3000:]  # the sweep finished anyway
    assert "none-sweep sync-mlflow --name o" in text and "MLflow:" in text
    trials = ray_trials(storage, "o")
    assert len(trials) == 6 and all(t.status == "TERMINATED" for t in trials)

    server = _start_mlflow_server(tmp_path, port)  # back up, on the same store
    try:
        sync = subprocess.run([*CLI, "sync-mlflow", "--name", "o", "--storage", str(storage)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert sync.returncode == 0, sync.stdout[-3000:] + sync.stderr[-3000:]
        tracker = SweepTracker(uri, "o")
        children = tracker.children()
        assert set(children) == {t.trial_id for t in trials}
        for t in trials:
            run = children[t.trial_id]
            assert run.info.status == "FINISHED"
            assert run.data.metrics["asr"] == pytest.approx(t.last_result["asr"])
            assert tracker.has_model(run.info.run_id)
        parent = tracker.client.get_run(tracker.parent_id)
        assert parent.data.tags["none_sweep.status"] == "finished" and "baseline_asr" in parent.data.metrics
    finally:
        kill_group(server)
