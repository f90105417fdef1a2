"""The sweep's undefended baseline: the same base config with ``defense.enabled=false``, trained once.

It runs as a Ray task with one trial's resources (so it lands on a GPU node when trials need one) before
the Tuner starts, and is cached as ``baseline.json`` in the sweep's storage: a resumed sweep, or a fresh
start of an interrupted one, reuses it as long as the baseline config is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..config import to_dict
from ..errors import NoneSweepError
from .space import SweepSpace
from .storage import BASELINE_FILE, SweepStorage


def measure_baseline(space: SweepSpace, storage: SweepStorage, say: Callable[[str], None],
                     run_factory: Callable[..., Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """``{"metrics": ..., "attack": ..., "config": ..., "wall_s": ...}``, from the cache or a fresh run.

    ``run_factory`` trains it (``SweepOptions.run_factory``; None: :class:`~none_sweep.train.ExperimentRun`).

    A space with attack variants trains one baseline per variant (as parallel Ray tasks); the payload then also
    holds ``variants`` (name → metrics), and ``metrics`` combines them the way a robust trial's are combined.
    """
    import ray

    configs = {name: to_dict(cfg) for name, cfg in space.baseline_configs().items()}
    key: Any = configs.get("", configs)  # a single baseline keeps the layout baseline.json always had
    cached = storage.read_json(BASELINE_FILE)
    if cached and cached.get("config") == key and "metrics" in cached:
        m = cached["metrics"]
        say(f"baseline: reusing {storage.experiment_path}/{BASELINE_FILE} "
            f"(clean_acc {_pct(m.get('clean_acc'))}, asr {_pct(m.get('asr'))})")  # fmt: skip
        return cached
    r = space.resources
    epochs = next(iter(configs.values()))["train"]["epochs"]
    runs = "once" if len(configs) == 1 else f"once per variant ({len(configs)})"
    say(f"baseline: training the undefended run {runs} ({epochs} epochs, defense.enabled=false) ...")
    task = ray.remote(num_cpus=r.cpu, num_gpus=r.gpu, max_retries=space.max_failures)(_train_baseline)
    cache_root = storage.pretrain_cache_root  # a label-consistent attack's surrogate: the one the trials load
    refs = {name: task.remote(cfg, run_factory, cache_root) for name, cfg in configs.items()}
    try:
        payloads = {name: ray.get(ref) for name, ref in refs.items()}
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, NoneSweepError):
            raise type(cause)(f"the undefended baseline failed: {cause}") from None
        raise
    except KeyboardInterrupt:
        for ref in refs.values():
            ray.cancel(ref, force=True)
        raise
    payload = payloads[""] if "" in payloads else _combined(payloads, key)
    storage.write_json(BASELINE_FILE, payload)
    m = payload["metrics"]
    say(f"baseline: clean_acc {_pct(m.get('clean_acc'))}, asr {_pct(m.get('asr'))}, "
        f"robust_acc {_pct(m.get('robust_acc'))} in {payload['wall_s']:.0f}s")  # fmt: skip
    return payload


def _combined(payloads: Mapping[str, Mapping[str, Any]], config: Any) -> dict[str, Any]:
    from ..train.variants import combined_metrics

    per_variant = {name: dict(p["metrics"]) for name, p in payloads.items()}
    return {
        "metrics": combined_metrics(per_variant),
        "variants": per_variant,
        "attack": {"variants": {name: p["attack"] for name, p in payloads.items()}},
        "config": config,
        "wall_s": sum(float(p["wall_s"]) for p in payloads.values()),
    }


def _train_baseline(cfg_dict: dict[str, Any], run_factory: Callable[..., Any] | None = None,
                    cache_root: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The undefended run. ``cache_root``: the sweep's shared cache, so that an attack built on a surrogate
    poisons the baseline's data exactly as the trials' (it pre-trains nothing: the defense is off)."""
    import os

    os.environ.pop("MLFLOW_RUN_ID", None)
    from ..experiment import resolve_config
    from ..train import ExperimentRun, PretrainCache

    cfg = resolve_config(cfg_dict, source="baseline")
    t0 = time.perf_counter()
    cache = PretrainCache(cache_root) if cache_root else None
    run = (run_factory or ExperimentRun)(cfg, pretrain_cache=cache, progress=None)
    for _ in run.epochs():
        pass
    result = run.result()
    metrics = {k: (float(v) if isinstance(v, bool) else v) for k, v in result.metrics.items()
               if v is None or isinstance(v, (bool, int, float))}  # fmt: skip
    return {"metrics": metrics, "attack": result.attack, "config": cfg_dict, "wall_s": time.perf_counter() - t0}


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
