"""Every attack against the same contract, on real Fashion-MNIST images.

Counts, eligible samples and labels are checked for all attacks by one parametrised suite (Optuna's
contract-test style); trigger-specific tests then check the pixels each attack is allowed to change.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from none_sweep.attacks import ATTACKS, Attack, create_attack, params_class, poison_count
from none_sweep.config import AttackConfig, DataConfig
from none_sweep.config.validation import ConfigIssue, to_dict
from none_sweep.data import dataset_info, load_dataset
from none_sweep.data.fashion_mnist import DEBIAN_DIR
from none_sweep.errors import ConfigError

pytestmark = pytest.mark.skipif(
    not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(), reason="needs the Debian package dataset-fashion-mnist"
)

INFO = dataset_info("fashion-mnist")
TRIGGERED = ["badnets", "blend", "sig", "wanet"]
DIRTY_LABEL = ["badnets", "blend", "wanet"]


@pytest.fixture(scope="module")
def full():
    """The whole Fashion-MNIST training and test set (60000 / 10000)."""
    return load_dataset(DataConfig(), seed=0)


@pytest.fixture(scope="module")
def small(full):
    """1000 training and 300 test images, enough for every check except the 0.5% rate."""
    return full.train_x[:1000], full.train_y[:1000], full.test_x[:300], full.test_y[:300]


def make(
    name: str, rate: float = 0.05, mode: str = "all_to_one", target: int = 0, seed: int = 0, info=INFO, **params
) -> Attack:
    return create_attack(AttackConfig(name=name, poison_rate=rate, target=target, mode=mode, params=params), info, seed)


def changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample: does any pixel differ."""
    return (a != b).flatten(1).any(1)


# ------------------------------------------------------------------------------------------ the shared contract


def test_registry_names():
    assert ATTACKS.names() == ["badnets", "blend", "label_consistent", "none", "sig", "wanet"]
    assert params_class("badnets") is ATTACKS.get("badnets").Params


def test_poison_count_rounds_half_up_with_a_floor_of_one():
    assert poison_count(0.005, 60000) == 300
    assert poison_count(0.0125, 2000) == 25
    assert poison_count(0.00025, 2000) == 1  # 0.5 rounds up
    assert poison_count(1e-6, 2000) == 1


@pytest.mark.parametrize("name", TRIGGERED)
def test_low_rate_on_the_full_training_set(full, name):
    """0.5% of 60000 is exactly 300 poisoned samples, for every attack."""
    out = make(name, rate=0.005, target=3).poison(full.train_x, full.train_y)
    assert out.poison_idx.dtype == torch.int64 and len(out.poison_idx) == 300
    assert torch.equal(out.poison_idx, out.poison_idx.sort().values)
    assert len(out.poison_idx.unique()) == 300


@pytest.mark.parametrize("rate, expected", [(0.05, 50), (0.0125, 13), (1e-5, 1), (0.1, 100)])
@pytest.mark.parametrize("name", TRIGGERED)
def test_exact_count_sorted_unique(small, name, rate, expected):
    x, y, _, _ = small
    out = make(name, rate=rate).poison(x, y)
    assert len(out.poison_idx) == expected == poison_count(rate, len(y))
    assert torch.equal(out.poison_idx, out.poison_idx.unique())  # unique() sorts


@pytest.mark.parametrize("name", DIRTY_LABEL)
def test_all_to_one_poisons_only_other_classes_and_relabels(small, name):
    x, y, _, _ = small
    out = make(name, rate=0.1, target=4).poison(x, y)
    idx = out.poison_idx
    assert bool((y[idx] != 4).all())
    assert bool((out.y[idx] == 4).all())
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(out.y[rest], y[rest])
    assert torch.equal(x, small[0]) and torch.equal(y, small[1]), "inputs must not be modified"


@pytest.mark.parametrize("name", DIRTY_LABEL)
def test_all_to_all_relabels_to_next_class(small, name):
    x, y, _, _ = small
    out = make(name, rate=0.2, mode="all_to_all").poison(x, y)
    idx = out.poison_idx
    assert torch.equal(out.y[idx], (y[idx] + 1) % 10)
    assert set(y[idx].tolist()) == set(range(10)), "all classes are eligible, the target too"


def test_sig_is_clean_label(small):
    x, y, _, _ = small
    out = make("sig", rate=0.05, target=2).poison(x, y)
    assert bool((y[out.poison_idx] == 2).all())
    assert torch.equal(out.y, y)
    assert bool(changed(out.x, x)[out.poison_idx].all())


def test_clean_label_rate_beyond_target_class_is_a_config_error(full):
    with pytest.raises(ConfigError, match="only 6000 are eligible"):
        make("sig", rate=0.2).poison(full.train_x, full.train_y)


@pytest.mark.parametrize("name", TRIGGERED)
def test_only_poisoned_samples_change(small, name):
    """Every poisoned image carries the trigger; every other image is untouched (WaNet's noise set aside)."""
    x, y, _, _ = small
    out = make(name, rate=0.05).poison(x, y)
    touched = changed(out.x, x)
    expected = torch.zeros(len(y), dtype=torch.bool)
    expected[out.poison_idx] = True
    if "noise_idx" in out.extra:
        expected[out.extra["noise_idx"]] = True
    assert bool(touched[out.poison_idx].all())
    assert not bool((touched & ~expected).any())
    assert out.x.dtype == torch.uint8 and out.x.shape == x.shape


@pytest.mark.parametrize("name", TRIGGERED)
def test_seeded_determinism(small, name):
    x, y, _, _ = small
    a, b = make(name, seed=11).poison(x, y), make(name, seed=11).poison(x, y)
    c = make(name, seed=12).poison(x, y)
    assert torch.equal(a.x, b.x) and torch.equal(a.poison_idx, b.poison_idx) and torch.equal(a.y, b.y)
    assert a.extra.keys() == b.extra.keys() and all(torch.equal(a.extra[k], b.extra[k]) for k in a.extra)
    assert not torch.equal(a.poison_idx, c.poison_idx)


@pytest.mark.parametrize("name", TRIGGERED)
def test_triggered_test_all_to_one_drops_the_target_class(small, name):
    _, _, tx, ty = small
    attack = make(name, target=5)
    trig = attack.triggered_test(tx, ty)
    keep = ty != 5
    assert len(trig.x) == int(keep.sum())
    assert bool((trig.target == 5).all()) and torch.equal(trig.true_y, ty[keep])
    assert torch.equal(trig.x, attack.apply_trigger(tx[keep]))


@pytest.mark.parametrize("name", DIRTY_LABEL)
def test_triggered_test_all_to_all_uses_next_class(small, name):
    _, _, tx, ty = small
    trig = make(name, mode="all_to_all").triggered_test(tx, ty)
    assert len(trig.x) == len(ty)
    assert torch.equal(trig.target, (ty + 1) % 10) and torch.equal(trig.true_y, ty)


@pytest.mark.parametrize("name", TRIGGERED + ["none"])
def test_describe_records_every_parameter(name):
    attack = make(name, rate=0.02, target=1, seed=9)
    described = attack.describe()
    assert {"name", "mode", "target", "poison_rate", "seed"} <= described.keys()
    assert described["name"] == name and described["seed"] == 9
    for f in dataclasses.fields(params_class(name)):
        assert f.name in described, f.name
    if name != "none":
        assert described["poison_rate"] == 0.02 and described["target"] == 1


# ------------------------------------------------------------------------------------------ none


def test_none_leaves_data_unchanged(small):
    x, y, tx, ty = small
    attack = make("none", rate=0.3)
    out = attack.poison(x, y)
    assert torch.equal(out.x, x) and torch.equal(out.y, y) and out.x is not x
    assert out.poison_idx.dtype == torch.int64 and len(out.poison_idx) == 0
    trig = attack.triggered_test(tx, ty)
    assert trig.x.shape == (0, 1, 28, 28) and len(trig.target) == len(trig.true_y) == 0
    assert attack.describe()["poison_rate"] == 0.0


# ------------------------------------------------------------------------------------------ badnets


@pytest.mark.parametrize(
    "location, box",
    [
        ("bottom_right", (24, 24)),
        ("bottom_left", (24, 1)),
        ("top_left", (1, 1)),
        ("top_right", (1, 24)),
        ("center", (12, 12)),
    ],
)
@pytest.mark.parametrize("pattern", ["white", "checker", "random"])
def test_badnets_changes_only_the_patch(small, location, box, pattern):
    x, y, _, _ = small
    attack = make("badnets", rate=0.05, location=location, pattern=pattern)
    out = attack.poison(x, y)
    top, left = box
    d = attack.describe()
    assert (d["patch_top"], d["patch_left"], d["patch_bottom"], d["patch_right"]) == (top, left, top + 3, left + 3)
    region = torch.zeros(28, 28, dtype=torch.bool)
    region[top : top + 3, left : left + 3] = True
    diff = out.x != x
    assert not bool(diff[:, :, ~region].any()), "no pixel outside the patch may change"
    idx = out.poison_idx
    patch = out.x[idx][:, :, top : top + 3, left : left + 3]
    assert bool((patch == attack.patch).all()), "every poisoned sample carries exactly the patch"
    if pattern == "white":
        assert bool((patch == 255).all())
    if pattern == "checker":
        assert patch[0, 0].tolist() == [[255, 0, 255], [0, 255, 0], [255, 0, 255]]
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[idx] = False
    assert not bool(diff[rest].any())


def test_badnets_white_patch_diff_mask_equals_the_patch_on_dark_corners(small):
    x, y, _, _ = small
    out = make("badnets", rate=0.05).poison(x, y)
    idx = out.poison_idx
    dark = (x[idx][:, :, 24:27, 24:27] < 255).flatten(1).all(1)  # clothes rarely reach the corner
    assert int(dark.sum()) > 0.9 * len(idx)
    diff = (out.x[idx] != x[idx])[dark, 0]
    region = torch.zeros(28, 28, dtype=torch.bool)
    region[24:27, 24:27] = True
    assert bool((diff == region).all())


def test_badnets_random_pattern_is_seeded():
    a, b, c = (make("badnets", pattern="random", seed=s).patch for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("name, params", [("badnets", {"pattern": "random"}), ("blend", {}), ("wanet", {})])
def test_trigger_digest_identifies_the_seeded_trigger(name, params):
    a, b, c = (make(name, seed=s, **params).describe()["trigger_digest"] for s in (1, 1, 2))
    assert a == b != c
    assert make("badnets", seed=1).describe()["trigger_digest"] == make("badnets", seed=2).describe()["trigger_digest"]


# ------------------------------------------------------------------------------------------ blend


def test_blend_formula_on_pixels(small):
    x, y, _, _ = small
    attack = make("blend", rate=0.05, alpha=0.2)
    out = attack.poison(x, y)
    pattern = attack.pattern
    for i in out.poison_idx[:5].tolist():
        for r, c in [(0, 0), (14, 9), (27, 27), (5, 20)]:
            expected = round(0.8 * int(x[i, 0, r, c]) + 0.2 * int(pattern[0, r, c]))
            assert abs(int(out.x[i, 0, r, c]) - expected) <= 0, (i, r, c)


def test_blend_with_an_image_file(tmp_path, small):
    x, y, _, _ = small
    path = tmp_path / "hello_kitty.png"
    Image.fromarray(np.full((64, 48, 3), (200, 100, 0), dtype=np.uint8)).save(path)
    attack = make("blend", rate=0.05, alpha=0.5, pattern=str(path))
    assert attack.pattern.shape == (1, 28, 28)
    gray = round(0.299 * 200 + 0.587 * 100)  # PIL's L conversion
    assert abs(int(attack.pattern[0, 10, 10]) - gray) <= 1
    i = int(attack.poison(x, y).poison_idx[0])
    out = attack.apply_trigger(x[i : i + 1])
    assert int(out[0, 0, 3, 3]) == round(0.5 * int(x[i, 0, 3, 3]) + 0.5 * int(attack.pattern[0, 3, 3]))


def test_blend_noise_pattern_is_seeded():
    a, b, c = (make("blend", seed=s).pattern for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------------------------------ sig


def test_sig_adds_the_clipped_sinusoid(small):
    x, y, _, _ = small
    attack = make("sig", rate=0.05, delta=30, frequency=4)
    out = attack.poison(x, y)
    for i in out.poison_idx[:5].tolist():
        for r, c in [(0, 1), (10, 3), (20, 17), (27, 26)]:
            value = int(x[i, 0, r, c]) + 30 * math.sin(2 * math.pi * c * 4 / 28)
            assert int(out.x[i, 0, r, c]) == min(255, max(0, round(value))), (i, r, c)


# ------------------------------------------------------------------------------------------ wanet


def test_wanet_warps_and_records_disjoint_noise_samples(small):
    x, y, _, _ = small
    out = make("wanet", rate=0.05, cross_ratio=2).poison(x, y)
    poison, noise = out.poison_idx, out.extra["noise_idx"]
    assert len(noise) == 2 * len(poison) == 100
    assert torch.equal(noise, noise.unique())
    assert not set(noise.tolist()) & set(poison.tolist())
    assert torch.equal(out.y[noise], y[noise]), "noise samples keep their labels"
    assert int(changed(out.x, x)[noise].sum()) > 0.9 * len(noise)
    assert out.x.dtype == torch.uint8 and out.x.shape == x.shape


def test_wanet_without_noise_mode(small):
    x, y, _, _ = small
    out = make("wanet", rate=0.05, noise=False).poison(x, y)
    assert len(out.extra["noise_idx"]) == 0
    assert torch.equal(changed(out.x, x).nonzero().flatten(), out.poison_idx)


def test_wanet_warp_is_seeded_and_small(small):
    x = small[0][:50]
    a, b, c = (make("wanet", seed=s).apply_trigger(x) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a.float() - x.float()).abs().mean() < 20, "the warp is subtle, not a different image"


def test_wanet_cross_ratio_too_large_is_a_config_error(small):
    x, y, _, _ = small
    with pytest.raises(ConfigError, match="cross_ratio"):
        make("wanet", rate=0.5, cross_ratio=2).poison(x, y)


# ------------------------------------------------------------------------------------------ checks


BAD_COMBOS = [
    ("sig", "all_to_all", {}, "attack.mode", "clean-label"),
    ("badnets", "all_to_one", {"patch_size": 28}, "attack.params.patch_size", "must fit"),
    ("badnets", "all_to_one", {"location": "middle"}, "attack.params.location", "one of"),
    ("blend", "all_to_one", {"pattern": "/no/such/trigger.png"}, "attack.params.pattern", "no such file"),
    ("blend", "all_to_one", {"alpha": 0.0}, "attack.params.alpha", r"in \(0, 1\]"),
    ("wanet", "all_to_one", {"k": 40}, "attack.params.k", "must not exceed"),
    ("wanet", "all_to_one", {"kk": 4}, "attack.params.kk", "did you mean 'k'"),
    ("none", "all_to_one", {"alpha": 0.1}, "attack.params.alpha", "unknown key"),
]


@pytest.mark.parametrize("name, mode, params, key, message", BAD_COMBOS)
def test_check_rejects_bad_combinations(name, mode, params, key, message):
    cfg = AttackConfig(name=name, mode=mode, params=params)
    with pytest.raises(ConfigIssue, match=message) as caught:
        ATTACKS.get(name).check(cfg, INFO)
    assert caught.value.key == key
    with pytest.raises(ConfigError, match=message):
        create_attack(cfg, INFO, seed=0)


def test_check_rejects_target_out_of_range():
    with pytest.raises(ConfigIssue, match=r"attack.target must be in \[0, 9\]"):
        ATTACKS.get("badnets").check(AttackConfig(target=10), INFO)


def test_badnets_patch_checked_against_the_dataset_size():
    ATTACKS.get("badnets").check(AttackConfig(params={"patch_size": 7}), INFO)
    ATTACKS.get("badnets").check(AttackConfig(params={"patch_size": 7}), dataset_info("digits"))
    with pytest.raises(ConfigIssue, match="8px images of digits"):
        ATTACKS.get("badnets").check(AttackConfig(params={"patch_size": 8}), dataset_info("digits"))


def test_none_accepts_any_rate_and_mode():
    ATTACKS.get("none").check(AttackConfig(name="none", poison_rate=1.0, mode="all_to_all"), INFO)


def _config_loader():
    """resolve_config runs the attack checks, but also needs none_sweep.models (another module)."""
    try:
        from none_sweep.models import check_model_name  # noqa: F401
    except ImportError:
        pytest.skip("none_sweep.models.check_model_name is not available yet")
    from none_sweep.experiment import resolve_config

    return resolve_config


@pytest.mark.parametrize("name, mode, params, key, message", BAD_COMBOS)
def test_config_loading_rejects_bad_combinations(name, mode, params, key, message):
    resolve_config = _config_loader()
    with pytest.raises(ConfigError, match=f"<config>: .*{message}"):
        resolve_config({"attack": {"name": name, "mode": mode, "params": params}})


def test_config_loading_fills_param_defaults():
    resolve_config = _config_loader()
    cfg = resolve_config({"attack": {"name": "wanet", "params": {"k": 8}}})
    assert cfg.attack.params == {**to_dict(params_class("wanet")()), "k": 8}


# ------------------------------------------------------------------------------------------ devices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", TRIGGERED)
def test_cuda_matches_cpu(small, name):
    x, y, _, _ = small
    attack = make(name)
    cpu, gpu = attack.poison(x, y), attack.poison(x.cuda(), y.cuda())
    assert torch.equal(cpu.poison_idx, gpu.poison_idx.cpu()) and torch.equal(cpu.y, gpu.y.cpu())
    assert (cpu.x.int() - gpu.x.cpu().int()).abs().max() <= 1  # grid_sample may round differently
