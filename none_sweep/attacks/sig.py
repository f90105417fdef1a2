"""SIG (Barni et al. 2019): a clean-label attack with a horizontal sinusoidal signal.

Only images already of the target class get the signal and labels never change; at test time the signal
on any other image should pull it to the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config.schema import AttackConfig
from ..config.validation import spec
from ..data import DatasetInfo
from ._base import ATTACKS, Attack


@dataclass
class SigParams:
    delta: float = spec(20.0, low=0.0, high=255.0, low_open=True, help="signal amplitude in pixel values")
    frequency: float = spec(6.0, low=0.0, low_open=True, help="periods across the image width")


@ATTACKS.register("sig")
class Sig(Attack):
    """``x' = clip(x + delta * sin(2π j f / W))`` along columns ``j``, the same on every row and channel."""

    Params = SigParams
    clean_label = True

    def __init__(self, cfg: AttackConfig, info: DatasetInfo, seed: int) -> None:
        super().__init__(cfg, info, seed)
        self.signal = make_signal(self.params, info.size)

    def apply_trigger(self, x: Tensor) -> Tensor:
        signal = self.signal.to(x.device)
        return (x.to(torch.float32) + signal).round_().clamp_(0, 255).to(torch.uint8)


def make_signal(p: SigParams, width: int) -> Tensor:
    """The float32 ``[W]`` signal, broadcast over rows and channels."""
    j = torch.arange(width, dtype=torch.float64)
    return (p.delta * torch.sin(2 * math.pi * j * p.frequency / width)).to(torch.float32)
