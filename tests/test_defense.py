"""NONE defense: the statistic, natural breaks, layer monitoring, resets and a whole analysis round.

Every vectorised piece is checked against a naive reference written here from the algorithm's text
(shared/reference/none-algorithm.md), loops and all.
"""

from __future__ import annotations

import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from none_sweep.config.schema import DefenseConfig
from none_sweep.defense import (
    ChannelClassStats,
    ChannelMaxRecorder,
    analyse,
    channel_max,
    class_masks,
    filters_samples,
    find_monitored_layers,
    plan_resets,
    removal_mask,
    reset_neurons,
    select_compromised,
    two_class_breaks,
)
from none_sweep.errors import ConfigError
from none_sweep.models import create_model

# ----------------------------------------------------------------------------------------------------------
# Naive references, following the algorithm text literally
# ----------------------------------------------------------------------------------------------------------


def naive_scores(acts: np.ndarray, probs: np.ndarray, lamda_l: float, lamda_h: float) -> np.ndarray:
    """score[j] = max_k diff[j, k] over classes with non-empty strong and weak sets; skipped classes count 0."""
    n, channels = acts.shape
    scores = np.zeros(channels)
    for j in range(channels):
        diffs = []
        skipped = False
        for k in range(probs.shape[1]):
            strong = [i for i in range(n) if probs[i, k] > lamda_h]
            weak = [i for i in range(n) if probs[i, k] < lamda_l]
            if not strong or not weak:
                skipped = True
                continue
            weak_values = np.array([float(acts[i, j]) for i in weak])
            top = max(float(acts[i, j]) for i in strong)
            diffs.append(top - (weak_values.mean() + 3 * weak_values.std()))
        if skipped:
            diffs.append(0.0)
        scores[j] = max(diffs)
    return scores


def naive_top(scores: np.ndarray, fraction: float) -> list[int]:
    """Top ceil(fraction * C) by score, ties to the lower index (scores rounded to ignore float noise)."""
    count = math.ceil(fraction * len(scores))
    return sorted(range(len(scores)), key=lambda j: (-round(float(scores[j]), 9), j))[:count]


def brute_force_breaks(values: np.ndarray) -> tuple[float, float]:
    """(best within-class SSD, its threshold) over every split between distinct values; lowest split wins ties."""
    best, threshold = math.inf, math.nan
    for t in np.unique(values)[:-1]:
        low, high = values[values <= t], values[values > t]
        ssd = ((low - low.mean()) ** 2).sum() + ((high - high.mean()) ** 2).sum()
        if math.isinf(best) or ssd < best - 1e-12 * max(1.0, best):
            best, threshold = ssd, float(t)
    return best, threshold


def ssd_of(values: np.ndarray, upper: np.ndarray) -> float:
    return sum(((part - part.mean()) ** 2).sum() for part in (values[upper], values[~upper]) if part.size)


# ----------------------------------------------------------------------------------------------------------
# Statistic
# ----------------------------------------------------------------------------------------------------------


def make_probs(n: int, k: int, gen: torch.Generator, floor: float = 0.25) -> Tensor:
    """Rows summing to 1: class 0 is never strong (always weak); class 1 never drops below ``floor``, so it is
    never weak when lamda_l < floor; the others follow a sharp random softmax and can be strong."""
    logits = torch.randn(n, k, generator=gen) * 4
    logits[:, 0] = -30.0
    probs = torch.softmax(logits, dim=1) * (1 - floor)
    probs[:, 1] += floor
    return probs


def assert_covers_cases(probs: Tensor, lamda_l: float, lamda_h: float) -> None:
    """The data really has a class without strong samples and a usable class (else the check is hollow)."""
    strong, weak = (probs > lamda_h).any(0), (probs < lamda_l).any(0)
    assert not strong[0] and (strong & weak).any()


def stream(stats: ChannelClassStats, acts: Tensor, probs: Tensor, lamda_l: float, lamda_h: float) -> None:
    for part in torch.tensor_split(torch.arange(acts.shape[0]), 3):  # uneven batches
        stats.update(acts[part], class_masks(probs[part], lamda_l, lamda_h))


@pytest.mark.parametrize("n,channels,k", [(60, 5, 3), (90, 12, 4), (45, 1, 4), (120, 9, 10)])
@pytest.mark.parametrize(
    "lamda_l,lamda_h,floor", [(0.1, 0.9, 0.0), (0.2, 0.7, 0.25), (0.3, 0.4, 0.25), (0.05, 0.6, 0.25)]
)
def test_statistic_matches_naive_loop(
    n: int, channels: int, k: int, lamda_l: float, lamda_h: float, floor: float
) -> None:
    """Streamed over uneven batches, with and without chunking of the strong pairs (max_elements=7)."""
    gen = torch.Generator().manual_seed(n * 31 + channels * 7 + k)
    acts = torch.randn(n, channels, generator=gen).abs() * 2
    probs = make_probs(n, k, gen, floor)
    assert_covers_cases(probs, lamda_l, lamda_h)
    expected = naive_scores(acts.double().numpy(), probs.double().numpy(), lamda_l, lamda_h)
    for max_elements in (1 << 22, 7):
        stats = ChannelClassStats(channels, k, max_elements=max_elements)
        stream(stats, acts, probs, lamda_l, lamda_h)
        np.testing.assert_allclose(stats.scores().numpy(), expected, rtol=1e-9, atol=1e-9)
        assert select_compromised(stats.scores(), 0.3).tolist() == naive_top(expected, 0.3)


def test_statistic_with_ties_and_skipped_classes() -> None:
    """Integer activations (many equal values), duplicated channels (tied scores), and both kinds of skip."""
    gen = torch.Generator().manual_seed(3)
    acts = torch.randint(0, 4, (80, 8), generator=gen).float()
    acts[:, 5] = acts[:, 2]  # channel 5 ties channel 2 exactly
    probs = make_probs(80, 4, gen)
    assert not (probs[:, 0] > 0.7).any() and not (probs[:, 1] < 0.2).any()  # both kinds of skipped class
    assert ((probs[:, 2:] > 0.7).sum(0) > 0).all() and ((probs[:, 2:] < 0.2).sum(0) > 0).all()  # usable ones
    stats = ChannelClassStats(8, 4)
    stream(stats, acts, probs, 0.2, 0.7)
    expected = naive_scores(acts.numpy(), probs.numpy(), 0.2, 0.7)
    scores = stats.scores()
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-9, atol=1e-9)
    assert scores[5] == scores[2]
    for fraction in (0.1, 0.25, 0.5, 1.0):
        assert select_compromised(scores, fraction).tolist() == naive_top(expected, fraction)


def test_every_class_skipped_scores_zero() -> None:
    probs = torch.full((10, 4), 0.25)  # nobody strong, nobody weak
    stats = ChannelClassStats(3, 4)
    stats.update(torch.randn(10, 3), class_masks(probs, 0.1, 0.9))
    assert torch.equal(stats.scores(), torch.zeros(3, dtype=torch.float64))


def test_negative_score_only_without_skipped_classes() -> None:
    """Two classes, both usable: a channel that is higher on weak samples scores below zero."""
    probs = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.95, 0.05], [0.05, 0.95]])
    acts = torch.tensor([[0.0], [5.0], [0.0], [5.0]])  # class 0 strong -> 0, its weak (class-1 samples) -> 5
    stats = ChannelClassStats(1, 2)
    stats.update(acts, class_masks(probs, 0.1, 0.9))
    expected = naive_scores(acts.numpy(), probs.numpy(), 0.1, 0.9)
    assert expected[0] > 0  # class 1 gives +5
    acts2 = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    stats2 = ChannelClassStats(1, 2)
    stats2.update(acts2, class_masks(probs, 0.1, 0.9))
    naive2 = naive_scores(acts2.numpy(), probs.numpy(), 0.1, 0.9)
    assert naive2[0] < 0
    np.testing.assert_allclose(stats2.scores().numpy(), naive2, atol=1e-12)


def test_selection_ties_go_to_lower_index() -> None:
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0], dtype=torch.float64)
    assert select_compromised(scores, 0.4).tolist() == [1, 2]
    assert select_compromised(scores, 0.01).tolist() == [1]  # ceil gives at least one
    assert select_compromised(torch.zeros(100), 0.07).numel() == 7  # 0.07 * 100 is 7.000000000000001


# ----------------------------------------------------------------------------------------------------------
# Natural breaks
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_natural_breaks_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    values = rng.normal(size=n) if seed % 3 else rng.integers(0, 5, size=n).astype(float)  # every 3rd: duplicates
    if seed % 4 == 1:
        values[: n // 5] += 8  # a clear upper group
    break_value, upper = two_class_breaks(torch.tensor(values, dtype=torch.float32))
    values32 = torch.tensor(values, dtype=torch.float32).double().numpy()
    best, threshold = brute_force_breaks(values32)
    if math.isnan(threshold):  # all equal
        assert not upper.any()
        return
    assert np.array_equal(upper.numpy(), values32 > break_value)
    assert ssd_of(values32, upper.numpy()) == pytest.approx(best, rel=1e-9, abs=1e-9)
    if seed % 3:  # continuous values: the optimum is unique
        assert break_value == threshold


def test_natural_breaks_edge_cases() -> None:
    assert two_class_breaks(torch.tensor([1.0, 2.0]))[1].tolist() == [False, True]
    value, upper = two_class_breaks(torch.tensor([4.0]))
    assert value == 4.0 and upper.tolist() == [False]
    value, upper = two_class_breaks(torch.full((7,), 2.5))
    assert value == 2.5 and not upper.any()
    value, upper = two_class_breaks(torch.tensor([]))
    assert math.isnan(value) and upper.numel() == 0
    value, upper = two_class_breaks(torch.tensor([0.0, 1.0, 1.0, 9.0, 9.0, 10.0]))
    assert value == 1.0 and upper.tolist() == [False, False, False, True, True, True]


# ----------------------------------------------------------------------------------------------------------
# Monitored layers and hooks
# ----------------------------------------------------------------------------------------------------------


def data(channels: int, size: int, num_classes: int = 10) -> SimpleNamespace:
    return SimpleNamespace(channels=channels, size=size, num_classes=num_classes)


def test_small_cnn_monitors_its_three_convs() -> None:
    model = create_model("small_cnn", data(1, 28))
    layers = find_monitored_layers(model, DefenseConfig())
    assert [(l.name, l.kind) for l in layers] == [
        ("features.conv1", "conv"),
        ("features.conv2", "conv"),
        ("features.conv3", "conv"),
    ]


def test_resnet18_published_layer_set() -> None:
    """skip_first=5 drops the stem and layer1: 15 layers, 4480 channels, downsample convs included."""
    model = create_model("resnet18", data(3, 32))
    layers = find_monitored_layers(model, DefenseConfig(skip_first=5))
    assert len(layers) == 15 and sum(l.channels for l in layers) == 4480
    assert layers[0].name == "layer2.0.conv1"
    assert [l.name for l in layers if "downsample" in l.name] == [
        "layer2.0.downsample.0",
        "layer3.0.downsample.0",
        "layer4.0.downsample.0",
    ]
    assert len(find_monitored_layers(model, DefenseConfig())) == 20


def test_classifier_is_never_monitored() -> None:
    nin = create_model("nin", data(3, 32))
    names = [l.name for l in find_monitored_layers(nin, DefenseConfig())]
    assert len(names) == 8 and "classifier" not in names  # NiN's classifier is a 1x1 conv
    cnn = create_model("small_cnn", data(1, 28))
    with pytest.raises(ConfigError, match="no layer left"):
        find_monitored_layers(cnn, DefenseConfig(layer_types=["linear"]))
    both = find_monitored_layers(cnn, DefenseConfig(layer_types=["conv", "linear"]))
    assert "fc" not in [l.name for l in both]


def test_include_exclude_and_skip() -> None:
    model = create_model("resnet18", data(3, 32))
    cfg = DefenseConfig(include_layers=["layer4.*"], exclude_layers=["*downsample*"], skip_first=1)
    assert [l.name for l in find_monitored_layers(model, cfg)] == ["layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    with pytest.raises(ConfigError, match="layer_types"):
        find_monitored_layers(model, DefenseConfig(layer_types=["attention"]))


def test_channel_max_reductions() -> None:
    conv_out = torch.randn(2, 3, 4, 5)
    assert torch.equal(channel_max(conv_out, "conv"), conv_out.amax(dim=(2, 3)))
    tokens = torch.randn(2, 6, 4)  # [B, T, C]
    assert torch.equal(channel_max(tokens, "linear"), tokens.amax(dim=1))
    flat = torch.randn(2, 4)
    assert torch.equal(channel_max(flat, "linear"), flat)


def test_recorder_removes_hooks_even_on_error() -> None:
    model = create_model("small_cnn", data(1, 8))
    layers = find_monitored_layers(model, DefenseConfig())
    with pytest.raises(RuntimeError, match="boom"), ChannelMaxRecorder(layers) as recorder:
        model(torch.randn(2, 1, 8, 8))
        assert recorder.pop()["features.conv2"].shape == (2, 32)
        raise RuntimeError("boom")
    assert all(not l.module._forward_hooks for l in layers)


# ----------------------------------------------------------------------------------------------------------
# Resets
# ----------------------------------------------------------------------------------------------------------


def expected_slices(
    model: nn.Module, layer: str, idx: list[int], norm: str | None, successor: str | None, block: int = 1
) -> dict[str, Tensor]:
    """Boolean masks, per state-dict entry, of what a reset of ``idx`` may change (written out by hand)."""
    state = model.state_dict()
    masks = {k: torch.zeros_like(v, dtype=torch.bool) for k, v in state.items()}
    for c in idx:
        masks[f"{layer}.weight"][c] = True
        if f"{layer}.bias" in masks:
            masks[f"{layer}.bias"][c] = True
        if norm is not None:
            for entry in ("weight", "bias", "running_mean", "running_var"):
                masks[f"{norm}.{entry}"][c] = True
        if successor is not None:
            masks[f"{successor}.weight"][:, c * block : (c + 1) * block] = True
    return masks


def layer_output(model: nn.Module, name: str, x: Tensor) -> Tensor:
    captured: list[Tensor] = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return captured[0]


def randomise_norms(model: nn.Module) -> None:
    """Trained-looking BatchNorms, so that setting a slice to 0 or 1 is visible in the state dict."""
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for tensor in (module.weight, module.bias, module.running_mean, module.running_var):
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)


def check_reset(
    model: nn.Module,
    x: Tensor,
    layer: str,
    idx: list[int],
    norm: str | None,
    successor: str | None,
    block: int = 1,
    mode: str = "zero",
    cfg: DefenseConfig | None = None,
) -> None:
    model.eval()
    randomise_norms(model)
    layers = find_monitored_layers(model, cfg or DefenseConfig())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out_before = layer_output(model, layer, x)
    counts = reset_neurons(model, {layer: torch.tensor(idx)}, mode, layers, torch.Generator().manual_seed(0))
    assert counts == {layer: len(set(idx))}
    after = model.state_dict()
    allowed = expected_slices(model, layer, idx, norm, successor, block)
    for key, value in after.items():
        assert not ((value != before[key]) & ~allowed[key]).any(), f"{key} changed outside the slices"
    own = after[f"{layer}.weight"][idx]
    if mode == "zero":
        assert not own.any()
        if norm is not None:
            assert not after[f"{norm}.weight"][idx].any() and not after[f"{norm}.bias"][idx].any()
            for stat in ("running_mean", "running_var"):
                assert torch.equal(after[f"{norm}.{stat}"], before[f"{norm}.{stat}"])
    else:
        bound = 1 / math.sqrt(own[0].numel())
        assert own.abs().max() <= bound and not torch.equal(own, before[f"{layer}.weight"][idx])
        if norm is not None:
            fresh = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
            for entry, value in fresh.items():
                assert (after[f"{norm}.{entry}"][idx] == value).all()
    if successor is not None:
        cols = [c * block + b for c in idx for b in range(block)]
        assert not after[f"{successor}.weight"][:, cols].any()
    out_after = layer_output(model, layer, x)
    others = [c for c in range(out_before.shape[1]) if c not in idx]
    assert torch.equal(out_after[:, others], out_before[:, others])
    if mode == "zero" and f"{layer}.bias" not in after:
        assert not out_after[:, idx].any()


@pytest.mark.parametrize("mode", ["zero", "reinit"])
def test_reset_small_cnn(mode: str) -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", data(1, 8))
    x = torch.randn(3, 1, 8, 8)
    check_reset(model, x, "features.conv2", [1, 7, 30], "features.bn2", "features.conv3", mode=mode)
    check_reset(model, x, "features.conv3", [0, 63], "features.bn3", "fc", mode=mode)


@pytest.mark.parametrize("mode", ["zero", "reinit"])
def test_reset_resnet18_including_residual_and_downsample(mode: str) -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", data(3, 32))
    x = torch.randn(2, 3, 32, 32)
    check_reset(model, x, "layer2.0.conv1", [3, 100], "layer2.0.bn1", "layer2.0.conv2", mode=mode)
    check_reset(model, x, "layer2.0.conv2", [5], "layer2.0.bn2", None, mode=mode)  # feeds the residual sum
    check_reset(model, x, "layer3.0.downsample.0", [0, 17], "layer3.0.downsample.1", None, mode=mode)


def test_reset_vgg16_bn_and_nin() -> None:
    torch.manual_seed(0)
    vgg = create_model("vgg16_bn", data(3, 32))
    x = torch.randn(2, 3, 32, 32)
    check_reset(vgg, x, "features.7", [2, 9], "features.8", "features.10")
    check_reset(vgg, x, "features.40", [511, 0], "features.41", "classifier")  # last conv → linear classifier
    nin = create_model("nin", data(3, 32))
    check_reset(nin, x, "features.25", [4, 190], "features.26", "classifier")  # NiN's classifier is a conv
    check_reset(nin, x, "features.6", [95], "features.7", "features.11")  # through max-pool and dropout


class FlattenNet(nn.Module):
    """conv → relu → flatten (three spellings) → linear: channel c owns features c*S:(c+1)*S."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 2 * 2, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        if self.how == "module":
            x = self.flatten(x)
        elif self.how == "view":
            x = x.view(x.size(0), -1)
        else:
            x = torch.flatten(x, 1)
        return self.head(nn.functional.dropout(self.fc(x), 0.0))


@pytest.mark.parametrize("how", ["module", "view", "function"])
def test_reset_flatten_into_linear(how: str) -> None:
    torch.manual_seed(0)
    model = FlattenNet(how)
    x = torch.randn(3, 2, 4, 4)
    check_reset(model, x, "conv", [1, 3], "bn", "fc", block=4)
    cfg = DefenseConfig(layer_types=["linear"])
    check_reset(model, x, "fc", [2], None, "head", cfg=cfg)  # linear → dropout → linear


class GroupedNet(nn.Module):
    def __init__(self, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=groups)
        self.fc = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.grouped(torch.relu(self.conv(x))).amax(dim=(2, 3)))


@pytest.mark.parametrize("groups", [2, 8])
def test_reset_grouped_successor(groups: int) -> None:
    model = GroupedNet(groups)
    layers = find_monitored_layers(model, DefenseConfig())
    before = model.grouped.weight.detach().clone()
    idx = [1, 6]
    reset_neurons(model, {"conv": torch.tensor(idx)}, "zero", layers)
    expected = torch.zeros_like(before, dtype=torch.bool)
    per_in, per_out = 8 // groups, 8 // groups
    for o in range(8):
        for c in idx:
            if c // per_in == o // per_out:
                expected[o, c % per_in] = True
    after = model.grouped.weight.detach()
    assert not after[expected].any()
    assert torch.equal(after[~expected], before[~expected])


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
            x = -x
        return self.fc(self.bn(self.conv(x)).amax(dim=(2, 3)))


def test_untraceable_model_resets_own_filter_with_one_warning() -> None:
    model = Untraceable()
    layers = find_monitored_layers(model, DefenseConfig())
    bn_before, fc_before = model.bn.weight.detach().clone(), model.fc.weight.detach().clone()
    with pytest.warns(UserWarning, match="cannot be traced"):
        reset_neurons(model, {"conv": torch.tensor([2])}, "zero", layers)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reset_neurons(model, {"conv": torch.tensor([1])}, "zero", layers)  # plan cached: no second warning
    assert not model.conv.weight[[1, 2]].any() and not model.conv.bias[[1, 2]].any()
    assert torch.equal(model.bn.weight, bn_before) and torch.equal(model.fc.weight, fc_before)


def test_plan_is_cached_and_reinit_is_seeded() -> None:
    model = create_model("small_cnn", data(1, 8))
    layers = find_monitored_layers(model, DefenseConfig())
    assert plan_resets(model, layers) is plan_resets(model, layers)
    weights = []
    for _ in range(2):
        twin = create_model("small_cnn", data(1, 8))
        twin.load_state_dict(model.state_dict())
        reset_neurons(
            twin, {"features.conv1": torch.tensor([0, 3])}, "reinit", layers, torch.Generator().manual_seed(5)
        )
        weights.append(twin.features.conv1.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    with pytest.raises(ValueError, match="mode"):
        reset_neurons(model, {}, "prune", layers)
    with pytest.raises(ValueError, match="not monitored"):
        reset_neurons(model, {"fc": torch.tensor([0])}, "zero", layers)


# ----------------------------------------------------------------------------------------------------------
# A whole analysis round on a planted backdoor
# ----------------------------------------------------------------------------------------------------------


CHECKER = (torch.arange(9).reshape(3, 3) % 2 * 2 - 1).float()  # ±1 checkerboard: the trigger's shape
PATTERNS = torch.randint(0, 2, (5, 3, 3), generator=torch.Generator().manual_seed(7)).float() * 2 - 1


class PlantedNet(nn.Module):
    """conv(6) → relu → global max → linear(8) → relu → linear(5).

    Clean path: conv channel k detects class pattern k and feeds hidden unit k, which votes for class k.
    Backdoor: conv channel 5 detects a ±5 checkerboard patch (bias -15 keeps it silent on clean data) and feeds
    hidden unit 7, which votes for class 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)
        self.hidden = nn.Linear(6, 8)
        self.out = nn.Linear(8, 5)
        with torch.no_grad():
            self.conv.weight[:5, 0] = PATTERNS
            self.conv.weight[5, 0] = CHECKER
            self.conv.bias.copy_(torch.tensor([0.0] * 5 + [-15.0]))
            for param in (self.hidden.weight, self.hidden.bias, self.out.weight, self.out.bias):
                param.zero_()
            self.hidden.weight[:5, :5] = torch.eye(5)
            self.hidden.weight[7, 5] = 1.0
            self.out.weight[:, :5] = torch.eye(5)
            self.out.weight[0, 7] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        features = torch.relu(self.conv(x)).amax(dim=(2, 3))
        return self.out(torch.relu(self.hidden(features)))


def planted_data(n: int = 240) -> tuple[Tensor, Tensor]:
    """Class-y images carry pattern y (×2) at a random place; 10% also carry the trigger in the top-left corner."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 8, 8, generator=gen) * 0.3
    labels = torch.randint(0, 5, (n,), generator=gen)
    rows, cols = torch.randint(3, 6, (2, n), generator=gen)
    for i in range(n):
        x[i, 0, rows[i] : rows[i] + 3, cols[i] : cols[i] + 3] = PATTERNS[labels[i]] * 2
    poisoned = torch.zeros(n, dtype=torch.bool)
    poisoned[torch.randperm(n, generator=gen)[: n // 10]] = True
    x[poisoned, 0, :3, :3] = CHECKER * 5  # 45 - 15 = 30 on channel 5
    return x, poisoned


def test_analysis_finds_planted_channel_and_samples() -> None:
    model = PlantedNet()
    x, poisoned = planted_data()
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    assert ((probs > 0.9).sum(0) > 0).all()  # every class has a strong set: the clean path works
    cfg = DefenseConfig(layer_types=["conv", "linear"], max_reset_fraction=0.1)
    layers = find_monitored_layers(model, cfg)
    assert [l.name for l in layers] == ["conv", "hidden"]
    batches = list(torch.split(x, 50))
    model.train()
    model.out.eval()  # a submodule in its own mode (like BatchNorm frozen for fine-tuning) keeps it
    result = analyse(model, batches, layers, cfg, num_classes=5)
    assert model.training and model.conv.training and not model.out.training
    assert result.passes == 1
    assert result.compromised["conv"].tolist() == [5]
    assert result.compromised["hidden"].tolist() == [7]
    assert result.detect_channels == {"conv": torch.tensor([5]), "hidden": torch.tensor([7])}
    assert torch.equal(result.suspected, poisoned)
    assert result.sample_scores.shape == (240,) and result.sample_scores.dtype == torch.float32
    assert result.break_value < result.sample_scores[poisoned].min()


def test_analysis_cached_equals_two_pass() -> None:
    torch.manual_seed(0)
    model = create_model("small_cnn", data(1, 8, num_classes=4))
    x = torch.randn(130, 1, 8, 8)
    cfg = DefenseConfig(max_reset_fraction=0.2, detect_fraction=0.1, lamda_l=0.2, lamda_h=0.3)
    layers = find_monitored_layers(model, cfg)
    batches = list(torch.split(x, 32))
    cached = analyse(model, batches, layers, cfg, 4)
    second = analyse(model, lambda: iter(batches), layers, cfg, 4, cache_budget_bytes=3000)
    assert (cached.passes, second.passes) == (1, 2)
    for field in ("scores", "compromised", "detect_channels"):
        a, b = getattr(cached, field), getattr(second, field)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(cached.sample_scores, second.sample_scores)
    assert torch.equal(cached.suspected, second.suspected) and cached.break_value == second.break_value
    assert [len(v) for v in cached.detect_channels.values()] == [2, 4, 7]
    with pytest.raises(ValueError, match="one-shot"):
        analyse(model, iter(batches), layers, cfg, 4, cache_budget_bytes=0)


def test_analysis_scores_match_naive_on_recorded_activations() -> None:
    """The streamed per-layer scores equal the naive statistic on the full [N, C] maxima and softmax."""
    torch.manual_seed(1)
    model = create_model("small_cnn", data(1, 8, num_classes=3)).eval()
    x = torch.randn(90, 1, 8, 8) * 2
    cfg = DefenseConfig(lamda_l=0.2, lamda_h=0.5)
    layers = find_monitored_layers(model, cfg)
    result = analyse(model, list(torch.split(x, 40)), layers, cfg, 3)
    with ChannelMaxRecorder(layers) as recorder, torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
        maxima = recorder.pop()
    for layer in layers:
        expected = naive_scores(maxima[layer.name].double().numpy(), probs.double().numpy(), 0.2, 0.5)
        np.testing.assert_allclose(result.scores[layer.name].numpy(), expected, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- removal mask (filtering.py)
def _mask(n: int, idx: list[int]) -> torch.Tensor:
    m = torch.zeros(n, dtype=torch.bool)
    m[idx] = True
    return m


@pytest.mark.parametrize(
    "setting, trigger, expected",
    [("auto", True, True), ("auto", False, False), (True, False, True), (True, True, True), (False, True, False)],
)
def test_filtering_is_off_without_a_trigger_unless_set_explicitly(setting, trigger, expected) -> None:
    """Published: suspects are dropped only under an attack; ``true`` set explicitly filters a clean run too."""
    assert filters_samples(setting, trigger) is expected


def test_an_unknown_filter_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="filter_samples"):
        filters_samples("yes", True)


def test_removal_without_a_cap_is_the_union_or_the_round_alone() -> None:
    before, now = _mask(10, [0, 1]), _mask(10, [1, 5, 6])
    scores = torch.arange(10, dtype=torch.float32)
    assert removal_mask(before, now, scores, cumulative=True, max_fraction=None).nonzero().flatten().tolist() == [
        0,
        1,
        5,
        6,
    ]
    assert removal_mask(before, now, scores, cumulative=False, max_fraction=None).nonzero().flatten().tolist() == [
        1,
        5,
        6,
    ]
    assert before.nonzero().flatten().tolist() == [0, 1]  # the input mask is not modified


def test_the_cap_keeps_earlier_removals_and_spends_the_rest_on_the_highest_scores() -> None:
    before = _mask(20, [0, 1])
    now = _mask(20, [2, 3, 4, 5, 6, 7])
    scores = torch.tensor([0, 0, 5, 9, 1, 8, 7, 2] + [0] * 12, dtype=torch.float32)
    out = removal_mask(before, now, scores, cumulative=True, max_fraction=0.25)  # floor(5) in all: 3 new
    assert out.nonzero().flatten().tolist() == [0, 1, 3, 5, 6]
    per_round = removal_mask(before, now, scores, cumulative=False, max_fraction=0.25)  # 5 new, none kept
    assert per_round.nonzero().flatten().tolist() == [2, 3, 5, 6, 7]


def test_a_spent_budget_removes_nothing_new_and_ties_break_by_index() -> None:
    before = _mask(10, [0, 1, 2])
    now = _mask(10, [4, 5, 6])
    flat = torch.ones(10)
    assert removal_mask(before, now, flat, cumulative=True, max_fraction=0.3).equal(before)  # budget 3, spent
    assert removal_mask(before, now, flat, cumulative=False, max_fraction=0.2).nonzero().flatten().tolist() == [4, 5]


def test_a_capped_run_removes_at_most_the_cap_and_records_it() -> None:
    from none_sweep.config import parse_overrides
    from none_sweep.experiment import load_experiment
    from none_sweep.train import ExperimentRun

    overrides = ["train.epochs=2", "defense.pretrain_epochs=1", "defense.reset_interval=1", "defense.rounds=2",
                 "defense.max_removed_fraction=0.02"]  # fmt: skip
    run = ExperimentRun(load_experiment("configs/digits_badnets.yaml", parse_overrides(overrides)))
    for _ in run.epochs():
        pass
    cap = int(0.02 * run.data.num_train)
    assert [r["removed_samples"] for r in run.rounds][-1] == cap  # round 1 of a 1-epoch model suspects far more
    assert all(r["removed_samples"] <= cap for r in run.rounds)
    assert run.result().metrics["removed_samples"] == cap
