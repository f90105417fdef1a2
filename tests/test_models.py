"""Models: every registered family builds for every data shape it must serve; names fail clearly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from none_sweep.errors import ConfigError
from none_sweep.models import MODELS, check_model_name, create_model

SHAPES = [(1, 28), (1, 8), (3, 32)]  # Fashion-MNIST, 8×8 digits, CIFAR


def info(channels: int, size: int, num_classes: int = 10) -> SimpleNamespace:
    return SimpleNamespace(channels=channels, size=size, num_classes=num_classes)


def test_registered_names_are_the_contract() -> None:
    assert MODELS.names() == ["nin", "preact_resnet18", "resnet18", "small_cnn", "vgg16_bn"]


@pytest.mark.parametrize("name", ["small_cnn", "nin", "resnet18", "preact_resnet18", "vgg16_bn"])
@pytest.mark.parametrize("channels,size", SHAPES)
def test_forward_gives_logits(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, info(channels, size, num_classes=7)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_small_cnn_trains_a_step() -> None:
    """Gradients reach every parameter (no dead branch in the builder)."""
    torch.manual_seed(0)
    model = create_model("small_cnn", info(1, 28))
    loss = nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_torchvision_model_with_one_channel() -> None:
    model = create_model("torchvision:resnet18", info(1, 28, num_classes=5)).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)


def test_torchvision_three_channels_keeps_the_stem() -> None:
    model = create_model("torchvision:resnet18", info(3, 32, num_classes=4))
    assert model.conv1.in_channels == 3 and model.fc.out_features == 4


def test_torchvision_stem_found_without_its_name() -> None:
    """MobileNet's stem is ``features.0.0``, not ``conv1``: the adapter finds it generically."""
    model = create_model("torchvision:mobilenet_v3_small", info(1, 32, num_classes=3))
    assert model.features[0][0].in_channels == 1


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "torchvision:resnet18", "torchvision:mobilenet_v2"])
def test_check_model_name_accepts(name: str) -> None:
    check_model_name(name)


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("resnet19", "did you mean 'resnet18'"),
        ("nope", "choose from"),
        ("torchvision:resnt18", "did you mean 'torchvision:resnet18'"),
        ("torchvision:not_a_model", "list_models"),
    ],
)
def test_unknown_names_raise_config_error(name: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        check_model_name(name)
    with pytest.raises(ConfigError):
        create_model(name, info(1, 28))


def test_check_model_name_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> nn.Module:
        raise AssertionError("factory called")

    monkeypatch.setitem(MODELS._entries, "small_cnn", boom)
    check_model_name("small_cnn")
