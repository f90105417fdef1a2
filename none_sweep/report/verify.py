"""``export --verify-seeds N``: is the chosen trial's figure luck? Re-train its config on N fresh seeds.

Seeds ``seed+1 .. seed+N`` run as Ray tasks (one per seed, on the Ray cluster named by ``RAY_ADDRESS`` or a
local one started for the purpose); the result is the per-seed metrics and mean ± sample sd of clean
accuracy and ASR (REASR for natural backdoors), next to the sweep's own figure.

Each fresh seed is paired with its own undefended run (same config, ``defense.enabled=false``, same seed)
unless asked not to: the sweep's baseline was trained on the sweep's seed only, and a fresh seed's clean
accuracy against it mixes seed-to-seed noise (about a point here) into the drop the export rule limits.
Paired, each seed gives its own drop, DER and training cost, and those are summarised like the metrics.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, ResourceError
from ..sweep.preflight import RAY_AUTH_ENABLED_NOTICE, dropping
from ..train.metrics import compare_to_baseline

#: What a fresh seed is judged on: ASR where a trigger is injected, REASR where trigger inversion runs instead
#: (natural backdoors); a metric the config does not measure stays None and is left out of the lines.
VERIFIED = ("clean_acc", "asr", "reasr")
#: Per seed against that seed's undefended run (only when paired): the figures the export rules and the
#: product's goals are stated in. ``cost`` is the defended run's wall time over the undefended run's.
PAIRED = ("clean_acc_drop", "der", "cost")
DEFENDED, UNDEFENDED = "defended", "undefended"
#: Kept per seed beside the verified metrics, not summarised: what explains a seed that lands far from the
#: others (did detection find the poison on it?) and what the cost is computed from.
DIAGNOSTIC = ("robust_acc", "poison_precision", "poison_recall", "removed_samples", "wall_s", "device")


def train_one_seed(config: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train ``config`` with ``seed`` to the end (no pre-training cache); the run's final metrics."""
    from ..experiment import resolve_config
    from ..train import ExperimentRun

    cfg = resolve_config({**config, "seed": seed}, source=f"verify seed {seed}")
    run = ExperimentRun(cfg)
    for _report in run.epochs():
        pass
    metrics = run.result().metrics
    return {"seed": seed, **{k: metrics.get(k) for k in (*VERIFIED, *DIAGNOSTIC)}}


def undefended(config: dict[str, Any]) -> dict[str, Any]:
    """The same config without the defense: what the sweep's baseline is, on another seed."""
    return {**config, "defense": {**(config.get("defense") or {}), "enabled": False}}


def paired(defended: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """One seed's defended result with its undefended run and the figures against it."""
    figures = compare_to_baseline(defended, baseline)
    walls = defended.get("wall_s"), baseline.get("wall_s")
    cost = walls[0] / walls[1] if walls[0] is not None and walls[1] else None
    return {**defended, "clean_acc_drop": figures.get("clean_acc_drop"), "der": figures.get("der"), "cost": cost,
            UNDEFENDED: baseline}  # fmt: skip


def undefended_means(per_seed: list[dict[str, Any]]) -> dict[str, float]:
    """Mean over the seeds of each verified metric of their own undefended runs (empty when not paired)."""
    bases = [r[UNDEFENDED] for r in per_seed if r.get(UNDEFENDED)]
    return {k: statistics.fmean(b[k] for b in bases) for k in VERIFIED if bases and bases[0].get(k) is not None}


def seeds_for(config: dict[str, Any], n: int) -> list[int]:
    base = int(config.get("seed", 0) or 0)
    return [base + i for i in range(1, n + 1)]


def run_seeds(
    config: dict[str, Any],
    n: int,
    *,
    address: str | None = None,
    with_baseline: bool = True,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train ``config`` on ``n`` fresh seeds as Ray tasks (each with its undefended run when
    ``with_baseline``); results in seed order."""
    import ray

    if n < 1:
        raise ConfigError(f"--verify-seeds must be at least 1, got {n}")
    started_here = not ray.is_initialized()
    if started_here:
        with dropping(RAY_AUTH_ENABLED_NOTICE):  # the sweep drops the same notice: a safe default, not news
            ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        wants_gpu = gpus > 0 and config.get("train", {}).get("device", "auto") != "cpu"
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < 1:
            raise ResourceError("the Ray cluster has no CPU to run the verification on")
        task = ray.remote(num_cpus=1, num_gpus=1 if wants_gpu else 0, max_retries=0)(train_one_seed)
        arms = {DEFENDED: config, **({UNDEFENDED: undefended(config)} if with_baseline else {})}
        seeds = seeds_for(config, n)
        pending = {task.remote(cfg, seed): (seed, arm) for seed in seeds for arm, cfg in arms.items()}
        say(
            f"verify: training {n} seed(s) {seeds}{' each with its undefended run' if with_baseline else ''} "
            f"as {len(pending)} Ray tasks ({'1 GPU' if wants_gpu else '1 CPU'} each; "
            f"cluster {cpus:g} CPU, {gpus:g} GPU)"
        )
        done_runs = gather(pending, label_arms=with_baseline, say=say)
        if not with_baseline:
            return [done_runs[seed, DEFENDED] for seed in seeds]
        return [paired(done_runs[seed, DEFENDED], done_runs[seed, UNDEFENDED]) for seed in seeds]
    finally:
        if started_here:
            ray.shutdown()


def gather(
    pending: dict[Any, tuple[int, str]], *, label_arms: bool, say: Callable[[str], None]
) -> dict[tuple[int, str], dict[str, Any]]:
    """Each Ray task's result by (seed, arm) as it finishes, one line each; a failed task stops the check."""
    import ray

    done_runs: dict[tuple[int, str], dict[str, Any]] = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        seed, arm = pending.pop(done[0])
        try:
            done_runs[seed, arm] = ray.get(done[0])
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise ResourceError(f"verification seed {seed} ({arm}) failed: {type(cause).__name__}: {cause}") from None
        which = f" {arm}" if label_arms else ""  # unpaired: the config as given, nothing to tell apart
        say(f"verify: seed {seed}{which}: {measured(done_runs[seed, arm])}")
    return done_runs


def summarise(
    results: list[dict[str, Any]], sweep_metrics: dict[str, float], *, run_id: str, experiment: str, config_seed: int
) -> dict[str, Any]:
    """Mean and sample sd per verified metric, beside the sweep trial's value."""
    stats = {}
    for key in (*VERIFIED, *PAIRED):
        values = [float(r[key]) for r in results if r.get(key) is not None]
        if not values and (key in PAIRED or sweep_metrics.get(key) is None):
            continue  # not measured by this config (no trigger: no ASR; REASR off), or seeds not paired
        stats[key] = {
            "sweep": sweep_metrics.get(key),
            "mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values),
        }
    return {
        "experiment": experiment,
        "run_id": run_id,
        "sweep_seed": config_seed,
        "seeds": [r["seed"] for r in results],
        "per_seed": results,
        "summary": stats,
    }


def table(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    head = f"fresh seeds {seeds[0]}..{seeds[-1]} (n={len(seeds)})" if seeds else "fresh seeds"
    rows = [f"{'metric':<15} {'sweep (seed ' + str(summary['sweep_seed']) + ')':>18}   {head}"]
    for key, s in summary["summary"].items():
        sweep = "n/a" if s["sweep"] is None else f"{s['sweep']:.4f}"
        mean = "n/a" if s["mean"] is None else f"{s['mean']:.4f} ± {s['sd']:.4f}"
        rows.append(f"{key:<15} {sweep:>18}   {mean}")
    for r in summary["per_seed"]:
        base = r.get(UNDEFENDED)
        rows.append(f"  seed {r['seed']}: {measured(r)}" + (f"   undefended: {measured(base)}" if base else ""))
    if any(key in summary["summary"] for key in PAIRED):
        rows.append("  (clean_acc_drop, der, cost: each seed against its own undefended run; the sweep's "
                    "column against the sweep's baseline)")  # fmt: skip
    return "\n".join(rows)


def measured(result: dict[str, Any]) -> str:
    """``clean_acc=0.8010 asr=0.0338``: the verified metrics this run measured (and, paired, its drop)."""
    return " ".join(f"{k}={result[k]:.4f}" for k in (*VERIFIED, *PAIRED) if result.get(k) is not None)


def verify_path(out: str | Path) -> Path:
    """``best_defense.yaml`` → ``best_defense.verify.json`` (beside the exported config)."""
    return Path(out).with_suffix(".verify.json")


def write(summary: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def config_mapping(config_text: str) -> dict[str, Any]:
    data = yaml.safe_load(config_text)
    if not isinstance(data, dict):
        raise ConfigError("the exported config is not a mapping")
    return data
