"""The product on a GPU, end to end: a 4-trial sweep of ResNet-18 packed 4 to the GPU, MLflow into SQLite.

CIFAR-10-shaped synthetic images are written on this machine in torchvision's own CIFAR-10 layout (the pickled
``cifar-10-batches-py`` batches), so the trials read them through the product's real ``cifar10`` loader; then
``python -m none_sweep sweep`` runs the space below as a user would (preflight, baseline, Optuna TPE, Ray Tune with
``resources.gpu: 0.25``, the MLflow callback, the Pareto front). Afterwards every record is checked: Ray's results
(4 trials, each with a final report), MLflow (a finished parent and 4 finished children) and each trial's last
checkpoint (written on the device the trials should have used). ``nvidia-smi`` is sampled meanwhile.

The dry run (``--quick``, or no GPU) runs the same on the CPU with small_cnn and small sizes.

    python -m bench.gpu_suite_smoke            # CUDA when available
    python -m bench.gpu_suite_smoke --quick
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ._common import add_common_args, print_header, setup, synthetic_images, table

NAME = "gpu-smoke"
TRIALS = 4


def write_cifar(root: Path, train: int, test: int, seed: int = 1234) -> Path:
    """Synthetic class-template images as ``root/cifar-10-batches-py`` (5 train batches, a test batch, meta)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    x, y = synthetic_images(train + test, 3, 32, 10, seed=seed)
    flat = x.reshape(len(x), -1).numpy()  # CIFAR's row layout: 1024 R, 1024 G, 1024 B per image
    labels = y.tolist()
    parts = np.array_split(np.arange(train), 5)
    for i, index in enumerate(parts, start=1):
        _dump(folder / f"data_batch_{i}", {"data": flat[index], "labels": [labels[j] for j in index]})
    _dump(folder / "test_batch", {"data": flat[train:], "labels": labels[train:]})
    _dump(folder / "batches.meta", {"label_names": [f"class{k}" for k in range(10)]})
    return root


def _dump(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def space(root: Path, cuda: bool, quick: bool) -> dict[str, Any]:
    """The smoke sweep's space: NONE thresholds searched by TPE, 4 trials at once (a quarter GPU each)."""
    big = cuda and not quick
    model = "resnet18" if cuda else "small_cnn"
    return {
        "description": "gpu_suite smoke: NONE on CIFAR-shaped synthetic images, 4 trials packed on one GPU",
        "base": {
            "seed": 0,
            "data": {"name": "cifar10", "root": str(root), "augment": False},  # flips would scramble the templates
            "attack": {
                "name": "badnets",
                "poison_rate": 0.1,
                "target": 0,
                "params": {"patch_size": 3, "location": "bottom_right", "pattern": "white"},
            },
            "model": {"name": model},
            "train": {
                "epochs": 3 if big else 2,
                "batch_size": 256 if cuda else 32,
                "lr": 0.05,
                "device": "auto",
                **({} if cuda else {"num_threads": 1}),
            },
            # 1e-3: at 1e-2, fine-tuning a model this young after zeroing its suspect neurons can diverge
            "defense": {
                "pretrain_epochs": 3 if big else 2,
                "reset_interval": 1,
                "rounds": 1,
                "finetune_lr": 0.001,
                "skip_first": 5 if model == "resnet18" else 0,
            },
        },
        "space": {
            "defense.max_reset_fraction": {"type": "uniform", "low": 0.02, "high": 0.2},
            "defense.lamda_l": {"type": "uniform", "low": 0.05, "high": 0.3},
        },
        "objectives": [{"metric": "asr", "mode": "min"}, {"metric": "clean_acc", "mode": "max"}],
        "constraints": ["clean_acc_drop <= 0.1"],
        "search": {"sampler": "tpe", "seed": 0, "n_startup_trials": 2},
        "resources": {"cpu": 2, "gpu": 0.25} if cuda else {"cpu": 1, "gpu": 0},
        "num_samples": TRIALS,
        "max_concurrent": TRIALS if cuda else 2,
        "max_failures": 0,
    }


def run_cli(space_path: Path, work: Path, cuda: bool) -> tuple[int, float, Any]:
    """``python -m none_sweep sweep ...`` in a subprocess (its output is ours); rc, wall seconds, the sampler."""
    from .bench_sweep import GpuSampler, _Null

    args = [sys.executable, "-m", "none_sweep", "sweep", str(space_path), "--name", NAME,
            "--storage", str(work / "ray"), "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    print("$ " + " ".join(args), flush=True)
    with GpuSampler() if cuda else _Null() as sampler:
        t0 = time.perf_counter()
        rc = subprocess.run(args, env=env, cwd=work, check=False).returncode
        wall = time.perf_counter() - t0
    return rc, wall, sampler


def trial_records(work: Path) -> list[dict[str, Any]]:
    """Per trial: its last ``result.json`` row and the device its last checkpoint was written on."""
    from none_sweep.train import load_state

    out = []
    for folder in sorted((work / "ray" / NAME).glob("train_trial_*")):
        lines = [ln for ln in (folder / "result.json").read_text().splitlines() if ln.strip()]
        last = json.loads(lines[-1]) if lines else {}
        checkpoints = sorted(folder.glob("checkpoint_*/run.ckpt"))
        device = load_state(checkpoints[-1])["rng_device"] if checkpoints else "none"
        out.append({"trial": folder.name.split("_")[2], "last": last, "device": device})
    return out


def mlflow_statuses(work: Path) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(NAME)
    if experiment is None:
        return []
    return [r.info.status for r in client.search_runs([experiment.experiment_id])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_suite_smoke", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--work", default="/tmp/gpu_suite_smoke", help="scratch folder (data, Ray, MLflow)")
    args = parser.parse_args(argv)
    device = setup(args)
    cuda = device.type == "cuda"
    print_header("gpu_suite_smoke: a 4-trial packed NONE sweep through the product's CLI", device)
    work = Path(args.work) / time.strftime("%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    train, test = (1_000, 300) if args.quick or not cuda else (10_000, 2_000)
    root = write_cifar(work / "data", train, test)
    spec = space(root, cuda, args.quick)
    (work / "space.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    print(f"data: {train} + {test} synthetic CIFAR-10-shaped images in {root}; model {spec['base']['model']['name']}, "
          f"{TRIALS} trials with {spec['resources']} each\n", flush=True)  # fmt: skip

    rc, wall, sampler = run_cli(work / "space.yaml", work, cuda)
    records = trial_records(work)
    statuses = mlflow_statuses(work)
    finals = [r for r in records if r["last"].get("final") == 1]
    want = "cuda" if cuda else "cpu"
    nan = float("nan")
    rows = [[r["trial"], r["last"].get("config", {}).get("defense.max_reset_fraction", nan),
             r["last"].get("config", {}).get("defense.lamda_l", nan), r["last"].get("clean_acc", nan),
             r["last"].get("asr", nan), r["last"].get("wall_s", nan), r["last"].get("pretrain_cached", nan),
             r["device"]] for r in records]  # fmt: skip
    print()
    print(table(["trial", "max_reset_fraction", "lamda_l", "clean_acc", "asr", "wall_s", "pretrain_cached",
                 "device"], rows))  # fmt: skip
    util = getattr(sampler, "mean_util", float("nan"))
    mem = getattr(sampler, "peak_mem_gib", float("nan"))
    print(f"\nfigure: smoke sweep: {len(finals)}/{TRIALS} trials finished in {wall:.1f} s wall "
          f"({3600 * len(finals) / wall:.0f} trials/hour, baseline and start-up included); GPU util mean "
          f"{util:.0f} %, peak GPU memory {mem:.1f} GiB")  # fmt: skip
    problems = []
    if rc != 0:
        problems.append(f"the sweep exited {rc}")
    if len(finals) != TRIALS:
        problems.append(f"{len(finals)} of {TRIALS} trials reached their final report")
    if any(r["device"] != want for r in records):
        problems.append(f"checkpoints written on {sorted({r['device'] for r in records})}, expected {want}")
    if len(statuses) != TRIALS + 1 or any(s != "FINISHED" for s in statuses):
        problems.append(f"MLflow runs {statuses} (expected a parent and {TRIALS} children, all FINISHED)")
    ok = not problems
    print(f"check: smoke sweep: {'ok' if ok else 'FAILED'} ({'; '.join(problems) or 'all records agree'}; "
          f"work folder {work})")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
