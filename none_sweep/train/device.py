"""Device choice and the CUDA fast-path switches (bf16 autocast, channels-last, ``torch.compile``).

The switches are meant for CUDA. On CPU they are off unless ``train.cpu_fast_paths`` asks for them: that
keeps CPU results exact and reproducible by default, and lets the tests run every CUDA branch on a CPU
machine (``torch.autocast("cpu", dtype=torch.bfloat16)``, channels-last strides and inductor's C++
backend all work there), so no branch first runs on a user's GPU.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch
from torch import nn

from ..config import TrainConfig
from ..errors import ConfigError


def resolve_device(train: TrainConfig) -> torch.device:
    if train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is visible; use train.device: auto or cpu")
    if train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(train.device)


def fast_paths_on(device: torch.device, train: TrainConfig) -> bool:
    """Whether ``amp``, ``channels_last`` and ``compile`` apply: always on CUDA, on CPU only when asked."""
    return device.type == "cuda" or (device.type == "cpu" and train.cpu_fast_paths)


def autocast(device: torch.device, train: TrainConfig) -> AbstractContextManager[object]:
    """bf16 autocast where the fast paths apply (see :func:`fast_paths_on`), else a no-op."""
    if train.amp and fast_paths_on(device, train):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device, train: TrainConfig) -> torch.memory_format:
    """Channels-last for the model and its input batches where the fast paths apply."""
    if train.channels_last and fast_paths_on(device, train):
        return torch.channels_last
    return torch.contiguous_format


def compiled(model: nn.Module, device: torch.device, train: TrainConfig) -> nn.Module:
    """The callable that trains and evaluates: ``torch.compile(model)`` where asked and applicable, else ``model``.

    The module itself stays uncompiled: its ``state_dict`` (checkpoints), hooks (the NONE analysis) and
    mode switches go through it, and the compiled wrapper shares its parameters.
    """
    if train.compile and fast_paths_on(device, train):
        return torch.compile(model)  # type: ignore[return-value]
    return model
