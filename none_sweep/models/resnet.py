"""``resnet18`` and ``preact_resnet18``: one ResNet builder, two block types, CIFAR stem.

The stem is a 3×3 conv with stride 1 and no max-pool (the CIFAR variant, as in the published NONE experiments),
so 32×32 inputs keep their resolution until ``layer2``. Module names follow torchvision (``conv1``, ``layer1``..
``layer4``, ``downsample``, ``fc``), so layer globs in a config mean the same for ``resnet18`` and
``torchvision:resnet18``. The published analysis skips the stem and ``layer1``: ``defense.skip_first: 5``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ._factory import MODELS


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation block: conv-bn-relu-conv-bn, plus the (projected) input, then relu."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class PreActBlock(nn.Module):
    """Pre-activation block (He et al. 2016): bn-relu-conv ×2; the projection reads the activated input."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=False)
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        identity = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + identity


class ResNet(nn.Module):
    """Stem, four stages of ``blocks`` each (the first block of stages 2-4 halves the resolution), pool, fc."""

    # Registered with setattr in a loop (torchvision's names); declared here so their type is known.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(
        self,
        block: type[BasicBlock] | type[PreActBlock],
        blocks: Sequence[int],
        in_channels: int,
        num_classes: int,
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        preact = block is PreActBlock
        self.conv1 = _conv3x3(in_channels, widths[0])
        # Post-activation nets normalise the stem; pre-activation nets normalise at the end instead.
        self.bn1: nn.Module = nn.Identity() if preact else nn.BatchNorm2d(widths[0])
        self.relu = nn.Identity() if preact else nn.ReLU(inplace=True)
        prev = widths[0]
        for stage, (width, count) in enumerate(zip(widths, blocks), start=1):
            strides = [1 if stage == 1 else 2] + [1] * (count - 1)
            layer = []
            for stride in strides:
                layer.append(block(prev, width, stride))
                prev = width
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
        self.bn: nn.Module = nn.Sequential(nn.BatchNorm2d(prev), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(self.bn(x)).flatten(1))


@MODELS.register("resnet18")
def resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes)


@MODELS.register("preact_resnet18")
def preact_resnet18(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return ResNet(PreActBlock, (2, 2, 2, 2), in_channels, num_classes)
