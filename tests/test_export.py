"""``none-sweep export`` on a real MLflow store: rules, provenance, errors, model registration."""

from __future__ import annotations

import re

import pytest
import yaml
from support.report_store import EXPECTED, SWEEP, small_model

from none_sweep.cli import main as run_cli
from none_sweep.config import to_dict
from none_sweep.experiment import load_experiment, resolve_config
from none_sweep.tracking.layout import MODEL_RULE_TAG, MODEL_RUN_TAG, SWEEP_TAG


def export(store, tmp_path, *argv):
    out = tmp_path / "best_defense.yaml"
    rc = run_cli(["export", *argv, "--out", str(out), "--tracking-uri", store.uri])
    return rc, out


@pytest.mark.parametrize(
    "rule, expected",
    [
        (["--max-asr", "0.02"], EXPECTED["max_asr_0.02"]),
        (["--max-drop", "0.01"], EXPECTED["max_drop_0.01"]),
        (["--knee"], EXPECTED["knee"]),
        ([], EXPECTED["max_drop_0.02"]),  # the default rule
    ],
)
def test_export_picks_the_rule_s_run_and_round_trips(store, tmp_path, capsys, rule, expected):
    rc, out = export(store, tmp_path, "--experiment", SWEEP, *rule)
    assert rc == 0, capsys.readouterr().err
    text = out.read_text()
    rid = store.run_ids[expected]
    assert f"# run: {rid} (ray trial ray_{expected}" in text
    # the body is the stored artifact verbatim, under a comment-only header
    header, body = text.split("#\n", 1)
    assert all(line.startswith("# ") for line in header.splitlines())
    assert body == store.configs[expected]
    # it loads with the project's loader and equals the stored config
    assert to_dict(load_experiment(out)) == to_dict(resolve_config(yaml.safe_load(store.configs[expected])))
    assert "none-sweep train" in capsys.readouterr().out


def test_provenance_header(store, tmp_path, capsys):
    rc, out = export(store, tmp_path, "--experiment", SWEEP, "--max-asr", "0.02")
    assert rc == 0
    head = out.read_text().split("#\n", 1)[0]
    assert f"# experiment: {SWEEP} (id {store.experiment_id}) at {store.uri}" in head
    assert f"parent run {store.parent_id}" in head
    assert "# rule: max-asr 0.02: highest clean_acc among trials with asr <= 0.02" in head
    assert "# metrics: asr=0.0150 clean_acc=0.9550 clean_acc_drop=0.0150" in head
    assert "# baseline: baseline_asr=0.9500 baseline_clean_acc=0.9700 baseline_robust_acc=0.0400" in head
    assert re.search(r"# code: exported by none-sweep \d+\.\d+\.\d+", head)
    assert "; the sweep ran version.none_sweep=0.1.0" in head
    assert re.search(r"# date: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", head)


def test_export_by_run_id(store, tmp_path, capsys):
    rc, out = export(store, tmp_path, "--run-id", store.run_ids["t7"])
    assert rc == 0, capsys.readouterr().err
    assert out.read_text().split("#\n", 1)[1] == store.configs["t7"]
    assert f"# rule: explicit --run-id {store.run_ids['t7']}" in out.read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--experiment", "nope"], "no experiment named 'nope' at sqlite:///"),
        (["--experiment", "digits-empty"], "no finished trials in sweep 'digits-empty' (1 failed, 1 running)"),
        (["--experiment", SWEEP, "--max-asr", "0.001"], "no finished trial in sweep 'digits-demo' has asr <= 0.001"),
        (["--experiment", SWEEP, "--max-drop", "0.001"], "closest: run "),
        (["--experiment", SWEEP, "--max-asr", "-1"], "--max-asr must be a number >= 0"),
        (["--run-id", "FAILED"], "is FAILED, not FINISHED"),
        (["--run-id", "PARENT"], "is a sweep's parent run"),
        (["--run-id", "t3", "--knee"], "--run-id exports that run"),
    ],
)
def test_export_errors_are_one_line_exit_2(store, tmp_path, capsys, argv, message):
    argv = [
        {"FAILED": store.run_ids["failed"], "PARENT": store.parent_id, "t3": store.run_ids["t3"]}.get(a, a)
        for a in argv
    ]
    rc, out = export(store, tmp_path, *argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("none-sweep export: error: ")
    assert message in err[-1]
    assert not out.exists()


def test_unknown_experiment_lists_existing(store, tmp_path, capsys):
    export(store, tmp_path, "--experiment", "nope")
    assert "existing experiments: digits-demo, digits-empty" in capsys.readouterr().err


def test_register_model_creates_a_loadable_version(store, tmp_path, capsys):
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow import MlflowClient

    rc, _ = export(store, tmp_path, "--experiment", SWEEP, "--max-asr", "0.02", "--register-model", "none-digits")
    assert rc == 0, capsys.readouterr().err
    assert "registered models:/none-digits/1" in capsys.readouterr().out
    client = MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)
    mv = client.get_model_version("none-digits", "1")
    assert mv.run_id == store.run_ids["t4"]
    assert float(mv.tags["asr"]) == 0.015 and float(mv.tags["clean_acc"]) == 0.955
    assert float(mv.tags["baseline_clean_acc"]) == 0.97
    assert mv.tags[MODEL_RUN_TAG] == store.run_ids["t4"] and mv.tags[SWEEP_TAG] == SWEEP
    assert mv.tags[MODEL_RULE_TAG].startswith("max-asr 0.02")
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)
    model = mlflow.pytorch.load_model("models:/none-digits/1")
    reference = mlflow.pytorch.load_model(f"runs:/{store.run_ids['t4']}/model")
    assert type(model).__name__ == type(small_model()).__name__
    # it evaluates: real digits through the registered network give the logged network's logits
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images[:64]).float().div(16.0).unsqueeze(1)
    model.eval()
    reference.eval()
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (64, 10) and torch.isfinite(logits).all()
        assert torch.equal(logits, reference(x))
    # a second export registers a second version
    rc, _ = export(store, tmp_path, "--experiment", SWEEP, "--knee", "--register-model", "none-digits")
    assert rc == 0
    assert client.get_model_version("none-digits", "2").run_id == store.run_ids["t3"]


def test_register_without_logged_model_is_a_clear_error(store, tmp_path, capsys):
    rc, out = export(store, tmp_path, "--experiment", SWEEP, "--max-drop", "0.02", "--register-model", "nomodel")
    err = capsys.readouterr().err
    assert rc == 2
    assert f"run {store.run_ids['t9']} (trial ray_t9) has no logged model under 'model'" in err
    assert out.exists()  # the config was exported before registration was attempted
