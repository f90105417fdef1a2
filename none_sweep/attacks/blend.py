"""Blended injection (Chen et al. 2017): the whole image alpha-blended with a fixed pattern."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ..config.schema import AttackConfig
from ..config.validation import fail, spec
from ..data import DatasetInfo
from ..errors import ConfigError
from ._base import ATTACKS, STREAM_TRIGGER, Attack, seeded_generator

NOISE = "noise"


@dataclass
class BlendParams:
    alpha: float = spec(0.1, low=0.0, high=1.0, low_open=True, help="blend weight of the pattern")
    pattern: str = spec(NOISE, help="'noise' (seeded uniform noise) or the path of an image file")


@ATTACKS.register("blend")
class Blend(Attack):
    """``x' = round((1 - alpha) * x + alpha * pattern)``, on every pixel."""

    Params = BlendParams

    def __init__(self, cfg: AttackConfig, info: DatasetInfo, seed: int) -> None:
        super().__init__(cfg, info, seed)
        self.pattern = make_pattern(self.params.pattern, info, seed)

    @classmethod
    def path_params(cls, params: Mapping[str, Any]) -> dict[str, str]:
        """``pattern`` is an image file unless it is ``noise``."""
        pattern = params.get("pattern")
        return {"pattern": pattern} if isinstance(pattern, str) and pattern != NOISE else {}

    @classmethod
    def check_params(cls, p: BlendParams, info: DatasetInfo) -> None:
        if p.pattern != NOISE and not Path(p.pattern).expanduser().is_file():
            raise fail(
                "attack.params.pattern",
                f"attack.params.pattern must be 'noise' or an image file, got {p.pattern!r} (no such file)",
            )
        if p.pattern != NOISE:  # unreadable images fail here, before a sweep starts, not in every trial
            try:
                with Image.open(Path(p.pattern).expanduser()) as img:
                    img.verify()
            except (OSError, UnidentifiedImageError, SyntaxError) as exc:
                raise fail(
                    "attack.params.pattern",
                    f"attack.params.pattern: {p.pattern!r} is not a readable image "
                    f"({type(exc).__name__}); use a PNG/JPEG file or 'noise'",
                ) from None

    def apply_trigger(self, x: Tensor) -> Tensor:
        alpha = self.params.alpha
        pattern = self.pattern.to(x.device, torch.float32)
        return ((1.0 - alpha) * x.to(torch.float32) + alpha * pattern).round_().clamp_(0, 255).to(torch.uint8)


def make_pattern(pattern: str, info: DatasetInfo, seed: int) -> Tensor:
    """The uint8 ``[C, H, W]`` blend pattern: seeded noise, or the image file resized to the data size."""
    shape = (info.channels, info.size, info.size)
    if pattern == NOISE:
        return torch.randint(0, 256, shape, generator=seeded_generator(seed, STREAM_TRIGGER), dtype=torch.uint8)
    path = Path(pattern).expanduser()
    try:
        with Image.open(path) as img:
            img = img.convert("L" if info.channels == 1 else "RGB").resize(
                (info.size, info.size), Image.Resampling.BILINEAR
            )
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise ConfigError(f"attack.params.pattern: cannot read image {path} ({type(exc).__name__}: {exc})") from None
    return torch.from_numpy(array.reshape(info.size, info.size, -1).copy()).permute(2, 0, 1).contiguous()
