"""What every benchmark shares: the device, a synchronised clock, the machine line, tables, synthetic data.

Every bench prints its own header (machine, UTC date, the exact command) and a markdown table, so a run's
output can be pasted into ``bench/RESULTS.md`` as it is.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda when available")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, for a smoke run or a busy CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def setup(args: argparse.Namespace) -> torch.device:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return pick_device(args.device)


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device | str) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` with the device synchronised before and after, and its result."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine(device: torch.device) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{cpu_model()}, {cores} cores usable, torch {torch.__version__} ({torch.get_num_threads()} threads)"]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        parts.append(f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}")
    else:
        parts.append("no GPU (CPU run)")
    return "; ".join(parts)


def print_header(title: str, device: torch.device) -> None:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m " + " ".join([_module_name()] + [shlex.quote(a) for a in sys.argv[1:]])
    print(f"# {title}")
    print(f"machine: {machine(device)}")
    print(f"date:    {now}")
    print(f"load:    {_load()}")
    print(f"command: {command}")
    print(flush=True)


def _load() -> str:
    """The 1/5/15-minute load averages: on a shared machine, how much else was running."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min averages)"


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None and spec.name else os.path.basename(sys.argv[0])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats keep 3 significant figures."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    out = [line(headers), "| " + " | ".join("-" * w for w in widths) + " |"]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def synthetic_images(
    n: int, channels: int, size: int, num_classes: int, seed: int, noise: float = 48.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable CIFAR/MNIST-shaped data: uint8 ``[n, C, size, size]``, int64 labels; a class template plus noise.

    Benchmarks time the code, not accuracy; a learnable signal only keeps the softmax away from uniform so
    the NONE analysis sees non-empty strong and weak sets, as it does on a real trained model.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, channels, size, size, generator=g) * 255.0
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = torch.empty(n, channels, size, size, dtype=torch.uint8)
    for start in range(0, n, 4096):  # chunks keep the float temporaries small at 50k images
        part = y[start : start + 4096]
        noisy = templates[part] + noise * torch.randn(len(part), channels, size, size, generator=g)
        x[start : start + 4096] = noisy.clamp_(0, 255).round_().to(torch.uint8)
    return x, y


def fmt_ratio(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}×"
