"""The same 8-trial NONE sweep run different ways: trials packed on one device vs one at a time, and shared
pre-training (``PretrainCache``) on vs off. Reports trials/hour, device-seconds per trial and, on a GPU, its
utilisation (``nvidia-smi`` sampled every 200 ms while the sweep runs).

Every trial is the project's Ray Tune trainable (``none_sweep.sweep.trainable.train_trial``: one
``ExperimentRun``, a report per epoch, a checkpoint per round, the shared pre-training cache when enabled),
through a plain ``Tuner`` with a fixed grid over ``defense.max_reset_fraction`` (no searcher, no MLflow; those are
``bench_overhead``). All trials share the pre-training prefix, so the cache trains it once.

- CUDA: ResNet-18 on synthetic CIFAR-shaped images (the registered ``bench-cifar10`` dataset: no download), one
  GPU, packing 1 (sequential), 2, 4 and 8 trials per GPU (``resources.gpu`` 1, 1/2, 1/4, 1/8; CPUs split evenly).
- CPU: small_cnn on a 4000-image Fashion-MNIST subset (``--quick``: digits, 4 trials); packing 1 trial with 2
  threads vs 2 trials with 1 thread each.

    python -m bench.bench_sweep
    python -m bench.bench_sweep --quick
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._common import add_common_args, print_header, setup, synthetic_images, table

SYNTHETIC = "bench-cifar10"


# --------------------------------------------------------------------------- synthetic data as a registered dataset
def register_synthetic(train: int = 50_000, test: int = 2_000) -> None:
    """Register ``bench-cifar10``: CIFAR-10's static info, class-template images made on load (seeded)."""
    from none_sweep.data import DATASETS, DatasetLoader, Splits, dataset_info

    if SYNTHETIC in DATASETS.names():
        return
    cifar = dataset_info("cifar10")
    info = type(cifar)(
        SYNTHETIC, cifar.num_classes, cifar.channels, cifar.size, cifar.mean, cifar.std, cifar.augmentation
    )

    def load(cfg: Any, seed: int) -> Splits:
        n_train = int(os.environ.get("BENCH_SYNTHETIC_TRAIN") or train)  # the driver's --images reach the workers
        x, y = synthetic_images(n_train + test, info.channels, info.size, info.num_classes, seed=1234)
        return Splits(x[:n_train], y[:n_train], x[n_train:], y[n_train:])

    DATASETS.add(SYNTHETIC, DatasetLoader(info, load))


def bench_trainable(config: dict[str, Any], **kwargs: Any) -> None:
    """The project's trainable, after registering the synthetic dataset in this worker process."""
    register_synthetic()
    from none_sweep.sweep.trainable import train_trial

    train_trial(config, **kwargs)


# --------------------------------------------------------------------------- configs
def base_config(device: str, quick: bool, images: int | None) -> dict[str, Any]:
    defense = {"pretrain_epochs": 2, "after_reset": "finetune", "reset_interval": 1, "rounds": 1,
               "finetune_lr": 0.01, "max_reset_fraction": 0.05}  # fmt: skip
    attack = {"name": "badnets", "poison_rate": 0.1, "target": 0,
              "params": {"patch_size": 3, "location": "bottom_right", "pattern": "white"}}  # fmt: skip
    if device == "cuda":
        return {"seed": 0, "data": {"name": SYNTHETIC}, "attack": attack,
                "model": {"name": "resnet18"},
                "train": {"epochs": 2, "batch_size": 512, "lr": 0.1, "device": "cuda", "amp": True},
                "defense": {**defense, "skip_first": 5, "finetune_lr": 0.0001}}  # fmt: skip
    if quick:
        attack["params"]["patch_size"] = 2
        return {"seed": 0, "data": {"name": "digits"}, "attack": attack, "model": {"name": "small_cnn"},
                "train": {"epochs": 4, "batch_size": 64, "lr": 0.05, "device": "cpu"},
                "defense": {**defense, "pretrain_epochs": 4}}  # fmt: skip
    return {"seed": 0, "data": {"name": "fashion-mnist", "train_subset": images or 4000, "test_subset": 1000},
            "attack": attack, "model": {"name": "small_cnn"},
            "train": {"epochs": 2, "batch_size": 128, "lr": 0.05, "device": "cpu"}, "defense": defense}  # fmt: skip


def make_space(base: dict[str, Any]) -> Any:
    from none_sweep.sweep.space import space_from_dict

    register_synthetic()  # the CUDA base names it; validation checks dataset names

    searched = {"defense.max_reset_fraction": {"type": "uniform", "low": 0.01, "high": 0.2}}
    return space_from_dict({"base": base, "space": searched}, source="bench_sweep")


# --------------------------------------------------------------------------- GPU utilisation
class GpuSampler:
    """``nvidia-smi --query-gpu=utilization.gpu,memory.used -lms 200`` in the background; mean and peak."""

    def __init__(self) -> None:
        self.util: list[float] = []
        self.mem: list[float] = []
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> GpuSampler:
        try:
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
        except OSError:
            return self
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.util.append(util)
            self.mem.append(mem)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)

    @property
    def mean_util(self) -> float:
        return sum(self.util) / len(self.util) if self.util else float("nan")

    @property
    def peak_mem_gib(self) -> float:
        return max(self.mem) / 1024 if self.mem else float("nan")


# --------------------------------------------------------------------------- one sweep
def run_sweep(
    space: Any, trials: int, packing: int, cache: bool, device: str, cpus: int, folder: Path
) -> dict[str, Any]:
    from ray import tune

    per_trial = {"cpu": max(1, cpus // packing), "gpu": (1.0 / packing) if device == "cuda" else 0}
    name = f"p{packing}-{'cache' if cache else 'nocache'}"
    cache_root = str(folder / name / "pretrain_cache") if cache else None
    trainable = tune.with_resources(
        tune.with_parameters(bench_trainable, space=space, baseline={}, cache_root=cache_root), per_trial
    )
    values = [round(0.02 + 0.02 * i, 2) for i in range(trials)]
    tuner = tune.Tuner(
        trainable,
        param_space={"defense.max_reset_fraction": tune.grid_search(values)},
        tune_config=tune.TuneConfig(max_concurrent_trials=packing),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(folder / "ray"),
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    with GpuSampler() if device == "cuda" else _Null() as sampler:
        t0 = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - t0
    errors = [" / ".join(str(r.error).strip().splitlines()[-3:])[:600] for r in results if r.error is not None]
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} trials failed, e.g. {errors[0]}")
    finals = [r.metrics for r in results]
    return {
        "packing": packing, "cache": cache, "per_trial": per_trial, "wall": wall, "trials": len(finals),
        "trial_wall": sum(float(m.get("wall_s", 0.0)) for m in finals) / len(finals),
        "cached": sum(int(bool(m.get("pretrain_cached", 0))) for m in finals),
        "clean_acc": sum(float(m.get("clean_acc", 0.0)) for m in finals) / len(finals),
        "util": getattr(sampler, "mean_util", float("nan")), "mem": getattr(sampler, "peak_mem_gib", float("nan")),
    }  # fmt: skip


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


# --------------------------------------------------------------------------- the command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sweep", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--trials", type=int, default=None, help="trials per sweep (default 8; --quick 4)")
    parser.add_argument("--packing", help="trials per device at once, comma-separated (default CUDA 1,2,4,8; CPU 1,2)")
    parser.add_argument("--cache", default="off,on", help="shared pre-training: off, on or off,on")
    parser.add_argument(
        "--images", type=int, help="training images (CUDA default 20000 synthetic; CPU 4000 Fashion-MNIST)"
    )
    parser.add_argument("--cpus", type=int, help="CPUs given to Ray (default: all usable cores)")
    args = parser.parse_args(argv)
    device = setup(args)
    dev = device.type
    trials = args.trials or (4 if args.quick else 8)
    packing = [int(p) for p in (args.packing or ("1,2,4,8" if dev == "cuda" else "1,2")).split(",")]
    caches = [c.strip() == "on" for c in args.cache.split(",")]
    cpus = args.cpus or len(os.sched_getaffinity(0))
    images = args.images or (5_000 if args.quick else 20_000) if dev == "cuda" else args.images
    os.environ["BENCH_SYNTHETIC_TRAIN"] = str(images or 0)  # read by register_synthetic in the Ray workers
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no per-trial tables on the console
    register_synthetic()
    base = base_config(dev, args.quick, images)
    space = make_space(base)

    print_header("bench_sweep: packed trials vs one at a time, shared pre-training on vs off", device)
    d = base["data"]
    print(f"trial: {base['model']['name']} on {d['name']} ({images if dev == 'cuda' else d.get('train_subset', 'all')} "
          f"train images), {base['defense']['pretrain_epochs']} pre-training epochs + NONE round + "
          f"{base['defense']['reset_interval']} fine-tuning epoch(s); {trials} trials per sweep; "
          f"Ray with {cpus} CPUs{' and 1 GPU' if dev == 'cuda' else ''}\n", flush=True)  # fmt: skip
    import ray

    ray.init(num_cpus=cpus, num_gpus=1 if dev == "cuda" else 0, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING,
             runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0", "BENCH_SYNTHETIC_TRAIN": str(images or 0)}})  # fmt: skip
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for cache in caches:
            for p in packing:
                r = run_sweep(space, trials, p, cache, dev, cpus, Path(tmp))
                results.append(r)
                print(f"  packing {p}, cache {'on' if cache else 'off'}: {r['wall']:.1f} s for {r['trials']} trials "
                      f"({r['cached']} forked from the cache)", flush=True)  # fmt: skip
    ray.shutdown()
    base_wall = next((r["wall"] for r in results if r["packing"] == 1 and not r["cache"]), float("nan"))
    unit = "GPU-s" if dev == "cuda" else f"{cpus}-core-s"
    for r in results:
        res = r["per_trial"]
        rows.append([r["packing"], f"{res['cpu']} CPU" + (f", {res['gpu']:g} GPU" if dev == "cuda" else ""),
                     "on" if r["cache"] else "off", r["wall"], 3600 * r["trials"] / r["wall"], r["wall"] / r["trials"],
                     r["trial_wall"], r["cached"], base_wall / r["wall"], r["util"], r["mem"]])  # fmt: skip
    print()
    print(table(["packing", "per trial", "shared pre-training", "sweep wall s", "trials/hour", f"{unit} per trial",
                 "mean trial wall_s", "forked from cache", "× vs sequential, no cache", "GPU util %", "peak GPU mem GiB"],
                rows))  # fmt: skip
    for r in results:
        if r["packing"] != 1 or r["cache"]:
            print(f"ratio: packing {r['packing']}, shared pre-training {'on' if r['cache'] else 'off'}: "
                  f"{base_wall / r['wall']:.2f}× the throughput of one trial at a time without it")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
