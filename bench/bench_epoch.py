"""One training epoch: our device-resident loop vs a conventional DataLoader + fp32 loop (the published way).

Ours: the whole uint8 training set resident on the device (``none_sweep.train.resident.ResidentData``), batch
crop/flip and normalisation as tensor ops, ``none_sweep.train.loop.train_epoch`` (one ``.item()`` per epoch),
optionally bf16 autocast, channels-last and ``torch.compile``. Conventional: a ``Dataset`` of HWC uint8 arrays
turned into PIL images one by one, torchvision ``RandomCrop(pad) + RandomHorizontalFlip + ToTensor + Normalize``
per sample, a shuffled ``DataLoader`` with worker processes (4 on a GPU machine), fp32, and ``loss.item()`` plus
an accuracy count per batch, as the published NONE code (kuangliu-style CIFAR loop) trains. Both train the same
registered model with the same SGD settings on the same synthetic CIFAR-/MNIST-shaped images.

On CUDA the default is the issue's protocol: ResNet-18 on 50 000 32×32 images, batch 128 and 512, plus the
FLOP floor (FlopCounterMode on one batch, ×3 for forward+backward, at the GPU's dense bf16 peak). On a CPU the
sizes are smaller (small_cnn on 28×28, ResNet-18 on a few hundred 32×32 images) and say so.

    python -m bench.bench_epoch            # CUDA when available
    python -m bench.bench_epoch --quick
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._common import add_common_args, fmt_ratio, print_header, setup, synthetic_images, table, timed

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) of the GPUs the issue names.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


@dataclass(frozen=True)
class Variant:
    name: str
    conventional: bool = False
    amp: bool = False
    channels_last: bool = False
    compile: str | None = None  # None | "default" | "reduce-overhead"


VARIANTS = {
    v.name: v
    for v in (
        Variant("conventional", conventional=True),
        Variant("resident-fp32"),
        Variant("resident-bf16-cl", amp=True, channels_last=True),
        Variant("resident-bf16-cl-compile", amp=True, channels_last=True, compile="default"),
        Variant("resident-bf16-cl-cudagraphs", amp=True, channels_last=True, compile="reduce-overhead"),
    )
}
CUDA_VARIANTS = list(VARIANTS)
CPU_VARIANTS = ["conventional", "resident-fp32"]  # bf16/channels-last/compile are CUDA paths in the library


@dataclass(frozen=True)
class Workload:
    model: str
    dataset: str  # a registered dataset name: only its static DatasetInfo (shape, mean/std, augmentation) is used
    images: int
    batch_sizes: tuple[int, ...] | None = None  # None: --batch-sizes


# --------------------------------------------------------------------------- the two training paths
class ConventionalDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10`` does per item: HWC uint8 array → PIL image → transforms."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, transform: Callable[[Any], torch.Tensor]) -> None:
        self.images = np.ascontiguousarray(x_uint8.permute(0, 2, 3, 1).numpy())
        if self.images.shape[-1] == 1:
            self.images = self.images[..., 0]
        self.labels = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def conventional_transform(info: Any, augment: bool = True) -> Callable[[Any], torch.Tensor]:
    """The published per-sample transform for ``info``'s augmentation (crop pad 4 at 32 px, flip for CIFAR)."""
    import torchvision.transforms as T

    from none_sweep.data import crop_padding

    steps: list[Any] = []
    if augment and info.augmentation in ("crop", "crop_flip"):
        steps.append(T.RandomCrop(info.size, padding=crop_padding(info.size)))
    if augment and info.augmentation == "crop_flip":
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(info.mean, info.std)]
    return T.Compose(steps)


def conventional_loader(x: torch.Tensor, y: torch.Tensor, info: Any, batch: int, workers: int, seed: int) -> Any:
    dataset = ConventionalDataset(x, y, conventional_transform(info))
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, generator=g)


def conventional_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, device: torch.device,
                       limit: int | None = None) -> float:  # fmt: skip
    """The published loop: fp32, ``.cuda()`` per batch, ``loss.item()`` and an accuracy count every batch."""
    model.train()
    total, correct, seen, steps = 0.0, 0, 0, 0
    for x, y in itertools.islice(loader, limit):
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item()
        correct += out.argmax(1).eq(y).sum().item()
        seen += y.numel()
        steps += 1
    return total / max(1, steps)


def resident_data(x: torch.Tensor, y: torch.Tensor, info: Any, device: torch.device, channels_last: bool) -> Any:
    """``ResidentData`` over the training tensors (a token test split: evaluation is not timed here)."""
    from none_sweep.train.resident import ResidentData

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tx, ty = x[:2], y[:2]
    return ResidentData(x, y, tx, ty, tx, ty, ty, info, device, fmt)


def resident_epoch(model: nn.Module, forward: nn.Module, optimizer: torch.optim.Optimizer, data: Any, batch: int,
                   generator: torch.Generator, amp: Any, limit: int | None = None) -> float:  # fmt: skip
    """The library's epoch: resident batches (augmented on the device) through ``train_epoch``."""
    from none_sweep.train.loop import train_epoch

    active = torch.ones(data.num_train, dtype=torch.bool, device=data.device)
    batches = itertools.islice(data.train_batches(active, batch, generator, augment=True), limit)
    return train_epoch(model, forward, optimizer, batches, amp, freeze_bn=False)


def build_model(
    workload: Workload, info: Any, device: torch.device, variant: Variant, seed: int
) -> tuple[nn.Module, nn.Module, Any]:
    from none_sweep.models import create_model

    torch.manual_seed(seed)
    fmt = torch.channels_last if variant.channels_last else torch.contiguous_format
    model = create_model(workload.model, info).to(device, memory_format=fmt)
    forward: nn.Module = model
    if variant.compile is not None:
        mode = None if variant.compile == "default" else variant.compile
        forward = torch.compile(model, mode=mode)  # type: ignore[assignment]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    return model, forward, optimizer


def autocast_for(device: torch.device, variant: Variant) -> Any:
    """The library's autocast choice (``none_sweep.train.device.autocast``) for this variant's switches."""
    from none_sweep.config import TrainConfig
    from none_sweep.train.device import autocast

    return autocast(device, TrainConfig(amp=variant.amp))


# --------------------------------------------------------------------------- measurement
def measure(
    workload: Workload,
    variant: Variant,
    batch: int,
    device: torch.device,
    *,
    workers: int,
    repeats: int,
    warmup_batches: int | None,
    seed: int,
) -> dict[str, Any]:
    """Seconds per epoch (best of ``repeats`` after a warm-up: noise from other work only adds) and the loss."""
    from none_sweep.data import dataset_info

    info = dataset_info(workload.dataset)
    x, y = synthetic_images(workload.images, info.channels, info.size, info.num_classes, seed)
    model, forward, optimizer = build_model(workload, info, device, variant, seed)
    if variant.conventional:
        loader = conventional_loader(x, y, info, batch, workers, seed)
        epoch = functools.partial(conventional_epoch, model, optimizer, loader, device)
    else:
        data = resident_data(x, y, info, device, variant.channels_last)
        generator = torch.Generator(device=device).manual_seed(seed)
        epoch = functools.partial(resident_epoch, model, forward, optimizer, data, batch, generator,
                                  autocast_for(device, variant))  # fmt: skip
    del model, forward, optimizer  # the partial holds them; deleting it below frees the device memory
    warm_s, _ = timed(functools.partial(epoch, warmup_batches), device)
    times, loss = [], float("nan")
    for _ in range(repeats):
        seconds, loss = timed(functools.partial(epoch, None), device)
        times.append(seconds)
    del epoch
    _free(device)
    return {"s": min(times), "median_s": statistics.median(times), "warmup_s": warm_s, "loss": loss}


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        torch._dynamo.reset()
    except Exception:  # dynamo absent or already clean
        pass


def train_flops_per_image(workload: Workload) -> float:
    """Forward FLOPs of one image ×3 (forward + backward), counted by ``FlopCounterMode`` on a CPU batch."""
    from torch.utils.flop_counter import FlopCounterMode

    from none_sweep.data import dataset_info
    from none_sweep.models import create_model

    info = dataset_info(workload.dataset)
    model = create_model(workload.model, info).eval()
    batch = 4
    x = torch.zeros(batch, info.channels, info.size, info.size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return 3.0 * counter.get_total_flops() / batch


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


# --------------------------------------------------------------------------- the command
def default_workloads(device: torch.device, quick: bool) -> list[Workload]:
    if device.type == "cuda":
        return [Workload("resnet18", "cifar10", 10_000 if quick else 50_000)]
    # A shared 2-core CPU trains ResNet-18 at ~10 images/s: a few batches of it, at the published batch only.
    return [Workload("small_cnn", "fashion-mnist", 2_000 if quick else 10_000),
            Workload("resnet18", "cifar10", 128 if quick else 256, (128,))]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_epoch", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--model", help="one workload: this registered model (with --dataset and --images)")
    parser.add_argument(
        "--dataset", default="cifar10", help="shape/augmentation of a registered dataset (synthetic pixels)"
    )
    parser.add_argument("--images", type=int, help="training images per epoch")
    parser.add_argument("--batch-sizes", help="comma-separated (default 128,512; 128 is the published batch)")
    parser.add_argument("--variants", help=f"comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument(
        "--workers", type=int, help="conventional loop's DataLoader workers (default: 4 on CUDA, 2 on CPU)"
    )
    parser.add_argument("--repeats", type=int, help="timed epochs per cell, the best reported (default: 2)")
    parser.add_argument("--peak-tflops", type=float, help="dense peak for the FLOP floor (default: 989 on H100/H200)")
    args = parser.parse_args(argv)
    device = setup(args)
    cuda = device.type == "cuda"
    workloads = default_workloads(device, args.quick)
    if args.model:
        workloads = [Workload(args.model, args.dataset, args.images or workloads[0].images)]
    elif args.images:
        workloads = [Workload(w.model, w.dataset, args.images, w.batch_sizes) for w in workloads]
    variants = [
        VARIANTS[v] for v in (args.variants.split(",") if args.variants else CUDA_VARIANTS if cuda else CPU_VARIANTS)
    ]
    batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",")) if args.batch_sizes else None
    workers = args.workers if args.workers is not None else (4 if cuda else 2)
    repeats = args.repeats or 2
    warmup = None if cuda else 1  # CUDA: a full warm-up epoch (cudnn autotune, compile of the last partial batch)
    peak = peak_tflops(device, args.peak_tflops)

    print_header("bench_epoch: one training epoch, resident loop vs conventional DataLoader", device)
    if not cuda:
        print("CPU run: reduced sizes (not the issue's 50k ResNet-18 protocol, which needs a GPU); "
              f"conventional loop with {workers} workers; warm-up {warmup} batch, then the best of {repeats} "
              "epochs.\n")  # fmt: skip
    for w in workloads:
        flops = train_flops_per_image(w)
        floor = w.images * flops / (peak * 1e12) if peak else float("nan")
        rows, summary = [], []
        for batch in batch_sizes or w.batch_sizes or (128, 512):
            results: dict[str, dict[str, Any]] = {}
            for v in variants:
                try:
                    results[v.name] = measure(w, v, batch, device, workers=workers, repeats=repeats,
                                              warmup_batches=warmup, seed=args.seed)  # fmt: skip
                except Exception as exc:  # one failing variant (e.g. a compile mode) must not lose the others
                    print(f"  {v.name} at batch {batch} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
                    _free(device)
                    continue
                r = results[v.name]
                print(f"  {w.model} n={w.images} batch {batch} {v.name}: {r['s']:.3f} s/epoch "
                      f"(warm-up {r['warmup_s']:.1f} s, loss {r['loss']:.3f})", flush=True)  # fmt: skip
            base = results.get("conventional", {}).get("s", float("nan"))
            for name, r in results.items():
                rows.append([batch, name, r["s"], w.images / r["s"], w.images * flops / r["s"] / 1e12,
                             base / r["s"], r["s"] / floor if peak else float("nan")])  # fmt: skip
            ours = {k: r["s"] for k, r in results.items() if k != "conventional"}
            if ours and base == base:
                best = min(ours, key=ours.get)
                summary.append(f"batch {batch}: conventional {base:.3f} s, best resident ({best}) {ours[best]:.3f} s "
                               f"→ {fmt_ratio(base / ours[best])} faster")  # fmt: skip
        print(f"\n## {w.model}, {w.images} images {w.dataset}-shaped ({'CUDA' if cuda else 'CPU'})\n")
        print(table(["batch", "path", "s/epoch", "img/s", "TFLOP/s", "× vs conventional", "× FLOP floor"], rows))
        print(f"\ntraining FLOPs: {flops / 1e9:.3f} GFLOP/image (fwd×3), {w.images * flops / 1e12:.1f} TFLOP/epoch; "
              + (f"floor at {peak:.0f} TFLOP/s dense bf16: {floor:.3f} s/epoch" if peak
                 else "no GPU peak: no floor"))  # fmt: skip
        for line in summary:
            print("ratio: " + line)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
