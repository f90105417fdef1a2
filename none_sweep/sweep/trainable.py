"""The Ray Tune function trainable: one trial = one :class:`~none_sweep.train.ExperimentRun`.

Every epoch is one ``tune.report``; the first keys are ``asr``, ``clean_acc``, ``clean_acc_drop`` so Ray's
trial table shows them. A checkpoint (the run's full state, the model's ``state_dict`` and ``outcome.json``)
goes with each round end and with the final report, which also carries the run's result, every objective
and constraint metric and the comparison with the sweep's baseline.

How a trial ended is also written to the sweep's storage (``trial_outcomes/<trial id>/``) *before* Ray hears
of it, because Ray's own record is a snapshot taken every few seconds: after a driver is killed, Ray may
restart a trial that had already finished (from an older checkpoint) or one that diverged. Such a restart
re-reports the recorded final result (with the final model) without training, or fails again at once.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, MissingObjective, StorageError, TrainingDiverged
from ..tracking.layout import MODEL_STATE_FILE
from .space import SweepSpace
from .storage import OUTCOMES, SweepStorage

logger = logging.getLogger(__name__)

RUN_STATE = "run.ckpt"
OUTCOME = "outcome.json"
FIRST_KEYS = ("asr", "clean_acc", "clean_acc_drop", "epoch")


def train_trial(config: dict[str, Any], *, space: SweepSpace, baseline: Mapping[str, Any], cache_root: str | None,
                storage: SweepStorage | None = None, run_factory: Callable[..., Any] | None = None) -> None:  # fmt: skip
    """Ray Tune entry point; ``config`` holds the sampled dotted keys.

    ``run_factory`` builds the run (``SweepOptions.run_factory``; None: :class:`~none_sweep.train.ExperimentRun`).
    """
    os.environ.pop("MLFLOW_RUN_ID", None)  # a driver's active run must never capture a trial
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # one "checkpoint created" line per round is noise
    quiet_termination()
    from ray import tune

    from ..train import PretrainCache

    trial_id = tune.get_context().get_trial_id()
    cfg = space.trial_config(config, source=f"trial {trial_id}")
    _set_threads(cfg)
    base_metrics = {} if space.variants else dict(baseline.get("metrics", {}))  # variants: compared per variant
    node = _node_id()
    required = required_metrics(space)
    records = OutcomeRecords(storage, trial_id)

    recorded = records.read()
    if recorded.get("diverged"):
        raise TrainingDiverged(recorded["reason"])
    if recorded.get("failed"):
        raise MissingObjective(recorded["reason"])
    if recorded.get("final"):
        _replay_final(records, recorded, node)
        return
    checkpoint = tune.get_checkpoint()
    run = None
    discarded = False  # a damaged checkpoint: restarted from scratch, and every report says so
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            outcome = _read_outcome(Path(folder))
            if outcome.get("diverged"):
                raise TrainingDiverged(outcome["reason"])
            if outcome.get("final"):
                tune.report({**outcome["metrics"], "node_id": node})
                return
            run = new_run(space, config, cfg, baseline, None, run_factory)
            try:
                run.load_checkpoint(Path(folder) / RUN_STATE)
            except CheckpointError as exc:  # truncated, corrupt or foreign: never resume from it
                logger.warning("trial %s: %s; restarting the trial from scratch", trial_id, exc)
                run, discarded = None, True
    if run is None:
        cache = PretrainCache(cache_root) if cache_root else None
        run = new_run(space, config, cfg, baseline, cache, run_factory)
    extra = {"checkpoint_discarded": 1} if discarded else {}

    last = None
    try:
        for rep in run.epochs():
            if rep.final:
                last = rep  # reported below, together with the run's result and the final checkpoint
                continue
            metrics = {**epoch_metrics(rep, base_metrics, node, required), **extra}
            if rep.round_end:
                _report_with_checkpoint(run, metrics, {"final": False})
            else:
                tune.report(metrics)
    except TrainingDiverged as exc:
        records.write({"diverged": True, "reason": str(exc)})
        raise
    result = run.result()
    final = {**final_metrics(last, result.metrics, base_metrics, node, required), **extra}
    missing = unusable_objectives(final, space)
    if missing:  # Optuna would FAIL it; Ray and MLflow must say the same, so the trial errors with the reason
        reason = f"final result has no usable {', '.join(missing)} (missing or not finite): nothing to optimise"
        records.write({"failed": True, "reason": reason})
        tune.report(final)  # what it did measure stays in Ray's results and MLflow
        raise MissingObjective(reason)
    outcome = {"final": True, "metrics": final}
    records.write(outcome, model_state=_model_bytes(run))
    _report_with_checkpoint(run, final, outcome)


def quiet_termination() -> None:
    """Ray ends an idle trial worker with SIGTERM, and its handler raises ``SystemExit``; when that lands inside a
    finaliser, Python prints "Exception ignored in ..." and a traceback to the worker's stderr, which Ray forwards
    to the console at the end of a successful sweep. A worker told to stop is not an error: such a ``SystemExit``
    is dropped (every other unraisable exception is printed as before). Idempotent, per worker process."""
    previous = sys.unraisablehook
    if getattr(previous, "none_sweep_quiet", False):
        return

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, SystemExit):
            previous(unraisable)

    hook.none_sweep_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def new_run(space: SweepSpace, sampled: Mapping[str, Any], cfg: Any, baseline: Mapping[str, Any],
            cache: Any, run_factory: Callable[..., Any] | None = None) -> Any:  # fmt: skip
    """The trial's run: one :class:`~none_sweep.train.ExperimentRun` (or ``run_factory``'s run), or one per attack
    variant of the space."""
    from ..train import ExperimentRun, VariantsRun

    factory = run_factory or ExperimentRun
    if not space.variants:
        return factory(cfg, pretrain_cache=cache, progress=logger.debug)
    configs = space.variant_configs(sampled, source="trial")
    return VariantsRun(configs, baseline.get("variants", {}), pretrain_cache=cache, progress=logger.debug,
                       factory=factory)  # fmt: skip


class OutcomeRecords:
    """``<experiment>/trial_outcomes/<trial id>/``: ``outcome.json`` and the final ``model_state.pt``."""

    def __init__(self, storage: SweepStorage | None, trial_id: str) -> None:
        self.storage = storage
        self.folder = f"{OUTCOMES}/{trial_id}"

    def read(self) -> dict[str, Any]:
        if self.storage is None:
            return {}
        try:
            return self.storage.read_json(f"{self.folder}/{OUTCOME}") or {}
        except StorageError as exc:  # damaged record: ignore it (the trial resumes from its checkpoint instead)
            logger.warning("ignoring a damaged outcome record: %s", exc)
            return {}

    def write(self, outcome: dict[str, Any], model_state: bytes | None = None) -> None:
        if self.storage is None:
            return
        if model_state is not None:
            self.storage.write_bytes(f"{self.folder}/{MODEL_STATE_FILE}", model_state)
        self.storage.write_json(f"{self.folder}/{OUTCOME}", outcome)  # last: its presence means "complete"

    def model_state(self) -> bytes | None:
        return None if self.storage is None else self.storage.read_bytes(f"{self.folder}/{MODEL_STATE_FILE}")


def _replay_final(records: OutcomeRecords, outcome: dict[str, Any], node: str) -> None:
    """Report a finished trial's recorded result again, with its final model, instead of training it again."""
    from ray import tune

    logger.info("trial already finished before the restart: replaying its recorded final result")
    with tempfile.TemporaryDirectory(prefix="none-sweep-ckpt-") as folder:
        model = records.model_state()
        if model is not None:
            (Path(folder) / MODEL_STATE_FILE).write_bytes(model)
        (Path(folder) / OUTCOME).write_text(json.dumps(outcome, default=float), encoding="utf-8")
        metrics = {**outcome["metrics"], "node_id": node, "replayed": 1}
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _model_bytes(run: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in run.model.state_dict().items()}, buffer)
    return buffer.getvalue()


def unusable_objectives(final: Mapping[str, Any], space: SweepSpace) -> list[str]:
    """Objective and constraint metrics of a final result that are missing or not finite numbers."""
    keys = dict.fromkeys(list(space.metrics) + [c.metric for c in space.constraints])
    bad = []
    for key in keys:
        v = final.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            bad.append(key)
    return bad


def required_metrics(space: SweepSpace) -> list[str]:
    """Keys every report must hold (Ray checks the searcher's and the scheduler's metrics on each result)."""
    keys = list(space.metrics) + [c.metric for c in space.constraints]
    if space.scheduler.name != "none":
        keys.append(space.scheduler_metric)
    return list(dict.fromkeys(keys))


def epoch_metrics(rep: Any, baseline: Mapping[str, Any], node: str, required: Sequence[str] = ()) -> dict[str, Any]:
    """One epoch's report: the table's columns first, then everything else the epoch measured.

    A metric the epoch does not measure (``reasr`` before the end, ``asr`` without an attack) is NaN.
    """
    from ..train import compare_to_baseline

    m: dict[str, Any] = {k: v for k, v in rep.metrics.items() if _scalar(v)}
    if baseline:
        m.update(compare_to_baseline(rep.metrics, baseline))
    m.update(epoch=rep.epoch, round=rep.round, phase=rep.phase, round_end=int(rep.round_end),
             final=int(rep.final), cached=int(getattr(rep, "cached", False)), node_id=node)  # fmt: skip
    for key in required:
        m.setdefault(key, math.nan)
    return _ordered(m)


def final_metrics(last: Any, result: Mapping[str, Any], baseline: Mapping[str, Any], node: str,
                  required: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The last epoch's metrics, the run's result and the baseline comparison, in one report."""
    from ..train import compare_to_baseline
    from ..train.variants import aggregate

    m = epoch_metrics(last, baseline, node, required) if last is not None else {}
    m.update({k: (float(v) if isinstance(v, bool) else v) for k, v in result.items() if _scalar(v)})
    if baseline:
        m.update(compare_to_baseline(result, baseline))
    m["final"] = 1
    m.update({k: v for k, v in aggregate({"run": m}).items() if k not in m})  # one attack: asr_max = asr, ...
    for key in required:
        if m.get(key) is None:
            m[key] = math.nan  # the searcher fails the trial, saying which metric was missing
    return _ordered(m)


def _scalar(v: Any) -> bool:
    """Numbers (NaN included: the searcher fails such a trial loudly) and booleans; not None, text or dicts."""
    return isinstance(v, (bool, int, float))


def _ordered(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: m[k] for k in FIRST_KEYS if k in m}
    out.update((k, v) for k, v in m.items() if k not in out)
    return out


def _report_with_checkpoint(run: Any, metrics: dict[str, Any], outcome: dict[str, Any]) -> None:
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="none-sweep-ckpt-") as folder:
        path = Path(folder)
        if run is not None:
            run.save_checkpoint(path / RUN_STATE)
            (path / MODEL_STATE_FILE).write_bytes(_model_bytes(run))
        (path / OUTCOME).write_text(json.dumps(outcome, default=float), encoding="utf-8")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def _read_outcome(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / OUTCOME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _set_threads(cfg: Any) -> None:
    """Use the trial's CPU share for torch threads unless the config pins ``train.num_threads``."""
    if cfg.train.num_threads:
        return
    import torch
    from ray import tune

    try:
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    except Exception:  # outside Tune (tests calling the function directly)
        cpus = 1
    torch.set_num_threads(max(1, int(cpus)))


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:
        return "local"
