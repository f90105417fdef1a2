"""Training-time augmentation and normalisation as batch tensor ops on the training device.

No DataLoader workers and no per-image Python: a whole batch is cropped and flipped by index arithmetic,
and all randomness comes from the caller's generator, so a resumed run draws exactly the same crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._base import AUGMENTATIONS, DatasetInfo


def crop_padding(size: int) -> int:
    """Zero padding for random crops: 4 px at 32 (the CIFAR standard), 3 px at 28, 1 px at 8."""
    return max(1, size // 8)


def augment_batch(x: Tensor, augmentation: str, generator: torch.Generator, padding: int | None = None) -> Tensor:
    """A randomly augmented copy of ``x`` ``[B, C, H, W]`` (uint8 or float), on ``x``'s device.

    ``"crop"``: per-sample random crop of the zero-padded image back to ``H×W``; ``"crop_flip"``: the
    same, then a horizontal flip of a random half; ``"none"``: ``x`` itself. ``generator`` must live on
    ``x.device``; it is the only source of randomness.
    """
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    if augmentation == "none" or len(x) == 0:
        return x
    x = random_crop(x, crop_padding(x.shape[-1]) if padding is None else padding, generator)
    if augmentation == "crop_flip":
        x = random_flip(x, generator)
    return x


def random_crop(x: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Each sample shifted by its own offset in ``[-padding, padding]`` per axis, zeros filling in."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=x.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, :, None]  # [B, H, 1]
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, :]  # [B, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()  # advanced dims first: [B, H, W, C]


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each sample mirrored left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def normalize(x: Tensor, info: DatasetInfo) -> Tensor:
    """``(x / 255 - mean) / std`` per channel, as float32 on ``x``'s device (the model's input).

    ``x`` is uint8, or float on the same 0..255 scale (trigger inversion passes differentiable floats).
    """
    mean = torch.tensor(info.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.to(torch.float32) / 255.0 - mean) / std
