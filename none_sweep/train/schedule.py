"""The epoch plan: which phase, round and learning rate every epoch has, as a pure function of the config.

Making the plan data (instead of nested loops) is what lets a checkpoint resume at any epoch, the
pre-training cache skip a prefix, and the sweep report a global epoch number.

Modes (``defense.after_reset``):

- ``finetune`` (published): ``pretrain_epochs`` on the main schedule (its horizon is the pre-training),
  then ``rounds`` × (analyse, filter, reset, ``reset_interval`` epochs at the constant ``finetune_lr``).
- ``continue`` (the paper's "during training"): the main schedule of ``train.epochs`` runs on; resets
  happen before epochs ``pretrain_epochs+1``, ``+reset_interval``, ... at the scheduled lr.
- ``retrain``: after each analysis the model is re-initialised and trained from scratch on the filtered
  data for ``train.epochs`` epochs on the main schedule, the undefended run's, whatever ``pretrain_epochs``
  is: the pre-training only has to be long enough for detection (a patch backdoor is found after 2 of 6
  epochs), and the model that ships gets a full schedule, so an early analysis makes the defense cheaper
  without undertraining it. ``reset_interval`` is unused.
- defense disabled: ``train.epochs`` on the main schedule (the undefended baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..config import ExperimentConfig, TrainConfig


@dataclass(frozen=True)
class EpochPlan:
    """One epoch of the plan. ``analyse_before`` marks a NONE round starting at this epoch."""

    epoch: int  # 1-based global epoch
    phase: str  # train | pretrain | finetune | continue | retrain
    round: int  # 0 before the first reset
    lr: float
    analyse_before: bool = False
    reinit_model: bool = False  # retrain: fresh weights and optimizer before this epoch
    freeze_bn: bool = False
    round_end: bool = False  # the last epoch before the next analysis or the end


def main_lr(train: TrainConfig, index: int, horizon: int) -> float:
    """Learning rate of epoch ``index`` (0-based) in a main schedule ``horizon`` epochs long."""
    if train.lr_schedule == "constant":
        return train.lr
    if train.lr_schedule == "step":
        return train.lr * train.lr_gamma ** (index // train.lr_step_every)
    return train.lr * 0.5 * (1.0 + math.cos(math.pi * index / max(1, horizon)))


def pretrain_epochs(cfg: ExperimentConfig) -> int:
    d = cfg.defense
    return cfg.train.epochs if d.pretrain_epochs is None else d.pretrain_epochs


def pretrain_horizon(cfg: ExperimentConfig) -> int:
    """Length of the lr schedule the pre-training prefix belongs to (part of the cache key)."""
    if not cfg.defense.enabled or cfg.defense.after_reset == "continue":
        return cfg.train.epochs
    return pretrain_epochs(cfg)


def build_plan(cfg: ExperimentConfig) -> list[EpochPlan]:
    d, t = cfg.defense, cfg.train
    if not d.enabled:
        return _mark_round_ends([EpochPlan(e + 1, "train", 0, main_lr(t, e, t.epochs)) for e in range(t.epochs)])
    p = pretrain_epochs(cfg)
    plan = [EpochPlan(e + 1, "pretrain", 0, main_lr(t, e, pretrain_horizon(cfg))) for e in range(p)]
    if d.after_reset == "finetune":
        for r in range(1, d.rounds + 1):
            for i in range(d.reset_interval):
                plan.append(EpochPlan(len(plan) + 1, "finetune", r, d.finetune_lr, i == 0, False, d.freeze_bn))
    elif d.after_reset == "retrain":
        for r in range(1, d.rounds + 1):
            for i in range(t.epochs):
                plan.append(EpochPlan(len(plan) + 1, "retrain", r, main_lr(t, i, t.epochs), i == 0, i == 0))
    else:
        resets = {p + k * d.reset_interval for k in range(d.rounds)}
        r = 0
        for e in range(p, t.epochs):
            r += e in resets
            plan.append(EpochPlan(e + 1, "continue", r, main_lr(t, e, t.epochs), e in resets))
    return _mark_round_ends(plan)


def _mark_round_ends(plan: list[EpochPlan]) -> list[EpochPlan]:
    out = []
    for i, step in enumerate(plan):
        last = i + 1 == len(plan) or plan[i + 1].analyse_before
        out.append(replace(step, round_end=last))
    return out
