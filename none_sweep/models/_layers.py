"""Building blocks shared by the model families."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> list[nn.Module]:
    """Conv (no bias: the BatchNorm after it has one) → BatchNorm → ReLU, the unit every family here repeats."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def pool_fits(size: int) -> bool:
    """Whether a 2×2 pooling still leaves at least one pixel; lets one builder serve 32, 28 and 8 pixel inputs."""
    return size >= 2
