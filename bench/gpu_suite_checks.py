"""The product's CUDA-only branches, checked on the device: the GPU half of ``tests/test_fast_paths.py``.

On a GPU (``train.device: cuda``, the library's defaults: bf16 autocast and channels-last, ``torch.compile`` where
asked) and, for the dry run, on a CPU with ``train.cpu_fast_paths: true`` (the same branches):

- **band**: small_cnn on CIFAR-shaped synthetic images, fp32 vs bf16 + channels-last (vs + ``torch.compile`` in the
  full run; the CPU dry run, where bf16 is slow, compares fp32 with channels-last): clean accuracy and ASR in the
  same band, seconds per epoch;
- **autocast analysis**: the hand-built model with a clear backdoor neuron: the NONE analysis under bf16 autocast
  selects the channels and samples fp32 selects;
- **analysis memory**: ResNet-18's full ``analyse()`` pass (small_cnn on a CPU) with the default cache budget and
  with a budget of a quarter of its cache: peak device memory (``torch.cuda.max_memory_allocated``), passes, same
  selection;
- **checkpoint**: a defended run stopped after its pre-training, checkpointed and resumed in a new run: the CUDA
  RNG state and the data-order generator come back as saved, and the run finishes.

Prints ``check: NAME: ok|FAILED ...`` and ``figure: ...`` lines; exit status 1 when a check failed.

    python -m bench.gpu_suite_checks            # CUDA when available
    python -m bench.gpu_suite_checks --quick    # small sizes (the suite's dry run)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._common import add_common_args, print_header, setup, synthetic_images

FAILED: list[str] = []


def check(name: str, ok: bool, detail: str) -> None:
    print(f"check: {name}: {'ok' if ok else 'FAILED'} ({detail})", flush=True)
    if not ok:
        FAILED.append(name)


def figure(text: str) -> None:
    print(f"figure: {text}", flush=True)


# --------------------------------------------------------------------------- a model with a clear backdoor neuron
class Backdoored(nn.Module):
    """Two 1×1 conv layers and a head, weights set by hand: a clear backdoor neuron (channel 7 of each conv).

    Input channel ``c < 4`` carries class ``c``'s evidence (of strength ``1 + 0.3 c``, so the class channels score
    apart from each other), input channel 4 the trigger; conv channel 7 sees only the trigger and the head sends
    it to the target class 0. Channels 4–6 are seeded noise. Shared with ``tests/test_fast_paths.py``.
    """

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1, self.conv2, self.head = nn.Conv2d(5, 8, 1), nn.Conv2d(8, 8, 1), nn.Linear(8, 4)
        with torch.no_grad():
            w1 = 0.05 * torch.rand(8, 5, generator=g)
            w1[:4, :4] += torch.eye(4)
            w1[7] = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])
            w2 = 0.05 * torch.rand(8, 8, generator=g) + torch.eye(8)
            w2[7] = torch.eye(8)[7]
            head = torch.zeros(4, 8)
            head[range(4), range(4)] = 8.0
            head[0, 7] = 30.0
            for conv, w in ((self.conv1, w1), (self.conv2, w2)):
                assert conv.bias is not None
                conv.weight.copy_(w[:, :, None, None])
                conv.bias.zero_()
            self.head.weight.copy_(head)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(h.amax(dim=(2, 3)))


#: what the NONE analysis must select in each conv of :class:`Backdoored` at ``max_reset_fraction=0.5``
BACKDOOR_SELECTION = [7, 3, 2, 1]


def backdoor_inputs(device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], torch.Tensor]:
    """200 clean images (50 per class) and 24 triggered noise images, in batches of 32; and the trigger mask."""
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(50)
    n = labels.numel()
    x = 0.2 * torch.rand(n, 5, 4, 4, generator=g)
    pixel = torch.randint(0, 16, (n,), generator=g)
    x.view(n, 5, 16)[torch.arange(n), labels, pixel] = 1.0 + 0.3 * labels.float()
    triggered = 0.2 * torch.rand(24, 5, 4, 4, generator=g)  # no class evidence: only the trigger decides
    triggered[:, 4, 3, 3] = 2.0
    inputs = torch.cat([x, triggered]).to(device)
    is_triggered = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(24, dtype=torch.bool)])
    return list(inputs.split(32)), is_triggered


# --------------------------------------------------------------------------- configs and data
def synthetic_cifar(train: int, test: int, seed: int = 1234) -> Any:
    from none_sweep.data import ImageData, dataset_info

    info = dataset_info("cifar10")
    x, y = synthetic_images(train + test, info.channels, info.size, info.num_classes, seed=seed)
    return ImageData(x[:train], y[:train], x[train:], y[train:], info)


def run_config(device: torch.device, **train: Any) -> Any:
    """small_cnn on CIFAR-10's shape, BadNets; ``train`` overrides the train section."""
    from none_sweep.experiment import resolve_config

    data: dict[str, Any] = {
        "seed": 0,
        "data": {"name": "cifar10", "augment": False},  # crops and flips would scramble the class templates
        "attack": {"name": "badnets", "poison_rate": 0.1, "target": 0,
                   "params": {"patch_size": 3, "location": "bottom_right", "pattern": "white"}},
        "model": {"name": "small_cnn"},
        "train": {"epochs": 3, "batch_size": 32 if device.type == "cpu" else 128, "lr": 0.05, "device": device.type,
                  "cpu_fast_paths": device.type == "cpu", **train},
        "defense": {"enabled": False},
    }  # fmt: skip
    return resolve_config(data, source="gpu_suite_checks")


# --------------------------------------------------------------------------- the checks
def check_band(device: torch.device, data: Any, quick: bool) -> None:
    from none_sweep.train import ExperimentRun

    variants: dict[str, dict[str, bool]] = {"fp32": {"amp": False, "channels_last": False}}
    if device.type == "cpu" and quick:
        variants["channels-last"] = {"amp": False, "channels_last": True}
    else:
        variants["bf16+cl"] = {"amp": True, "channels_last": True}
    if device.type == "cuda" and not quick:
        variants["bf16+cl+compile"] = {"amp": True, "channels_last": True, "compile": True}
    results = {}
    for name, switches in variants.items():
        run = ExperimentRun(run_config(device, **switches), data=data)
        t0 = time.perf_counter()
        list(run.epochs())
        m = run.result().metrics
        epoch_s = [h["epoch_s"] for h in run.history]
        results[name] = m
        figure(f"band {name}: clean_acc {m['clean_acc']:.4f}, asr {m['asr']:.4f}, {len(epoch_s)} epochs in "
               f"{time.perf_counter() - t0:.1f} s (last epoch {epoch_s[-1]:.2f} s) on {m['device']}")  # fmt: skip
    ref = results["fp32"]
    for name, m in results.items():
        ok = abs(m["clean_acc"] - ref["clean_acc"]) <= 0.05 and abs(m["asr"] - ref["asr"]) <= 0.2
        check(f"band {name}", ok, f"clean_acc {m['clean_acc']:.3f} vs fp32 {ref['clean_acc']:.3f}, "
                                  f"asr {m['asr']:.3f} vs {ref['asr']:.3f}")  # fmt: skip


def check_autocast_analysis(device: torch.device) -> None:
    from none_sweep.config import DefenseConfig, TrainConfig
    from none_sweep.defense import analyse, find_monitored_layers
    from none_sweep.train.device import autocast

    model = Backdoored().to(device).eval()
    batches, is_triggered = backdoor_inputs(device)
    cfg = DefenseConfig(max_reset_fraction=0.5)
    layers = find_monitored_layers(model, cfg)
    fp32 = analyse(model, batches, layers, cfg, 4)
    with autocast(device, TrainConfig(cpu_fast_paths=True)):
        bf16 = analyse(model, batches, layers, cfg, 4)
    same = all(torch.equal(bf16.compromised[n], fp32.compromised[n]) for n in fp32.compromised)
    right = all(fp32.compromised[n].tolist() == BACKDOOR_SELECTION for n in fp32.compromised)
    samples = torch.equal(bf16.suspected, fp32.suspected) and torch.equal(fp32.suspected, is_triggered)
    check("autocast analysis", same and right and samples,
          f"fp32 {({n: c.tolist() for n, c in fp32.compromised.items()})}, bf16 same: {same}, "
          f"suspected = triggered: {samples}")  # fmt: skip


def check_analysis_memory(device: torch.device, images: int, model_name: str) -> None:
    from none_sweep.config import DefenseConfig, TrainConfig
    from none_sweep.defense import analyse, find_monitored_layers
    from none_sweep.train.device import autocast, memory_format

    from .bench_analysis import confident_model
    from .bench_epoch import resident_data

    train = TrainConfig()  # the library's defaults: bf16 + channels-last on CUDA, fp32 on a CPU
    amp, fmt = autocast(device, train), memory_format(device, train)
    data = synthetic_cifar(images, 2)
    resident = resident_data(data.train_x, data.train_y, data.info, device, fmt == torch.channels_last)
    model = confident_model(model_name, device, fmt, seed=0)
    dcfg = DefenseConfig(skip_first=5 if model_name == "resnet18" else 0)
    layers = find_monitored_layers(model, dcfg)
    batches = lambda: resident.ordered_batches(resident.train_x, dcfg.analysis_batch_size)  # noqa: E731

    def measured(budget: int | None) -> tuple[Any, float, float]:
        kwargs = {} if budget is None else {"cache_budget_bytes": budget}
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        with torch.no_grad(), amp:
            result = analyse(model, batches, layers, dcfg, data.info.num_classes, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20 if device.type == "cuda" else float("nan")
        return result, peak, seconds

    measured(None)  # warm-up (cudnn autotune, allocator)
    full, full_peak, full_s = measured(None)
    budget = max(1, full.cache_bytes // 4)
    small, small_peak, small_s = measured(budget)
    same = all(torch.equal(small.compromised[n], full.compromised[n]) for n in full.compromised)
    mib = lambda v: "n/a (CPU)" if v != v else f"{v:.1f} MiB"  # noqa: E731
    figure(f"analysis memory, {model_name} on {images} images: cache {full.cache_bytes / 2**20:.1f} MiB, peak "
           f"{mib(full_peak)} above the model and data, {full_s:.2f} s (1 pass); budget {budget / 2**20:.2f} MiB: "
           f"cache held {small.cache_bytes / 2**20:.2f} MiB, peak {mib(small_peak)}, {small_s:.2f} s "
           f"({small.passes} passes); same channels: {same}")  # fmt: skip
    ok = full.passes == 1 and small.passes == 2 and small.cache_bytes <= budget
    # CUDA: the second pass must need less memory; CPU (deterministic): both passes must select alike
    ok = ok and (small_peak < full_peak if device.type == "cuda" else same)
    check("analysis memory", ok, f"passes {full.passes} → {small.passes}, cache held ≤ budget: "
                                 f"{small.cache_bytes <= budget}, same channels: {same}")  # fmt: skip


def check_checkpoint(device: torch.device, data: Any, folder: Path, quick: bool) -> None:
    from none_sweep.experiment import resolve_config
    from none_sweep.train import ExperimentRun, load_state

    cfg_dict = _to_dict(run_config(device, amp=not (quick and device.type == "cpu")))
    cfg_dict["defense"] = {"enabled": True, "pretrain_epochs": 2, "reset_interval": 1, "rounds": 1, "finetune_lr": 0.01}
    cfg_dict["train"]["epochs"] = 2
    cfg = resolve_config(cfg_dict, source="gpu_suite_checks")
    first = ExperimentRun(cfg, data=data)
    epochs = first.epochs()
    for _ in range(2):
        next(epochs)
    path = folder / "run.ckpt"
    first.save_checkpoint(path)
    saved = load_state(path)
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    torch.rand(1000, device=device)  # move every RNG on, so that a restore that does nothing shows
    second = ExperimentRun(cfg, data=data)
    second.load_checkpoint(path)
    rng_back = cuda_state is None or torch.equal(torch.cuda.get_rng_state(device), cuda_state)
    gen_back = torch.equal(second.generator.get_state(), saved["generator"])
    reports = list(second.epochs())
    finished = bool(reports) and reports[-1].final and second.rounds and second.rounds[0]["neurons_reset"] > 0
    check("checkpoint", saved["rng_device"] == device.type and rng_back and gen_back and bool(finished),
          f"written on {saved['rng_device']} with {len(saved['rng_cuda'])} CUDA RNG state(s); CUDA RNG restored: "
          f"{rng_back}; generator restored: {gen_back}; resumed run finished its NONE round: {bool(finished)}")  # fmt: skip


def _to_dict(cfg: Any) -> dict[str, Any]:
    from none_sweep.config import to_dict

    return to_dict(cfg)


# --------------------------------------------------------------------------- the command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_suite_checks", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--work", default="/tmp/gpu_suite_checks", help="scratch folder for the checkpoint")
    args = parser.parse_args(argv)
    device = setup(args)
    cuda = device.type == "cuda"
    print_header("gpu_suite_checks: the product's CUDA branches on the device", device)
    folder = Path(args.work)
    folder.mkdir(parents=True, exist_ok=True)
    data = synthetic_cifar(*((1_000, 300) if args.quick else (10_000, 2_000)))
    images, model = (
        (20_000, "resnet18") if cuda and not args.quick else (2_000, "resnet18") if cuda else (512, "small_cnn")
    )
    steps: list[tuple[str, Callable[[], None]]] = [
        ("autocast analysis", lambda: check_autocast_analysis(device)),
        ("checkpoint", lambda: check_checkpoint(device, data, folder, args.quick)),
        ("analysis memory", lambda: check_analysis_memory(device, images, model)),
        ("band", lambda: check_band(device, data, args.quick)),
    ]
    for name, step in steps:
        try:
            step()
        except Exception as exc:  # one broken check must not hide the others
            check(name, False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
    print(f"\n{len(FAILED)} check(s) failed: {', '.join(FAILED)}" if FAILED else "\nall checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    raise SystemExit(main())
