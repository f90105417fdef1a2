"""The prepared device run of issue 13: every owed GPU figure and a GPU smoke test of the product, in < 8 minutes.

Steps, each a subprocess with its own time budget under one overall deadline (a step that would start with too
little time left is skipped, so the suite never outlasts the deadline):

====================  ===========================================================================================
``checks``            ``bench.gpu_suite_checks``: the product's CUDA branches (bf16, channels-last, compile, CUDA
                      RNG in checkpoints, the analysis cache budget and its peak GPU memory)
``smoke``             ``bench.gpu_suite_smoke``: a 4-trial ResNet-18 sweep, 4 trials per GPU, through the CLI,
                      MLflow into SQLite, on CIFAR-shaped synthetic data written on the machine
``analysis``          ``bench.bench_analysis``: the statistic vs the naive loop at 10k/50k, ``analyse()`` at 50k vs
                      one epoch
``epoch``             ``bench.bench_epoch``: a 50k-image ResNet-18 epoch, conventional vs resident fp32 / bf16+CL /
                      compile / CUDA graphs, batch 128 and 512, the FLOP floor
``sweep``             ``bench.bench_sweep``: 8 trials packed 1, 8, 4, 2 per GPU, no shared pre-training
``sweep-cache``       ``bench.bench_sweep``: the same at 8 per GPU with shared pre-training
``overhead``          ``bench.bench_overhead``: what Ray + MLflow + Optuna cost per trial and per report
====================  ===========================================================================================

Everything is printed and written under ``--out`` (default ``$OUT``): ``suite.log`` (all output), ``figures.md``
(each step's tables, ``ratio:``, ``figure:`` and ``check:`` lines) and ``summary.json`` (status and seconds per
step). Exit status 0 only when every step passed. ``--quick`` is the dry run: the same steps at small sizes (on a
CPU machine, on the CPU), about 2 minutes on a GPU machine, a few on a shared 2-core CPU.

    bash bench/gpu_suite.sh            # on the GPU machine (unpacks .devbundle/ when Ray is missing)
    bash bench/gpu_suite.sh --quick    # the dry run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

DEADLINE_S = 455  # the 8 minutes, less the bundle's unpacking, the start-up and the last write
MIN_STEP_S = 20  # a step starts only with this much time left (or its whole budget, if smaller)
QUICK_DEADLINE_S = 1000  # the dry run: minutes on a GPU machine, longer on a shared 2-core CPU
T1 = ("--threads", "1")  # dry run: one torch thread per process (2-thread OpenMP collapses on a loaded 2-core CPU)
#: what figures.md keeps of a step's output: headers, tables, figures, checks, ratios and the benches' progress lines
KEEP = re.compile(
    r"^(# |machine:|date:|load:|command:|figure:|check:|ratio:|\||training FLOPs|\(a\)|\(b\)|trial:|data:|"
    r"all checks|\d+ check|one-off:|  N=|  \S+ n=\d+ batch|  packing \d|  \S+ at batch|sweep '|Pareto|\$ )"
)


@dataclass(frozen=True)
class Step:
    name: str
    what: str
    full: tuple[str, ...] | None  # module and arguments on a GPU machine; None: not in this mode
    quick: tuple[str, ...] | None  # the dry run
    budget_full: int  # seconds
    budget_quick: int

    def argv(self, quick: bool) -> tuple[str, ...] | None:
        return self.quick if quick else self.full

    def budget(self, quick: bool) -> int:
        return self.budget_quick if quick else self.budget_full


STEPS = (
    Step("checks", "the product's CUDA branches on the device",
         ("bench.gpu_suite_checks",), ("bench.gpu_suite_checks", "--quick", *T1), 45, 150),
    Step("smoke", "4-trial packed ResNet-18 sweep through the CLI, MLflow into SQLite",
         ("bench.gpu_suite_smoke",), ("bench.gpu_suite_smoke", "--quick", *T1), 110, 300),
    Step("analysis", "NONE statistic vs the naive loop at 10k/50k; analyse() vs one epoch at 50k",
         ("bench.bench_analysis", "--naive-fraction", "0.1", "--no-naive-full"),
         ("bench.bench_analysis", "--quick", "--sizes", "2000", "--naive-fraction", "0.02", "--full-images", "32",
          "--repeats", "1", "--no-naive-full", *T1), 50, 120),
    Step("epoch", "50k-image ResNet-18 epoch: conventional vs resident variants, batch 128 and 512",
         ("bench.bench_epoch", "--repeats", "1"),
         ("bench.bench_epoch", "--quick", "--model", "small_cnn", "--images", "1024", "--batch-sizes", "128",
          "--repeats", "1", "--workers", "0", "--variants", "conventional,resident-fp32,resident-bf16-cl", *T1),
         125, 120),
    Step("sweep", "8 trials packed 1, 8, 4 and 2 per GPU (the 1-vs-8 ratio first), no shared pre-training",
         ("bench.bench_sweep", "--images", "5000", "--packing", "1,8,4,2", "--cache", "off"),
         ("bench.bench_sweep", "--quick", "--trials", "2", "--packing", "2", "--cache", "on", *T1), 70, 200),
    Step("sweep-cache", "8 trials at 8 per GPU with shared pre-training",
         ("bench.bench_sweep", "--images", "5000", "--packing", "8", "--cache", "on"), None, 25, 0),
    Step("overhead", "Ray + MLflow + Optuna per trial and per report (CPU-bound)",
         ("bench.bench_overhead", "--quick", "--stacks", "+optuna"),
         ("bench.bench_overhead", "--trials", "2", "--reports", "1,3", "--stacks", "+optuna", *T1), 25, 150),
)  # fmt: skip
STEP_NAMES = [s.name for s in STEPS]


@dataclass
class Outcome:
    name: str
    status: str  # ok | failed | timeout | skipped
    rc: int | None
    seconds: float
    budget: int
    kept: list[str]


# --------------------------------------------------------------------------- running one step
def run_step(step: Step, quick: bool, timeout: float, log: IO[str], env: dict[str, str]) -> Outcome:
    """Run ``python -m <step>`` with ``timeout``; everything to ``log``, the kept lines also to stdout."""
    argv = step.argv(quick)
    assert argv is not None
    command = [sys.executable, "-m", *argv]
    banner = f"===== {step.name}: {step.what} (budget {timeout:.0f} s) ====="
    _emit(banner, log, echo=True)
    _emit("$ " + " ".join(command), log, echo=True)
    ray_tmp = tempfile.mkdtemp(prefix="gs", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    kept: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env={**env, "RAY_TMPDIR": ray_tmp}, start_new_session=True)  # fmt: skip
    reader = threading.Thread(target=_pump, args=(proc, log, kept), daemon=True)
    reader.start()
    try:
        rc: int | None = proc.wait(timeout=timeout)
        status = "ok" if rc == 0 else "failed"
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        rc, status = None, "timeout"
    reader.join(timeout=10)
    _kill_ray_of(ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    seconds = time.monotonic() - t0
    _emit(f"----- {step.name}: {status} in {seconds:.0f} s" + (f" (rc {rc})" if rc else ""), log, echo=True)
    return Outcome(step.name, status, rc, seconds, int(timeout), kept)


def _pump(proc: subprocess.Popen[str], log: IO[str], kept: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        keep = bool(KEEP.match(line))
        if keep:
            kept.append(line)
        _emit(line, log, echo=keep)


def _emit(line: str, log: IO[str], echo: bool) -> None:
    log.write(line + "\n")
    log.flush()
    if echo:
        print(line, flush=True)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_ray_of(ray_tmp: str) -> None:
    """SIGKILL what a step's Ray left behind: the processes whose environment names the step's own RAY_TMPDIR."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RAY_TMPDIR={ray_tmp}".encode() in environ:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue


# --------------------------------------------------------------------------- the suite
def environment(log: IO[str]) -> dict[str, Any]:
    """What this machine is: Python, torch and CUDA, the GPU, and where Ray/Optuna/MLflow came from."""
    import torch

    info: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__,
                            "cuda": torch.cuda.is_available(), "cuda_version": torch.version.cuda}  # fmt: skip
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    for name in ("ray", "optuna", "mlflow"):
        try:
            module = __import__(name)
            info[name] = f"{module.__version__} ({Path(module.__file__ or '').parent.parent})"
        except ImportError as exc:
            info[name] = f"missing ({exc})"
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False).stdout.strip()
        info["nvidia-smi"] = out
    for key, value in info.items():
        _emit(f"env: {key}: {value}", log, echo=True)
    return info


def write_figures(path: Path, header: list[str], outcomes: list[Outcome]) -> None:
    lines = [*header, ""]
    for o in outcomes:
        lines.append(f"## {o.name}: {o.status} ({o.seconds:.0f} s of {o.budget} s)")
        lines.append("")
        lines.extend(o.kept or ["(no figures)"])
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bash bench/gpu_suite.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the dry run: every step at small sizes")
    parser.add_argument(
        "--out", default=os.environ.get("OUT") or "/tmp/gpu_suite_out", help="where the files go ($OUT)"
    )
    parser.add_argument("--only", help=f"comma-separated steps to run, of {','.join(STEP_NAMES)}")
    parser.add_argument("--deadline", type=float, help=f"seconds for the whole suite (default {DEADLINE_S}; "
                        f"--quick {QUICK_DEADLINE_S})")  # fmt: skip
    args = parser.parse_args(argv)
    if args.deadline is None:
        args.deadline = QUICK_DEADLINE_S if args.quick else DEADLINE_S
    only = set(args.only.split(",")) if args.only else set(STEP_NAMES)
    unknown = only - set(STEP_NAMES)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {STEP_NAMES}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, started = time.monotonic(), dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    mode = "quick (dry run)" if args.quick else "full"
    outcomes: list[Outcome] = []
    with open(out / "suite.log", "w", encoding="utf-8") as log:
        _emit(f"gpu_suite {mode}: started {started}, deadline {args.deadline:.0f} s, files in {out}", log, echo=True)
        info = environment(log)
        for step in STEPS:
            if step.name not in only or step.argv(args.quick) is None:
                continue
            left = args.deadline - (time.monotonic() - start)
            budget = step.budget(args.quick)
            if left < min(MIN_STEP_S, budget):  # too little left for it to measure anything
                _emit(f"===== {step.name}: skipped ({left:.0f} s left of the deadline)", log, echo=True)
                outcomes.append(Outcome(step.name, "skipped", None, 0.0, budget, []))
                continue
            outcomes.append(run_step(step, args.quick, min(budget, left), log, env))
    total = time.monotonic() - start
    header = [f"# gpu_suite {mode}", f"started: {started}; {total:.0f} s in all (deadline {args.deadline:.0f} s)",
              "machine: " + "; ".join(f"{k} {v}" for k, v in info.items())]  # fmt: skip
    write_figures(out / "figures.md", header, outcomes)
    summary = {
        "mode": mode,
        "started": started,
        "seconds": round(total, 1),
        "environment": info,
        "steps": [{k: getattr(o, k) for k in ("name", "status", "rc", "seconds", "budget")} for o in outcomes],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print("\n" + (out / "figures.md").read_text(encoding="utf-8"))
    failed = [o.name for o in outcomes if o.status != "ok"]
    print(f"gpu_suite: {len(outcomes) - len(failed)}/{len(outcomes)} steps ok in {total:.0f} s"
          + (f"; not ok: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
