"""MLflow write latency under concurrent writers: SQLite vs PostgreSQL behind ``mlflow server``.

Why the cluster configs keep MLflow's runs in PostgreSQL and SQLite only on a laptop: the figures this prints.
For each backend a real ``mlflow server`` (``--workers 2``, as ``cluster/start_mlflow.sh`` starts it) runs on
loopback over a fresh store: a SQLite file in a temp dir, or a throw-away PostgreSQL (``bench/_postgres.py``,
fsync on, as a real database runs). W writer processes start together (a file barrier), each creates a run and
sends S ``log_batch`` requests of a trial report's size (10 metrics at one step, what the sweep's MLflow callback
sends per epoch), then closes the run; every request is timed in the writer. Then every value is read back (a
lost write is an error, not a latency).

``--direct`` adds the same writers going straight to the database (no server: what several drivers sharing one
store do), where SQLite's single write lock shows as ``database is locked`` errors.

    python -m bench.bench_tracking_store                      # 1 and 8 writers, 40 reports each
    python -m bench.bench_tracking_store --writers 8 --steps 100 --direct
    python -m bench.bench_tracking_store --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ._common import print_header, table
from ._postgres import postgres_unavailable, throwaway_postgres

METRICS = 10
WRITER = r"""
import json, sys, time
from pathlib import Path
from mlflow import MlflowClient
from mlflow.entities import Metric
uri, exp_name, me, steps, metrics, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6])
client = MlflowClient(tracking_uri=uri)
exp = client.get_experiment_by_name(exp_name).experiment_id
while not go.exists():
    time.sleep(0.005)
lat, errors = [], []
t0 = time.perf_counter()
run = client.create_run(exp, run_name=f"writer-{me}").info.run_id
for step in range(steps):
    batch = [Metric(f"m{j}", me + step / 1000 + j, int(time.time() * 1000), step) for j in range(metrics)]
    s = time.perf_counter()
    try:
        client.log_batch(run, metrics=batch)
    except Exception as exc:
        errors.append(type(exc).__name__ + ": " + str(exc).splitlines()[0][:200])
    lat.append(time.perf_counter() - s)
client.set_terminated(run)
print(json.dumps({"run": run, "lat": lat, "errors": errors, "wall": time.perf_counter() - t0}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_server(backend: str, folder: Path, workers: int) -> Iterator[str]:
    """``mlflow server`` on a free loopback port over ``backend``; yields its URL."""
    port = _free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    log = open(folder / "server.log", "ab")  # noqa: SIM115 -- the server writes to it until it ends
    proc = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", backend, "--host", "127.0.0.1", "--port", str(port),
         "--serve-artifacts", "--artifacts-destination", str(folder / "artifacts"), "--workers", str(workers)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        end = time.monotonic() + 240
        while not _healthy(port):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError((folder / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
        log.close()


def run_writers(uri: str, writers: int, steps: int, folder: Path) -> dict[str, Any]:
    """W writer processes at once against ``uri``; their latencies, errors, and what was read back."""
    from mlflow import MlflowClient

    exp_name = f"bench-{writers}w-{time.monotonic_ns()}"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment(exp_name)
    go = folder / f"go-{exp_name}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, exp_name, str(i), str(steps), str(METRICS), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(writers)]  # fmt: skip
    time.sleep(3 + writers)  # let every writer import MLflow and wait at the barrier
    t0 = time.perf_counter()
    go.touch()
    outs = [p.communicate(timeout=1800) for p in procs]
    wall = time.perf_counter() - t0
    lat: list[float] = []
    errors: list[str] = []
    runs = []
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            errors.append(err.strip().splitlines()[-1][:200] if err.strip() else f"writer exit {p.returncode}")
            continue
        row = json.loads(out.strip().splitlines()[-1])
        lat += row["lat"]
        errors += row["errors"]
        runs.append(row["run"])
    lost = 0
    for run in runs:
        for j in (0, METRICS - 1):
            got = {m.step for m in client.get_metric_history(run, f"m{j}")}
            lost += steps - len(got & set(range(steps)))
    return {"lat": lat, "errors": errors, "lost": lost + (writers - len(runs)) * steps * 2, "wall": wall}


def summarise(store: str, mode: str, writers: int, steps: int, result: dict[str, Any]) -> list[Any]:
    lat_ms = sorted(x * 1000 for x in result["lat"]) or [float("nan")]

    def pct(q: float) -> float:
        return lat_ms[min(len(lat_ms) - 1, int(q * len(lat_ms)))]

    return [store, mode, writers, writers * steps, statistics.median(lat_ms), pct(0.95), pct(0.99), lat_ms[-1],
            writers * steps / result["wall"], len(result["errors"]), result["lost"]]  # fmt: skip


HEADERS = ["store", "path", "writers", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms", "req/s", "errors", "lost"]


@contextlib.contextmanager
def backend(store: str, folder: Path, fsync: bool) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{folder / 'mlflow.db'}"
    else:
        with throwaway_postgres(folder, fsync=fsync) as url:
            yield url


def measure(store: str, writers_list: list[int], steps: int, direct: bool, server_workers: int,
            fsync: bool) -> tuple[list[list[Any]], list[str]]:  # fmt: skip
    rows, notes = [], []
    folder = Path(tempfile.mkdtemp(prefix=f"bts-{store}-"))
    try:
        with backend(store, folder, fsync) as db:
            with mlflow_server(db, folder, server_workers) as url:
                for w in writers_list:
                    r = run_writers(url, w, steps, folder)
                    rows.append(summarise(store, "server", w, steps, r))
                    notes += [f"{store}/server/{w}: {e}" for e in sorted(set(r["errors"]))[:3]]
            if direct:
                for w in writers_list:
                    r = run_writers(db, w, steps, folder)
                    rows.append(summarise(store, "direct", w, steps, r))
                    notes += [f"{store}/direct/{w}: {e}" for e in sorted(set(r["errors"]))[:3]]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,8", help="comma-separated writer counts (default 1,8)")
    parser.add_argument("--steps", type=int, default=40, help="log_batch requests per writer")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--direct", action="store_true", help="also write straight to the database, no server")
    parser.add_argument("--server-workers", type=int, default=2, help="mlflow server --workers (start_mlflow.sh: 2)")
    parser.add_argument("--no-fsync", action="store_true", help="PostgreSQL with fsync off (not what a cluster runs)")
    parser.add_argument("--quick", action="store_true", help="10 requests per writer")
    args = parser.parse_args(argv)
    steps = 10 if args.quick else args.steps
    writers = [int(w) for w in args.writers.split(",")]
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    print_header("bench_tracking_store — MLflow log_batch latency, SQLite vs PostgreSQL", torch.device("cpu"))
    rows: list[list[Any]] = []
    notes: list[str] = []
    for store in args.stores.split(","):
        if store == "postgres" and postgres_unavailable():
            notes.append(f"postgres: skipped ({postgres_unavailable()})")
            continue
        got, said = measure(store, writers, steps, args.direct, args.server_workers, not args.no_fsync)
        rows += got
        notes += said
    print(table(HEADERS, rows))
    for note in notes:
        print(f"note: {note}")
    by = {(r[0], r[1], r[2]): r for r in rows}
    for w in writers:
        s, p = by.get(("sqlite", "server", w)), by.get(("postgres", "server", w))
        if s and p:
            print(f"ratio: {w} writer(s) through the server: p95 sqlite/postgres = {s[5] / p[5]:.2f}×, "
                  f"p50 {s[4] / p[4]:.2f}×, throughput postgres/sqlite = {p[8] / s[8]:.2f}×")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
