"""What Ray Tune and MLflow cost around a trial: seconds per trial and milliseconds per report.

A trivial function trainable (``bench/_trivial.py``: no training; ``--work-ms`` of sleep per report if asked)
reports K epoch-shaped results, the last one with a checkpoint holding a small ``model_state.pt`` as the real
trainable does. It runs through a local Ray Tune (``max_concurrent_trials=1`` by default, so the figures are
latencies) with these stacks:

- ``ray``: Tune alone (a grid over ``defense.max_reset_fraction``), Tune's default result loggers;
- ``ray+imports``: the trainable first imports what a real trial's process imports (torch, ``none_sweep.train``),
  one new worker process per trial as the project's runner runs them (``reuse_actors=False``);
- ``ray+imports+reuse``: the same with ``TuneConfig(reuse_actors=True)`` (workers, and their imports, reused);
- ``+mlflow``: ``ray+imports+reuse`` plus the project's ``none_sweep.tracking.callback.MlflowSweepCallback`` (a child
  run per trial with the resolved config as params and ``config.yaml``, per-epoch metrics) into a SQLite store in
  a temporary folder, under a parent run made by ``SweepTracker.start_parent`` (Ray's ``MLflowLoggerCallback``
  when the project's callback is not importable; the output says which);
- ``+model``: as ``+mlflow``, and the callback logs the final checkpoint's model as an MLflow PyTorch model;
- ``+optuna``: as ``+model``, with the project's Optuna searcher (``SweepSearcher``, journal file) choosing the
  trials: the whole stack ``none-sweep sweep`` runs (bar ``reuse_actors``).

The tracking stacks reuse actors so that the wall-time slopes are not drowned by the spawn of one worker
process per trial (seconds, and noisy on a shared machine); today's runner pays ``ray+imports`` per trial plus
the callback's share.

Per stack two sweeps of T trials run, with K1 and K2 reports per trial: per report = the wall-time slope
``(wall(K2) − wall(K1)) / (T·(K2 − K1))`` less the work; per trial = ``wall(K1) / T − K1·(work + per report)``
(both × the concurrency when trials overlap). The MLflow callback's own time in the driver (which holds up
Tune's loop) is also clocked directly, per report and per trial. One-off costs (``ray.init``, creating the
MLflow store) are reported apart.

    python -m bench.bench_overhead
    python -m bench.bench_overhead --quick
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ._common import add_common_args, print_header, setup, table
from ._trivial import epoch_result, trivial_trainable

__all__ = ["epoch_result", "main", "overheads"]

ROOT = Path(__file__).resolve().parents[1]
SPACE_FILE = ROOT / "search_spaces" / "digits_tiny.yaml"
STACKS = ("ray", "ray+imports", "ray+imports+reuse", "+mlflow", "+model", "+optuna")
GOAL_TRIAL_S, GOAL_REPORT_MS = 2.0, 50.0

#: Driver-side seconds spent inside the tracking callback's hooks, by run name and hook (see TimedCallback).
CALLBACK_TIME: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))


def overheads(
    w1: float, w2: float, trials: int, k1: int, k2: int, work_s: float, concurrent: int = 1
) -> tuple[float, float]:
    """(seconds per trial, seconds per report) from two sweep walls, with c trials at a time:
    ``wall(K) ≈ (T / c) · (per_trial + K · (work + per_report))``."""
    per_report = max(0.0, (w2 - w1) * concurrent / (trials * (k2 - k1)) - work_s)
    per_trial = w1 * concurrent / trials - k1 * (work_s + per_report)
    return per_trial, per_report


def _timed_callback_class() -> type:
    from ray.tune import Callback

    class TimedCallback(Callback):
        """Forwards Tune's hooks to ``inner`` and adds up the seconds each takes (the driver waits for them)."""

        def __init__(self, inner: Any, run: str) -> None:
            self.inner, self.run = inner, run

        def _call(self, hook: str, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return getattr(self.inner, hook)(*args, **kwargs)
            finally:
                CALLBACK_TIME[self.run][hook] += time.perf_counter() - t0

        def setup(self, *a: Any, **k: Any) -> None:
            self._call("setup", *a, **k)

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self._call("on_step_begin", *a, **k)

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self._call("on_step_end", *a, **k)

        def on_trial_start(self, *a: Any, **k: Any) -> None:
            self._call("on_trial_start", *a, **k)

        def on_trial_result(self, *a: Any, **k: Any) -> None:
            self._call("on_trial_result", *a, **k)

        def on_checkpoint(self, *a: Any, **k: Any) -> None:
            self._call("on_checkpoint", *a, **k)

        def on_trial_complete(self, *a: Any, **k: Any) -> None:
            self._call("on_trial_complete", *a, **k)

        def on_trial_error(self, *a: Any, **k: Any) -> None:
            self._call("on_trial_error", *a, **k)

        def on_trial_recover(self, *a: Any, **k: Any) -> None:
            self._call("on_trial_recover", *a, **k)

        def on_experiment_end(self, *a: Any, **k: Any) -> None:
            self._call("on_experiment_end", *a, **k)

    return TimedCallback


def write_model_state(space: Any, folder: Path) -> str:
    """The state dict of the space's model (digits small_cnn), as the real trainable saves it."""
    import torch

    from none_sweep.data import dataset_info
    from none_sweep.models import create_model

    cfg = space.base_config()
    model = create_model(cfg.model.name, dataset_info(cfg.data.name))
    path = folder / "model_state.pt"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return str(path)


class Stack:
    """The trainable options, callbacks and searcher of one stack, against one MLflow store and sweep name."""

    def __init__(self, name: str, space: Any, folder: Path, sweep: str) -> None:
        self.name, self.space, self.folder, self.sweep = name, space, folder, sweep
        self.uri = f"sqlite:///{(folder / 'mlflow.db').as_posix()}"
        self.tracking = name.startswith("+")
        self.imports = name != "ray"
        self.reuse = name.endswith("reuse") or self.tracking
        self.kind = "none"
        self.init_s = 0.0
        if self.tracking:
            self.kind, self.init_s = self._init_tracking()

    def _init_tracking(self) -> tuple[str, float]:
        self.folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        import mlflow

        logging.getLogger("mlflow").setLevel(logging.ERROR)  # set on import; quiets the model-format warning
        try:
            from none_sweep.tracking.callback import MlflowSweepCallback  # noqa: F401
            from none_sweep.tracking.store import SweepTracker
        except ImportError:
            mlflow.set_tracking_uri(self.uri)
            mlflow.set_experiment(self.sweep)
            return "ray.air.integrations.mlflow.MLflowLoggerCallback", time.perf_counter() - t0
        SweepTracker(self.uri, self.sweep).start_parent({"bench": "overhead"}, {"space.yaml": self.space.text},
                                                        resume=False)  # fmt: skip
        return "none_sweep.tracking.callback.MlflowSweepCallback", time.perf_counter() - t0

    def callbacks(self, run: str) -> list[Any]:
        if not self.tracking:
            return []
        if self.kind.startswith("none_sweep"):
            from none_sweep.config import to_dict
            from none_sweep.tracking.callback import MlflowSweepCallback

            resolve = lambda sampled: to_dict(self.space.trial_config(sampled))  # noqa: E731
            inner: Any = MlflowSweepCallback(self.uri, self.sweep, resolve)
        else:
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            inner = MLflowLoggerCallback(tracking_uri=self.uri, experiment_name=self.sweep, save_artifact=False)
        return [_timed_callback_class()(inner, run)]

    def searcher(self, run: str) -> Any:
        if self.name != "+optuna":
            return None
        from none_sweep.sweep.search import SweepSearcher

        return SweepSearcher(self.space, self.folder / f"{run}.journal", study_name=run)

    @property
    def logs_model(self) -> bool:
        return self.name in ("+model", "+optuna")


def run_sweep(stack: Stack, trials: int, reports: int, work_s: float, concurrent: int, model_state: str,
              run: str) -> float:  # fmt: skip
    """Wall seconds of ``Tuner.fit()`` for ``trials`` trials of ``reports`` reports each."""
    from ray import tune

    trainable = tune.with_resources(
        tune.with_parameters(trivial_trainable, reports=reports, work_s=work_s, imports=stack.imports,
                             model_state=model_state if stack.logs_model else None),
        {"cpu": 1},
    )  # fmt: skip
    searcher = stack.searcher(run)
    values = [round(0.02 + 0.01 * i, 2) for i in range(trials)]
    param_space = {} if searcher is not None else {"defense.max_reset_fraction": tune.grid_search(values)}
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=trials if searcher is not None else 1,
            max_concurrent_trials=concurrent,
            reuse_actors=stack.reuse,
        ),
        run_config=tune.RunConfig(
            name=run,
            storage_path=str(stack.folder / "ray"),
            callbacks=stack.callbacks(run),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    errors = [r.error for r in results if r.error is not None]
    if errors or len(results) != trials:
        raise RuntimeError(f"{stack.name}: {len(errors)} of {len(results)} trials failed: {errors[:1]}")
    return wall


def measure_stack(stack: Stack, trials: int, k1: int, k2: int, work_s: float, concurrent: int,
                  model_state: str) -> dict[str, Any]:  # fmt: skip
    tag = stack.name.strip("+").replace("+", "-")
    runs = (f"{tag}-k{k1}", f"{tag}-k{k2}")
    w1 = run_sweep(stack, trials, k1, work_s, concurrent, model_state, runs[0])
    w2 = run_sweep(stack, trials, k2, work_s, concurrent, model_state, runs[1])
    per_trial, per_report = overheads(w1, w2, trials, k1, k2, work_s, concurrent)
    out = {"stack": stack.name, "w1": w1, "w2": w2, "per_trial": per_trial, "per_report": per_report}
    if stack.tracking:  # the callback's own driver time: per result, and per trial (start + close + the rest)
        t1, t2 = CALLBACK_TIME[runs[0]], CALLBACK_TIME[runs[1]]
        out["cb_report"] = (t2["on_trial_result"] - t1["on_trial_result"]) / (trials * (k2 - k1))
        out["cb_trial"] = (sum(t1.values()) - trials * k1 * out["cb_report"]) / trials
    return out


def import_seconds(statement: str) -> float:
    """Wall seconds of a fresh interpreter running ``statement`` (what a new trial process pays to import)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=ROOT)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_overhead", description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--trials", type=int, help="trials per sweep (default 8; --quick 4)")
    parser.add_argument("--reports", default=None, help="K1,K2 reports per trial (default 1,21; --quick 1,11)")
    parser.add_argument("--work-ms", type=float, default=0.0, help="sleep per report inside the trainable")
    parser.add_argument("--concurrent", type=int, default=1, help="max_concurrent_trials (1: latencies)")
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated subset of {','.join(STACKS)}")
    args = parser.parse_args(argv)
    device = setup(args)
    trials = args.trials or (4 if args.quick else 8)
    k1, k2 = (int(k) for k in (args.reports or ("1,11" if args.quick else "1,21")).split(","))
    work_s = args.work_ms / 1000.0
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no per-trial tables on the console
    os.environ.pop("MLFLOW_RUN_ID", None)

    print_header("bench_overhead: Ray Tune + MLflow around a trivial trainable", device)
    import ray

    from none_sweep.sweep.space import load_space

    space = load_space(SPACE_FILE)
    imports = {
        "torch": import_seconds("import torch"),
        "torch + none_sweep.train": import_seconds("import none_sweep.train"),
    }
    t0 = time.perf_counter()
    ray.init(num_cpus=max(2, args.concurrent), include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, runtime_env={"env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0"}})  # fmt: skip
    notes = [f"ray.init (once per sweep): {time.perf_counter() - t0:.2f} s"]
    notes += [f"a fresh interpreter importing {k} (each new trial process): {v:.2f} s" for k, v in imports.items()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        folder = Path(tmp)
        model_state = write_model_state(space, folder)
        run_sweep(Stack("ray", space, folder / "warmup", "warmup"), 1, 1, 0.0, 1, model_state, "warmup")
        for name in args.stacks.split(","):
            tag = name.strip("+").replace("+", "-")
            stack = Stack(name, space, folder / tag, f"bench-{tag}")
            if stack.init_s:
                notes.append(f"{name}: MLflow store creation + parent run (once per sweep): {stack.init_s:.2f} s "
                             f"[{stack.kind}]")  # fmt: skip
            r = measure_stack(stack, trials, k1, k2, work_s, args.concurrent, model_state)
            print(f"  {name}: T={trials} K={k1}: {r['w1']:.1f} s, K={k2}: {r['w2']:.1f} s", flush=True)
            ok = r["per_trial"] <= GOAL_TRIAL_S and 1000 * r["per_report"] <= GOAL_REPORT_MS
            rows.append([name, trials, r["w1"], r["w2"], r["per_trial"], 1000 * r["per_report"],
                         r.get("cb_trial", float("nan")), 1000 * r.get("cb_report", float("nan")),
                         "yes" if ok else "no"])  # fmt: skip
    ray.shutdown()
    print(f"\nT trials per sweep, K1={k1} and K2={k2} reports per trial, {args.work_ms:g} ms work per report, "
          f"max_concurrent_trials={args.concurrent}\n")  # fmt: skip
    print(table(["stack", "T", f"wall K={k1} s", f"wall K={k2} s", "per trial s", "per report ms",
                 "MLflow callback s/trial", "MLflow callback ms/report",
                 f"goal ≤{GOAL_TRIAL_S:g} s, ≤{GOAL_REPORT_MS:g} ms"],
                rows))  # fmt: skip
    for note in notes:
        print("one-off: " + note)
    for row in rows:
        print(f"ratio: {row[0]}: {row[4]:.2f} s per trial ({row[4] / GOAL_TRIAL_S:.2f}× the {GOAL_TRIAL_S:g} s goal), "
              f"{row[5]:.1f} ms per report ({row[5] / GOAL_REPORT_MS:.2f}× the {GOAL_REPORT_MS:g} ms goal)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
