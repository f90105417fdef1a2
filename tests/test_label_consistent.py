"""The label-consistent attack (Turner et al. 2019) and the surrogate the training layer trains for it.

On the embedded 8×8 digits (1437 training images), so a surrogate trains in about a second: counts, which
images change and by how much, the corner patches' pixels, the unperturbed triggered test set, PGD raising the
surrogate's loss, the surrogate cache (a second call loads, trains nothing), config errors, and one short
``none-sweep train`` through the CLI.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from none_sweep.attacks import ATTACKS, Attack, SurrogateRequest, create_attack, poison_count
from none_sweep.attacks.label_consistent import CORNERS, perturb
from none_sweep.cli import main as run_cli
from none_sweep.config import AttackConfig, DataConfig, ExperimentConfig
from none_sweep.config.validation import to_dict
from none_sweep.data import ImageData, load_dataset, normalize
from none_sweep.errors import ConfigError
from none_sweep.experiment import resolve_config
from none_sweep.train import ExperimentRun, PretrainCache
from none_sweep.train import surrogate as surrogate_module
from none_sweep.train.checkpoint import load_state
from none_sweep.train.surrogate import SURROGATES, obtain_surrogate, surrogate_key

CPU = torch.device("cpu")
TARGET = 3


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's default surrogate cache is its own (never the user's ~/.cache)."""
    root = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(surrogate_module.CACHE_ENV, str(root))
    return root


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_dataset(DataConfig(name="digits"), seed=0)


def experiment(**params) -> ExperimentConfig:
    attack = AttackConfig(name="label_consistent", poison_rate=0.05, target=TARGET, params=params)
    return ExperimentConfig(data=DataConfig(name="digits"), attack=attack)


def make(digits: ImageData, rate: float = 0.05, mode: str = "all_to_one", **params) -> Attack:
    cfg = AttackConfig(name="label_consistent", poison_rate=rate, target=TARGET, mode=mode, params=params)
    return create_attack(cfg, digits.info, seed=0)


@pytest.fixture(scope="module")
def surrogate(digits: ImageData, tmp_path_factory: pytest.TempPathFactory) -> torch.nn.Module:
    cache = PretrainCache(tmp_path_factory.mktemp("pretrain"))
    model = obtain_surrogate(make(digits), experiment(), digits, CPU, cache)
    assert model is not None
    return model


def patch_mask(attack: Attack, size: int) -> torch.Tensor:
    """True on every pixel some corner patch covers."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    s = attack.params.patch_size
    for top, left in attack.origins:
        mask[top : top + s, left : left + s] = True
    return mask


def loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, info) -> float:
    with torch.no_grad():
        return F.cross_entropy(model(normalize(x, info)), y).item()


# ------------------------------------------------------------------------------------------- poisoning


def test_registered_as_a_clean_label_attack_that_needs_a_surrogate(digits):
    cls = ATTACKS.get("label_consistent")
    assert cls.clean_label and cls.needs_surrogate and cls.injects_trigger
    assert make(digits, surrogate_epochs=2, surrogate_model="small_cnn").surrogate_request() == SurrogateRequest(
        "small_cnn", 2
    )
    assert all(not ATTACKS.get(n).needs_surrogate for n in ATTACKS.names() if n != "label_consistent")
    badnets = create_attack(AttackConfig(name="badnets"), digits.info, 0)
    assert badnets.surrogate_request() is None


@pytest.mark.parametrize("rate", [0.05, 0.02, 0.0005])
def test_exact_count_only_target_class_labels_unchanged(digits, surrogate, rate):
    out = make(digits, rate=rate).poison(digits.train_x, digits.train_y, surrogate=surrogate)
    n = len(digits.train_y)
    assert len(out.poison_idx) == poison_count(rate, n)
    assert torch.equal(out.poison_idx, out.poison_idx.unique())  # sorted, unique
    assert (digits.train_y[out.poison_idx] == TARGET).all()
    assert torch.equal(out.y, digits.train_y)
    changed = (out.x != digits.train_x).flatten(1).any(1).nonzero().flatten()
    assert set(changed.tolist()) <= set(out.poison_idx.tolist())
    assert len(changed) == len(out.poison_idx)  # the patch alone changes a dark corner of every digit


@pytest.mark.parametrize("epsilon", [8.0, 12.5, 32.0])
def test_perturbation_within_epsilon_outside_the_patch(digits, surrogate, epsilon):
    attack = make(digits, epsilon=epsilon)
    out = attack.poison(digits.train_x, digits.train_y, surrogate=surrogate)
    idx = out.poison_idx
    diff = (out.x[idx].int() - digits.train_x[idx].int()).abs()
    outside = ~patch_mask(attack, digits.info.size)
    assert diff[:, :, outside].max() <= int(epsilon)
    assert diff[:, :, outside].max() >= int(epsilon) - 1  # PGD uses its budget
    assert out.x.dtype == torch.uint8
    # at full amplitude the patch pixels are the checker's 255 / 0 whatever PGD did beneath them
    stamped = attack.apply_trigger(torch.full_like(digits.train_x[idx], 128))
    assert torch.equal(out.x[idx][:, :, ~outside], stamped[:, :, ~outside])


def test_zero_epsilon_stamps_the_patch_only(digits, surrogate):
    attack = make(digits, epsilon=0.0)
    out = attack.poison(digits.train_x, digits.train_y, surrogate=surrogate)
    assert torch.equal(out.x[out.poison_idx], attack.apply_trigger(digits.train_x[out.poison_idx]))


def test_pgd_raises_the_surrogate_loss(digits, surrogate):
    attack = make(digits)
    out = attack.poison(digits.train_x, digits.train_y, surrogate=surrogate)
    idx = out.poison_idx
    x, y, info = digits.train_x[idx], digits.train_y[idx], digits.info
    stamped_only = attack.apply_trigger(x)
    assert loss(surrogate, out.x[idx], y, info) > loss(surrogate, stamped_only, y, info) + 0.5
    adv = perturb(surrogate, x, y, info, epsilon=16.0, step=4.0, steps=10, batch_size=17)  # batches of odd size
    assert loss(surrogate, adv, y, info) > loss(surrogate, x, y, info) + 0.1
    assert torch.equal(adv, perturb(surrogate, x, y, info, epsilon=16.0, step=4.0, steps=10, batch_size=512))


def test_poison_without_a_surrogate_is_refused(digits):
    with pytest.raises(ValueError, match="surrogate"):
        make(digits).poison(digits.train_x, digits.train_y)


def test_surrogate_mode_is_left_as_it_was(digits, surrogate):
    surrogate.train()
    try:
        perturb(surrogate, digits.train_x[:4], digits.train_y[:4], digits.info, 8.0, 2.0, 2, 4)
        assert surrogate.training
    finally:
        surrogate.eval()


# ---------------------------------------------------------------------------------------------- trigger


@pytest.mark.parametrize("amplitude", [255, 64])
def test_corner_patches_add_the_mirrored_checker_at_amplitude(digits, amplitude):
    """Turner et al.'s trigger: +amplitude on lit, -amplitude on unlit pixels, clipped; 255 is the plain stamp."""
    attack = make(digits, patch_size=3, margin=0, amplitude=amplitude)
    x = torch.full((2, 1, 8, 8), 100, dtype=torch.uint8)
    x[1] = 250  # a bright image: lit pixels clip at 255
    out = attack.apply_trigger(x)
    sign = torch.tensor([[1, -1, 1], [-1, 1, -1], [1, -1, 1]])  # odd side: mirror-symmetric
    for i, base in enumerate((100, 250)):
        expected = (base + amplitude * sign).clamp(0, 255).to(torch.uint8)
        for box in (out[i, 0, :3, :3], out[i, 0, :3, 5:], out[i, 0, 5:, :3], out[i, 0, 5:, 5:]):
            assert torch.equal(box, expected)
    mask = patch_mask(attack, 8)
    assert torch.equal(out[:, :, ~mask], x[:, :, ~mask])  # nothing else changes
    assert attack.describe()["patch_origins"] == [[0, 0], [0, 5], [5, 0], [5, 5]]


def test_even_checker_is_lit_at_each_image_corner_and_corners_are_selectable(digits):
    attack = make(digits, patch_size=2, margin=1, corners=["top_right", "bottom_left"], amplitude=200)
    out = attack.apply_trigger(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))[0, 0]
    assert torch.equal(out[1:3, 5:7], torch.tensor([[0, 200], [200, 0]], dtype=torch.uint8))  # lit at (1, 6)
    assert torch.equal(out[5:7, 1:3], torch.tensor([[0, 200], [200, 0]], dtype=torch.uint8))  # lit at (6, 1)
    assert int((out > 0).sum()) == 4


def test_white_pattern(digits):
    out = make(digits, pattern="white", amplitude=90, corners=["top_left"]).apply_trigger(
        torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    )
    assert (out[0, 0, :3, :3] == 90).all() and int((out > 0).sum()) == 9


def test_triggered_test_set_is_stamped_not_perturbed(digits):
    attack = make(digits)
    trig = attack.triggered_test(digits.test_x, digits.test_y)
    keep = digits.test_y != TARGET
    assert len(trig.x) == int(keep.sum()) and (trig.target == TARGET).all()
    assert torch.equal(trig.true_y, digits.test_y[keep])
    assert torch.equal(trig.x, attack.apply_trigger(digits.test_x[keep]))
    outside = ~patch_mask(attack, digits.info.size)
    assert torch.equal(trig.x[:, :, outside], digits.test_x[keep][:, :, outside])


def test_describe_and_trigger_digest(digits):
    attack = make(digits, epsilon=16, amplitude=128)
    described = attack.describe()
    for key, value in to_dict(attack.params).items():
        assert described[key] == value
    assert described["clean_label"] is True and described["pgd_step_size"] == pytest.approx(4.0)
    assert described["trigger_digest"] == make(digits, epsilon=16, amplitude=128).trigger_digest()
    assert make(digits, epsilon=8, amplitude=128).trigger_digest() == described["trigger_digest"]  # PGD: no trigger
    assert make(digits, epsilon=16, amplitude=127).trigger_digest() != described["trigger_digest"]
    json.dumps(described)


# -------------------------------------------------------------------------------------------- surrogate


def test_surrogate_is_trained_once_then_loaded(digits, tmp_path, monkeypatch):
    calls = []
    fit = surrogate_module.fit_surrogate
    monkeypatch.setattr(surrogate_module, "fit_surrogate", lambda *a, **k: calls.append(1) or fit(*a, **k))
    cache = PretrainCache(tmp_path)
    cfg, lines = experiment(surrogate_epochs=2), []
    rng = torch.get_rng_state()
    first = obtain_surrogate(make(digits, surrogate_epochs=2), cfg, digits, CPU, cache, lines.append)
    assert torch.equal(torch.get_rng_state(), rng)  # the run's own RNG is not shifted
    request = make(digits, surrogate_epochs=2).surrogate_request()
    path = tmp_path / SURROGATES / f"{surrogate_key(cfg, request)}.pt"
    assert path.is_file() and len(calls) == 1
    mtime = path.stat().st_mtime_ns
    second = obtain_surrogate(make(digits, surrogate_epochs=2, epsilon=4), cfg, digits, CPU, cache, lines.append)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime  # loaded, not retrained
    assert "trained" in lines[0] and "loaded" in lines[1]
    assert first is not None and second is not None and not second.training
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in second.parameters())


def test_concurrent_trials_train_the_surrogate_once(digits, tmp_path, monkeypatch):
    calls = []
    fit = surrogate_module.fit_surrogate
    monkeypatch.setattr(surrogate_module, "fit_surrogate", lambda *a, **k: calls.append(1) or fit(*a, **k))
    cfg, models = experiment(surrogate_epochs=1), []

    def trial() -> None:  # each trial its own cache object, as in separate Ray workers
        models.append(obtain_surrogate(make(digits, surrogate_epochs=1), cfg, digits, CPU, PretrainCache(tmp_path)))

    threads = [threading.Thread(target=trial) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(models) == 3
    first = models[0].state_dict()
    assert all(torch.equal(first[k], m.state_dict()[k]) for m in models[1:] for k in first)


def test_a_stale_cache_entry_is_retrained_not_fatal(digits, tmp_path, monkeypatch):
    calls = []
    fit = surrogate_module.fit_surrogate
    monkeypatch.setattr(surrogate_module, "fit_surrogate", lambda *a, **k: calls.append(1) or fit(*a, **k))
    cfg, attack = experiment(surrogate_epochs=1), make(digits, surrogate_epochs=1)
    cache = PretrainCache(tmp_path / SURROGATES)
    key = surrogate_key(cfg, attack.surrogate_request())
    cache.store(key, {"model": {"no_such.weight": torch.zeros(1)}, "test_acc": 0.5})  # an older model's weights
    assert obtain_surrogate(attack, cfg, digits, CPU, PretrainCache(tmp_path)) is not None
    assert len(calls) == 1
    assert "no_such.weight" not in load_state(cache.path(key))["model"]  # overwritten


def test_surrogate_key_follows_what_changes_the_weights():
    cfg = experiment()
    req = SurrogateRequest(None, 4)
    base = surrogate_key(cfg, req)
    assert surrogate_key(experiment(epsilon=3), req) == base  # the attack's other params do not matter
    assert surrogate_key(cfg, SurrogateRequest("small_cnn", 4)) == base  # null = the experiment's small_cnn
    assert surrogate_key(cfg, SurrogateRequest(None, 5)) != base
    other_seed = ExperimentConfig(seed=1, data=cfg.data, attack=cfg.attack)
    assert surrogate_key(other_seed, req) != base
    subset = ExperimentConfig(data=DataConfig(name="digits", train_subset=500), attack=cfg.attack)
    assert surrogate_key(subset, req) != base


def test_no_surrogate_for_other_attacks(digits):
    cfg = ExperimentConfig(data=DataConfig(name="digits"))
    assert obtain_surrogate(create_attack(cfg.attack, digits.info, 0), cfg, digits, CPU) is None


def test_experiment_run_uses_the_pretrain_cache_root(digits, tmp_path, monkeypatch):
    calls = []
    fit = surrogate_module.fit_surrogate
    monkeypatch.setattr(surrogate_module, "fit_surrogate", lambda *a, **k: calls.append(1) or fit(*a, **k))
    attack = {"name": "label_consistent", "target": TARGET, "params": {"surrogate_epochs": 1}}
    cfg = resolve_config(
        {"data": {"name": "digits"}, "attack": attack, "train": {"epochs": 1}, "defense": {"enabled": False}}
    )
    first = ExperimentRun(cfg, data=digits, pretrain_cache=PretrainCache(tmp_path))
    assert len(list((tmp_path / SURROGATES).glob("*.pt"))) == 1
    again = ExperimentRun(cfg, data=digits, pretrain_cache=PretrainCache(tmp_path))
    assert len(calls) == 1
    assert torch.equal(first.data.train_x, again.data.train_x)  # a resumed run re-poisons identically
    assert torch.equal(first.poison_idx, again.poison_idx)


# ----------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "mode, params, key",
    [
        ("all_to_all", {}, "attack.mode"),
        ("all_to_one", {"epsilon": 256}, "attack.params.epsilon"),
        ("all_to_one", {"epsilon": -1}, "attack.params.epsilon"),
        ("all_to_one", {"steps": 0}, "attack.params.steps"),
        ("all_to_one", {"step_size": 0}, "attack.params.step_size"),
        ("all_to_one", {"amplitude": 0}, "attack.params.amplitude"),
        ("all_to_one", {"amplitude": 256}, "attack.params.amplitude"),
        ("all_to_one", {"pattern": "random"}, "attack.params.pattern"),
        ("all_to_one", {"corners": []}, "attack.params.corners"),
        ("all_to_one", {"corners": ["top_left", "middle"]}, "attack.params.corners"),
        ("all_to_one", {"corners": ["top_left", "top_left"]}, "attack.params.corners"),
        ("all_to_one", {"patch_size": 4, "margin": 1}, "attack.params.patch_size"),
        ("all_to_one", {"surrogate_model": "no_such_net"}, "attack.params.surrogate_model"),
        ("all_to_one", {"surrogate_epochs": 0}, "attack.params.surrogate_epochs"),
        ("all_to_one", {"epsilonn": 8}, "attack.params.epsilonn"),
    ],
)
def test_bad_params_are_config_errors(digits, mode, params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        make(digits, mode=mode, **params)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve_config({"data": {"name": "digits"},
                          "attack": {"name": "label_consistent", "mode": mode, "params": params}})  # fmt: skip


def test_rate_beyond_the_target_class_is_a_config_error(digits):
    with pytest.raises(ConfigError, match="target class"):
        make(digits, rate=0.5).poison(digits.train_x, digits.train_y, surrogate=lambda x: x.flatten(1)[:, :10])


def test_an_impossible_rate_fails_before_the_surrogate_trains(digits, monkeypatch):
    monkeypatch.setattr(surrogate_module, "fit_surrogate", lambda *a, **k: pytest.fail("surrogate trained"))
    attack = {"name": "label_consistent", "target": TARGET, "poison_rate": 0.5}
    cfg = resolve_config({"data": {"name": "digits"}, "attack": attack, "defense": {"enabled": False}})
    with pytest.raises(ConfigError, match=r"only \d+ are eligible \(the target class 3\)"):
        ExperimentRun(cfg, data=digits)


def test_the_shipped_config_loads():
    from none_sweep.experiment import load_experiment

    cfg = load_experiment("configs/fmnist_label_consistent.yaml", {})
    assert cfg.attack.name == "label_consistent" and set(cfg.attack.params["corners"]) == set(CORNERS)


# ------------------------------------------------------------------------------------------- end to end


def test_none_sweep_train_end_to_end(tmp_path, private_cache):
    out = tmp_path / "run"
    argv = ["train", "--quiet", "--out", str(out), "--set", "data.name=digits", "--set", "attack.name=label_consistent",
            "--set", "attack.target=3", "--set", "attack.params.surrogate_epochs=1",
            "--set", "train.epochs=2", "--set", "defense.pretrain_epochs=1", "--set", "defense.reset_interval=1"]  # fmt: skip
    assert run_cli(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["attack"]["name"] == "label_consistent" and metrics["attack"]["clean_label"] is True
    assert metrics["poisoned_samples"] == poison_count(0.05, 1437)
    assert metrics["asr"] is not None and metrics["epochs"] == 2
    assert len(list((private_cache / SURROGATES).glob("*.pt"))) == 1


def test_the_sweep_baseline_loads_the_trials_surrogate(tmp_path, private_cache, monkeypatch):
    """The undefended baseline poisons with the surrogate in the sweep's cache, the one every trial loads (not a
    second one trained into the user's cache, which on a GPU could differ and poison other images)."""
    from none_sweep.sweep.baseline import _train_baseline

    calls = []
    fit = surrogate_module.fit_surrogate
    monkeypatch.setattr(surrogate_module, "fit_surrogate", lambda *a, **k: calls.append(1) or fit(*a, **k))
    attack = {"name": "label_consistent", "target": TARGET, "params": {"surrogate_epochs": 1}}
    data = {"data": {"name": "digits"}, "attack": attack, "train": {"epochs": 1}, "defense": {"enabled": False}}
    trial = ExperimentRun(resolve_config(dict(data)), pretrain_cache=PretrainCache(tmp_path))
    payload = _train_baseline(data, cache_root=str(tmp_path))
    assert len(calls) == 1 and not list(private_cache.rglob("*.pt"))  # trained once, in the sweep's cache only
    assert payload["attack"] == trial.attack.describe()
