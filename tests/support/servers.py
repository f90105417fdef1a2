"""A real ``mlflow server`` on loopback for the tests that go through one (the cluster's tracking path).

``backend`` is any ``--backend-store-uri`` (a SQLite file by default, or the URL of
``bench._postgres.throwaway_postgres``); artifacts are proxied by the server to ``folder/artifacts``, as the
cluster's ``start_mlflow.sh`` proxies them to its bucket. The server runs in its own session and is ended by
that group's id.
"""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.processes import MLFLOW, kill_group, wait_for


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(folder: Path, port: int, backend: str | None = None, tag: str = "server",
                  workers: int = 2) -> Iterator[subprocess.Popen]:  # fmt: skip
    """``mlflow server`` on 127.0.0.1:``port`` over ``backend`` (default ``folder/mlflow.db``); its log is
    ``folder/<tag>.log``."""
    backend = backend or f"sqlite:///{folder / 'mlflow.db'}"
    log_path = folder / f"{tag}.log"
    log = open(log_path, "ab")  # noqa: SIM115 -- the server writes to it until it ends
    proc = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", backend, "--host", "127.0.0.1", "--port", str(port),
         "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts"), "--workers", str(workers)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(f"mlflow server on port {port}", lambda: healthy(port) or proc.poll() is not None, 240)
        assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
        yield proc
    finally:
        kill_group(proc.pid)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        log.close()
