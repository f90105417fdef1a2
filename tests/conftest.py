"""Fixtures shared by the test modules; plain helpers they share live in ``tests/support/``.

- ``tracking_uri``: an empty MLflow sqlite store in the test's ``tmp_path`` (created on first use);
- ``free_port``: a loopback port nothing listens on (``support.net.free_port()`` when a test needs several);
- ``store``: a real MLflow store holding a hand-built sweep with known answers (``support.report_store``), built
  once per session: report, ls and export tests read it (they may log a report or register a model in it, never
  add or change runs);
- ``ray_local``: this process's local Ray (2 CPUs, no GPU, no dashboard), started once and shut down at the end of
  the session. The sweep runner's own ``ray.init(ignore_reinit_error=True)`` reuses it. A test that needs a Ray
  of another shape (GPUs, custom resources, several nodes) starts it in a subprocess
  (``support.processes.ray_sandbox``): one process has one Ray;
- ``digits_sweep``: ``search_spaces/digits_tiny.yaml`` (6 trials) run to its end through the real runner, once per
  session, on ``ray_local``, for every test that only reads a finished sweep's results (``support.sweeps``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from support import net
from support.report_store import Store, populate_store
from support.sweeps import FinishedSweep, run_digits_sweep

#: The shared local Ray: the machine's 2 cores, CPU only whatever the machine has (so resource checks see the same
#: node everywhere), and the runtime env the runner would give its own Ray.
LOCAL_RAY = {
    "address": "local",
    "num_cpus": 2,
    "num_gpus": 0,
    "include_dashboard": False,
    "log_to_driver": False,
    "runtime_env": {"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}},
}


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def free_port() -> int:
    return net.free_port()


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return populate_store(tmp_path_factory.mktemp("mlflow"), models=("t3", "t4"))


def start_local_ray() -> None:
    """Start :data:`LOCAL_RAY` unless this process already has a Ray (a test may have shut it down)."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
        ray.init(**LOCAL_RAY)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Owns the local Ray's lifetime: whatever Ray this process has at the end of the session is shut down."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_local(ray_session: None) -> None:
    start_local_ray()


@pytest.fixture(scope="session")
def digits_sweep(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> FinishedSweep:
    start_local_ray()
    return run_digits_sweep(tmp_path_factory.mktemp("digits"))
