"""One NONE-defended (or undefended) training run, epoch by epoch, checkpointable between epochs.

``ExperimentRun.epochs()`` is a generator so that the same object serves the CLI (progress lines),
Ray Tune (``tune.report`` per epoch, a checkpoint per round) and tests (stop, save, resume). The
run's whole position is ``next_index`` into the epoch plan (:mod:`.schedule`), which is why a
checkpoint taken between any two epochs resumes bit-for-bit on CPU.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attacks import ATTACKS
from ..config import ExperimentConfig, to_dict
from ..data import ImageData, load_dataset
from ..defense import analyse, filters_samples, find_monitored_layers, removal_mask, reset_neurons
from ..errors import CheckpointError, TrainingDiverged
from ..models import create_model
from .checkpoint import load_state, restore_rng, rng_state, save_state
from .device import autocast, compiled, memory_format, resolve_device
from .loop import predict, set_lr, train_epoch
from .metrics import accuracy, detection_scores, measures_reasr
from .pretrain_cache import PretrainCache, prefix_key
from .resident import ResidentData
from .schedule import EpochPlan, build_plan, pretrain_epochs
from .surrogate import obtain_surrogate
from .trigger_inversion import invert_triggers

Progress = Callable[[str], None]


@dataclass
class EpochReport:
    """What one finished epoch reports (Ray Tune reports ``metrics`` verbatim)."""

    epoch: int
    phase: str
    round: int
    metrics: dict[str, float | None]
    round_end: bool
    final: bool
    cached: bool = False  # replayed from the shared pre-training cache, not trained by this run


@dataclass
class RunResult:
    metrics: dict[str, Any]
    attack: dict[str, Any]
    config: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def config_digest(cfg: ExperimentConfig) -> str:
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:16]


class ExperimentRun:
    """Data, attack, model and optimizer of one run, plus its position in the epoch plan."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        *,
        data: ImageData | None = None,
        progress: Progress | None = None,
        pretrain_cache: PretrainCache | None = None,
    ) -> None:
        self.cfg = cfg
        self.progress = progress or (lambda _line: None)
        self.pretrain_cache = pretrain_cache
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        self.device = resolve_device(cfg.train)
        self.amp = autocast(self.device, cfg.train)
        self.fmt = memory_format(self.device, cfg.train)
        data = data if data is not None else load_dataset(cfg.data, cfg.seed)
        self.info = data.info
        self.attack = ATTACKS.get(cfg.attack.name)(cfg.attack, data.info, cfg.seed)
        self.attack.choose_indices(data.train_y)  # an impossible poison rate fails before any surrogate trains
        surrogate = obtain_surrogate(self.attack, cfg, data, self.device, pretrain_cache, self.progress)
        poisoned = self.attack.poison(data.train_x, data.train_y, surrogate=surrogate)
        trig = self.attack.triggered_test(data.test_x, data.test_y)
        self.poison_idx = poisoned.poison_idx
        self.data = ResidentData(
            poisoned.x, poisoned.y, data.test_x, data.test_y, trig.x, trig.target, trig.true_y,
            data.info, self.device, self.fmt,
        )  # fmt: skip
        self.plan = build_plan(cfg)
        self.next_index = 0
        self.removed = torch.zeros(self.data.num_train, dtype=torch.bool, device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.history: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.wall_s = 0.0
        self.pretrain_s = 0.0
        self.pretrain_cached = False
        self.pretrain_saved_s = 0.0
        self._build_model(seed=cfg.seed)

    # ----------------------------------------------------------------- model and optimizer
    def _build_model(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = create_model(self.cfg.model.name, self.info).to(self.device).to(memory_format=self.fmt)
        self.forward: nn.Module = compiled(self.model, self.device, self.cfg.train)
        t = self.cfg.train
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=False
        )
        self.layers = find_monitored_layers(self.model, self.cfg.defense) if self.cfg.defense.enabled else []

    # ----------------------------------------------------------------- the epoch generator
    def epochs(self) -> Iterator[EpochReport]:
        """Train the rest of the plan, yielding a report after every epoch."""
        start = time.perf_counter()
        wall_before = self.wall_s
        if self._may_use_cache():
            yield from self._pretrain_through_cache()
        while self.next_index < len(self.plan):
            t0 = time.perf_counter()
            report = self._run_epoch(self.plan[self.next_index])
            self.wall_s = wall_before + (time.perf_counter() - start)
            if report.phase == "pretrain":
                self.pretrain_s += time.perf_counter() - t0
            yield report

    def _may_use_cache(self) -> bool:
        d = self.cfg.defense
        return self.pretrain_cache is not None and d.enabled and self.next_index == 0 and pretrain_epochs(self.cfg) > 0

    def _pretrain_through_cache(self) -> Iterator[EpochReport]:
        assert self.pretrain_cache is not None
        key = prefix_key(self.cfg)
        n_pre = pretrain_epochs(self.cfg)
        with self.pretrain_cache.claim(key) as cached:
            if cached is not None:
                self._restore(cached, check_config=False)
                self.wall_s = self.pretrain_s = 0.0  # this run did not spend that time
                self.pretrain_cached = True
                self.pretrain_saved_s = float(cached.get("pretrain_s", 0.0))
                self.progress(f"pre-training: forked from the shared cache ({key}), saved {self.pretrain_saved_s:.1f}s")
                for i, metrics in enumerate(self.history):
                    yield EpochReport(i + 1, "pretrain", 0, dict(metrics), i + 1 == n_pre, False, cached=True)
                return
            while self.next_index < n_pre:
                t0 = time.perf_counter()
                report = self._run_epoch(self.plan[self.next_index])
                self.pretrain_s += time.perf_counter() - t0
                self.wall_s += time.perf_counter() - t0
                yield report
            self.pretrain_cache.store(key, self.state_dict())

    def _run_epoch(self, step: EpochPlan) -> EpochReport:
        t0 = time.perf_counter()
        if step.analyse_before:
            self._defend(step)
        set_lr(self.optimizer, step.lr)
        batches = self.data.train_batches(
            ~self.removed, self.cfg.train.batch_size, self.generator, self.cfg.data.augment
        )
        loss = train_epoch(self.model, self.forward, self.optimizer, batches, self.amp, step.freeze_bn)
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss} at epoch {step.epoch} ({step.phase}, lr {step.lr:g}); lower the learning rate"
            )
        metrics: dict[str, Any] = {"loss": loss, "lr": step.lr, **self.evaluate()}
        metrics["removed_samples"] = int(self.removed.sum().item())
        metrics["neurons_reset"] = sum(r["neurons_reset"] for r in self.rounds)
        metrics["epoch_s"] = time.perf_counter() - t0
        self.history.append(metrics)
        self.next_index += 1
        final = self.next_index == len(self.plan)
        if final and self._wants_reasr():
            metrics.update(self.natural_backdoor_metrics())
        self._print_epoch(step, metrics)
        return EpochReport(step.epoch, step.phase, step.round, dict(metrics), step.round_end, final)

    # ----------------------------------------------------------------- NONE
    def _defend(self, step: EpochPlan) -> None:
        """Analyse on the full training set, filter suspected samples, then reset (or re-initialise)."""
        d = self.cfg.defense
        t0 = time.perf_counter()
        self.model.eval()
        with torch.no_grad(), self.amp:
            batches = lambda: self.data.ordered_batches(self.data.train_x, d.analysis_batch_size)  # noqa: E731
            budget = int(self.cfg.train.analysis_cache_mb * 2**20)
            analysis = analyse(self.model, batches, self.layers, d, self.info.num_classes, cache_budget_bytes=budget)
        suspected = analysis.suspected.to(self.device)
        filtering = filters_samples(d.filter_samples, self.attack.injects_trigger)
        if filtering:
            scores = analysis.sample_scores.to(self.device)
            self.removed = removal_mask(self.removed, suspected, scores, cumulative=d.removal == "cumulative",
                                        max_fraction=d.max_removed_fraction)  # fmt: skip
        if step.reinit_model:
            self._build_model(seed=self.cfg.seed + 7919 * step.round)
            per_layer = {}
        else:
            gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + step.round)
            per_layer = reset_neurons(self.model, analysis.compromised, d.reset_mode, self.layers, generator=gen)
        info: dict[str, Any] = {
            "round": step.round,
            "epoch": step.epoch,
            "neurons_reset": int(sum(per_layer.values())),
            "neurons_reset_per_layer": {k: int(v) for k, v in per_layer.items()},
            "suspected": int(suspected.sum().item()),
            "filtering": filtering,
            "removed_samples": int(self.removed.sum().item()),
            "analysis_s": time.perf_counter() - t0,
            "analysis_passes": analysis.passes,
            "analysis_cache_bytes": analysis.cache_bytes,
            **{k: v for k, v in detection_scores(self.removed, self.poison_idx).items()},
        }
        self.rounds.append(info)
        detection = (f" (precision {_pct(info['poison_precision'])}, recall {_pct(info['poison_recall'])})"
                     if "poison_recall" in info else "")  # fmt: skip
        kept = "" if filtering else " (filtering off)"
        self.progress(
            f"round {step.round}: reset {info['neurons_reset']} neurons in {len(per_layer)} layers, "
            f"{info['suspected']} samples suspected, {info['removed_samples']} removed{kept}{detection} "
            f"in {info['analysis_s']:.1f}s"
        )

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, float | None]:
        bs = self.cfg.train.eval_batch_size
        clean = predict(self.forward, self.model, self.data.ordered_batches(self.data.test_x, bs), self.amp)
        trig = predict(self.forward, self.model, self.data.ordered_batches(self.data.trig_x, bs), self.amp)
        return {
            "clean_acc": accuracy(clean, self.data.test_y),
            "asr": accuracy(trig, self.data.trig_target),
            "robust_acc": accuracy(trig, self.data.trig_true),
        }

    def _wants_reasr(self) -> bool:
        return measures_reasr(self.cfg.evaluation.reasr, self.attack.injects_trigger)

    def natural_backdoor_metrics(self) -> dict[str, float]:
        e = self.cfg.evaluation
        found = invert_triggers(
            self.model, self.data.test_x, self.data.test_y, self.info, patch_fraction=e.reasr_patch_fraction,
            steps=e.reasr_steps, images=e.reasr_images, holdout=e.reasr_holdout, labels=e.reasr_labels,
            screen_steps=e.reasr_screen_steps, seed=self.cfg.seed,
        )  # fmt: skip
        self.progress(f"REASR {100 * found.reasr:.1f}% (label {found.label})")
        return {"reasr": found.reasr, "reasr_label": float(found.label)}

    def result(self) -> RunResult:
        last = self.history[-1] if self.history else self.evaluate()
        per_layer: dict[str, int] = {}
        for r in self.rounds:
            for name, n in r["neurons_reset_per_layer"].items():
                per_layer[name] = per_layer.get(name, 0) + n
        metrics: dict[str, Any] = {
            "clean_acc": last["clean_acc"],
            "asr": last["asr"],
            "robust_acc": last["robust_acc"],
            **{k: last[k] for k in ("reasr", "reasr_label") if k in last},
            **detection_scores(self.removed, self.poison_idx),
            "neurons_reset": sum(per_layer.values()),
            "neurons_reset_per_layer": per_layer,
            "removed_samples": int(self.removed.sum().item()),
            "poisoned_samples": int(self.poison_idx.numel()),
            "epochs": len(self.history),
            "wall_s": self.wall_s,
            "pretrain_s": self.pretrain_s,
            "pretrain_cached": self.pretrain_cached,
            "pretrain_saved_s": self.pretrain_saved_s,
            "device": str(self.device),
        }
        return RunResult(metrics, self.attack.describe(), to_dict(self.cfg), list(self.rounds), list(self.history))

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "config_digest": config_digest(self.cfg),
            "next_index": self.next_index,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {
                "kind": self.cfg.train.lr_schedule,
                "plan_length": len(self.plan),
                "next_index": self.next_index,
            },
            "removed": self.removed.cpu(),
            **rng_state(self.device, self.generator),
            "history": self.history,
            "rounds": self.rounds,
            "wall_s": self.wall_s,
            "pretrain_s": self.pretrain_s,
        }

    def save_checkpoint(self, path: str | Path) -> None:
        save_state(self.state_dict(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        self._restore(load_state(path), check_config=True, source=str(path))

    def _restore(self, state: dict[str, Any], check_config: bool, source: str = "cache") -> None:
        if check_config and state.get("config_digest") != config_digest(self.cfg):
            raise CheckpointError(f"{source}: checkpoint belongs to a different config; start a fresh run")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.removed = state["removed"].to(self.device)
            self.next_index = int(state["next_index"])
            if not restore_rng(state, self.device, self.generator):
                self.generator.manual_seed(self.cfg.seed + 7919 * self.next_index)
                self.progress(f"{source}: written on {state['rng_device']}, resumed on {self.device.type}; "
                              "the data order is reseeded (results differ from an uninterrupted run)")  # fmt: skip
            self.history = list(state["history"])
            self.rounds = list(state["rounds"])
            self.wall_s = float(state["wall_s"])
            self.pretrain_s = float(state["pretrain_s"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{source}: checkpoint does not match this model/config ({exc})") from None

    # ----------------------------------------------------------------- progress
    def _print_epoch(self, step: EpochPlan, m: dict[str, Any]) -> None:
        self.progress(
            f"epoch {step.epoch:>3}/{len(self.plan)} [{step.phase}{f' r{step.round}' if step.round else ''}] "
            f"loss {m['loss']:.4f} lr {m['lr']:.2e} clean {_pct(m['clean_acc'])} asr {_pct(m['asr'])} "
            f"robust {_pct(m['robust_acc'])} ({m['epoch_s']:.1f}s)"
        )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"
