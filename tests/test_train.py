"""The training core on real data (scikit-learn digits): plan, resume, cache, NONE end to end, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from none_sweep.cli import main
from none_sweep.config import config_from_dict, to_dict
from none_sweep.data import load_dataset
from none_sweep.errors import CheckpointError, TrainingDiverged
from none_sweep.experiment import load_experiment
from none_sweep.train import ExperimentRun, PretrainCache, build_plan, compare_to_baseline, detection_scores
from none_sweep.train.trigger_inversion import invert_triggers

ROOT = Path(__file__).parents[1]
DIGITS = ROOT / "configs" / "digits_badnets.yaml"


def digits_cfg(**overrides):
    from none_sweep.config import parse_overrides

    return load_experiment(DIGITS, parse_overrides([f"{k}={v}" for k, v in overrides.items()]))


@pytest.fixture(scope="module")
def digits_data():
    return load_dataset(digits_cfg().data, seed=0)


def test_plan_finetune_continue_retrain_and_baseline() -> None:
    base = {"train": {"epochs": 6, "lr": 0.1}, "data": {"name": "digits"}}
    plan = build_plan(config_from_dict({**base, "defense": {"pretrain_epochs": 4, "reset_interval": 2, "rounds": 2}}))
    assert [p.phase for p in plan] == ["pretrain"] * 4 + ["finetune"] * 4
    assert [p.epoch for p in plan if p.analyse_before] == [5, 7]
    assert all(p.lr == 1e-4 and p.freeze_bn for p in plan if p.phase == "finetune")
    assert plan[0].lr == pytest.approx(0.1) and plan[3].lr < plan[0].lr  # cosine over the pre-training
    assert [p.epoch for p in plan if p.round_end] == [4, 6, 8]

    cont = build_plan(
        config_from_dict(
            {**base, "defense": {"after_reset": "continue", "pretrain_epochs": 2, "reset_interval": 2, "rounds": 2}}
        )
    )
    assert len(cont) == 6 and [p.epoch for p in cont if p.analyse_before] == [3, 5]
    assert not any(p.freeze_bn for p in cont)

    retrain = build_plan(
        config_from_dict({**base, "defense": {"after_reset": "retrain", "pretrain_epochs": 3, "rounds": 1}})
    )
    assert [p.phase for p in retrain] == ["pretrain"] * 3 + ["retrain"] * 6 and retrain[3].reinit_model
    # detection after a short pre-training, then the undefended run's full schedule for the model that ships
    undefended_lrs = [p.lr for p in build_plan(config_from_dict({**base, "defense": {"enabled": False}}))]
    assert [p.lr for p in retrain[3:]] == undefended_lrs
    assert retrain[2].lr < retrain[3].lr == pytest.approx(0.1) and not any(p.analyse_before for p in retrain[4:])

    undefended = build_plan(config_from_dict({**base, "defense": {"enabled": False}}))
    assert [p.phase for p in undefended] == ["train"] * 6 and not any(p.analyse_before for p in undefended)


def test_compare_to_baseline_follows_backdoorbench() -> None:
    out = compare_to_baseline(
        {"clean_acc": 0.90, "asr": 0.02, "robust_acc": 0.85}, {"clean_acc": 0.92, "asr": 0.98, "robust_acc": 0.01}
    )
    assert out["clean_acc_drop"] == pytest.approx(0.02)
    assert out["asr_reduction"] == pytest.approx(0.96)
    assert out["der"] == pytest.approx((0.96 - 0.02 + 1) / 2)
    assert out["rir"] == pytest.approx((0.84 - 0.02 + 1) / 2)
    # gains never count negative: a defended run that is *worse* on ASR gets no credit and no penalty for it
    worse = compare_to_baseline(
        {"clean_acc": 0.95, "asr": 1.0, "robust_acc": 0.0}, {"clean_acc": 0.92, "asr": 0.5, "robust_acc": 0.4}
    )
    assert worse["der"] == pytest.approx(0.5) and worse["rir"] == pytest.approx(0.5)
    # no trigger planted (natural backdoors): no DER or RIR, which would only restate the drop, but the drop stays
    natural = compare_to_baseline({"clean_acc": 0.90, "asr": None}, {"clean_acc": 0.92, "asr": None})
    assert natural == {"clean_acc_drop": pytest.approx(0.02)}
    no_robust = compare_to_baseline({"clean_acc": 0.90, "asr": 0.02}, {"clean_acc": 0.92, "asr": 0.98})
    assert no_robust["der"] == pytest.approx((0.96 - 0.02 + 1) / 2) and "rir" not in no_robust


def test_detection_scores() -> None:
    removed = torch.tensor([True, True, False, False, True])
    scores = detection_scores(removed, torch.tensor([0, 3]))
    assert scores == {"poison_precision": pytest.approx(1 / 3), "poison_recall": pytest.approx(1 / 2)}
    assert detection_scores(torch.zeros(3, dtype=torch.bool), torch.tensor([1]))["poison_precision"] is None


def test_none_lowers_asr_on_digits_end_to_end(digits_data) -> None:
    """The acceptance check: NONE brings a learned backdoor down, keeping most clean accuracy."""
    undefended = ExperimentRun(digits_cfg(**{"defense.enabled": "false"}), data=digits_data)
    list(undefended.epochs())
    defended = ExperimentRun(digits_cfg(), data=digits_data)
    reports = list(defended.epochs())
    bd, df = undefended.result().metrics, defended.result().metrics
    assert bd["asr"] > 0.8, bd
    assert df["asr"] < bd["asr"] - 0.5, (bd, df)
    assert df["clean_acc"] > bd["clean_acc"] - 0.1
    assert df["neurons_reset"] > 0 and df["removed_samples"] > 0
    assert df["poison_recall"] > 0.5
    assert [r.epoch for r in reports] == list(range(1, 17)) and reports[-1].final
    assert sum(r.round_end for r in reports) == 2


def test_checkpoint_resume_is_bit_for_bit(digits_data, tmp_path: Path) -> None:
    cfg = digits_cfg(**{"train.epochs": 4, "defense.pretrain_epochs": 3, "defense.reset_interval": 2})
    straight = ExperimentRun(cfg, data=digits_data)
    list(straight.epochs())

    first = ExperimentRun(cfg, data=digits_data)
    epochs = first.epochs()
    for _ in range(4):  # stop after the first fine-tuning epoch: past the reset and the removal
        next(epochs)
    first.save_checkpoint(tmp_path / "ckpt.pt")
    second = ExperimentRun(cfg, data=digits_data)
    second.load_checkpoint(tmp_path / "ckpt.pt")
    list(second.epochs())

    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    timeless = lambda history: [{k: v for k, v in h.items() if k != "epoch_s"} for h in history]  # noqa: E731
    assert timeless(straight.history) == timeless(second.history)
    assert torch.equal(straight.removed, second.removed)


def test_corrupt_and_foreign_checkpoints_are_refused(digits_data, tmp_path: Path) -> None:
    cfg = digits_cfg(**{"train.epochs": 1, "defense.enabled": "false"})
    run = ExperimentRun(cfg, data=digits_data)
    list(run.epochs())
    path = tmp_path / "ckpt.pt"
    run.save_checkpoint(path)
    data = path.read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    for name in ("truncated.pt", "flipped.pt"):
        with pytest.raises(CheckpointError):
            ExperimentRun(cfg, data=digits_data).load_checkpoint(tmp_path / name)
    other = digits_cfg(**{"train.epochs": 2, "defense.enabled": "false"})
    with pytest.raises(CheckpointError, match="different config"):
        ExperimentRun(other, data=digits_data).load_checkpoint(path)


def test_pretrain_cache_fork_equals_own_pretraining(digits_data, tmp_path: Path) -> None:
    cfg = digits_cfg(**{"train.epochs": 3, "defense.pretrain_epochs": 3, "defense.reset_interval": 1})
    cache = PretrainCache(tmp_path / "cache")
    producer = ExperimentRun(cfg, data=digits_data, pretrain_cache=cache)
    list(producer.epochs())
    assert not producer.pretrain_cached and len(list((tmp_path / "cache").glob("*.pt"))) == 1

    # a trial with other thresholds shares the prefix and forks from the cache
    other = digits_cfg(
        **{
            "train.epochs": 3,
            "defense.pretrain_epochs": 3,
            "defense.reset_interval": 1,
            "defense.max_reset_fraction": 0.2,
        }
    )
    forked = ExperimentRun(other, data=digits_data, pretrain_cache=cache)
    reports = list(forked.epochs())
    assert forked.pretrain_cached and [r.cached for r in reports] == [True] * 3 + [False]
    alone = ExperimentRun(other, data=digits_data)
    list(alone.epochs())
    for key, value in alone.model.state_dict().items():
        assert torch.equal(value, forked.model.state_dict()[key]), key
    assert forked.result().metrics["pretrain_saved_s"] > 0


def test_diverging_loss_raises(digits_data) -> None:
    cfg = digits_cfg(**{"defense.enabled": "false", "train.epochs": 3})
    run = ExperimentRun(cfg, data=digits_data)
    epochs = run.epochs()
    next(epochs)
    with torch.no_grad():  # what a blown-up update leaves behind
        next(run.model.parameters()).fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2"):
        next(epochs)


def test_reasr_for_natural_backdoor_runs(digits_data) -> None:
    cfg = digits_cfg(
        **{
            "attack.name": "none",
            "attack.params": "{}",
            "train.epochs": 3,
            "defense.enabled": "false",
            "evaluation.reasr_steps": 20,
        }
    )
    run = ExperimentRun(cfg, data=digits_data)
    reports = list(run.epochs())
    assert reports[-1].metrics["asr"] is None
    assert 0.0 <= reports[-1].metrics["reasr"] <= 1.0
    assert "reasr" not in reports[0].metrics  # only at the end: it costs an optimisation


NATURAL = ["attack.name=none", "attack.params={}", "train.epochs=2", "defense.pretrain_epochs=2",
           "defense.reset_interval=1", "evaluation.reasr=never"]  # fmt: skip


def _natural_run(tmp_path: Path, capsys, *extra: str, baseline: Path | None = None) -> tuple[str, dict]:
    out = tmp_path / "natural"
    sets = [arg for kv in (*NATURAL, *extra) for arg in ("--set", kv)]
    against = ["--baseline", str(baseline)] if baseline else []
    assert main(["train", str(DIGITS), *sets, *against, "--out", str(out)]) == 0
    return capsys.readouterr().out, json.loads((out / "metrics.json").read_text())


def test_a_clean_run_keeps_its_data_and_reports_no_detection(tmp_path: Path, capsys) -> None:
    """No attack, defaults: the round resets but removes nothing, and no precision/recall is printed or written."""
    printed, metrics = _natural_run(tmp_path, capsys)
    assert "round 1: reset" in printed and "removed (filtering off)" in printed
    assert "precision" not in printed and "recall" not in printed
    assert metrics["removed_samples"] == 0 and metrics["rounds"][0]["filtering"] is False
    assert metrics["rounds"][0]["suspected"] > 0  # the split still flags samples; they are kept
    for where in (metrics, metrics["rounds"][0]):
        assert "poison_precision" not in where and "poison_recall" not in where


def test_a_clean_run_against_its_baseline_has_a_drop_and_no_der(tmp_path: Path, capsys) -> None:
    """DER and RIR are defined on a planted trigger; without one they would only restate the drop."""
    _, base = _natural_run(tmp_path / "base", capsys, "defense.enabled=false")
    printed, metrics = _natural_run(tmp_path, capsys, baseline=tmp_path / "base" / "natural" / "metrics.json")
    assert metrics["clean_acc_drop"] == pytest.approx(base["clean_acc"] - metrics["clean_acc"])
    assert "der" not in metrics and "rir" not in metrics
    assert "vs baseline: clean_acc_drop" in printed and "DER" not in printed and "asr_reduction" not in printed


def test_a_clean_run_filters_when_asked_explicitly(tmp_path: Path, capsys) -> None:
    printed, metrics = _natural_run(tmp_path, capsys, "defense.filter_samples=true")
    assert metrics["removed_samples"] > 0 and metrics["rounds"][0]["filtering"] is True
    assert "filtering off" not in printed and "precision" not in printed and "poison_recall" not in metrics


def test_train_cli_writes_metrics_and_resolved_config(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            str(DIGITS),
            "--set",
            "train.epochs=2",
            "--set",
            "defense.pretrain_epochs=2",
            "--set",
            "defense.reset_interval=1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "epoch   1/3 [pretrain]" in printed and "round 1: reset" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "clean_acc",
        "asr",
        "robust_acc",
        "poison_precision",
        "poison_recall",
        "neurons_reset",
        "epochs",
        "wall_s",
    ):
        assert key in metrics
    assert metrics["epochs"] == 3 and 0 <= metrics["asr"] <= 1
    assert metrics["attack"]["name"] == "badnets" and metrics["attack"]["patch_size"] == 2
    resolved = load_experiment(out / "config.yaml")
    assert to_dict(resolved)["train"]["epochs"] == 2
    # the baseline comparison, and a resumed run that has nothing left to do
    base = tmp_path / "base"
    assert (
        main(["train", str(out / "config.yaml"), "--set", "defense.enabled=false", "--out", str(base), "--quiet"]) == 0
    )
    assert (
        main(
            [
                "train",
                str(out / "config.yaml"),
                "--out",
                str(out),
                "--resume",
                "--quiet",
                "--baseline",
                str(base / "metrics.json"),
            ]
        )
        == 0
    )
    again = json.loads((out / "metrics.json").read_text())
    assert again["clean_acc"] == metrics["clean_acc"] and "der" in again and "clean_acc_drop" in again


# --------------------------------------------------------------------------- trigger inversion (REASR)
@pytest.fixture(scope="module")
def backdoored(digits_data):
    """An undefended BadNets model (target 0, a 2x2 white patch): a trigger there is to be found."""
    run = ExperimentRun(digits_cfg(**{"defense.enabled": "false"}), data=digits_data)
    list(run.epochs())
    assert run.result().metrics["asr"] > 0.8
    return run


def _invert(run: ExperimentRun, **settings):
    d = run.data
    return invert_triggers(run.model, d.test_x, d.test_y, run.info, steps=40, images=64, seed=0, **settings)


def test_reasr_finds_an_injected_trigger_and_leaves_the_model_as_it_was(backdoored) -> None:
    model = backdoored.model.train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    found = _invert(backdoored)
    assert sorted(found.per_label) == list(range(10))
    assert found.label == 0 and found.reasr == max(found.per_label.values()) and found.reasr > 0.3
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())  # BN statistics included
    for p, g in zip(model.parameters(), grads, strict=True):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)  # only the patches got gradients


def test_each_label_is_optimised_on_its_own(backdoored) -> None:
    """Chunking labels (memory) or screening them out leaves every other label's patch and flip rate as it was."""
    full = _invert(backdoored)
    chunked = _invert(backdoored, max_batch=64)  # one label per chunk
    assert chunked.per_label == pytest.approx(full.per_label, abs=1.5 / 64)
    screened = _invert(backdoored, labels=3, screen_steps=10)
    assert len(screened.per_label) == 3
    assert screened.per_label == pytest.approx({k: full.per_label[k] for k in screened.per_label}, abs=1.5 / 64)


def test_the_screen_keeps_the_label_of_an_injected_trigger(backdoored) -> None:
    """The pre-screen ranks labels by what REASR measures (the bounded patch's flips), not by the soft loss, which
    ranked the target last here; screened or not, the trigger's label and its rate come out the same."""
    full = _invert(backdoored)
    screened = _invert(backdoored, labels=2)  # the default screen: after half the steps
    assert screened.label == full.label == 0
    assert screened.reasr == pytest.approx(full.reasr, abs=1.5 / 64)


def test_the_holdout_measures_on_more_images(backdoored) -> None:
    """The flip rate is a count over the held-out images: with 300 of them, rates are multiples of 1/valid."""
    found = _invert(backdoored, holdout=300)
    d = backdoored.data
    order = torch.randperm(len(d.test_y), generator=torch.Generator().manual_seed(0))[64 : 64 + 300]
    valid = int((d.test_y[order] != found.label).sum())
    assert valid > 200 and round(found.reasr * valid) == pytest.approx(found.reasr * valid, abs=1e-3)
