"""``nin``: Network in Network (Lin et al. 2014) in its CIFAR form, with BatchNorm after each conv.

Three mlpconv stages (a spatial conv followed by two 1×1 convs); the last 1×1 conv maps to the classes and a
global average pool gives the logits, so the model has no linear layer. NONE therefore monitors its first
eight convs (the ninth is the classifier), as in the published analysis. BatchNorm is added so that the same
SGD settings as the other families train it.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._factory import MODELS
from ._layers import conv_bn_relu, pool_fits

# (spatial kernel, widths of the spatial conv and the two 1×1 convs) per stage; the last stage's final 1×1 conv
# is replaced by the classifier conv.
_STAGES = ((5, (192, 160, 96)), (5, (192, 192, 192)), (3, (192, 192)))


class NiN(nn.Module):
    """mlpconv stages separated by max/avg pooling (3×3, stride 2) and dropout."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, size = in_channels, image_size
        pools = (nn.MaxPool2d, nn.AvgPool2d)
        for stage, (kernel, widths) in enumerate(_STAGES):
            for i, width in enumerate(widths):
                layers += conv_bn_relu(prev, width, kernel if i == 0 else 1)
                prev = width
            if stage < len(pools):
                if pool_fits(size):
                    layers.append(pools[stage](3, stride=2, padding=1))
                    size = (size + 1) // 2
                layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(prev, num_classes, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.classifier(self.features(x))).flatten(1)


@MODELS.register("nin")
def nin(in_channels: int, num_classes: int, image_size: int) -> nn.Module:
    return NiN(in_channels, num_classes, image_size)
