"""BadNets (Gu et al. 2017): a small square patch stamped at a fixed place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config.schema import AttackConfig
from ..config.validation import fail, spec
from ..data import DatasetInfo
from ._base import ATTACKS, STREAM_TRIGGER, Attack, seeded_generator

LOCATIONS = ("bottom_right", "bottom_left", "top_left", "top_right", "center")
PATTERNS = ("white", "checker", "random")


@dataclass
class BadNetsParams:
    patch_size: int = spec(3, low=1, help="side of the square patch in pixels")
    location: str = spec("bottom_right", choices=LOCATIONS, help="where the patch sits")
    pattern: str = spec("white", choices=PATTERNS, help="white; checker (white/black, white top-left); random (seeded)")
    margin: int = spec(1, low=0, help="pixels between the patch and the image border (ignored for center)")


@ATTACKS.register("badnets")
class BadNets(Attack):
    """Overwrites a ``patch_size``² box with the pattern; every other pixel is left untouched."""

    Params = BadNetsParams

    def __init__(self, cfg: AttackConfig, info: DatasetInfo, seed: int) -> None:
        super().__init__(cfg, info, seed)
        self.top, self.left = patch_origin(self.params, info.size)
        self.patch = make_patch(self.params, info.channels, seed)

    @classmethod
    def check_params(cls, p: BadNetsParams, info: DatasetInfo) -> None:
        need = p.patch_size + (0 if p.location == "center" else p.margin)
        if need > info.size:
            raise fail(
                "attack.params.patch_size",
                f"attack.params.patch_size ({p.patch_size}) plus margin "
                f"({p.margin}) must fit the {info.size}px images of {info.name}",
            )

    def apply_trigger(self, x: Tensor) -> Tensor:
        out = x.clone()
        s = self.params.patch_size
        out[:, :, self.top : self.top + s, self.left : self.left + s] = self.patch.to(x.device)
        return out

    def trigger_description(self) -> dict[str, Any]:
        s = self.params.patch_size
        return {
            "patch_top": self.top,
            "patch_left": self.left,
            "patch_bottom": self.top + s,
            "patch_right": self.left + s,
        }


def patch_origin(p: BadNetsParams, size: int) -> tuple[int, int]:
    """Top-left pixel (row, column) of the patch."""
    far = size - p.margin - p.patch_size
    center = (size - p.patch_size) // 2
    return {
        "top_left": (p.margin, p.margin),
        "top_right": (p.margin, far),
        "bottom_left": (far, p.margin),
        "bottom_right": (far, far),
        "center": (center, center),
    }[p.location]


def make_patch(p: BadNetsParams, channels: int, seed: int) -> Tensor:
    """The uint8 ``[C, s, s]`` patch; ``random`` is drawn from the attack's trigger stream."""
    s = p.patch_size
    if p.pattern == "white":
        return torch.full((channels, s, s), 255, dtype=torch.uint8)
    if p.pattern == "checker":
        grid = torch.arange(s)[:, None] + torch.arange(s)[None, :]
        return ((grid % 2 == 0).to(torch.uint8) * 255).expand(channels, s, s).clone()
    return torch.randint(0, 256, (channels, s, s), generator=seeded_generator(seed, STREAM_TRIGGER), dtype=torch.uint8)
