"""The model registry, the one construction entry point, and the ``torchvision:NAME`` adapter.

Every model is built from three numbers of the data (input channels, classes, image side), so a config names a
model and the dataset decides its shape. Registered names are the contract (``small_cnn``, ``nin``, ``resnet18``,
``preact_resnet18``, ``vgg16_bn``); ``torchvision:NAME`` opens the whole torchvision classification zoo without
a registration per model.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Protocol

from torch import nn

from ..errors import ConfigError
from ..registry import Registry

ModelFactory = Callable[[int, int, int], nn.Module]

MODELS: Registry[ModelFactory] = Registry("model")

TORCHVISION_PREFIX = "torchvision:"


class _DataShape(Protocol):
    """What :func:`create_model` reads from a ``DatasetInfo`` (duck-typed: data is a sibling layer)."""

    @property
    def channels(self) -> int: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def size(self) -> int: ...


def create_model(name: str, info: _DataShape) -> nn.Module:
    """Build model ``name`` for data shaped like ``info`` (``.channels``, ``.num_classes``, ``.size``)."""
    if name.startswith(TORCHVISION_PREFIX):
        return _torchvision_model(name[len(TORCHVISION_PREFIX) :], info.channels, info.num_classes)
    return MODELS.get(name)(info.channels, info.num_classes, info.size)


def check_model_name(name: str) -> None:
    """Raise :class:`ConfigError` if ``name`` is neither registered nor a torchvision classifier; builds nothing."""
    if name.startswith(TORCHVISION_PREFIX):
        _check_torchvision_name(name[len(TORCHVISION_PREFIX) :])
    else:
        MODELS.get(name)


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm  # lazy: torchvision's import is slow and most runs never need it

    return sorted(tvm.list_models(module=tvm))


def _check_torchvision_name(arch: str) -> None:
    names = _torchvision_names()
    if arch in names:
        return
    close = difflib.get_close_matches(arch, names, n=1)
    hint = f" (did you mean '{TORCHVISION_PREFIX}{close[0]}'?)" if close else ""
    raise ConfigError(
        f"'{TORCHVISION_PREFIX}{arch}' is not a torchvision classification model{hint}; see the choices with "
        'python -c "import torchvision.models as m; print(m.list_models(module=m))"'
    )


def _torchvision_model(arch: str, in_channels: int, num_classes: int) -> nn.Module:
    """Any torchvision classifier, untrained (no weights can be downloaded here), with the data's channels."""
    import torchvision.models as tvm

    _check_torchvision_name(arch)
    model = tvm.get_model(arch, weights=None, num_classes=num_classes)
    if in_channels != 3:
        _adapt_input_channels(model, in_channels, arch)
    return model


def _adapt_input_channels(model: nn.Module, in_channels: int, arch: str) -> None:
    """Replace the stem: the first Conv2d in module order that reads 3 channels, found without knowing its name."""
    found = next(
        ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3),
        None,
    )
    if found is None or found[1].groups != 1:
        raise ConfigError(
            f"'{TORCHVISION_PREFIX}{arch}' has no plain 3-channel input conv to adapt to {in_channels} channels"
        )
    name, stem = found
    kwargs: dict[str, Any] = dict(
        kernel_size=stem.kernel_size,
        stride=stem.stride,
        padding=stem.padding,
        dilation=stem.dilation,
        bias=stem.bias is not None,
        padding_mode=stem.padding_mode,
    )
    new = nn.Conv2d(in_channels, stem.out_channels, **kwargs)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)
