"""Search-space files: every shipped space loads; each kind of mistake is one ConfigError naming file and key;
every registered param type keeps one contract (validates, samples, converts to Optuna, describes itself)."""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from none_sweep.config.validation import ConfigIssue, build
from none_sweep.errors import ConfigError
from none_sweep.sweep.space import PARAM_TYPES, Param, load_space, space_from_dict
from none_sweep.sweep.space.params import parse_param
from none_sweep.sweep.space.schema import ParamSpec

ROOT = Path(__file__).parents[1]
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))
DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"
REQUIRED_KEYS = {
    "defense.max_reset_fraction",
    "defense.lamda_l",
    "defense.lamda_h",
    "defense.rounds",
    "defense.pretrain_epochs",
    "defense.reset_mode",
    "defense.filter_samples",
}  # fmt: skip  (the schedule knobs each family fixes differently: tests/test_space_compose.py)


def digits() -> dict:
    return yaml.safe_load(DIGITS.read_text())


def error_of(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        space_from_dict(data, "bad.yaml")
    return str(info.value)


#: Attacks a 12 000-image subset does not learn (undefended ASR <= 5 %, bench/RESULTS.md): swept on the full set.
FULL_TRAINING_SET = {"fmnist_all_to_all", "fmnist_badnets_1pct", "fmnist_badnets_05pct"}


def test_ships_the_spaces_the_issue_lists() -> None:
    names = {p.stem for p in SPACES}
    assert {"digits_tiny", "fmnist_badnets", "fmnist_blend", "fmnist_all_to_all", "fmnist_sig", "fmnist_wanet",
            "fmnist_natural", "cifar10_resnet18_badnets"} <= names  # fmt: skip


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_every_shipped_space_loads_and_varies_the_defense(path: Path) -> None:
    space = load_space(path)
    if path.stem.endswith("_demo"):  # the README's short sweep: a few knobs around shipped starting points
        assert len([k for k in space.keys if k.startswith("defense.")]) >= 4 and space.points
    else:
        assert set(space.keys) >= REQUIRED_KEYS
    assert space.base_config().defense.enabled and not space.baseline_config().defense.enabled
    for point in space.points:  # the paper's defaults build a valid trial config
        space.trial_config(point.params)
    if path.stem.startswith("fmnist"):  # a subset keeps 32 trials near 10 min on 2 CPUs, where the attack is learned
        assert (space.base_config().data.train_subset is None) == (path.stem in FULL_TRAINING_SET), path.stem
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
        ({"type": "gauss", "low": 0.1, "high": 0.2}, "type must be one of ['choice', 'int', 'loguniform', 'uniform']"),
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
    with pytest.raises(ConfigError, match=r"defense\.lamda_l"):
        space.trial_config({"defense.lamda_l": 0.99})
    grid = copy.deepcopy(digits())
    grid["search"]["sampler"] = "grid"
    grid["space"] = {"defense.rounds": {"type": "int", "low": 1, "high": 3},
                     "defense.max_reset_fraction": {"type": "uniform", "low": 0.1, "high": 0.3, "step": 0.1}}  # fmt: skip
    grid["search"]["points_to_evaluate"] = []
    space = space_from_dict(grid, "grid.yaml")
    assert [p.grid() for p in space.params] == [[1, 2, 3], [0.1, 0.2, 0.3]]


# --------------------------------------------------------------------------- the param types, one contract
KEY = "defense.x"


@dataclass(frozen=True)
class Contract:
    """What one param type must do: a valid entry, what it yields, and one bad change with its message."""

    entry: dict[str, Any]
    describe: str
    distribution: BaseDistribution
    edges: list[Any]
    grid: list[Any] | None  # None: not discrete, a grid search refuses it
    outside: list[Any]  # values it must not contain
    bad: dict[str, Any]  # a change to ``entry`` ...
    bad_field: str  # ... refused at space[KEY].bad_field ...
    bad_message: str  # ... with this in the message


CONTRACTS = {
    "uniform": Contract({"type": "uniform", "low": 0.1, "high": 0.3}, "uniform[0.1, 0.3]",
                        FloatDistribution(0.1, 0.3), [0.1, 0.3], None, [0.05, 0.31, True, "0.2", math.nan],
                        {"low": 0.4}, "low", "low (0.4) must not exceed high (0.3)"),
    "loguniform": Contract({"type": "loguniform", "low": 1e-4, "high": 1e-2}, "loguniform[0.0001, 0.01]",
                           FloatDistribution(1e-4, 1e-2, log=True), [1e-4, 1e-2], None, [0.0, 0.1],
                           {"step": 1e-3}, "step", "loguniform cannot be quantised"),
    "int": Contract({"type": "int", "low": 1, "high": 8, "step": 3}, "int[1, 8] step 3",
                    IntDistribution(1, 7, step=3), [1, 7], [1, 4, 7], [2, 8, 10, 1.5, True],
                    {"high": 2.5}, "high", f"space[{KEY}].high must be an integer for type int, got 2.5"),
    "choice": Contract({"type": "choice", "values": ["zero", 2, True, None]}, "choice['zero', 2, True, None]",
                       CategoricalDistribution(["zero", 2, True, None]), ["zero", 2, True, None],
                       ["zero", 2, True, None], ["one", 2.0, 1, False], {"values": [{"a": 1}]}, "values",
                       "values entries must be numbers, strings, booleans or null"),
    # quantised: ``uniform`` with a ``step``; 1 - 0 is no multiple of 0.3, so the grid (and Optuna's) ends at 0.9
    "uniform+step": Contract({"type": "uniform", "low": 0.0, "high": 1.0, "step": 0.3}, "uniform[0, 1] step 0.3",
                             FloatDistribution(0.0, 0.9, step=0.3), [0.0, 0.9], [0.0, 0.3, 0.6, 0.9],
                             [0.45, 1.0, -0.3], {"step": 0}, "step", "step must be in (0, inf]"),
}  # fmt: skip
CASES = [*PARAM_TYPES.names(), "uniform+step"]


def contract(name: str) -> Contract:
    assert name in CONTRACTS, f"param type {name!r} is registered: add its case to CONTRACTS"
    return CONTRACTS[name]


def parse(entry: dict[str, Any]) -> Param:
    return parse_param(KEY, build(ParamSpec, entry, prefix=f"space[{KEY}]."))


def issue_of(entry: dict[str, Any]) -> ConfigIssue:
    with pytest.raises(ConfigIssue) as info:
        parse(entry)
    return info.value


@pytest.mark.parametrize("name", CASES)
def test_param_type_contract(name: str) -> None:
    c = contract(name)
    p = parse(c.entry)
    assert p.key == KEY and p.describe() == c.describe and p.distribution() == c.distribution
    assert p.edges() == c.edges and all(p.contains(v) for v in p.edges())
    assert not any(p.contains(v) for v in c.outside)
    if c.grid is None:
        with pytest.raises(ConfigError, match="grid needs discrete keys"):
            p.grid()
    else:
        assert p.grid() == c.grid and all(p.contains(v) for v in c.grid)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna finds nothing to adjust in the bounds we give it
        for _ in range(25):
            trial = study.ask()
            value = p.suggest(trial)
            assert p.contains(value), value
            assert trial.distributions[KEY] == p.distribution()  # suggest samples the declared distribution


@pytest.mark.parametrize("name", CASES)
def test_param_type_refuses_a_bad_field_naming_it(name: str) -> None:
    c = contract(name)
    issue = issue_of({**c.entry, **c.bad})
    assert issue.key == f"space[{KEY}].{c.bad_field}" and c.bad_message in issue.message
    assert issue.message.startswith(f"space[{KEY}]")


@pytest.mark.parametrize("name", CASES)
def test_param_type_refuses_the_fields_it_does_not_take(name: str) -> None:
    c = contract(name)
    takes = type(parse(c.entry)).takes
    samples = {"low": 0.1, "high": 0.2, "step": 0.1, "values": [0.1]}
    for field_name in sorted(set(samples) - set(takes)):
        issue = issue_of({**c.entry, field_name: samples[field_name]})
        assert issue.key == f"space[{KEY}].{field_name}", issue.message
        assert issue.message.startswith(f"space[{KEY}]: ")


def test_param_type_is_required_and_registered() -> None:
    issue = issue_of({"low": 0.1, "high": 0.2})
    assert issue.key == f"space[{KEY}].type" and f"is required: one of {PARAM_TYPES.names()}" in issue.message
    assert "(did you mean 'uniform'?)" in issue_of({"type": "unifrom", "low": 0.1, "high": 0.2}).message
    assert "needs both low and high" in issue_of({"type": "int", "high": 2}).message
    msg = issue_of({"type": "choice", "values": [1, True]}).message  # Optuna would store True as 1
    assert "True equals 1 listed before it" in msg


def test_conditional_keys() -> None:
    space = load_space(DIGITS)
    removal = space.param("defense.removal")
    assert (
        removal is not None
        and removal.describe() == "choice['cumulative', 'per_round'] when defense.filter_samples=True"
    )
    assert space.param("defense.nope") is None
    data = digits()
    data["space"]["defense.removal"]["when"] = {"defense.rounds": [2, 5]}  # a list: any of them
    removal = space_from_dict(data, "ok.yaml").param("defense.removal")
    assert removal.active({"defense.rounds": 2}) and not removal.active({"defense.rounds": 1})
    data["space"]["defense.removal"]["when"] = {"defense.rounds": 5}  # rounds is int[1, 2]
    assert "space[defense.removal].when can never hold: space[defense.rounds] takes no value in [5]" in error_of(data)


def test_points_lie_on_a_quantised_grid() -> None:
    data = digits()
    data["search"]["points_to_evaluate"][0]["params"]["defense.max_reset_fraction"] = 0.055
    msg = error_of(data)
    assert (
        "defense.max_reset_fraction=0.055 is outside space[defense.max_reset_fraction]: uniform[0.02, 0.3] step 0.01"
        in msg
    )


def test_checks_never_change_the_space() -> None:
    """``max_concurrent`` above ``num_samples`` stays as written (the runner caps what it starts)."""
    data = digits()
    data.update(num_samples=1, max_concurrent=4)
    before = copy.deepcopy(data)
    space = space_from_dict(data, "s.yaml")
    assert (space.num_samples, space.max_concurrent) == (1, 4) and data == before
    assert space.points is space.points  # plain data: nothing is parsed again on access


def test_constraint_feasibility() -> None:
    (c,) = load_space(DIGITS).constraints
    assert c.feasible(0.05) and not c.feasible(0.051) and not c.feasible(math.nan)
    (c,) = space_from_dict({**digits(), "constraints": ["asr >= 0.1"]}, "s.yaml").constraints
    assert c.text == "asr >= 0.1" and c.violation(0.3) < 0 and not c.feasible(0.05)


def test_a_stored_space_is_read_back_without_path_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its paths were confined where the sweep started; a resume or a report elsewhere reads it as it is."""
    data = digits()
    data["base"]["data"]["root"] = "../started-elsewhere"
    data["space"]["data.root"] = {"type": "choice", "values": ["../started-elsewhere", "/srv/data"]}
    path = tmp_path / "stored.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"base: data\.root: '\.\./started-elsewhere' climbs out"):
        load_space(path)
    space = load_space(path, check_paths=False)
    assert space.base_config().data.root == "../started-elsewhere"
    del data["base"]["data"]["root"]
    with pytest.raises(ConfigError, match=r"space\[data\.root\]: data\.root: '\.\./started-elsewhere' climbs out"):
        space_from_dict(data, "s.yaml")
    assert space_from_dict(data, "s.yaml", check_paths=False).param("data.root") is not None
