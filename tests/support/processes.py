"""Real processes for the end-to-end and fault tests, and their clean-up.

Every fault test drives real processes: the ``none-sweep`` CLI as a subprocess (its own session, so it can
be signalled like a terminal's Ctrl+C or killed like an OOM victim), a Ray instance in a private temp dir
(``RAY_TMPDIR``: nothing is shared with other Ray users of the machine), and, where the test needs one, a real
``mlflow server``. Clean-up never uses ``ray stop --force`` (it would stop every Ray process on a machine
shared with other test runs): processes are found by the test's private temp dir and killed by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NONE_SWEEP = str(BIN / "none-sweep")
RAY = str(BIN / "ray")
MLFLOW = str(BIN / "mlflow")

#: A private local cluster; Ray 2.59+ turns token auth on whenever ~/.ray/auth_token exists, and that file on
#: a shared machine is not these tests' to rely on (test_cluster_e2e.py does the same).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


class Proc:
    """A CLI subprocess in its own session with its output in files (readable while it runs)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], tag: str) -> None:
        self.out_path = cwd / f"{tag}.out"
        self.err_path = cwd / f"{tag}.err"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 -- open for the process's life, closed in close()
        self._err = open(self.err_path, "wb")  # noqa: SIM115
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


def no_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" not in text
