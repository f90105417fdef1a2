"""A stand-in for :class:`none_sweep.train.ExperimentRun` whose "training" is a seeded formula.

``bench_scale`` passes :func:`synthetic_run` as ``SweepOptions.run_factory`` so a sweep runs the real runner,
searcher, trainable, checkpoints, pre-training cache, MLflow callback and storage while training costs
nothing: what is timed is none-sweep's own cost per trial. The run keeps ExperimentRun's interface and shape:
the config's real epoch plan (one report per epoch, a round end before each reset and at the end), the
config's real model (so MLflow still logs a PyTorch model of the same size), full-state checkpoints through
``none_sweep.train.checkpoint`` and pre-training through the shared cache. No data is ever loaded.

The objective is a smooth function of the defense knobs plus seeded noise, so the searcher sees a real
trade-off (more reset neurons: lower ASR, lower clean accuracy) and repeated configs repeat their results.
This module imports nothing heavy at its top: the driver imports it only to name the factory.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: The undefended run's end point: what a backdoored digits small_cnn reaches.
BASE_CLEAN_ACC, BASE_ASR, BASE_ROBUST_ACC = 0.975, 0.97, 0.02


def synthetic_run(cfg: Any, pretrain_cache: Any = None, progress: Callable[[str], None] | None = None) -> Any:
    """``SweepOptions.run_factory``: the same call as ``ExperimentRun(cfg, pretrain_cache=, progress=)``."""
    return SyntheticRun(cfg, pretrain_cache=pretrain_cache, progress=progress)


def targets(cfg: Any) -> dict[str, float]:
    """The run's final clean accuracy, ASR and robust accuracy: smooth in the defense knobs, plus seeded noise."""
    d = cfg.defense
    rng = random.Random(_digest(cfg))
    if not d.enabled:
        return {"clean_acc": BASE_CLEAN_ACC, "asr": BASE_ASR, "robust_acc": BASE_ROBUST_ACC}
    strength = d.max_reset_fraction * (1.0 + 0.5 * (d.rounds - 1)) * (1.0 + 2.0 * (d.lamda_h - 0.6))
    strength *= (1.3 if d.filter_samples else 1.0) * (1.1 if d.reset_mode == "reinit" else 1.0)
    strength *= 1.0 + 0.3 * min(d.reset_interval - 1, 3) + 2.0 * abs(d.lamda_l - 0.1)
    asr = BASE_ASR * math.exp(-14.0 * strength) + rng.gauss(0.0, 0.01)
    lr_penalty = 40.0 * (math.log10(max(d.finetune_lr, 1e-6)) + 2.0) ** 2 * 1e-3  # best near finetune_lr = 0.01
    clean = BASE_CLEAN_ACC - 0.22 * d.max_reset_fraction**2 * (1.5 if d.reset_mode == "reinit" else 1.0)
    clean -= lr_penalty + rng.gauss(0.0, 0.004)
    asr, clean = min(1.0, max(0.0, asr)), min(1.0, max(0.0, clean))
    return {"clean_acc": clean, "asr": asr, "robust_acc": max(0.0, min(clean, 1.0 - asr) - 0.02)}


def _digest(cfg: Any) -> int:
    from none_sweep.config import to_dict

    text = json.dumps(to_dict(cfg), sort_keys=True, default=str)
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


class SyntheticRun:
    """ExperimentRun's interface (``epochs``, ``result``, ``save_checkpoint``, ``load_checkpoint``, ``model``)."""

    def __init__(self, cfg: Any, *, pretrain_cache: Any = None, progress: Callable[[str], None] | None = None) -> None:
        import torch

        from none_sweep.attacks import ATTACKS
        from none_sweep.data import dataset_info
        from none_sweep.models import create_model
        from none_sweep.train import build_plan

        self.cfg = cfg
        self.pretrain_cache = pretrain_cache
        self.progress = progress or (lambda _line: None)
        self.info = dataset_info(cfg.data.name)  # static: no I/O
        self.attack = ATTACKS.get(cfg.attack.name)(cfg.attack, self.info, cfg.seed)
        self.plan = build_plan(cfg)
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model.name, self.info)
        self.target = targets(cfg)
        self.next_index = 0
        self.history: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.pretrain_cached = False

    # ----------------------------------------------------------------- epochs
    def epochs(self) -> Iterator[Any]:
        from none_sweep.train import prefix_key
        from none_sweep.train.schedule import pretrain_epochs

        n_pre = pretrain_epochs(self.cfg) if self.cfg.defense.enabled else 0
        if self.pretrain_cache is not None and self.next_index == 0 and n_pre > 0:
            key = prefix_key(self.cfg)
            with self.pretrain_cache.claim(key) as cached:
                if cached is not None:
                    self._restore(cached)
                    self.pretrain_cached = True
                    for i, metrics in enumerate(self.history):
                        yield self._report(self.plan[i], dict(metrics), cached=True)
                else:
                    while self.next_index < n_pre:
                        yield self._step()
                    self.pretrain_cache.store(key, self._state())
        while self.next_index < len(self.plan):
            yield self._step()

    def _step(self) -> Any:
        step = self.plan[self.next_index]
        if step.analyse_before:
            self.rounds.append({"round": step.round, "epoch": step.epoch, "neurons_reset": self._neurons(step.round),
                                "neurons_reset_per_layer": {"conv": self._neurons(step.round)}})  # fmt: skip
        metrics = self._metrics(self.next_index)
        self.history.append(metrics)
        self.next_index += 1
        return self._report(step, dict(metrics))

    def _report(self, step: Any, metrics: dict[str, Any], cached: bool = False) -> Any:
        from none_sweep.train import EpochReport

        final = step.epoch == len(self.plan)
        return EpochReport(step.epoch, step.phase, step.round, metrics, step.round_end, final, cached)

    def _metrics(self, index: int) -> dict[str, Any]:
        """Epoch ``index``: the backdoor is learnt during pre-training, then the resets pull towards the target."""
        step = self.plan[index]
        rng = random.Random(_digest(self.cfg) + 7919 * index)
        learnt = 1.0 - math.exp(-(index + 1) / 2.0)
        if step.round == 0:
            clean, asr = BASE_CLEAN_ACC * (0.6 + 0.4 * learnt), BASE_ASR * learnt
        else:
            done = step.round / max(1, self.cfg.defense.rounds)
            clean = BASE_CLEAN_ACC + done * (self.target["clean_acc"] - BASE_CLEAN_ACC)
            asr = BASE_ASR + done * (self.target["asr"] - BASE_ASR)
        if index == len(self.plan) - 1:
            clean, asr = self.target["clean_acc"], self.target["asr"]
        else:
            clean, asr = clean + rng.gauss(0, 0.003), asr + rng.gauss(0, 0.005)
        clean, asr = min(1.0, max(0.0, clean)), min(1.0, max(0.0, asr))
        return {"loss": 2.3 * math.exp(-index / 3.0) + 0.05, "lr": step.lr, "clean_acc": clean, "asr": asr,
                "robust_acc": max(0.0, min(clean, 1.0 - asr) - 0.02), "removed_samples": self._removed(step.round),
                "neurons_reset": sum(r["neurons_reset"] for r in self.rounds), "epoch_s": 0.0}  # fmt: skip

    def _neurons(self, round_: int) -> int:
        return round(200 * self.cfg.defense.max_reset_fraction) * round_

    def _removed(self, round_: int) -> int:
        return 60 * round_ if self.cfg.defense.enabled and self.cfg.defense.filter_samples else 0

    # ----------------------------------------------------------------- the result
    def result(self) -> Any:
        from none_sweep.config import to_dict
        from none_sweep.train import RunResult

        last = self.history[-1] if self.history else self._metrics(len(self.plan) - 1)
        rounds = len(self.rounds)
        removed = self._removed(rounds)
        metrics: dict[str, Any] = {
            "clean_acc": last["clean_acc"], "asr": last["asr"], "robust_acc": last["robust_acc"],
            "poison_precision": 0.8 if removed else None, "poison_recall": 0.3 * rounds if removed else None,
            "neurons_reset": last["neurons_reset"], "neurons_reset_per_layer": {"conv": last["neurons_reset"]},
            "removed_samples": removed, "poisoned_samples": 143, "epochs": len(self.history), "wall_s": 0.0,
            "pretrain_s": 0.0, "pretrain_cached": self.pretrain_cached, "pretrain_saved_s": 0.0, "device": "cpu",
        }  # fmt: skip
        return RunResult(metrics, self.attack.describe(), to_dict(self.cfg), list(self.rounds), list(self.history))

    # ----------------------------------------------------------------- checkpoints
    def _state(self) -> dict[str, Any]:
        return {"digest": str(_digest(self.cfg)), "next_index": self.next_index, "model": self.model.state_dict(),
                "history": self.history, "rounds": self.rounds}  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.next_index = int(state["next_index"])
        self.history = list(state["history"])
        self.rounds = list(state.get("rounds", []))

    def save_checkpoint(self, path: str | Path) -> None:
        from none_sweep.train import save_state

        save_state(self._state(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        from none_sweep.errors import CheckpointError
        from none_sweep.train import load_state

        state = load_state(path)
        if state.get("digest") != str(_digest(self.cfg)):
            raise CheckpointError(f"{path}: a checkpoint of another config")
        self._restore(state)
