"""The surrogate an attack optimises its poison against: trained on the clean training set, once per setting.

Attacks sit below ``train`` and never train; one that needs a model (:attr:`Attack.needs_surrogate`, e.g. the
label-consistent attack's PGD) says which in :meth:`Attack.surrogate_request`, and :func:`obtain_surrogate`
trains it here, seeded, and caches its weights on disk. Every trial of a sweep with the same data, seed, model
and surrogate settings poisons with the same surrogate, so it is trained once (the first trial holds the key's
file lock, the others wait and load: :class:`PretrainCache`'s mechanism, in its own ``surrogates/`` folder).
A resumed run re-poisons from the cached surrogate and gets the same poisoned set.

Where: ``<pretrain cache root>/surrogates/`` when the run has a pre-training cache (sweep trials), otherwise
``$NONE_SWEEP_CACHE/surrogates`` (default ``~/.cache/none-sweep/surrogates``; ``none-sweep train``, the
sweep's baseline).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import Attack, SurrogateRequest
from ..config import ExperimentConfig, TrainConfig, to_dict
from ..data import DatasetInfo, ImageData, augment_batch, normalize
from ..errors import TrainingDiverged
from ..models import create_model
from .loop import predict, set_lr, train_epoch
from .pretrain_cache import PretrainCache
from .schedule import main_lr

CACHE_ENV = "NONE_SWEEP_CACHE"
DEFAULT_CACHE = "~/.cache/none-sweep"
SURROGATES = "surrogates"
#: the training settings the surrogate takes from ``train.*`` (its epochs come from the attack)
TRAIN_KEYS = ("batch_size", "lr", "momentum", "weight_decay", "lr_schedule", "lr_step_every", "lr_gamma")
FORMAT = "surrogate/1"  # bump when the training recipe changes, so old cache entries are not reused


def default_cache_root() -> Path:
    """Where surrogates live when the run has no pre-training cache (``$NONE_SWEEP_CACHE/surrogates``)."""
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)).expanduser() / SURROGATES


def surrogate_key(cfg: ExperimentConfig, request: SurrogateRequest) -> str:
    """A digest of what determines the surrogate's weights: data (and subset), seed, model, recipe."""
    t = cfg.train
    key = {
        "format": FORMAT,
        "seed": cfg.seed,
        "data": {k: to_dict(cfg.data)[k] for k in ("name", "train_subset", "augment")},
        "model": request.model or cfg.model.name,
        "epochs": request.epochs,
        "train": {k: to_dict(t)[k] for k in TRAIN_KEYS},
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def obtain_surrogate(
    attack: Attack, cfg: ExperimentConfig, data: ImageData, device: torch.device,
    pretrain_cache: PretrainCache | None = None, progress: Callable[[str], None] | None = None,
) -> nn.Module | None:  # fmt: skip
    """The surrogate ``attack`` asks for (None when it asks for none), in eval mode on ``device``, frozen.

    Trained on the clean ``data.train_x`` / ``train_y`` (before any poisoning) or loaded from the cache.
    """
    request = attack.surrogate_request()
    if request is None:
        return None
    say = progress or (lambda _line: None)
    root = Path(pretrain_cache.root) / SURROGATES if pretrain_cache is not None else default_cache_root()
    cache = PretrainCache(root)
    key = surrogate_key(cfg, request)
    name = request.model or cfg.model.name
    model = _build(name, data.info, cfg.seed)
    with cache.claim(key) as cached:
        if cached is not None and _load(model, cached):
            say(f"surrogate: {name}, {request.epochs} epochs, loaded from {cache.path(key)} "
                f"(clean test acc {100 * float(cached['test_acc']):.1f}%)")  # fmt: skip
        else:
            model = fit_surrogate(model, data, request.epochs, cfg.train, cfg.data.augment, cfg.seed, device)
            acc = _accuracy(model, data.test_x, data.test_y, data.info, device)
            cache.store(key, {"model": {k: v.cpu() for k, v in model.state_dict().items()}, "test_acc": acc,
                              "format": FORMAT})  # fmt: skip
            say(f"surrogate: trained {name} for {request.epochs} epochs on the clean training set "
                f"(clean test acc {100 * acc:.1f}%), cached at {cache.path(key)}")  # fmt: skip
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model


def _load(model: nn.Module, cached: dict[str, Any]) -> bool:
    """Load a cache entry; False (train afresh, overwriting it) when it no longer fits the model's code."""
    try:
        model.load_state_dict(cached["model"])
        float(cached["test_acc"])
    except (KeyError, RuntimeError, TypeError, ValueError):
        return False
    return True


def _build(name: str, info: DatasetInfo, seed: int) -> nn.Module:
    """A fresh ``name`` initialised from ``seed`` alone, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model(name, info)


def fit_surrogate(
    model: nn.Module, data: ImageData, epochs: int, train: TrainConfig, augment: bool, seed: int, device: torch.device,
) -> nn.Module:  # fmt: skip
    """Plain SGD of ``model`` on the clean training set with the run's optimiser settings and lr schedule over
    ``epochs``. The data order comes from its own seeded generator and torch's global RNG (dropout) is seeded
    inside a fork, so the surrogate depends on ``seed`` alone and the run's own RNG streams never shift.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        return _fit(model.to(device), data, epochs, train, augment, seed, device)


def _fit(
    model: nn.Module, data: ImageData, epochs: int, train: TrainConfig, augment: bool, seed: int, device: torch.device,
) -> nn.Module:  # fmt: skip
    x, y = data.train_x.to(device), data.train_y.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                          weight_decay=train.weight_decay)  # fmt: skip
    for epoch in range(epochs):
        set_lr(opt, main_lr(train, epoch, epochs))
        batches = _batches(x, y, data.info, train.batch_size, generator, augment)
        loss = train_epoch(model, model, opt, batches, nullcontext(), freeze_bn=False)
        if not math.isfinite(loss):
            raise TrainingDiverged(f"surrogate loss became {loss} at epoch {epoch + 1}; lower train.lr")
    return model


def _batches(
    x: Tensor, y: Tensor, info: DatasetInfo, batch_size: int, generator: torch.Generator, augment: bool
) -> Iterator[tuple[Tensor, Tensor]]:
    order = torch.randperm(len(y), generator=generator, device=x.device)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if idx.numel() < 2:  # BatchNorm needs two
            continue
        xb = augment_batch(x[idx], info.augmentation, generator) if augment else x[idx]
        yield normalize(xb, info), y[idx]


def _accuracy(model: nn.Module, x: Tensor, y: Tensor, info: DatasetInfo, device: torch.device) -> float:
    batches = (normalize(x[i : i + 1024].to(device), info) for i in range(0, len(y), 1024))
    pred = predict(model, model, batches, nullcontext())
    return float((pred.cpu() == y).float().mean().item()) if len(y) else 0.0
