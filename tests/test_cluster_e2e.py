"""End to end, as on a cluster: a Ray head started with ``ray start``, the sweep launched by the ``ray submit``
entry script, then ``export`` → ``none-sweep train`` on the exported file, ``--verify-seeds 3`` on the
cluster, and ``--register-model`` whose registered network scores the trial's clean accuracy. Real Ray,
real MLflow, real training on scikit-learn digits (search_spaces/digits_tiny.yaml).

The head runs as ``ray start --head --block`` in its own process group and is ended by that group's id (not
``ray stop --force``, which would stop every Ray process on a machine shared with other test runs). Ray token
authentication is off for this private cluster, as in the launcher configs: Ray 2.59+ turns it on whenever
``~/.ray/auth_token`` exists, and that file on a shared machine is not this test's to rely on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.net import free_port

from none_sweep.cli import main as run_cli

ROOT = Path(__file__).resolve().parents[1]
#: |trained - swept| allowed for clean_acc and asr. The sweep trained with 1 torch thread (the trial's CPU
#: share) and `none-sweep train` uses torch's default: float sums in another order move a few of the 360
#: digits test images (1 image = 0.28 points).
TOLERANCE = 0.03
RAY_ENV = {"RAY_AUTH_MODE": "disabled"}


@contextmanager
def ray_head(num_cpus: int = 2) -> Iterator[str]:
    """``ray start --head --block`` on a free port and a private temp dir; yields its address."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray_bin = str(Path(sys.executable).parent / "ray")
    log = open(Path(temp_dir) / "head.log", "wb")  # noqa: SIM115 -- the head writes to it until it ends
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **RAY_ENV}
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            "--include-dashboard=false",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while subprocess.run([ray_bin, "status", "--address", address], capture_output=True, env=env).returncode:
            assert head.poll() is None, (Path(temp_dir) / "head.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the Ray head did not come up in 180 s"
            time.sleep(2)
        yield address
    finally:
        for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
            try:
                os.killpg(head.pid, sig)
            except ProcessLookupError:
                break
            end = time.monotonic() + wait
            while time.monotonic() < end and _group_alive(head.pid):
                time.sleep(1)
            if not _group_alive(head.pid):
                break
        head.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    out = subprocess.run(["ps", "-eo", "pgid=,stat="], capture_output=True, text=True).stdout
    return any(line.split()[0] == str(pgid) and not line.split()[1].startswith("Z") for line in out.splitlines())


def registered_model_accuracy(uri: str, name: str, config_path: Path) -> float:
    """Load version 1 of ``name`` from the registry and score it on the config's clean test split."""
    import mlflow
    import mlflow.pytorch
    import torch

    from none_sweep.data import load_dataset, normalize
    from none_sweep.experiment import load_experiment

    cfg = load_experiment(config_path)
    data = load_dataset(cfg.data, cfg.seed)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pytorch.load_model(f"models:/{name}/1", map_location="cpu").eval()
    with torch.no_grad():
        predictions = model(normalize(data.test_x, data.info)).argmax(dim=1)
    return float((predictions == data.test_y).float().mean())


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_submit_sweep_then_export_train_and_verify(tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    home = tmp_path / "home"  # `ray submit` copies the script to ~ and runs it from there
    home.mkdir()
    shutil.copy(ROOT / "cluster" / "run_sweep.py", home / "run_sweep.py")
    with ray_head() as address:
        env = {
            **os.environ,
            "NONE_SWEEP_STORAGE": str(tmp_path / "ray"),
            "MLFLOW_TRACKING_URI": uri,
            "NONE_SWEEP_HOME": str(ROOT),
            "RAY_ADDRESS": address,
        }
        sweep = subprocess.run(
            [sys.executable, "run_sweep.py", "search_spaces/digits_tiny.yaml", "--name", "e2e", "--num-samples", "3"],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        assert f"--address {address} --storage {tmp_path / 'ray'} --tracking-uri {uri}" in sweep.stdout
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("e2e")
        trials = client.search_runs([exp.experiment_id], "tags.`none_sweep.role` = 'trial'")
        assert len(trials) == 3 and all(r.info.status == "FINISHED" for r in trials)

        # export the knee (always defined) and re-check it on 3 fresh seeds as Ray tasks on this cluster
        monkeypatch.setenv("RAY_ADDRESS", address)
        out = tmp_path / "best_defense.yaml"
        rc = run_cli(
            [
                "export",
                "--experiment",
                "e2e",
                "--knee",
                "--out",
                str(out),
                "--verify-seeds",
                "3",
                "--register-model",
                "e2e-none",
                "--tracking-uri",
                uri,
            ]
        )
        printed = capsys.readouterr()
        assert rc == 0, printed.err
        assert "fresh seeds 1..3 (n=3)" in printed.out
        verify = json.loads((tmp_path / "best_defense.verify.json").read_text())
        assert [r["seed"] for r in verify["per_seed"]] == [1, 2, 3]
        assert all(0.5 < r["clean_acc"] <= 1.0 for r in verify["per_seed"])

    chosen = client.get_run(verify["run_id"]).data.metrics
    assert registered_model_accuracy(uri, "e2e-none", out) == pytest.approx(chosen["clean_acc"], abs=1e-6)
    trained = subprocess.run(
        [sys.executable, "-m", "none_sweep", "train", str(out), "--out", str(tmp_path / "train"), "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    print(
        f"reproduction: swept clean_acc={chosen['clean_acc']:.4f} asr={chosen['asr']:.4f}; "
        f"trained clean_acc={metrics['clean_acc']:.4f} asr={metrics['asr']:.4f}"
    )
    assert abs(metrics["clean_acc"] - chosen["clean_acc"]) <= TOLERANCE
    assert abs(metrics["asr"] - chosen["asr"]) <= TOLERANCE
