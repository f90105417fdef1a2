"""Composed space files: the NONE design space is declared once (search_spaces/defense/none.yaml) and each
experiment's space names its base experiment and narrows or extends it; the stored space is self-contained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from none_sweep.errors import ConfigError
from none_sweep.sweep.space import load_space, space_from_dict

ROOT = Path(__file__).parents[1]
SPACES = ROOT / "search_spaces"
DESIGN = SPACES / "defense" / "none.yaml"
COMPOSED = sorted(p for p in SPACES.glob("fmnist_*.yaml") if "include:" in p.read_text())
#: The knobs issue 12 found missing from every copied space.
ONCE_MISSING = {"defense.detect_fraction", "defense.max_removed_fraction"}


def write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def design(tmp_path: Path) -> Path:
    """A small design space and a digits experiment beside it."""
    write(tmp_path, "experiment.yaml", {"data": {"name": "digits"}, "attack": {"name": "badnets", "poison_rate": 0.1},
                                        "train": {"epochs": 3}, "defense": {"pretrain_epochs": 2}})  # fmt: skip
    return write(tmp_path, "design.yaml", {
        "space": {"defense.lamda_l": {"type": "uniform", "low": 0.05, "high": 0.3},
                  "defense.lamda_h": {"type": "uniform", "low": 0.7, "high": 0.95},
                  "defense.reset_mode": {"type": "choice", "values": ["zero", "reinit"]}},
        "constraints": ["clean_acc_drop <= 0.05"],
        "search": {"seed": 3, "points_to_evaluate": [{"name": "paper", "params": {"defense.lamda_l": 0.1,
                                                                               "defense.lamda_h": 0.9}}]},
        "num_samples": 5,
    })  # fmt: skip


def test_an_including_file_narrows_removes_and_extends_the_design(design: Path) -> None:
    path = write(design.parent, "mine.yaml", {
        "include": "design.yaml", "experiment": "experiment.yaml", "base": {"train": {"epochs": 4}},
        "space": {"defense.lamda_l": {"type": "uniform", "low": 0.1, "high": 0.2}, "defense.lamda_h": None,
                  "defense.max_reset_fraction": {"type": "uniform", "low": 0.01, "high": 0.1}},
        "search": {"points_to_evaluate": [{"name": "mine", "params": {"defense.reset_mode": "reinit"}}]},
    })  # fmt: skip
    space = load_space(path)
    assert space.keys == ["defense.lamda_l", "defense.reset_mode", "defense.max_reset_fraction"]
    lamda_l = space.param("defense.lamda_l")
    assert lamda_l is not None and (lamda_l.low, lamda_l.high) == (0.1, 0.2)  # type: ignore[attr-defined]
    cfg = space.base_config()
    assert cfg.data.name == "digits" and cfg.attack.poison_rate == 0.1  # from the experiment
    assert cfg.train.epochs == 4 and cfg.defense.pretrain_epochs == 2  # own base over the experiment
    assert [c.text for c in space.constraints] == ["clean_acc_drop <= 0.05"] and space.num_samples == 5
    assert space.search.seed == 3
    # the inherited point lost the key no longer searched; the file's own point came after it
    assert [(p.name, p.params) for p in space.points] == [("paper", {"defense.lamda_l": 0.1}),
                                                          ("mine", {"defense.reset_mode": "reinit"})]  # fmt: skip


def test_the_stored_text_rebuilds_the_same_space_without_the_included_files(design: Path) -> None:
    path = write(design.parent, "mine.yaml", {"include": ["design.yaml"], "experiment": "experiment.yaml"})
    space = load_space(path)
    assert space.text.startswith("# composed by none-sweep from:")
    for name in ("design.yaml", "experiment.yaml", "mine.yaml"):
        (design.parent / name).unlink()
    again = space_from_dict(yaml.safe_load(space.text), space.path, text=space.text, check_paths=False)
    assert again.keys == space.keys and again.base == space.base and again.points == space.points


def test_a_point_of_the_same_name_replaces_the_included_one_and_an_empty_list_clears(design: Path) -> None:
    same = write(design.parent, "same.yaml", {"include": "design.yaml", "experiment": "experiment.yaml",
                                              "search": {"points_to_evaluate": [
                                                  {"name": "paper", "params": {"defense.lamda_l": 0.2}}]}})  # fmt: skip
    assert [(p.name, p.params) for p in load_space(same).points] == [("paper", {"defense.lamda_l": 0.2})]
    cleared = write(design.parent, "cleared.yaml", {"include": "design.yaml", "experiment": "experiment.yaml",
                                                    "search": {"points_to_evaluate": []}})  # fmt: skip
    assert load_space(cleared).points == []


def test_an_own_point_outside_the_narrowed_space_is_still_an_error(design: Path) -> None:
    path = write(design.parent, "mine.yaml", {"include": "design.yaml", "experiment": "experiment.yaml",
                                              "space": {"defense.lamda_h": None},
                                              "search": {"points_to_evaluate": [
                                                  {"name": "own", "params": {"defense.lamda_h": 0.9}}]}})  # fmt: skip
    with pytest.raises(ConfigError, match="defense.lamda_h"):
        load_space(path)


def test_include_cycles_and_missing_files_are_one_clear_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"include": "b.yaml"})
    write(tmp_path, "b.yaml", {"include": "a.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_space(tmp_path / "a.yaml")
    write(tmp_path, "c.yaml", {"include": "nowhere.yaml"})
    with pytest.raises(ConfigError, match=r"c\.yaml: include: no such file 'nowhere\.yaml'"):
        load_space(tmp_path / "c.yaml")
    write(tmp_path, "d.yaml", {"experiment": ["x.yaml", "y.yaml"]})
    with pytest.raises(ConfigError, match="experiment must be one file name"):
        load_space(tmp_path / "d.yaml")


def test_the_design_space_is_declared_once_and_every_attack_space_composes_it() -> None:
    design_keys = set(yaml.safe_load(DESIGN.read_text())["space"])
    assert ONCE_MISSING | {"defense.freeze_bn", "defense.after_reset"} <= design_keys
    assert {p.stem for p in COMPOSED} >= {"fmnist_badnets", "fmnist_all_to_all", "fmnist_blend", "fmnist_sig",
                                          "fmnist_wanet", "fmnist_badnets_1pct", "fmnist_badnets_05pct",
                                          "fmnist_label_consistent", "fmnist_natural"}  # fmt: skip
    for path in COMPOSED:
        raw = yaml.safe_load(path.read_text())
        own = set(raw.get("space") or {})
        assert own <= design_keys | {k for k in own if k.startswith("attack.")}, f"{path.name} declares new knobs"
        space = load_space(path)
        assert set(space.keys) >= ONCE_MISSING, path.name
        assert space.num_samples >= 32 and space.points, path.name


def test_the_during_training_family_only_builds_valid_schedules() -> None:
    space = load_space(SPACES / "fmnist_all_to_all.yaml")
    assert space.base_config().defense.after_reset == "continue"
    pre, rounds = space.param("defense.pretrain_epochs"), space.param("defense.rounds")
    assert pre is not None and rounds is not None
    for p in pre.grid():
        for r in rounds.grid():  # every corner of the schedule is a config the trial can run
            space.trial_config({"defense.pretrain_epochs": p, "defense.rounds": r})
