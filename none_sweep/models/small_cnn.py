"""``small_cnn``: a three-conv network cheap enough to train on a CPU (Fashion-MNIST, 8×8 digits).

Pooling comes early (after conv1 and conv2) because at 28×28 the cost is in the per-pixel work, not the width:
a 60k-image epoch takes seconds on two cores, and a few epochs reach about 90% on Fashion-MNIST. Every conv is a
separate named module (``conv1``..``conv3``), so NONE monitors three layers by default.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from ._factory import MODELS
from ._layers import conv_bn_relu, pool_fits


class SmallCNN(nn.Module):
    """conv-bn-relu-pool ×2, conv-bn-relu, global average pool, linear."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, widths: tuple[int, int, int]) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        size, prev = image_size, in_channels
        for i, width in enumerate(widths, start=1):
            conv, bn, relu = conv_bn_relu(prev, width)
            layers.update({f"conv{i}": conv, f"bn{i}": bn, f"relu{i}": relu})
            if i < len(widths) and pool_fits(size):
                layers[f"pool{i}"] = nn.MaxPool2d(2)
                size //= 2
            prev = width
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@MODELS.register("small_cnn")
def small_cnn(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return SmallCNN(in_channels, num_classes, image_size, widths=(16, 32, 64))
