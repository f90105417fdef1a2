"""WaNet (Nguyen & Tran, ICLR 2021): an imperceptible, fixed warping of the image as the trigger.

The warp field is a ``k×k`` uniform random grid, normalised and upsampled bicubically, added to the identity
sampling grid. Noise mode additionally warps ``cross_ratio`` times as many clean samples with a randomly
perturbed field (labels unchanged), so the network learns the exact warp rather than "any warp".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config.schema import AttackConfig
from ..config.validation import fail, spec
from ..data import DatasetInfo
from ..errors import ConfigError
from ._base import ATTACKS, STREAM_EXTRA, STREAM_TRIGGER, Attack, poison_count, seeded_generator


@dataclass
class WaNetParams:
    k: int = spec(4, low=2, help="side of the random control grid")
    s: float = spec(0.5, low=0.0, low_open=True, help="warp strength")
    grid_rescale: float = spec(1.0, low=0.0, low_open=True, help="scale of the sampling grid (1: none)")
    cross_ratio: float = spec(2.0, low=0.0, help="noise-mode samples per poisoned sample")
    noise: bool = spec(True, help="noise mode: also warp clean samples randomly, labels unchanged")


@ATTACKS.register("wanet")
class WaNet(Attack):
    """Warps poisoned images with the seeded field; noise-mode samples are listed in ``extra['noise_idx']``."""

    Params = WaNetParams

    def __init__(self, cfg: AttackConfig, info: DatasetInfo, seed: int) -> None:
        super().__init__(cfg, info, seed)
        self.grid = warp_grid(self.params, info.size, seeded_generator(seed, STREAM_TRIGGER))

    @classmethod
    def check_params(cls, p: WaNetParams, info: DatasetInfo) -> None:
        if p.k > info.size:
            raise fail(
                "attack.params.k", f"attack.params.k ({p.k}) must not exceed the image size {info.size} of {info.name}"
            )

    def apply_trigger(self, x: Tensor) -> Tensor:
        return warp(x, self.grid.to(x.device).expand(len(x), -1, -1, -1))

    def extra(self, x: Tensor, y: Tensor, x_out: Tensor, poison_idx: Tensor) -> dict[str, Tensor]:
        """Noise mode: warp a seeded set of other samples with a perturbed field, in place in ``x_out``."""
        if not self.params.noise or len(poison_idx) == 0:
            return {"noise_idx": poison_idx[:0].clone()}
        generator = seeded_generator(self.seed, STREAM_EXTRA)
        noise_idx = self._noise_indices(len(y), poison_idx, generator).to(poison_idx.device)
        size = self.info.size
        jitter = torch.rand(len(noise_idx), size, size, 2, generator=generator) * 2 - 1
        grids = (self.grid + jitter / size).clamp_(-1, 1)
        if len(noise_idx):
            x_out[noise_idx] = warp(x[noise_idx], grids.to(x.device))
        return {"noise_idx": noise_idx}

    def _noise_indices(self, n: int, poison_idx: Tensor, generator: torch.Generator) -> Tensor:
        """``round(cross_ratio * #poisoned)`` sorted indices drawn from the samples that are not poisoned."""
        free = torch.ones(n, dtype=torch.bool)
        free[poison_idx.cpu()] = False
        pool = torch.nonzero(free).flatten()
        count = poison_count(self.params.cross_ratio, len(poison_idx)) if self.params.cross_ratio > 0 else 0
        if count > len(pool):
            raise ConfigError(
                f"attack.params.cross_ratio={self.params.cross_ratio} asks for {count} noise samples but only "
                f"{len(pool)} samples are not poisoned; lower attack.params.cross_ratio or attack.poison_rate"
            )
        return pool[torch.randperm(len(pool), generator=generator)[:count]].sort().values

    def trigger_description(self) -> dict[str, Any]:
        return {"image_size": self.info.size}


def warp_grid(p: WaNetParams, size: int, generator: torch.Generator) -> Tensor:
    """The ``[1, H, W, 2]`` sampling grid in ``[-1, 1]`` for ``grid_sample`` (x = column, y = row)."""
    control = torch.rand(1, 2, p.k, p.k, generator=generator) * 2 - 1
    control = control / control.abs().mean()
    field = F.interpolate(control, size=(size, size), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    line = torch.linspace(-1, 1, size)
    rows, cols = torch.meshgrid(line, line, indexing="ij")
    identity = torch.stack((cols, rows), dim=2)[None]
    return ((identity + p.s * field / size) * p.grid_rescale).clamp(-1, 1)


def warp(x: Tensor, grid: Tensor) -> Tensor:
    """uint8 images resampled at ``grid`` (bilinear, as the paper), rounded back to uint8."""
    out = F.grid_sample(x.to(torch.float32), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)
