"""The NONE analysis: our streaming, vectorised statistic vs a naive per-channel, per-class loop (the published way).

(a) **Statistic alone** on synthetic channel maxima with ResNet-18's monitored-layer shapes (layer2..layer4 convs
and the 3 downsample convs: 15 layers, 4480 channels; 10 classes) at N = 10k and 50k. Ours is the library's
streaming path exactly as ``analyse`` drives it: per batch of ``analysis_batch_size`` samples one
``class_masks`` shared by all layers, ``ChannelClassStats.update`` per layer, then ``scores()``. The naive
reference loops over layers, channels and classes in Python over numpy arrays and computes
``max(a[strong]) - (mean(a[weak]) + 3·std(a[weak]))`` per (channel, class), the published computation (its
class index sets are hoisted out of the channel loop, which only favours the reference). Both must agree
(``allclose``); the two-class natural breaks are compared the same way (ours: sort + prefix sums; naive: the
within-class sum of squares of every split, one numpy call per split).

(b) **Full analysis pass** (``none_sweep.defense.analyse``: forward over the data with hooks, statistic, selection,
sample scores, natural breaks) of ResNet-18 on CIFAR-shaped images, against one training epoch over the same
images with the library's loop, as a fraction; and against the naive full pass (the same forward with
published-style hooks copying every batch's channel maxima to numpy, then the naive statistic and breaks).

    python -m bench.bench_analysis            # CUDA when available
    python -m bench.bench_analysis --quick
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._common import add_common_args, fmt_ratio, print_header, setup, synthetic_images, table, timed

LAMDA_L, LAMDA_H = 0.1, 0.9  # the published defaults


# --------------------------------------------------------------------------- shapes and synthetic activations
@functools.lru_cache(maxsize=1)
def resnet18_layer_shapes() -> list[tuple[str, int]]:
    """(name, channels) of the layers the library monitors on ResNet-18 with the published ``skip_first: 5``."""
    from none_sweep.config import DefenseConfig
    from none_sweep.data import dataset_info
    from none_sweep.defense import find_monitored_layers
    from none_sweep.models import create_model

    model = create_model("resnet18", dataset_info("cifar10"))
    return [(layer.name, layer.channels) for layer in find_monitored_layers(model, DefenseConfig(skip_first=5))]


def synthetic_activations(n: int, channels: Sequence[int], num_classes: int, seed: int) -> tuple[list[Tensor], Tensor]:
    """Channel maxima ``[n, C]`` per layer and softmax outputs ``[n, K]`` shaped like a trained network's.

    Logits favour each sample's label, so about half the samples are strong (p > 0.9) for their class and most
    are weak for the others; every channel responds a little to one class, and a few respond strongly to a 5%
    "poisoned" subset, as backdoor neurons would.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    logits = 2.0 * torch.randn(n, num_classes, generator=g)
    logits[torch.arange(n), y] += 4.0
    probs = torch.softmax(logits, dim=1)
    poisoned = torch.rand(n, generator=g) < 0.05
    acts = []
    for c in channels:
        a = torch.randn(n, c, generator=g).abs_()
        preferred = torch.randint(0, num_classes, (c,), generator=g)
        a += 0.5 * (y[:, None] == preferred[None, :])
        backdoor = torch.randperm(c, generator=g)[: max(1, c // 64)]
        a[:, backdoor] += 3.0 * poisoned[:, None]
        acts.append(a)
    return acts, probs


# --------------------------------------------------------------------------- ours (the library)
def ours_scores(acts: Sequence[Tensor], probs: Tensor, batch: int = 1024, lamda_l: float = LAMDA_L,
                lamda_h: float = LAMDA_H) -> list[Tensor]:  # fmt: skip
    """NONE scores per layer by the library's streaming path, batch by batch as ``analyse`` feeds it."""
    from none_sweep.defense import ChannelClassStats, class_masks

    k = probs.shape[1]
    stats = [ChannelClassStats(a.shape[1], k, a.device) for a in acts]
    for start in range(0, probs.shape[0], batch):
        masks = class_masks(probs[start : start + batch], lamda_l, lamda_h)
        for s, a in zip(stats, acts):
            s.update(a[start : start + batch], masks)
    return [s.scores() for s in stats]


def ours_breaks(values: Tensor) -> float:
    from none_sweep.defense import two_class_breaks

    return two_class_breaks(values)[0]


# --------------------------------------------------------------------------- the naive reference
def naive_layer_scores(acts: np.ndarray, probs: np.ndarray, lamda_l: float = LAMDA_L, lamda_h: float = LAMDA_H,
                       channels: int | None = None) -> np.ndarray:  # fmt: skip
    """The published computation, one (channel, class) at a time; the first ``channels`` channels only if given.

    A class with an empty strong or weak set is skipped and counts as 0 (the defined behaviour, see
    ``docs``/reference; the published code gives NaN for an empty weak set).
    """
    num_classes = probs.shape[1]
    strong_idx = [np.where(probs[:, k] > lamda_h)[0] for k in range(num_classes)]
    weak_idx = [np.where(probs[:, k] < lamda_l)[0] for k in range(num_classes)]
    count = acts.shape[1] if channels is None else min(channels, acts.shape[1])
    scores = np.empty(count, dtype=np.float64)
    for j in range(count):
        a = acts[:, j]
        diffs = []
        for k in range(num_classes):
            if len(strong_idx[k]) == 0 or len(weak_idx[k]) == 0:
                diffs.append(0.0)
                continue
            strong, weak = a[strong_idx[k]], a[weak_idx[k]]
            diffs.append(float(strong.max()) - (float(weak.mean()) + 3.0 * float(weak.std())))
        scores[j] = max(diffs)
    return scores


def naive_breaks(values: np.ndarray) -> float:
    """Two-class Jenks by brute force: the SSD of every split between different sorted values; the lower max."""
    v = np.sort(values.astype(np.float64))
    best, best_cost = None, math.inf
    for i in range(1, len(v)):
        if v[i] == v[i - 1]:
            continue
        low, high = v[:i], v[i:]
        cost = float(((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum())
        if cost < best_cost:
            best, best_cost = i, cost
    return float(v[-1] if best is None else v[best - 1])


def scores_agree(ours: Tensor, naive: np.ndarray) -> tuple[bool, float]:
    """``allclose`` (float32 inputs, float64 statistics) and the largest absolute difference."""
    o = ours[: len(naive)].double().cpu().numpy()
    return bool(np.allclose(o, naive, rtol=1e-4, atol=1e-4)), float(np.abs(o - naive).max()) if len(naive) else 0.0


# --------------------------------------------------------------------------- (a) the statistic
def bench_statistic(n: int, device: torch.device, seed: int, naive_fraction: float, repeats: int) -> dict[str, Any]:
    shapes = resnet18_layer_shapes()
    channels = [c for _, c in shapes]
    acts, probs = synthetic_activations(n, channels, 10, seed)
    acts_dev, probs_dev = [a.to(device) for a in acts], probs.to(device)
    ours_scores([a[:2048] for a in acts_dev], probs_dev[:2048])  # warm-up (allocator, kernels)
    ours_s = min(timed(lambda: ours_scores(acts_dev, probs_dev), device)[0] for _ in range(repeats))
    ours = ours_scores(acts_dev, probs_dev)

    probs_np = probs.numpy()
    naive_s, checked, agree, max_diff = 0.0, 0, True, 0.0
    for a, o in zip(acts, ours):
        subset = max(1, round(naive_fraction * a.shape[1]))
        a_np = a.numpy()
        t0 = time.perf_counter()
        naive = naive_layer_scores(a_np, probs_np, channels=subset)
        naive_s += (time.perf_counter() - t0) * a.shape[1] / subset  # linear in channels
        ok, diff = scores_agree(o, naive)
        agree, max_diff, checked = agree and ok, max(max_diff, diff), checked + subset

    # natural breaks on sample scores built the library's way (top channel per layer, summed)
    sample = sum(a[:, int(torch.argmax(o))].double() for a, o in zip(acts, ours)).float()
    sample_dev = sample.to(device)
    ours_breaks(sample_dev)
    breaks_s, ours_break = timed(lambda: ours_breaks(sample_dev), device)
    break_subset = n if naive_fraction >= 1 else min(n, 10_000)
    t0 = time.perf_counter()
    naive_break = naive_breaks(sample[:break_subset].numpy())
    naive_breaks_s = (time.perf_counter() - t0) * (n / break_subset) ** 2  # quadratic in N
    ours_check = ours_break if break_subset == n else ours_breaks(sample[:break_subset])
    return {
        "n": n, "layers": len(shapes), "channels": sum(channels), "ours_s": ours_s, "naive_s": naive_s,
        "checked": checked, "agree": agree, "max_diff": max_diff, "breaks_s": breaks_s,
        "naive_breaks_s": naive_breaks_s, "breaks_agree": math.isclose(ours_check, naive_break, rel_tol=1e-6),
        "break_subset": break_subset,
    }  # fmt: skip


# --------------------------------------------------------------------------- (b) the full pass
def confident_model(name: str, device: torch.device, fmt: torch.memory_format, seed: int) -> torch.nn.Module:
    """An untrained CIFAR-shaped model whose classifier is scaled up so its softmax is confident, like a trained
    model's (strong sets non-empty; timing, not accuracy, is what this measures)."""
    from none_sweep.data import dataset_info
    from none_sweep.models import create_model

    torch.manual_seed(seed)
    model = create_model(name, dataset_info("cifar10"))
    with torch.no_grad():
        model.fc.weight.mul_(40.0)
    return model.to(device, memory_format=fmt)


def naive_full_pass(
    model: torch.nn.Module, batches: Sequence[Tensor], layers: Sequence[Any], amp: Any
) -> dict[str, Any]:
    """Published-style: hooks copy each batch's channel maxima to numpy; then the naive statistic and breaks."""
    store: dict[str, list[np.ndarray]] = {layer.name: [] for layer in layers}
    handles = [
        layer.module.register_forward_hook(
            lambda m, i, out, name=layer.name: store[name].append(out.float().amax(dim=(2, 3)).cpu().numpy())
        )
        for layer in layers
    ]
    probs = []
    try:
        model.eval()
        with torch.no_grad(), amp:
            for x in batches:
                probs.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    finally:
        for h in handles:
            h.remove()
    p = np.concatenate(probs)
    per_layer = {name: np.concatenate(parts) for name, parts in store.items()}
    scores = {name: naive_layer_scores(a, p) for name, a in per_layer.items()}
    sample = sum(per_layer[name][:, int(np.argmax(s))] for name, s in scores.items())
    return {"scores": scores, "break": naive_breaks(sample) if len(sample) <= 20_000 else float("nan")}


def bench_full_pass(n: int, device: torch.device, seed: int, batch: int, naive: bool, model_name: str = "resnet18",
                    skip_first: int = 5, repeats: int = 1) -> dict[str, Any]:  # fmt: skip
    """``analyse`` (and the naive full pass), interleaved ``repeats`` times, best of each; then one epoch."""
    from none_sweep.config import DefenseConfig, TrainConfig
    from none_sweep.data import dataset_info
    from none_sweep.defense import analyse, find_monitored_layers
    from none_sweep.train.device import autocast, memory_format
    from none_sweep.train.loop import train_epoch

    from .bench_epoch import resident_data

    train_cfg = TrainConfig(batch_size=batch)  # library defaults: bf16 + channels-last on CUDA, fp32 on CPU
    dcfg = DefenseConfig(skip_first=skip_first)  # ResNet-18: stem and layer1 unanalysed, as published
    amp, fmt = autocast(device, train_cfg), memory_format(device, train_cfg)
    info = dataset_info("cifar10")
    x, y = synthetic_images(n, info.channels, info.size, info.num_classes, seed)
    data = resident_data(x, y, info, device, fmt == torch.channels_last)
    model = confident_model(model_name, device, fmt, seed)
    layers = find_monitored_layers(model, dcfg)
    batches = lambda: data.ordered_batches(data.train_x, dcfg.analysis_batch_size)  # noqa: E731

    def run_analysis() -> Any:  # exactly ExperimentRun._defend's call
        with torch.no_grad(), amp:
            return analyse(model, batches, layers, dcfg, info.num_classes)

    if device.type == "cuda":
        run_analysis()  # warm-up: cudnn autotune, allocator
    else:
        _warm_forward(model, next(iter(batches())), amp)  # oneDNN primitives for this batch shape
    analyse_times, naive_times, result, ref = [], [], None, None
    for i in range(repeats):  # interleaved, so that a noisy neighbour hurts both alike
        seconds, result = timed(run_analysis, device)
        analyse_times.append(seconds)
        if naive and (i == 0 or device.type == "cpu"):  # on a GPU machine the naive numpy loop runs once (~1 min)
            seconds, ref = timed(lambda: naive_full_pass(model, list(batches()), layers, amp), device)
            naive_times.append(seconds)
    out = {"n": n, "batch": batch, "analyse_s": min(analyse_times), "passes": result.passes,
           "suspected": int(result.suspected.sum())}  # fmt: skip
    if naive:
        tol = 1e-3 if device.type == "cpu" else 3e-2  # CUDA: bf16 forward, cudnn may pick another algorithm
        agree = all(np.allclose(result.scores[name].numpy(), ref["scores"][name], rtol=tol, atol=tol)
                    for name in ref["scores"])  # fmt: skip
        out.update(naive_s=min(naive_times), naive_agree=agree)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator(device=device).manual_seed(seed)
    active = torch.ones(n, dtype=torch.bool, device=device)
    batches_of = lambda limit=None: itertools.islice(data.train_batches(active, batch, generator, True), limit)  # noqa: E731
    train_epoch(model, model, optimizer, batches_of(None if device.type == "cuda" else 1), amp, False)  # warm-up
    out["epoch_s"], _ = timed(lambda: train_epoch(model, model, optimizer, batches_of(), amp, False), device)
    return out


def _warm_forward(model: torch.nn.Module, x: Tensor, amp: Any) -> None:
    was_training = model.training
    model.eval()
    with torch.no_grad(), amp:
        model(x)
    model.train(was_training)


# --------------------------------------------------------------------------- the command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_analysis", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--sizes", help="statistic: comma-separated N (default 10000,50000)")
    parser.add_argument("--naive-fraction", type=float, help="time the naive loop on this fraction of each layer's "
                        "channels and extrapolate linearly (default 1; --quick 0.05)")  # fmt: skip
    parser.add_argument("--full-images", type=int, help="full pass: images (default 50000 on CUDA, 256 on CPU)")
    parser.add_argument("--batch", type=int, default=128, help="full pass: training batch of the compared epoch")
    parser.add_argument("--no-naive-full", action="store_true", help="skip the naive full pass")
    parser.add_argument("--parts", default="a,b", help="a: the statistic alone; b: the full pass (default a,b)")
    parser.add_argument(
        "--repeats", type=int, help="timed runs of our statistic, the best reported (default CUDA 3, CPU 1)"
    )
    args = parser.parse_args(argv)
    device = setup(args)
    cuda = device.type == "cuda"
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([10_000] if args.quick else [10_000, 50_000])
    fraction = args.naive_fraction or (0.05 if args.quick else 1.0)
    full_n = args.full_images or (50_000 if cuda else 64 if args.quick else 256)

    print_header("bench_analysis: NONE analysis, ours vs the naive per-channel per-class loop", device)
    parts = set(args.parts.split(","))
    if "a" in parts:
        part_statistic(sizes, device, args.seed, fraction, args.repeats or (3 if cuda else 1))
    if "b" in parts:
        part_full_pass(full_n, device, args.seed, args.batch, not args.no_naive_full, args.repeats or 2)
    return 0


def part_statistic(sizes: list[int], device: torch.device, seed: int, fraction: float, repeats: int) -> None:
    print("(a) statistic alone: ResNet-18 monitored-layer shapes, synthetic channel maxima, 10 classes")
    rows, ratios = [], []
    for n in sizes:
        r = bench_statistic(n, device, seed, fraction, repeats)
        note = "" if fraction >= 1 else f" (naive timed on {r['checked']} of {r['channels']} channels, scaled linearly)"
        bnote = "" if r["break_subset"] == n else f" (naive breaks timed on {r['break_subset']}, scaled ×(N/n)²)"
        rows.append([n, f"{r['layers']} layers / {r['channels']} ch", r["ours_s"], r["naive_s"],
                     fmt_ratio(r["naive_s"] / r["ours_s"]),
                     f"{r['agree']} (max |Δ| {r['max_diff']:.1e})", r["breaks_s"], r["naive_breaks_s"],
                     fmt_ratio(r["naive_breaks_s"] / r["breaks_s"]), r["breaks_agree"]])  # fmt: skip
        ratios.append(f"statistic at N={n}: {fmt_ratio(r['naive_s'] / r['ours_s'])} faster than the naive loop{note}; "
                      f"natural breaks {fmt_ratio(r['naive_breaks_s'] / r['breaks_s'])}{bnote}")  # fmt: skip
        print(f"  N={n}: ours {r['ours_s']:.3f} s, naive {r['naive_s']:.1f} s{note}", flush=True)
    print()
    print(table(["N", "shape", "ours s", "naive s", "speed-up", "allclose", "breaks ours s", "breaks naive s",
                 "breaks speed-up", "same break"], rows))  # fmt: skip
    for line in ratios:
        print("ratio: " + line)
    print()


def part_full_pass(n: int, device: torch.device, seed: int, batch: int, naive: bool, repeats: int) -> None:
    cuda = device.type == "cuda"
    print(f"(b) full analyse() pass vs one training epoch: ResNet-18, {n} CIFAR-shaped images"
          + ("" if cuda else " (CPU: a reduced size)") + f"; best of {repeats}"
          + ("" if cuda else ", interleaved with the naive pass"),
          flush=True)  # fmt: skip
    f = bench_full_pass(n, device, seed, batch, naive=naive, repeats=repeats)
    frow = [[n, f["analyse_s"], f["epoch_s"], f"{100 * f['analyse_s'] / f['epoch_s']:.1f}%", f["passes"],
             f.get("naive_s", float("nan")),
             fmt_ratio(f["naive_s"] / f["analyse_s"]) if "naive_s" in f else "n/a", f.get("naive_agree", "n/a")]]  # fmt: skip
    print(table(["images", "analyse s", f"epoch s (batch {batch})", "analysis / epoch", "passes",
                 "naive full s", "speed-up", "scores agree"], frow))  # fmt: skip
    print(f"ratio: analysis = {100 * f['analyse_s'] / f['epoch_s']:.1f}% of one training epoch (goal < 10%); "
          "its forward pass alone is 1/3 of an epoch's FLOPs, the floor on a compute-bound device")  # fmt: skip
    if "naive_s" in f:
        print(f"ratio: full pass {fmt_ratio(f['naive_s'] / f['analyse_s'])} faster than the naive full pass")


if __name__ == "__main__":
    raise SystemExit(main())
