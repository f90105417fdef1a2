"""Search-space files: every shipped space loads; each kind of mistake is one ConfigError naming file and key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from none_sweep.errors import ConfigError
from none_sweep.sweep import load_space, space_from_dict

ROOT = Path(__file__).parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"
REQUIRED_KEYS = {
    "defense.max_reset_fraction", "defense.lamda_l", "defense.lamda_h", "defense.reset_interval", "defense.rounds",
    "defense.pretrain_epochs", "defense.finetune_lr", "defense.reset_mode", "defense.filter_samples",
}  # fmt: skip


def digits() -> dict:
    return yaml.safe_load(DIGITS.read_text())


def error_of(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        space_from_dict(data, "bad.yaml")
    return str(info.value)


def test_ships_the_spaces_the_issue_lists() -> None:
    names = {p.stem for p in SPACES}
    assert {"digits_tiny", "fmnist_badnets", "fmnist_blend", "fmnist_all_to_all", "fmnist_sig", "fmnist_wanet",
            "fmnist_natural", "cifar10_resnet18_badnets"} <= names  # fmt: skip


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_shipped_space_loads_and_varies_the_defense(path: Path) -> None:
    space = load_space(path)
    assert REQUIRED_KEYS <= set(space.keys)
    assert space.base_config().defense.enabled and not space.baseline_config().defense.enabled
    for point in space.points:  # the paper's defaults build a valid trial config
        space.trial_config(point.params)
    if path.stem.startswith("fmnist"):
        assert space.base_config().data.train_subset, "Fashion-MNIST spaces use a subset so 24 trials fit ~20 min"
    if path.stem.startswith("cifar10"):
        assert space.resources.gpu == 0.25


def test_digits_space_details() -> None:
    space = load_space(DIGITS)
    assert space.metrics == ["asr", "clean_acc"] and space.modes == ["min", "max"]
    (c,) = space.constraints
    assert (c.metric, c.op, c.threshold) == ("clean_acc_drop", "<=", 0.05)
    assert c.violation(0.01) < 0 < c.violation(0.08)
    assert space.points[0].name == "paper_defaults"
    removal = next(p for p in space.params if p.key == "defense.removal")
    assert removal.active({"defense.filter_samples": True}) and not removal.active({"defense.filter_samples": False})
    keys = space.keys  # a conditional key comes after the key its condition reads
    assert keys.index("defense.filter_samples") < keys.index("defense.removal")


def test_defaults_and_overrides() -> None:
    data = digits()
    for key in ("objectives", "constraints", "search", "scheduler", "resources", "max_concurrent"):
        data.pop(key)
    data["space"] = {"defense.lamda_l": {"type": "uniform", "low": 0.05, "high": 0.2}}
    space = space_from_dict(data, "min.yaml", overrides={"train.epochs": 5})
    assert space.metrics == ["asr", "clean_acc"] and space.modes == ["min", "max"]
    assert space.search.sampler == "tpe" and space.scheduler.name == "none" and space.resources.cpu == 1
    assert space.base_config().train.epochs == 5
    msg = error_of_override(data, {"defense.lamda_l": 0.1})
    assert "--set defense.lamda_l" in msg and "searched" in msg


def error_of_override(data: dict, overrides: dict) -> str:
    with pytest.raises(ConfigError) as info:
        space_from_dict(data, "bad.yaml", overrides=overrides)
    return str(info.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(bogus=1), "unknown key bogus"),
        (lambda d: d["space"]["defense.lamda_l"].update(lo=0.1), "space[defense.lamda_l].lo (did you mean 'low'?)"),
        (lambda d: d["search"].update(sampler="cmaes"), "search.sampler must be one of"),
        (lambda d: d["scheduler"].update(grace_period=0), "scheduler.grace_period must be in [1, inf]"),
        (lambda d: d["resources"].update(cpu="two"), "resources.cpu must be a number"),
        (lambda d: d.update(num_samples=0), "num_samples must be in [1, 100000]"),
    ],
    ids=["unknown-top-key", "unknown-param-key", "bad-sampler", "bad-grace", "bad-type", "bad-num-samples"],
)
def test_schema_errors_name_file_and_key(mutate, expected: str) -> None:
    data = digits()
    mutate(data)
    msg = error_of(data)
    assert msg.startswith("bad.yaml: ") and expected in msg


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ({"type": "uniform", "low": 0.3, "high": 0.1}, "low (0.3) must not exceed high (0.1)"),
        ({"type": "uniform", "low": 0.1, "high": 1.5}, "with defense.lamda_l=1.5 the experiment config is invalid"),
        ({"type": "uniform", "low": 0.1, "high": 0.95}, "must be below defense.lamda_h"),  # cross-field, at the bound
        ({"type": "loguniform", "low": 0.0, "high": 0.5}, "loguniform needs low > 0"),
        ({"type": "uniform", "low": 0.1}, "needs both low and high"),
        ({"type": "gauss", "low": 0.1, "high": 0.2}, "must be one of ['uniform', 'loguniform', 'int', 'choice']"),
        ({"type": "choice", "values": []}, "values must list at least one value"),
        ({"type": "choice", "values": [0.1], "low": 0.0}, "type choice takes values"),
        ({"type": "uniform", "low": "a", "high": 0.2}, "space[defense.lamda_l].low must be a number"),
    ],
)
def test_bad_bounds_and_types(param: dict, expected: str) -> None:
    data = digits()
    data["space"]["defense.lamda_l"] = param
    assert expected in error_of(data)


def test_keys_must_be_real_config_keys_with_valid_values() -> None:
    data = digits()
    data["space"]["defense.lamda_x"] = {"type": "uniform", "low": 0.1, "high": 0.2}
    msg = error_of(data)
    assert "'defense.lamda_x' is not a config key (did you mean 'defense.lamda_l'?)" in msg
    data = digits()
    data["space"]["defense.reset_mode"] = {"type": "choice", "values": ["zero", "random"]}
    assert "defense.reset_mode must be one of ['zero', 'reinit'], got 'random'" in error_of(data)
    data = digits()
    data["space"]["defense.rounds"] = {"type": "int", "low": 1, "high": 2.5}
    assert "space[defense.rounds].high must be an integer" in error_of(data)
    data = digits()
    data["space"]["defense.layer_types"] = {"type": "choice", "values": ["conv"]}
    assert "cannot be searched" in error_of(data)


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        ("clean_acc_drop < 0.02", "cannot parse 'clean_acc_drop < 0.02'"),
        ("clean_drop <= 0.02", "unknown metric 'clean_drop' (did you mean 'clean_acc_drop'?)"),
        ("clean_acc_drop <= two", "cannot parse"),
    ],
)
def test_bad_constraints(constraint: str, expected: str) -> None:
    data = digits()
    data["constraints"] = [constraint]
    msg = error_of(data)
    assert "constraints[0]" in msg and expected in msg


def test_objectives_scheduler_points_and_conditions() -> None:
    data = digits()
    data["objectives"] = [{"metric": "asr", "mode": "minimize"}]
    assert "objectives[0].mode must be one of ['min', 'max']" in error_of(data)
    data = digits()
    data["objectives"] = [{"metric": "accuracy", "mode": "max"}]
    assert "objectives[0].metric: unknown metric 'accuracy'" in error_of(data)
    data = digits()
    data["scheduler"] = {"name": "asha", "metric": "poison_recall"}  # only known at the end, not per epoch
    assert "scheduler.metric: unknown metric 'poison_recall'" in error_of(data)
    data = digits()
    data["search"]["points_to_evaluate"][0]["params"]["defense.lamda_l"] = 0.9
    assert "defense.lamda_l=0.9 is outside space[defense.lamda_l]" in error_of(data)
    data = digits()
    data["search"]["points_to_evaluate"] = [{"defense.nope": 1}]
    assert "'defense.nope' is not a searched key" in error_of(data)
    data = digits()
    data["space"]["defense.finetune_lr"]["when"] = {"defense.after_reset": "retrain"}
    assert "when can never hold" in error_of(data)
    data = digits()
    data["space"]["defense.filter_samples"]["when"] = {"defense.removal": "per_round"}
    assert "cycle" in error_of(data)
    data = digits()
    data["search"]["sampler"] = "grid"
    assert "grid needs discrete keys" in error_of(data)


def test_trial_config_applies_sampled_keys_over_the_base() -> None:
    space = load_space(DIGITS)
    cfg = space.trial_config({"defense.lamda_l": 0.2, "defense.rounds": 2, "_point": "paper_defaults"})
    assert cfg.defense.lamda_l == 0.2 and cfg.defense.rounds == 2 and cfg.data.name == "digits"
    with pytest.raises(ConfigError, match="defense.lamda_l"):
        space.trial_config({"defense.lamda_l": 0.99})
    grid = copy.deepcopy(digits())
    grid["search"]["sampler"] = "grid"
    grid["space"] = {"defense.rounds": {"type": "int", "low": 1, "high": 3},
                     "defense.max_reset_fraction": {"type": "uniform", "low": 0.1, "high": 0.3, "step": 0.1}}  # fmt: skip
    grid["search"]["points_to_evaluate"] = []
    space = space_from_dict(grid, "grid.yaml")
    assert [p.grid() for p in space.params] == [[1, 2, 3], [0.1, 0.2, 0.3]]
