"""Device choice and the CUDA fast-path switches (bf16 autocast, channels-last, compile)."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from ..config import TrainConfig
from ..errors import ConfigError


def resolve_device(train: TrainConfig) -> torch.device:
    if train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is visible; use train.device: auto or cpu")
    if train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(train.device)


def autocast(device: torch.device, train: TrainConfig) -> ContextManager[object]:
    """bf16 autocast on CUDA when enabled; a no-op on CPU so CPU results stay exact and reproducible."""
    if device.type == "cuda" and train.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device, train: TrainConfig) -> torch.memory_format:
    if device.type == "cuda" and train.channels_last:
        return torch.channels_last
    return torch.contiguous_format
