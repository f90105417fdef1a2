"""How none-sweep's own cost grows with a sweep: N = 10, 100, 1000 trials at 1, 4, 16 trials at a time.

Each sweep is the real thing: ``none_sweep.sweep.runner.sweep_and_record`` (preflight, Ray, the MLflow parent
run, the baseline, the Tuner with the project's ``SweepSearcher`` on an Optuna journal, the trainable with its
checkpoints and outcome records, the pre-training cache, the MLflow callback with model logging, the progress
lines, the summary), then ``none-sweep report`` and ``none-sweep export`` as subprocesses. Only the training is
replaced: ``SweepOptions.run_factory`` is :func:`bench._synthetic.synthetic_run`, a seeded formula of the same
config with the real epoch plan, model, checkpoints and cache (no data loaded), so what is timed is none-sweep.

Per (N, concurrency) the sweep runs in two driver processes, as an interrupted sweep does: the first is stopped
with SIGINT (Ray Tune's Ctrl-C path) once N/2 trials have ended; the second is ``--resume`` and runs the rest.
Measured in the drivers (public methods wrapped, nothing private read):

- driver CPU per trial: the two drivers' process CPU time / N (and without the one-off start-up: CPU until the
  first trial started);
- suggestion latency: wall time of each ``SweepSearcher.suggest`` that returned a trial (median, p95, per decile);
- MLflow write latency per report: wall time of ``MlflowSweepCallback.on_trial_result``; per trial all its hooks
  (the close, with model logging, separately);
- peak driver memory (``ru_maxrss``), journal / MLflow store / artifact store / Ray storage sizes;
- resume: from starting the second driver (``ray.init`` included) to the first trial running again and to the
  first new trial, and its total;
- ``report`` and ``export`` wall time (and ``python -m none_sweep --help`` for the interpreter's start-up).

    python -m bench.bench_scale                      # N 10/100/1000 at c=4, c 1/4/16 at N=100
    python -m bench.bench_scale --grid full          # every (N, c)
    python -m bench.bench_scale --quick              # N=4, c=2: a smoke run (seconds to a minute)
    python -m bench.bench_scale --postgres           # MLflow in a throw-away PostgreSQL (bench/_postgres.py)
    python -m bench.bench_scale --tracking-uri URI   # MLflow in a given store
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPACE_FILE = ROOT / "search_spaces" / "digits_tiny.yaml"
GOAL_CPU_S, GOAL_REPORT_MS, GOAL_RESUME_S = 0.5, 50.0, 30.0
#: The database behind each ``mlflow server`` this bench started (``--via-server``): where store sizes are read.
STORE_URL: dict[str, str] = {}
REDUCED = ((10, 4), (100, 1), (100, 4), (100, 16), (1000, 4))
HOOKS = ("setup", "on_step_begin", "on_trial_start", "on_trial_result", "on_trial_recover", "on_trial_complete",
         "on_trial_error", "on_experiment_end")  # fmt: skip
#: Every measured field of one (N, concurrency) row; ``tests/test_bench.py`` checks they are all there.
FIELDS = (
    "n", "concurrency", "cpu_per_trial", "trials_ray", "trials_ended", "runs_mlflow", "trials_optuna_complete",
    "interrupted_at", "wall_s", "driver_cpu_s", "driver_cpu_per_trial_s", "driver_cpu_setup_s",
    "driver_cpu_per_trial_steady_s", "suggest_calls", "suggest_ms_median", "suggest_ms_p95", "suggest_ms_deciles",
    "reports", "report_ms_median", "report_ms_p95", "report_ms_mean", "report_ms_deciles", "mlflow_ms_per_report",
    "mlflow_s_per_trial",
    "close_s_per_trial", "peak_rss_mb", "journal_bytes", "mlflow_store_bytes", "artifact_bytes", "storage_bytes",
    "resume_first_trial_s", "resume_first_new_trial_s", "resume_total_s", "report_s", "export_s",
    "cli_startup_s", "report_finished",
)  # fmt: skip


# ====================================================================== the driver side (one child process)
class Probes:
    """Wall time of the searcher's ``suggest`` and of every MLflow callback hook, by wrapping the public methods.

    ``stop_after``: send this process SIGINT (Ray Tune's Ctrl-C: stop, save, exit) once that many trials ended.
    """

    def __init__(self, stop_after: int | None) -> None:
        self.stop_after = stop_after
        self.suggest_s: list[float] = []
        self.suggest_none = 0
        self.suggested: set[str] = set()
        self.hooks: dict[str, list[float]] = {h: [] for h in HOOKS}
        self.started: list[tuple[float, str]] = []
        self.cpu_at_first_start: float | None = None
        self.ended = 0
        self._undo: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[Probes]:
        from none_sweep.sweep.search import SweepSearcher
        from none_sweep.tracking import MlflowSweepCallback

        self._wrap(SweepSearcher, "suggest", self._suggest)
        for hook in HOOKS:
            self._wrap(MlflowSweepCallback, hook, self._hook(hook))
        try:
            yield self
        finally:
            for undo in reversed(self._undo):
                undo()

    def _wrap(self, cls: type, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
        original = cls.__dict__[name]
        setattr(cls, name, make(original))
        self._undo.append(lambda: setattr(cls, name, original))

    def _suggest(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def suggest(searcher: Any, trial_id: str) -> Any:
            t0 = time.perf_counter()
            config = original(searcher, trial_id)
            if config is None:
                self.suggest_none += 1
            else:
                self.suggest_s.append(time.perf_counter() - t0)
                self.suggested.add(trial_id)
            return config

        return suggest

    def _hook(self, hook: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def make(original: Callable[..., Any]) -> Callable[..., Any]:
            def timed(callback: Any, *args: Any, **kwargs: Any) -> Any:
                if hook == "on_trial_start":
                    self._started(kwargs.get("trial", args[2] if len(args) > 2 else None))
                t0 = time.perf_counter()
                try:
                    return original(callback, *args, **kwargs)
                finally:
                    self.hooks[hook].append(time.perf_counter() - t0)
                    if hook in ("on_trial_complete", "on_trial_error"):
                        self._ended()

            return timed

        return make

    def _started(self, trial: Any) -> None:
        if self.cpu_at_first_start is None:
            self.cpu_at_first_start = time.process_time()
        self.started.append((time.perf_counter(), getattr(trial, "trial_id", "")))

    def _ended(self) -> None:
        self.ended += 1
        if self.stop_after is not None and self.ended == self.stop_after:
            signal.raise_signal(signal.SIGINT)  # Tune's handler: finish this step, save the experiment, return


def run_phase(args: argparse.Namespace) -> dict[str, Any]:
    """One driver: start the sweep (stopped at N/2) or resume it; returns what it measured."""
    import cProfile

    from bench._synthetic import synthetic_run
    from none_sweep.sweep.runner import SweepOptions, sweep_and_record

    work = Path(args.work)
    resume = args.phase == "resume"
    opts = SweepOptions(space_path=str(work / "space.yaml"), name=args.name, storage=str(work / "ray_results"),
                        tracking_uri=None if resume else args.tracking_uri, resume=resume,
                        run_factory=synthetic_run)  # fmt: skip
    profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU time: what the goal counts
    with Probes(stop_after=None if resume else max(1, int(args.n) // 2)).installed() as probes:
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        code, _ = sweep_and_record(opts)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    if profiler is not None:
        _write_profile(profiler, work / f"{args.phase}.prof")
    first_new = next((t for t, tid in probes.started if tid in probes.suggested), None)
    return {
        "phase": args.phase, "code": code, "wall_s": wall, "cpu_s": cpu,
        "cpu_setup_s": (probes.cpu_at_first_start - cpu0) if probes.cpu_at_first_start is not None else cpu,
        "suggest_s": probes.suggest_s, "suggest_none": probes.suggest_none, "hooks": probes.hooks,
        "ended": probes.ended, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "first_trial_s": (probes.started[0][0] - t0) if probes.started else None,
        "first_new_trial_s": (first_new - t0) if first_new is not None else None,
    }  # fmt: skip


def _write_profile(profiler: Any, path: Path) -> None:
    import io
    import pstats

    profiler.dump_stats(str(path))
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
    path.with_name(path.name + ".txt").write_text(text.getvalue(), encoding="utf-8")


# ====================================================================== the parent: one (N, c) sweep
def space_text(n: int, concurrency: int, cpus: float) -> str:
    """``digits_tiny.yaml`` with N trials, ``concurrency`` at a time, each with ``cpus / concurrency`` CPUs."""
    import yaml

    data = yaml.safe_load(SPACE_FILE.read_text(encoding="utf-8"))
    data["description"] = f"bench_scale: digits_tiny with a synthetic objective, N={n}, {concurrency} at a time"
    data.update(num_samples=n, max_concurrent=concurrency, resources={"cpu": cpus / concurrency, "gpu": 0})
    return yaml.safe_dump(data, sort_keys=False)


def _child(phase: str, work: Path, name: str, n: int, uri: str, profile: bool, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.bench_scale", "--phase", phase, "--work", str(work), "--name", name,
            "--n", str(n), "--tracking-uri", uri] + (["--profile"] if profile else [])  # fmt: skip
    with open(work / f"{phase}.log", "w", encoding="utf-8") as log:
        proc = subprocess.run(argv, cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
    out = work / f"{phase}.json"
    if proc.returncode != 0 or not out.exists():
        tail = (work / f"{phase}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{phase} driver for {name} exited {proc.returncode}:\n{tail}")
    return json.loads(out.read_text(encoding="utf-8"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("MLFLOW_TRACKING_URI", None)
    # MLflow's telemetry thread, failing to reach its server (no network here), unsets an environment variable
    # while the driver may be copying os.environ: a KeyError in a tracking write, seen once in ~5 runs, which
    # sends the callback into its 30 s "MLflow is down" back-off. Off, so the figures measure the steady state.
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    return env


def _cli(work: Path, *argv: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with open(work / f"cli-{argv[0].lstrip('-')}.log", "w", encoding="utf-8") as log:
        proc = subprocess.run([sys.executable, "-m", "none_sweep", *argv], cwd=work, env=_env(), stdout=log,
                              stderr=subprocess.STDOUT, timeout=1800)  # fmt: skip
    return time.perf_counter() - t0, proc.returncode


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _deciles(values: list[float]) -> list[float]:
    """Medians of ten consecutive slices, in ms: how a latency moves as the study grows within one sweep."""
    if len(values) < 10:
        return [1000 * statistics.median(values)] if values else []
    k = len(values) / 10
    return [1000 * statistics.median(values[round(i * k) : round((i + 1) * k)]) for i in range(10)]


def _store_bytes(uri: str) -> int:
    """The MLflow store's size: the SQLite file, or the PostgreSQL database (also behind a server this bench
    started); -1 where neither can be read."""
    uri = STORE_URL.get(uri, uri)
    if uri.startswith("sqlite:///"):
        return _bytes(Path(uri[len("sqlite:///") :]))
    if uri.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(uri)
        try:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)
        finally:
            engine.dispose()
    return -1


def measure(n: int, c: int, cpus: float, tmp: Path, uri: str | None, profile: bool) -> dict[str, Any]:
    """One sweep of N trials, c at a time, stopped at N/2 and resumed; every field of :data:`FIELDS`."""
    from none_sweep.sweep.search import open_study
    from none_sweep.sweep.storage import SweepStorage
    from none_sweep.sweep.trials import TERMINAL, ray_trials
    from none_sweep.tracking import SweepTracker

    work = tmp / f"n{n}-c{c}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "space.yaml").write_text(space_text(n, c, cpus), encoding="utf-8")
    name = f"scale-n{n}-c{c}-{int(time.time())}"
    uri = uri or f"sqlite:///{(work / 'mlflow.db').as_posix()}"
    store_before = _store_bytes(uri) if not uri.startswith("sqlite") else 0
    timeout = 300 + 20 * n
    start = _child("start", work, name, n, uri, profile, timeout)
    resumed = _child("resume", work, name, n, uri, profile, timeout)
    phases = (start, resumed)

    storage = SweepStorage(str(work / "ray_results"), name)
    trials = ray_trials(storage)
    study = open_study(storage.journal_path(), name)
    runs = SweepTracker(uri, name).children()
    report_s, report_rc = _cli(work, "report", "--experiment", name, "--tracking-uri", uri, "--out", "report")
    export_s, export_rc = _cli(work, "export", "--experiment", name, "--tracking-uri", uri, "--out", "best.yaml")
    startup_s, _ = _cli(work, "--help")
    summary = work / "report" / "summary.json"
    report_trials = json.loads(summary.read_text(encoding="utf-8"))["trials"] if summary.exists() else {}

    logs = [(work / f"{phase}.log").read_text(encoding="utf-8", errors="replace") for phase in ("start", "resume")]
    suggest = [s for p in phases for s in p["suggest_s"]]
    reports = [s for p in phases for s in p["hooks"]["on_trial_result"]]
    closes = [s for p in phases for h in ("on_trial_complete", "on_trial_error") for s in p["hooks"][h]]
    mlflow_total = sum(s for p in phases for v in p["hooks"].values() for s in v)
    cpu = sum(p["cpu_s"] for p in phases)
    setup = sum(p["cpu_setup_s"] for p in phases)
    row = {
        "n": n, "concurrency": c, "cpu_per_trial": cpus / c, "trials_ray": len(trials),
        "trials_ended": sum(t.status in TERMINAL for t in trials), "runs_mlflow": len(runs),
        "trials_optuna_complete": sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)),
        "interrupted_at": start["ended"], "start_code": start["code"], "resume_code": resumed["code"],
        "wall_s": sum(p["wall_s"] for p in phases), "driver_cpu_s": cpu, "driver_cpu_per_trial_s": cpu / n,
        "driver_cpu_setup_s": setup, "driver_cpu_per_trial_steady_s": (cpu - setup) / n,
        "suggest_calls": len(suggest), "suggest_none_calls": sum(p["suggest_none"] for p in phases),
        "suggest_ms_median": 1000 * statistics.median(suggest) if suggest else math.nan,
        "suggest_ms_p95": 1000 * _pct(suggest, 0.95), "suggest_ms_deciles": _deciles(suggest),
        "reports": len(reports), "report_ms_median": 1000 * statistics.median(reports) if reports else math.nan,
        "report_ms_p95": 1000 * _pct(reports, 0.95),
        "report_ms_mean": 1000 * statistics.fmean(reports) if reports else math.nan,
        "report_ms_deciles": _deciles(reports), "mlflow_s_per_trial": mlflow_total / n,
        "mlflow_ms_per_report": 1000 * mlflow_total / max(1, len(reports)),
        "close_s_per_trial": sum(closes) / n, "peak_rss_mb": max(p["maxrss_kb"] for p in phases) / 1024,
        "journal_bytes": _bytes(storage.journal_path()),
        "mlflow_store_bytes": _store_bytes(uri) - store_before,
        "artifact_bytes": _bytes(work / "mlartifacts") + _bytes(work / "mlruns"),
        "storage_bytes": _bytes(work / "ray_results"),
        "resume_first_trial_s": resumed["first_trial_s"], "resume_first_new_trial_s": resumed["first_new_trial_s"],
        "resume_total_s": resumed["wall_s"], "report_s": report_s, "report_rc": report_rc, "export_s": export_s,
        "export_rc": export_rc, "cli_startup_s": startup_s,
        "report_finished": report_trials.get("finished", -1),
        "mlflow_warnings": sum(line.startswith("none-sweep: MLflow: ") and " failed (" in line
                               for log in logs for line in log.splitlines()),
        "profiles": sorted(str(p) for p in work.glob("*.prof.txt")) if profile else [],
    }  # fmt: skip
    return row


# ====================================================================== output
def growth(rows: list[dict[str, Any]], key: str) -> float:
    """The exponent b of ``key ≈ a·N^b`` (least squares on log-log) over the rows: 0 flat, 1 linear in N."""
    pts = [(math.log(r["n"]), math.log(r[key])) for r in rows if isinstance(r.get(key), (int, float))
           and r[key] > 0 and r["n"] > 0]  # fmt: skip
    if len({x for x, _ in pts}) < 2:
        return math.nan
    mx, my = statistics.fmean(x for x, _ in pts), statistics.fmean(y for _, y in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def plot(rows: list[dict[str, Any]], path: Path, concurrency: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [r for r in rows if r["concurrency"] == concurrency]
    series.sort(key=lambda r: r["n"])
    ns = [r["n"] for r in series]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 5.6))
    for key, label, scale in (("driver_cpu_per_trial_s", "driver CPU per trial (s)", 1.0),
                              ("driver_cpu_per_trial_steady_s", "driver CPU per trial, after start-up (s)", 1.0),
                              ("suggest_ms_median", "suggest median (s)", 1e-3),
                              ("suggest_ms_p95", "suggest p95 (s)", 1e-3),
                              ("mlflow_ms_per_report", "MLflow per report, all hooks (s)", 1e-3),
                              ("resume_total_s", "resumed driver, start to end (s)", 1.0),
                              ("resume_first_new_trial_s", "resume, to first new trial (s)", 1.0),
                              ("report_s", "report (s)", 1.0), ("export_s", "export (s)", 1.0)):  # fmt: skip
        left.plot(ns, [(r[key] or math.nan) * scale for r in series], marker="o", label=label)
    for key, label in (("journal_bytes", "Optuna journal"), ("mlflow_store_bytes", "MLflow store"),
                       ("artifact_bytes", "MLflow artifacts"), ("storage_bytes", "Ray storage"),
                       ("peak_rss_mb", "peak driver RSS")):  # fmt: skip
        scale = 1.0 if key == "peak_rss_mb" else 2**-20
        right.plot(ns, [max(r[key], 0) * scale or math.nan for r in series], marker="o", label=label)
    for ax, ylabel in ((left, "seconds"), (right, "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"trials N (concurrency {concurrency})")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    left.axhline(GOAL_CPU_S, color="grey", ls=":", lw=1)
    fig.suptitle("none-sweep's own cost against sweep size (synthetic trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(rows: list[dict[str, Any]]) -> None:
    from ._common import table

    headers = ["N", "c", "trials ray/mlflow/optuna", "driver CPU s/trial", "(steady)", "suggest ms med/p95",
               "MLflow ms/report hook med/p95 (all hooks)", "MLflow s/trial (close)", "peak RSS MB", "journal MB", "MLflow MB",
               "artifacts MB", "storage MB", "resume: 1st trial / 1st new / total s", "report s", "export s"]  # fmt: skip
    mb = 2**-20
    print(table(headers, [[
        r["n"], r["concurrency"], f"{r['trials_ray']}/{r['runs_mlflow']}/{r['trials_optuna_complete']}",
        r["driver_cpu_per_trial_s"], r["driver_cpu_per_trial_steady_s"],
        f"{r['suggest_ms_median']:.1f} / {r['suggest_ms_p95']:.1f}",
        f"{r['report_ms_median']:.1f} / {r['report_ms_p95']:.1f} ({r.get('mlflow_ms_per_report', math.nan):.1f})",
        f"{r['mlflow_s_per_trial']:.2f} ({r['close_s_per_trial']:.2f})", r["peak_rss_mb"],
        r["journal_bytes"] * mb, r["mlflow_store_bytes"] * mb, r["artifact_bytes"] * mb, r["storage_bytes"] * mb,
        f"{_s(r['resume_first_trial_s'])} / {_s(r['resume_first_new_trial_s'])} / {r['resume_total_s']:.1f}",
        r["report_s"], r["export_s"]] for r in rows]))  # fmt: skip


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """The goals at the largest N measured, and the growth exponent of each cost over N."""
    lines = []
    big = max(rows, key=lambda r: (r["n"], -abs(r["concurrency"] - 4)))
    ok = lambda v, goal: "met" if v is not None and v <= goal else "MISSED"  # noqa: E731
    lines.append(f"goal: driver CPU per trial at N={big['n']} (c={big['concurrency']}): "
                 f"{big['driver_cpu_per_trial_s']:.3f} s (goal ≤ {GOAL_CPU_S} s): {ok(big['driver_cpu_per_trial_s'], GOAL_CPU_S)}")  # fmt: skip
    lines.append(f"goal: MLflow per report at N={big['n']}: the report hook median {big['report_ms_median']:.1f} ms, "
                 f"p95 {big['report_ms_p95']:.1f} ms; every MLflow hook's time / reports {big['mlflow_ms_per_report']:.1f} ms "
                 f"(goal ≤ {GOAL_REPORT_MS:g} ms for both): "
                 f"{ok(max(big['report_ms_p95'], big['mlflow_ms_per_report']), GOAL_REPORT_MS)}")  # fmt: skip
    lines.append(f"goal: resume of an N={big['n']} sweep interrupted at {big['interrupted_at']}: first new trial "
                 f"after {_s(big['resume_first_new_trial_s'])} s (goal ≤ {GOAL_RESUME_S:g} s): "
                 f"{ok(big['resume_first_new_trial_s'], GOAL_RESUME_S)}; the remaining trials in {big['resume_total_s']:.0f} s")  # fmt: skip
    same_c = [r for r in rows if r["concurrency"] == big["concurrency"]]
    for key in ("driver_cpu_per_trial_s", "suggest_ms_median", "report_ms_median", "mlflow_s_per_trial",
                "peak_rss_mb", "journal_bytes", "mlflow_store_bytes", "storage_bytes", "resume_first_new_trial_s",
                "report_s", "export_s"):  # fmt: skip
        b = growth(same_c, key)
        if b == b:
            lines.append(f"growth: {key} ∝ N^{b:.2f} over N={[r['n'] for r in same_c]} at c={big['concurrency']}")
    return lines


# ====================================================================== main
@contextlib.contextmanager
def tracking_store(args: argparse.Namespace, tmp: Path) -> Iterator[str | None]:
    if not args.postgres:
        yield args.tracking_uri
        return
    try:
        from bench._postgres import throwaway_postgres
    except ImportError:
        raise SystemExit("--postgres: bench/_postgres.py (the throw-away PostgreSQL) is missing") from None
    with throwaway_postgres(tmp / "postgres") as url:
        if not args.via_server:
            yield url
            return
        from bench.bench_tracking_store import mlflow_server

        folder = tmp / "mlflow-server"
        folder.mkdir(parents=True, exist_ok=True)
        with mlflow_server(url, folder, workers=2) as http:  # as cluster/start_mlflow.sh runs it
            STORE_URL[http] = url
            yield http


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one sweep of N=4, 2 at a time (a smoke run)")
    parser.add_argument("--grid", choices=("reduced", "full"), default="reduced",
                        help="reduced: N 10/100/1000 at c=4 and c 1/4/16 at N=100; full: every pair")  # fmt: skip
    parser.add_argument("--n", default=None, help="comma-separated N (with --concurrency: their full grid)")
    parser.add_argument("--concurrency", default=None, help="comma-separated trials at a time")
    parser.add_argument("--cpus", type=float, default=None, help="CPUs shared by the trials (default: usable cores)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tracking-uri", help="MLflow store (default: SQLite in each sweep's temp folder)")
    which.add_argument("--postgres", action="store_true", help="MLflow in a throw-away PostgreSQL on loopback")
    parser.add_argument("--via-server", action="store_true",
                        help="with --postgres: through `mlflow server --workers 2` on it, the cluster's path")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="cProfile each driver (<work>/<phase>.prof[.txt])")
    parser.add_argument("--out", default=None, help="results JSON (default bench/scale_results.json; --quick: temp)")
    parser.add_argument("--plot", default=None, help="plot PNG (default bench/scale.png; --quick: none)")
    parser.add_argument("--keep", default=None, help="keep the sweeps' folders here instead of a temp folder")
    parser.add_argument("--append", action="store_true",
                        help="add the rows to --out's (replacing the same N and c): one (N, c) per run on a shared "
                             "machine, the table, verdict and plot over them all")  # fmt: skip
    parser.add_argument("--phase", choices=("start", "resume"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:  # a driver process of one sweep
        result = run_phase(args)
        (Path(args.work) / f"{args.phase}.json").write_text(json.dumps(result), encoding="utf-8")
        return 0
    return run_grid(args, sys.argv[1:] if argv is None else argv)


def run_grid(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from ._common import machine, print_header

    if args.n or args.concurrency:
        grid = [(int(n), int(c)) for n in (args.n or "100").split(",") for c in (args.concurrency or "4").split(",")]
    elif args.quick:
        grid = [(4, 2)]
    elif args.grid == "full":
        grid = [(n, c) for n in (10, 100, 1000) for c in (1, 4, 16)]
    else:
        grid = list(REDUCED)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpus = args.cpus or float(cores)
    device = torch.device("cpu")
    print_header("bench_scale: none-sweep's own cost against sweep size (synthetic trials)", device)
    rows: list[dict[str, Any]] = []
    command = shlex.join(["python", "-m", "bench.bench_scale", *argv])
    keep = Path(args.keep).resolve() if args.keep else None
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        tmp = keep or Path(scratch)
        with tracking_store(args, tmp) as uri:
            store = "PostgreSQL (throw-away)" if args.postgres else (uri or "SQLite per sweep")
            store += " behind mlflow server" if args.postgres and args.via_server else ""
            for n, c in grid:
                t0 = time.perf_counter()
                print(f"  N={n} c={c} ({cpus / c:g} CPU per trial): ...", flush=True)
                load = os.getloadavg()[0]
                row = measure(n, c, cpus, tmp, uri, args.profile)
                row.update(tracking_store=store, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                           load_at_start=load, command=command, seconds=time.perf_counter() - t0)  # fmt: skip
                rows.append(row)
                print(f"  N={n} c={c}: {time.perf_counter() - t0:.0f} s", flush=True)
    out = Path(args.out) if args.out else (None if args.quick else ROOT / "bench" / "scale_results.json")
    if out is None:
        out = Path(tempfile.gettempdir()) / "bench_scale_quick.json"
    if args.append and out.exists():
        new = {(r["n"], r["concurrency"]) for r in rows}
        old = json.loads(out.read_text(encoding="utf-8")).get("rows", [])
        rows = [r for r in old if (r["n"], r["concurrency"]) not in new] + rows
        rows.sort(key=lambda r: (r["n"], r["concurrency"]))
    payload = {"machine": machine(device), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "command": command, "cpus": cpus, "tracking_store": rows[0]["tracking_store"] if rows else None,
               "grid": [(r["n"], r["concurrency"]) for r in rows],
               "goals": {"driver_cpu_per_trial_s": GOAL_CPU_S, "report_ms": GOAL_REPORT_MS, "resume_s": GOAL_RESUME_S},
               "rows": rows}  # fmt: skip
    print()
    print_table(rows)
    lines = verdict(rows)
    payload["verdict"] = lines
    for line in lines:
        print(line)
    out.write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")
    print(f"results: {out}")
    png = Path(args.plot) if args.plot else (None if args.quick else ROOT / "bench" / "scale.png")
    if png is not None:
        plot(rows, png, 4 if any(r["concurrency"] == 4 for r in rows) else rows[0]["concurrency"])
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
