"""``vgg16_bn``: VGG in its CIFAR form (BatchNorm after every conv, one linear classifier on 512 features).

Max-pools that would shrink the map below one pixel are left out, so the same layer list serves 32×32, 28×28
and 8×8 inputs; a global average pool before the classifier makes the flattened size 512 at any input size.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ._factory import MODELS
from ._layers import conv_bn_relu, pool_fits

LayerSpec = Sequence[int | str]  # a conv width, or "M" for a 2×2 max-pool

VGG16: LayerSpec = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(nn.Module):
    """``features`` (conv-bn-relu and pools per ``spec``), global average pool, linear ``classifier``."""

    def __init__(self, spec: LayerSpec, in_channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, size = in_channels, image_size
        for item in spec:
            if item == "M":
                if pool_fits(size):
                    layers.append(nn.MaxPool2d(2))
                    size //= 2
                continue
            layers += conv_bn_relu(prev, int(item))
            prev = int(item)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@MODELS.register("vgg16_bn")
def vgg16_bn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return VGG(VGG16, in_channels, num_classes, image_size)
