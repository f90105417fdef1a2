"""Robust selection's unit of work: one defense config run against several attack variants (real digits runs)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from none_sweep.config import parse_overrides
from none_sweep.errors import ConfigError
from none_sweep.experiment import load_experiment
from none_sweep.sweep.space import space_from_dict
from none_sweep.train import ExperimentRun, PretrainCache, VariantsRun
from none_sweep.train.metrics import AGGREGATES, FINAL_METRICS
from none_sweep.train.variants import aggregate, combined_metrics

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "configs" / "digits_badnets.yaml"
SHORT = {"train.epochs": 3, "defense.pretrain_epochs": 2, "defense.reset_interval": 1}
VARIANTS = {"p2_br": {}, "p3_tl": {"attack.params.patch_size": 3, "attack.params.location": "top_left"}}


def cfg(**overrides: Any) -> Any:
    return load_experiment(DIGITS, parse_overrides([f"{k}={v}" for k, v in {**SHORT, **overrides}.items()]))


def variant_configs(**overrides: Any) -> dict[str, Any]:
    return {name: cfg(**{**changes, **overrides}) for name, changes in VARIANTS.items()}


@pytest.fixture(scope="module")
def baselines() -> dict[str, dict[str, Any]]:
    out = {}
    for name, c in variant_configs(**{"defense.enabled": "false"}).items():
        run = ExperimentRun(c)
        list(run.epochs())
        out[name] = dict(run.result().metrics)
    return out


def test_aggregates_are_declared_where_objectives_are_checked() -> None:
    assert set(AGGREGATES) <= set(FINAL_METRICS)
    one = {"asr": 0.3, "clean_acc": 0.9, "clean_acc_drop": 0.01}
    assert aggregate({"run": one}) == {"asr_max": 0.3, "asr_mean": 0.3, "clean_acc_min": 0.9,
                                       "clean_acc_mean": 0.9, "clean_acc_drop_max": 0.01}  # fmt: skip
    two = combined_metrics({"a": {**one, "wall_s": 2.0}, "b": {"asr": 0.1, "clean_acc": 0.8, "clean_acc_drop": 0.05,
                                                           "wall_s": 3.0}})  # fmt: skip
    assert two["asr"] == two["asr_max"] == 0.3 and two["asr_mean"] == pytest.approx(0.2)
    assert two["clean_acc"] == two["clean_acc_min"] == 0.8 and two["clean_acc_drop"] == 0.05
    assert two["wall_s"] == 5.0 and two["a.asr"] == 0.3 and two["b.clean_acc"] == 0.8 and two["variants"] == 2


def test_a_trial_runs_each_variant_and_reports_each_against_its_own_baseline(baselines, tmp_path: Path) -> None:
    cache = PretrainCache(tmp_path / "cache")
    run = VariantsRun(variant_configs(), baselines, pretrain_cache=cache)
    reports = list(run.epochs())
    assert [r.epoch for r in reports] == list(range(1, 7)) and [r.final for r in reports] == [False] * 5 + [True]
    assert reports[2].round_end and [r.metrics["variant"] for r in reports] == [0.0] * 3 + [1.0] * 3
    m = run.result().metrics
    for name in VARIANTS:  # each against its own undefended run
        assert m[f"{name}.clean_acc_drop"] == pytest.approx(baselines[name]["clean_acc"] - m[f"{name}.clean_acc"])
    asrs = [m[f"{name}.asr"] for name in VARIANTS]
    assert m["asr"] == m["asr_max"] == max(asrs) and m["asr_mean"] == pytest.approx(sum(asrs) / 2)
    assert m["clean_acc_drop_max"] == max(m[f"{n}.clean_acc_drop"] for n in VARIANTS)
    assert m["epochs"] == 6 and all(math.isfinite(v) for v in m.values())
    assert run.result().attack["variants"]["p3_tl"]["patch_size"] == 3
    # each variant's pre-training went through the shared cache under its own key: a second trial forks both
    again = VariantsRun(variant_configs(), baselines, pretrain_cache=cache)
    assert sum(r.cached for r in again.epochs()) == 4
    assert again.result().metrics["p3_tl.asr"] == m["p3_tl.asr"]


@pytest.mark.parametrize("stop_after", [2, 3, 4])  # inside variant 1, at its end, inside variant 2
def test_a_checkpoint_between_any_two_epochs_resumes_bit_for_bit(baselines, tmp_path: Path, stop_after: int) -> None:
    straight = VariantsRun(variant_configs(), baselines)
    list(straight.epochs())
    first = VariantsRun(variant_configs(), baselines)
    epochs = first.epochs()
    for _ in range(stop_after):
        next(epochs)
    first.save_checkpoint(tmp_path / "run.ckpt")
    second = VariantsRun(variant_configs(), baselines)
    second.load_checkpoint(tmp_path / "run.ckpt")
    rest = list(second.epochs())
    assert [r.epoch for r in rest] == list(range(stop_after + 1, 7)) and rest[-1].final
    timeless = lambda m: {k: v for k, v in m.items() if not k.endswith(("_s", "wall_s"))}  # noqa: E731
    assert timeless(second.result().metrics) == timeless(straight.result().metrics)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key


def space_data(**extra: Any) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "search_spaces" / "digits_tiny.yaml").read_text())
    data.update(extra)
    return data


def test_a_space_lists_variants_and_each_builds_its_config() -> None:
    space = space_from_dict(space_data(variants=[{"name": "base"}, {"name": "tl", "set": VARIANTS["p3_tl"]}]))
    assert [v.name for v in space.variants] == ["base", "tl"]
    configs = space.variant_configs({"defense.lamda_l": 0.2})
    assert configs["tl"].attack.params["location"] == "top_left" and configs["tl"].defense.lamda_l == 0.2
    assert configs["base"].attack.params["location"] == "bottom_right"
    assert not any(c.defense.enabled for c in space.baseline_configs().values())
    assert list(space_from_dict(space_data()).baseline_configs()) == [""]


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([{"name": "a"}, {"name": "a"}], "each name may appear once"),
        ([{"name": "a/b"}], r"variants\[0\].name must be letters"),
        ([{"name": "a.b"}], r"variants\[0\].name must be letters"),
        ([{"name": "a", "set": {"defense.lamda_l": 0.2}}], "never the defense itself"),
        ([{"name": "a", "set": {"attack.params.patch_size": 99}}], r"variants\[0\]"),
        ([{"name": "a", "sett": {}}], "sett"),
    ],
)
def test_bad_variants_are_one_clear_error(variants: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        space_from_dict(space_data(variants=variants), "robust.yaml")


def test_a_robust_sweep_reports_per_variant_results_and_exports_them(ray_local: None, tmp_path: Path) -> None:
    from support.results import mlflow_runs, outcomes
    from support.sweeps import run_digits_sweep

    data = space_data(
        variants=[{"name": "p2_br"}, {"name": "p3_tl", "set": VARIANTS["p3_tl"]}],
        objectives=[{"metric": "asr_max", "mode": "min"}, {"metric": "clean_acc_mean", "mode": "max"}],
        constraints=["clean_acc_drop_max <= 0.2"], num_samples=2, max_concurrent=2, keep_checkpoints=1,
    )  # fmt: skip
    data["base"]["train"]["epochs"] = 3
    data["base"]["defense"]["pretrain_epochs"] = 2
    data["space"] = {"defense.lamda_l": {"type": "uniform", "low": 0.05, "high": 0.3}}
    data["search"]["points_to_evaluate"] = []
    path = tmp_path / "robust.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    sweep = run_digits_sweep(tmp_path, "robust", path)
    assert sweep.code == 0, sweep.text

    baseline = yaml.safe_load((sweep.folder / "baseline.json").read_text())
    assert set(baseline["variants"]) == {"p2_br", "p3_tl"}
    finals = [o["metrics"] for o in outcomes(sweep.storage, "robust").values()]
    assert len(finals) == 2
    for m in finals:  # each variant judged against its own undefended baseline; the plain names are the worst case
        for name in ("p2_br", "p3_tl"):
            assert m[f"{name}.clean_acc_drop"] == pytest.approx(
                baseline["variants"][name]["clean_acc"] - m[f"{name}.clean_acc"])  # fmt: skip
        assert m["asr_max"] == max(m["p2_br.asr"], m["p3_tl.asr"]) == m["asr"]
    children = [r for r in mlflow_runs(sweep.uri, "robust") if "p3_tl.asr" in r.data.metrics]
    assert len(children) == 2
    exported = (tmp_path / "best_defense.yaml").read_text()
    assert "# variant p2_br: asr=" in exported and "# variant p3_tl: asr=" in exported
    # keep_checkpoints: 1 — each trial checkpointed several times (rounds, variants, its end); Ray kept the last
    kept = {t.name: sorted(c.name for c in t.glob("checkpoint_*")) for t in sweep.folder.glob("train_trial_*")}
    assert len(kept) == 2 and all(len(names) == 1 and names[0] > "checkpoint_000000" for names in kept.values()), kept
