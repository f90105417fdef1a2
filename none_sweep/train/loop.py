"""The training step and prediction: a few lines each, one ``.item()`` per epoch."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn

#: BatchNorm kinds whose running statistics ``freeze_bn`` fixes (the lazy variants subclass these)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_epoch(
    model: nn.Module,
    forward: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    amp: AbstractContextManager[object],
    freeze_bn: bool,
) -> float:
    """One pass over ``batches``; returns the mean loss (NaN/inf is the caller's to judge).

    ``forward`` is the (possibly compiled) callable; ``model`` the module whose modes we set. With
    ``freeze_bn`` the BatchNorm running statistics stay fixed while their affine weights still train.
    """
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, NORM_TYPES):
                module.eval()
    total, count = None, 0
    for x, y in batches:
        with amp:
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        part = loss.detach().float() * y.numel()
        total = part if total is None else total + part
        count += y.numel()
    return float("nan") if total is None else (total / count).item()


@torch.no_grad()
def predict(
    forward: nn.Module, model: nn.Module, batches: Iterable[torch.Tensor], amp: AbstractContextManager[object]
) -> torch.Tensor:
    """Arg-max class of every input, concatenated in order."""
    model.eval()
    outputs = []
    for x in batches:
        with amp:
            outputs.append(forward(x).argmax(dim=1))
    if not outputs:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(outputs)
