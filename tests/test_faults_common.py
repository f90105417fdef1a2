"""Shared pieces of the fault-injection tests (``tests/test_faults_*.py``); no tests of its own.

Every fault test drives real processes: the ``none-sweep`` CLI as a subprocess (its own session, so it can
be signalled like a terminal's Ctrl+C or killed like an OOM victim), a Ray instance in a private temp dir
(``RAY_TMPDIR``: nothing is shared with other Ray users of the machine), and, where the test needs one, a real
``mlflow server``. Clean-up never uses ``ray stop --force`` (it would stop every Ray process on a machine
shared with other test runs): processes are found by the test's private temp dir and killed by pid.

Trials are tiny (scikit-learn digits, a few epochs, one torch thread); on a loaded 2-core machine most of a
trial's time is process start-up, so the fault windows are built from epochs *after* the first checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NONE_SWEEP = str(BIN / "none-sweep")
RAY = str(BIN / "ray")
MLFLOW = str(BIN / "mlflow")

#: A private local cluster; Ray 2.59+ turns token auth on whenever ~/.ray/auth_token exists, and that file on
#: a shared machine is not these tests' to rely on (test_cluster_e2e.py does the same).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}

BASE: dict[str, Any] = {
    "seed": 0,
    "data": {"name": "digits", "train_subset": 400, "test_subset": 120},
    "attack": {"name": "badnets", "poison_rate": 0.1, "target": 0,
               "params": {"patch_size": 2, "location": "bottom_right", "pattern": "white"}},
    "model": {"name": "small_cnn"},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "num_threads": 1, "eval_batch_size": 512},
    "defense": {"pretrain_epochs": 2, "after_reset": "finetune", "reset_interval": 2, "rounds": 1, "finetune_lr": 0.01},
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def space_file(folder: Path, *, base: dict[str, Any] | None = None, space: dict[str, Any] | None = None,
               name: str = "space.yaml", **top: Any) -> Path:  # fmt: skip
    """A space file over :data:`BASE` (deep-merged with ``base``); ``top`` sets top-level sections."""
    merged = json.loads(json.dumps(BASE))
    for section, values in (base or {}).items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    data: dict[str, Any] = {
        "description": "fault-injection test space",
        "base": merged,
        "space": space or {"defense.max_reset_fraction": {"type": "uniform", "low": 0.02, "high": 0.3}},
        "search": {"sampler": "random", "seed": 0},
        "resources": {"cpu": 1, "gpu": 0},
        "num_samples": 2,
        "max_concurrent": 2,
        "max_failures": 1,
    }
    data.update(top)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------- processes
class Proc:
    """A CLI subprocess in its own session with its output in files (readable while it runs)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], tag: str) -> None:
        self.out_path = cwd / f"{tag}.out"
        self.err_path = cwd / f"{tag}.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._out, stderr=self._err,
                                      stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.pid = self.popen.pid

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            self._out.flush()
            self._err.flush()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 4000) -> str:
        return f"--- stdout ---\n{self.out[-n:]}\n--- stderr ---\n{self.err[-n:]}"

    def close(self) -> None:
        kill_group(self.pid)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._out.close()
        self._err.close()


def kill_group(pgid: int, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, the process group ``pgid`` (a session this test started)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        end = time.monotonic() + grace_s
        while time.monotonic() < end:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def processes() -> Iterator[tuple[int, str]]:
    """(pid, command line) of every process we can see, read from /proc (no psutil needed)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        yield int(entry.name), cmdline


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def kill_matching(marker: str) -> list[int]:
    """SIGKILL every process whose command line or RAY_TMPDIR names ``marker`` (this test's private temp dir)."""
    me = os.getpid()
    killed = []
    for pid, cmdline in processes():
        if pid == me:
            continue
        if marker in cmdline or (cmdline.startswith("ray::") and environ_of(pid).get("RAY_TMPDIR") == marker):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except (ProcessLookupError, PermissionError):
                continue
    return killed


@contextmanager
def ray_sandbox() -> Iterator[dict[str, str]]:
    """Environment for a driver that starts its own local Ray in a private temp dir; kills what it leaves."""
    tmp = tempfile.mkdtemp(prefix="rf", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI")}
    env.update(RAY_ENV, RAY_TMPDIR=tmp)
    try:
        yield env
    finally:
        for _ in range(3):
            if not kill_matching(tmp):
                break
            time.sleep(1)
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, proc: Proc | None = None,
             every: float = 0.5) -> Any:  # fmt: skip
    """Poll ``predicate`` until it is truthy; fail (with the process's output) on timeout or its exit."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and not proc.alive():
            raise AssertionError(f"process exited ({proc.popen.returncode}) while waiting for {what}\n{proc.tail()}")
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{proc.tail() if proc else ''}")
        time.sleep(every)


def sweep_args(space: Path, name: str, storage: Path, uri: str | None, *extra: str) -> list[str]:
    args = [NONE_SWEEP, "sweep", str(space), "--name", name, "--storage", str(storage)]
    if uri:
        args += ["--tracking-uri", uri]
    return args + list(extra)


# --------------------------------------------------------------------------- reading Ray's files directly
def trial_rows(storage: Path, name: str) -> dict[str, list[dict[str, Any]]]:
    """Ray trial id → the rows of its ``result.json`` (complete lines only), read without importing Ray."""
    out: dict[str, list[dict[str, Any]]] = {}
    folder = storage / name
    if not folder.is_dir():
        return out
    for path in folder.glob("*/result.json"):
        rows = []
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def checkpointed(storage: Path, name: str) -> set[str]:
    """Trial ids with at least one checkpoint in storage (persisted by the trial itself, unlike result.json,
    which the driver writes through a buffer and may lose to a SIGKILL)."""
    out = set()
    for folder in (storage / name).glob("train_trial_*/checkpoint_*"):
        out.add(folder.parent.name.split("_")[2])
    return out


def snapshotted_checkpoints(storage: Path, name: str) -> set[str]:
    """Trial ids whose checkpoint Ray's latest experiment-state snapshot records (what a restore resumes from).

    Ray snapshots the experiment every ~10 s; a driver killed before the snapshot that records a checkpoint
    restarts that trial from the previous one it recorded (or from scratch).
    """
    states = sorted((storage / name).glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return set()
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return set()
    out = set()
    for trial_json, run_meta in data.get("trial_data", []):
        if "checkpoint_0" in run_meta:
            out.add(json.loads(trial_json)["trial_id"])
    return out


def outcomes(storage: Path, name: str) -> dict[str, dict[str, Any]]:
    """``trial_outcomes/<trial id>/outcome.json`` written by the trainable before Ray hears of an ending."""
    out = {}
    for path in (storage / name / "trial_outcomes").glob("*/outcome.json"):
        try:
            out[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def ray_trials(storage: Path, name: str) -> list[Any]:
    from ray.tune import ExperimentAnalysis

    return list(ExperimentAnalysis(str(storage / name)).trials)


def mlflow_runs(uri: str, name: str) -> list[Any]:
    """Every run of the sweep's experiment (parent and children), straight from the store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return []
    return list(client.search_runs([exp.experiment_id], max_results=5000))


def children_by_trial(runs: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in runs:
        if r.data.tags.get("none_sweep.role") == "trial":
            out.setdefault(r.data.tags.get("ray.trial_id", "?"), []).append(r)
    return out


def no_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" not in text
