"""Config loading: every malformed config is one clear line naming file and key, exit code 2, no traceback.

Two floors: ``none_sweep.config`` judges the schema alone (no dataset, attack or model code imported);
``none_sweep.experiment`` adds the registry checks, the attack's params and the confined paths.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from none_sweep.attacks import ATTACKS, injects_trigger, path_params
from none_sweep.cli import main
from none_sweep.config import ExperimentConfig, config_from_dict, default_root, dump_config, parse_overrides, to_dict
from none_sweep.errors import ConfigError
from none_sweep.experiment import load_experiment, resolve_config

# (name, YAML text, substrings the one-line message must contain)
BAD_CONFIGS: list[tuple[str, str, list[str]]] = [
    ("malformed_yaml", "defense: {max_reset_fraction: 0.1\n", ["not valid YAML", "line"]),
    ("top_level_list", "- a\n- b\n", ["top level must be a mapping"]),
    ("unknown_top_key", "defence: {}\n", ["unknown key defence", "did you mean 'defense'"]),
    ("unknown_nested_key", "defense: {max_reset_fracton: 0.1}\n", ["defense.max_reset_fracton", "max_reset_fraction"]),
    ("section_not_mapping", "train: 5\n", ["train must be a mapping"]),
    ("fraction_above_one", "defense: {max_reset_fraction: 1.5}\n", ["defense.max_reset_fraction", "(0, 1]", "1.5"]),
    ("fraction_zero", "defense: {max_reset_fraction: 0}\n", ["defense.max_reset_fraction", "(0, 1]"]),
    ("fraction_string", "defense: {max_reset_fraction: lots}\n", ["defense.max_reset_fraction", "number", "lots"]),
    ("lamda_order", "defense: {lamda_l: 0.9, lamda_h: 0.2}\n", ["defense.lamda_l", "below defense.lamda_h"]),
    ("lamda_h_one", "defense: {lamda_h: 1.0}\n", ["defense.lamda_h", "(0, 1)"]),
    ("epochs_float", "train: {epochs: 2.5}\n", ["train.epochs", "integer"]),
    ("epochs_zero", "train: {epochs: 0}\n", ["train.epochs", "[1, 10000]"]),
    ("batch_bool", "train: {batch_size: true}\n", ["train.batch_size", "integer"]),
    ("lr_negative", "train: {lr: -0.1}\n", ["train.lr", "(0, 10]"]),
    ("lr_nan", "train: {lr: .nan}\n", ["train.lr", "finite"]),
    ("bad_schedule", "train: {lr_schedule: linear}\n", ["train.lr_schedule", "cosine", "step"]),
    ("bad_device", "train: {device: tpu}\n", ["train.device", "auto", "cuda"]),
    ("enabled_string", "defense: {enabled: maybe}\n", ["defense.enabled", "true or false"]),
    ("bad_after_reset", "defense: {after_reset: prune}\n", ["defense.after_reset", "finetune", "retrain"]),
    ("bad_reset_mode", "defense: {reset_mode: random}\n", ["defense.reset_mode", "zero", "reinit"]),
    ("bad_removal", "defense: {removal: never}\n", ["defense.removal", "cumulative"]),
    ("removal_cap_zero", "defense: {max_removed_fraction: 0}\n", ["defense.max_removed_fraction", "(0, 1]"]),
    ("removal_cap_percent", "defense: {max_removed_fraction: 20}\n", ["defense.max_removed_fraction", "(0, 1]", "20"]),
    ("bad_layer_type", "defense: {layer_types: [conv, attention]}\n", ["defense.layer_types", "attention"]),
    ("layer_types_not_list", "defense: {layer_types: conv}\n", ["defense.layer_types", "list"]),
    (
        "continue_outside",
        "train: {epochs: 4}\ndefense: {after_reset: continue, pretrain_epochs: 3, rounds: 3}\n",
        ["after_reset=continue", "train.epochs=4"],
    ),
    ("unknown_dataset", "data: {name: fashion_mnist}\n", ["data.name", "fashion-mnist"]),
    ("unknown_attack", "attack: {name: blnd}\n", ["attack.name", "blend"]),
    ("unknown_model", "model: {name: resnet19}\n", ["model.name", "resnet18"]),
    ("target_out_of_range", "attack: {target: 10}\n", ["attack.target", "[0, 9]"]),
    ("poison_rate_zero", "attack: {poison_rate: 0}\n", ["attack.poison_rate", "(0, 1]"]),
    ("bad_attack_mode", "attack: {mode: one_to_one}\n", ["attack.mode", "all_to_all"]),
    (
        "unknown_attack_param",
        "attack: {name: badnets, params: {patch_sise: 3}}\n",
        ["attack.params.patch_sise", "patch_size"],
    ),
    ("seed_negative", "seed: -1\n", ["seed", "[0,"]),
    ("subset_tiny", "data: {train_subset: 3}\n", ["data.train_subset"]),
    ("bad_reasr_mode", "evaluation: {reasr: on}\n", ["evaluation.reasr"]),
    (
        "filter_samples_word",
        "defense: {filter_samples: yes_please}\n",
        ["defense.filter_samples", "one of ['auto', true, false]", "yes_please"],
    ),
    ("reasr_labels_zero", "evaluation: {reasr_labels: 0}\n", ["evaluation.reasr_labels", "[1, inf]"]),
    ("reasr_steps_zero", "evaluation: {reasr_steps: 0}\n", ["evaluation.reasr_steps", "[1, 100000]"]),
    ("reasr_images_few", "evaluation: {reasr_images: 4}\n", ["evaluation.reasr_images", "[8, inf]"]),
    ("reasr_holdout_text", "evaluation: {reasr_holdout: many}\n", ["evaluation.reasr_holdout", "integer"]),
    (
        "reasr_screen_alone",
        "evaluation: {reasr_screen_steps: 10}\n",
        ["evaluation.reasr_screen_steps", "without reasr_labels"],
    ),
    (
        "reasr_screen_too_long",
        "evaluation: {reasr_steps: 20, reasr_labels: 2, reasr_screen_steps: 30}\n",
        ["evaluation.reasr_screen_steps (30)", "evaluation.reasr_steps (20)"],
    ),
]


@pytest.mark.parametrize("name,text,expected", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_one_clear_line(name: str, text: str, expected: list[str], tmp_path: Path, capsys) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    code = main(["train", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert str(path) in err
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert not (tmp_path / "out").exists(), "nothing may be written before the config is valid"


def test_bad_config_count_meets_the_corpus_size() -> None:
    assert len(BAD_CONFIGS) >= 20


def test_missing_file_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["defense.enabled"])
    with pytest.raises(ConfigError, match=r"defense\.enabled"):
        load_experiment(None, parse_overrides(["defense.enabled=sometimes"]))


@pytest.mark.parametrize("text, value", [("", "auto"), ("auto", "auto"), ("true", True), ("false", False)])
def test_filter_samples_is_auto_unless_set(text: str, value: object) -> None:
    """The default is ``auto`` (no filtering without an attack), so an explicit ``true`` is distinguishable."""
    overrides = parse_overrides([f"defense.filter_samples={text}"] if text else [])
    assert load_experiment(None, overrides).defense.filter_samples == value
    assert type(load_experiment(None, overrides).defense.filter_samples) is type(value)


def test_reasr_settings_round_trip() -> None:
    keys = ["evaluation.reasr_steps=30", "evaluation.reasr_images=64", "evaluation.reasr_holdout=512",
            "evaluation.reasr_labels=3", "evaluation.reasr_screen_steps=30"]  # fmt: skip
    e = load_experiment(None, parse_overrides(keys)).evaluation
    got = (e.reasr_steps, e.reasr_images, e.reasr_holdout, e.reasr_labels, e.reasr_screen_steps)
    assert got == (30, 64, 512, 3, 30)


def test_overrides_parse_yaml_scalars() -> None:
    cfg = load_experiment(
        None, parse_overrides(["defense.enabled=false", "train.lr=0.1", "attack.params.patch_size=4"])
    )
    assert cfg.defense.enabled is False
    assert cfg.train.lr == pytest.approx(0.1)
    assert cfg.attack.params["patch_size"] == 4


def test_resolved_config_round_trips_and_fills_attack_params(tmp_path: Path) -> None:
    cfg = load_experiment(Path(__file__).parents[1] / "configs" / "fmnist_badnets.yaml")
    assert isinstance(cfg, ExperimentConfig)
    path = tmp_path / "resolved.yaml"
    dump_config(cfg, path, header="provenance line")
    assert path.read_text().startswith("# provenance line\n")
    again = load_experiment(path)
    assert to_dict(again) == to_dict(cfg)
    # every trigger parameter is recorded, not only the ones the file named
    assert {"patch_size", "location", "pattern"} <= set(again.attack.params)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    load_experiment(path)


def test_defaults_are_the_documented_ones() -> None:
    cfg = load_experiment(None)
    assert (cfg.data.name, cfg.attack.name, cfg.model.name) == ("fashion-mnist", "badnets", "small_cnn")
    d = cfg.defense
    assert (d.max_reset_fraction, d.lamda_l, d.lamda_h, d.finetune_lr) == (0.05, 0.1, 0.9, 1e-4)
    assert d.removal == "cumulative" and d.freeze_bn and d.after_reset == "finetune"
    assert yaml.safe_load(dump_config(cfg))["defense"]["enabled"] is True


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(
        textwrap.dedent("""\
        seed: !!python/object/apply:os.system ["echo pwned"]
        """)
    )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(path)


# ------------------------------------------------------------------------------------------ the config floor


def test_config_alone_imports_no_dataset_attack_or_model_code() -> None:
    """The bottom floor stays importable (and fast) without torch-heavy packages; checked in a fresh process."""
    code = textwrap.dedent("""\
        import sys
        import none_sweep.config
        from none_sweep.config import config_from_dict
        try:
            config_from_dict({"defense": {"lamda_l": 0.9, "lamda_h": 0.2}}, source="probe")
        except Exception as exc:
            print(type(exc).__name__, exc)
        print(sorted(m for m in sys.modules if m.split(".")[:2] in (["none_sweep", "attacks"], ["none_sweep", "data"],
                                                                    ["none_sweep", "models"])))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("ConfigError probe: defense.lamda_l") and "below defense.lamda_h" in out[0]
    assert out[1] == "[]", f"none_sweep.config imported {out[1]}"


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"defence": {}}, "did you mean 'defense'"),
        ({"train": {"epochs": 0}}, "train.epochs must be in [1, 10000]"),
        ({"defense": {"lamda_l": 0.9, "lamda_h": 0.2}}, "below defense.lamda_h"),
        ({"defense": {"layer_types": []}}, "must name at least one of ['conv', 'linear']"),
        ({"defense": {"layer_types": ["attention"]}}, "'conv' or 'linear', got 'attention'"),
        ({"train": {"epochs": 4}, "defense": {"after_reset": "continue", "pretrain_epochs": 3, "rounds": 3}},
         "with after_reset=continue"),
        ({"defense": {"pretrain_epochs": 0}}, "defense.pretrain_epochs must be at least 1"),
    ],
)  # fmt: skip
def test_config_floor_rejects_schema_and_cross_field_errors(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, source="cfg.yaml")
    assert str(info.value).startswith("cfg.yaml: ") and fragment in str(info.value)


def test_config_floor_knows_no_registry() -> None:
    """Names are judged one floor up; the schema accepts any string, and leaves attack params as written."""
    cfg = config_from_dict({"data": {"name": "nope"}, "attack": {"name": "nope", "params": {"x": 1}},
                            "model": {"name": "nope"}})  # fmt: skip
    assert (cfg.data.name, cfg.attack.name, cfg.model.name, cfg.attack.params) == ("nope", "nope", "nope", {"x": 1})


def test_dataset_cache_root_is_declared_at_the_bottom(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from none_sweep.data import default_root as data_default_root

    monkeypatch.setenv("NONE_SWEEP_DATA", str(tmp_path))
    assert default_root() == data_default_root() == tmp_path


# ------------------------------------------------------------------------------------------ the experiment floor


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"data": {"name": "fashion_mnist"}}, "'fashion_mnist' is not a dataset (did you mean 'fashion-mnist'?)"),
        ({"attack": {"name": "blnd"}}, "attack.name: 'blnd' is not an attack (did you mean 'blend'?)"),
        ({"attack": {"target": 10}}, "attack.target must be in [0, 9] for fashion-mnist, got 10"),
        ({"attack": {"params": {"patch_sise": 3}}}, "attack.params.patch_sise (did you mean 'patch_size'?)"),
        ({"data": {"name": "digits"}, "attack": {"params": {"patch_size": 8}}}, "8px images of digits"),
        ({"attack": {"name": "sig", "mode": "all_to_all"}}, "is clean-label"),
        ({"model": {"name": "resnet19"}}, "model.name: "),
    ],
)  # fmt: skip
def test_resolve_config_runs_the_registry_checks(data: dict, fragment: str) -> None:
    config_from_dict(data)  # the schema alone has nothing against these
    with pytest.raises(ConfigError) as info:
        resolve_config(data, source="cfg.yaml")
    message = str(info.value)
    assert message.startswith("cfg.yaml: ") and fragment in message and len(message.splitlines()) == 1


def test_resolve_config_normalises_attack_params() -> None:
    cfg = resolve_config({"attack": {"name": "blend", "params": {"alpha": 0.2}}})
    assert cfg.attack.params == {"alpha": 0.2, "pattern": "noise"}
    assert resolve_config({"attack": {"name": "none"}}).attack.params == {}


def test_resolve_config_confines_paths_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = {"data": {"name": "digits"}, "attack": {"name": "blend", "params": {"pattern": "../trigger.png"}}}
    with pytest.raises(ConfigError, match=r"cfg.yaml: attack.params.pattern: '../trigger.png' climbs out"):
        resolve_config(data, source="cfg.yaml", check_paths=True)
    with pytest.raises(ConfigError, match="no such file"):  # unconfined, the attack's own check still runs
        resolve_config(data, source="cfg.yaml")


# ------------------------------------------------------------------------------------------ asking the attack


def test_attacks_say_whether_they_inject_a_trigger() -> None:
    assert injects_trigger("none") is False
    assert all(injects_trigger(name) for name in ATTACKS if name != "none")
    with pytest.raises(ConfigError, match="did you mean 'blend'"):
        injects_trigger("blnd")


def test_attacks_say_which_params_are_files() -> None:
    assert path_params("blend", {"alpha": 0.1, "pattern": "trigger.png"}) == {"pattern": "trigger.png"}
    assert path_params("blend", {"pattern": "noise"}) == {}
    for name in ATTACKS:
        if name != "blend":
            assert ATTACKS.get(name).path_params({"pattern": "trigger.png"}) == {}
