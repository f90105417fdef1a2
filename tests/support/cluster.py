"""A multi-node Ray cluster on this machine, started the way a cluster starts: ``ray start`` per node.

One head and N workers on loopback (``--node-ip-address 127.0.0.1``), each raylet on a ``--node-manager-port``
of our choosing (so its node id can be read from its command line), every port we can name picked free (GCS,
dashboard, each node's dashboard agent, the Ray client server), a private temp dir for the whole cluster
(``--temp-dir`` and ``RAY_TMPDIR``: short, Ray's socket paths must fit 107 bytes). The head can take part in
the job with ``--num-cpus 0``, as the cloud configs' head does: trials then land on the workers only.

Stopping never uses ``ray stop`` (it would stop every Ray of the machine, other people's too): the processes
are found by the cluster's temp dir (their command line, or ``RAY_TMPDIR`` for ``ray::`` workers), sent
SIGTERM, and SIGKILLed by pid if they are still there after a grace period.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from support.net import free_port
from support.processes import RAY, environ_of, kill_matching, processes, wait_for

OBJECT_STORE_BYTES = 100 * 1024 * 1024  # per node; the default (30% of RAM per node) is meant for one node a host


@dataclass
class LocalCluster:
    address: str  # the GCS address, 127.0.0.1:PORT
    dashboard: str | None  # http://127.0.0.1:PORT (the jobs API), when the head runs one
    env: dict[str, str]  # the environment every node started with (reach the cluster with it)
    temp_dir: str
    head_node: str = ""  # node ids, read from the raylets' command lines
    worker_nodes: list[str] = field(default_factory=list)


def _raylet_node_id(nm_port: int) -> str | None:
    for _pid, cmd in processes():
        if "/raylet/raylet " in cmd + " " and f"--node_manager_port={nm_port} " in cmd + " ":
            found = re.search(r"--node_id=([0-9a-f]+)", cmd)
            if found:
                return found.group(1)
    return None


def _total_cpus(address: str, env: Mapping[str, str]) -> float | None:
    """The cluster's CPU total as ``ray status`` reports it (``0.0/3.0 CPU``), or None while it cannot say."""
    out = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True, env=dict(env))
    found = re.search(r"[\d.]+/([\d.]+) CPU", out.stdout) if out.returncode == 0 else None
    return float(found.group(1)) if found else None


def stop_matching(marker: str, grace_s: float = 20.0) -> None:
    """SIGTERM every process of the cluster whose temp dir is ``marker``; SIGKILL (by pid) what is left."""
    me = os.getpid()

    def ours() -> list[int]:
        return [pid for pid, cmd in processes() if pid != me and (marker in cmd or (
            cmd.startswith("ray::") and environ_of(pid).get("RAY_TMPDIR") == marker))]  # fmt: skip

    for pid in ours():
        try:
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
    end = time.monotonic() + grace_s
    while ours() and time.monotonic() < end:
        time.sleep(0.5)
    for _ in range(3):
        if not kill_matching(marker):
            break
        time.sleep(1)


@contextmanager
def local_cluster(workers: int, *, head_cpus: int = 0, worker_cpus: int = 1, dashboard: bool = True,
                  env: Mapping[str, str] | None = None) -> Iterator[LocalCluster]:  # fmt: skip
    """A head (``head_cpus`` CPUs, the jobs dashboard if ``dashboard``) and ``workers`` worker nodes of
    ``worker_cpus`` CPUs each, up and registered; ``env`` is added to every node's environment (the head's is
    what a ``ray job submit`` entrypoint sees, as node_setup.sh's env file is on a real cluster)."""
    temp_dir = tempfile.mkdtemp(prefix="r4", dir="/tmp")
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI")}
    base.update({"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
                 "RAY_TMPDIR": temp_dir, **(env or {})})  # fmt: skip
    port = free_port()
    address = f"127.0.0.1:{port}"
    dash_port = free_port() if dashboard else None
    common = ["--node-ip-address=127.0.0.1", "--num-gpus=0", f"--object-store-memory={OBJECT_STORE_BYTES}",
              "--disable-usage-stats"]  # fmt: skip
    head_nm = free_port()
    nodes = [
        ["--head", f"--port={port}", f"--temp-dir={temp_dir}", f"--num-cpus={head_cpus}",
         f"--ray-client-server-port={free_port()}", f"--node-manager-port={head_nm}",
         f"--dashboard-agent-listen-port={free_port()}",
         *(["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}"]
           if dashboard else ["--include-dashboard=false"])],
    ]  # fmt: skip
    worker_nms = [free_port() for _ in range(workers)]
    for nm in worker_nms:
        nodes.append([f"--address={address}", f"--num-cpus={worker_cpus}", f"--node-manager-port={nm}",
                      f"--dashboard-agent-listen-port={free_port()}"])  # fmt: skip
    try:
        for args in nodes:
            started = subprocess.run([RAY, "start", *args, *common], env=base, capture_output=True, text=True,
                                     timeout=240, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            assert started.returncode == 0, (started.stdout + started.stderr)[-3000:]
        total = head_cpus + workers * worker_cpus
        wait_for(f"{workers + 1} nodes with {total} CPUs", lambda: _total_cpus(address, base) == total, 240)
        head = wait_for("the head's raylet", lambda: _raylet_node_id(head_nm), 60)
        worker_ids = [wait_for(f"raylet on port {nm}", lambda nm=nm: _raylet_node_id(nm), 60) for nm in worker_nms]
        yield LocalCluster(address, f"http://127.0.0.1:{dash_port}" if dashboard else None, base, temp_dir, head,
                           worker_ids)  # fmt: skip
    finally:
        stop_matching(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
