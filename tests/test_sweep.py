"""Real sweeps on a local Ray instance, real Optuna and a real MLflow SQLite store (digits: seconds per trial).

The session's 6-trial ``digits_tiny`` sweep (fixture ``digits_sweep``, tests/conftest.py) is read by the checks
here (MLflow layout vs Ray's results, the Optuna Pareto front vs the non-dominated trials computed here, the
model, ``sync-mlflow``); a 2-trial sweep with a diverging point checks failure handling. Both run on the shared
local Ray (``ray_local``).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import yaml
from support.results import ray_trials
from support.sweeps import DIGITS, FinishedSweep

from none_sweep.cli import main
from none_sweep.errors import ConfigError, StorageError
from none_sweep.sweep.runner import SweepOptions, run_sweep
from none_sweep.sweep.search import FAIL_ATTR, RAY_TRIAL_ATTR, open_study
from none_sweep.tracking.store import SweepTracker


def test_six_trial_sweep_completes(digits_sweep: FinishedSweep) -> None:
    assert digits_sweep.code == 0, digits_sweep.text
    trials = digits_sweep.trials
    assert len(trials) == 6 and all(t.status == "TERMINATED" for t in trials)
    for t in trials:  # every final report carries the objectives and the constraint metric
        last = t.last_result
        assert last["final"] == 1 and {"asr", "clean_acc", "clean_acc_drop", "asr_reduction", "der"} <= set(last)
    text = digits_sweep.text
    assert f"mlflow ui --backend-store-uri {digits_sweep.uri}" in text and "experiment 'digits-test'" in text
    assert "Pareto front (asr min, clean_acc max; feasible: clean_acc_drop <= 0.05):" in text


def test_mlflow_holds_one_parent_and_one_child_per_trial_matching_ray(digits_sweep: FinishedSweep) -> None:
    tracker = SweepTracker(digits_sweep.uri, "digits-test")
    client = tracker.client
    runs = client.search_runs([tracker.experiment_id])
    parents = [r for r in runs if r.data.tags.get("none_sweep.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("none_sweep.role") == "trial"]
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.data.tags["none_sweep.status"] == "finished" and parent.info.status == "FINISHED"
    assert {"baseline_asr", "baseline_clean_acc", "baseline_robust_acc", "pretrain_saved_s"} <= set(parent.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space.yaml", "pareto_front.csv", "baseline_config.yaml"} <= artifacts
    by_trial = {r.data.tags["ray.trial_id"]: r for r in children}
    for t in digits_sweep.trials:
        run = by_trial[t.trial_id]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        for key in ("asr", "clean_acc", "clean_acc_drop", "der"):
            assert run.data.metrics[key] == pytest.approx(t.last_result[key]), key
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "clean_acc")]
        assert sorted(steps) == list(range(1, t.last_result["epoch"] + 1))  # one value per epoch, step=epoch
        assert run.data.params["defense.lamda_l"] == str(t.config["defense.lamda_l"])
        assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    baseline = parent.data.metrics["baseline_clean_acc"]
    for run in children:
        assert run.data.metrics["clean_acc_drop"] == pytest.approx(baseline - run.data.metrics["clean_acc"])
    assert sum(r.data.tags.get("none_sweep.point") == "paper_defaults" for r in children) == 1


def test_logged_model_loads_and_config_artifact_runs_as_is(digits_sweep: FinishedSweep, tmp_path: Path) -> None:
    import mlflow
    import torch

    from none_sweep.experiment import load_experiment

    tracker = SweepTracker(digits_sweep.uri, "digits-test")
    front = {row["trial"] for row in json.loads((digits_sweep.folder / "summary.json").read_text())["front"]}
    runs = tracker.children()  # `log_models: front` (the default): the front's trials, and only those, get a model
    run = runs[sorted(front)[0]]
    assert {tid for tid, r in runs.items() if tracker.has_model(r.info.run_id)} == front
    mlflow.set_tracking_uri(digits_sweep.uri)
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    path = tracker.client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    cfg = load_experiment(path)
    assert cfg.defense.lamda_l == pytest.approx(float(run.data.params["defense.lamda_l"]))


def test_the_sweep_front_equals_optunas_and_the_non_dominated_feasible_ray_trials(digits_sweep: FinishedSweep) -> None:
    """Three independent views agree: a naive front over Ray's final results, Optuna's ``best_trials`` and the
    front the sweep wrote (``summary.json``, computed by ``sweep/pareto.py``)."""

    trials = digits_sweep.trials
    feasible = [t for t in trials if t.last_result["clean_acc_drop"] <= 0.05]
    points = {t.trial_id: (t.last_result["asr"], -t.last_result["clean_acc"]) for t in feasible}
    expected = {
        tid
        for tid, p in points.items()
        if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for other, q in points.items() if other != tid)
    }
    study = open_study(digits_sweep.folder / "optuna.journal", "digits-test")
    assert len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert {t.user_attrs[RAY_TRIAL_ATTR] for t in study.best_trials} == expected and expected
    written = json.loads((digits_sweep.folder / "summary.json").read_text())
    assert {row["trial"] for row in written["front"]} == expected and written["status"] == "finished"


def test_resume_of_a_finished_sweep_reruns_nothing(digits_sweep: FinishedSweep) -> None:
    opts = copy.copy(digits_sweep.opts)
    opts.resume = True
    lines: list[str] = []
    assert run_sweep(opts, say=lines.append) == 0
    assert any("baseline: reusing" in line for line in lines)
    after = ray_trials(digits_sweep.storage, "digits-test")
    assert {t.trial_id: t.last_result["training_iteration"] for t in after} == {
        t.trial_id: t.last_result["training_iteration"] for t in digits_sweep.trials
    }
    runs = SweepTracker(digits_sweep.uri, "digits-test").client.search_runs(
        [SweepTracker(digits_sweep.uri, "digits-test").experiment_id]
    )
    assert len(runs) == 7  # still one parent and six children
    with pytest.raises(StorageError, match="already exists"):
        run_sweep(SweepOptions(space_path=str(DIGITS), name="digits-test", storage=opts.storage,
                               tracking_uri=opts.tracking_uri))  # fmt: skip


def test_sync_mlflow_rebuilds_a_lost_tracking_store(digits_sweep: FinishedSweep, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    code = main(["sync-mlflow", "--name", "digits-test", "--storage", str(digits_sweep.storage),
                 "--tracking-uri", fresh])  # fmt: skip
    assert code == 0
    old = SweepTracker(digits_sweep.uri, "digits-test").children()
    new_tracker = SweepTracker(fresh, "digits-test")
    new = new_tracker.children()
    assert set(new) == set(old) and len(new) == 6
    front = {row["trial"] for row in json.loads((digits_sweep.folder / "summary.json").read_text())["front"]}
    assert front and front < set(new)
    for tid, run in new.items():
        assert run.info.status == "FINISHED" and run.data.tags.get("none_sweep.synced") == "true"
        for key in ("asr", "clean_acc", "clean_acc_drop"):
            assert run.data.metrics[key] == pytest.approx(old[tid].data.metrics[key])
        # log_models: front (the default): the front's trials have their model, the others none
        assert new_tracker.has_model(run.info.run_id) == (tid in front), tid
        assert SweepTracker(digits_sweep.uri, "digits-test").has_model(old[tid].info.run_id) == (tid in front), tid
    parent = new_tracker.client.get_run(new_tracker.parent_id)
    assert parent.data.tags["none_sweep.status"] == "finished" and "baseline_asr" in parent.data.metrics
    # a second sync finds nothing to do
    assert main(["sync-mlflow", "--name", "digits-test", "--storage", str(digits_sweep.storage),
                 "--tracking-uri", fresh]) == 0  # fmt: skip
    assert len(SweepTracker(fresh, "digits-test").children()) == 6


def test_a_diverging_trial_fails_everywhere_and_the_sweep_goes_on(tmp_path: Path, ray_local) -> None:
    data = yaml.safe_load(DIGITS.read_text())
    # fine-tuning at lr 10 with BatchNorm frozen (the published setting) sends the loss to NaN in its first epoch
    data["space"]["defense.finetune_lr"]["high"] = 10.0
    point = {"defense.finetune_lr": 10.0, "defense.pretrain_epochs": 4}
    # the normal trial beside it: also fixed, so nothing is left to chance
    paper = data["search"]["points_to_evaluate"][0]
    data["search"]["points_to_evaluate"] = [{"name": "explodes", "params": point}, paper]
    data["num_samples"] = 2  # the diverging point and one normal trial, side by side
    data["max_failures"] = 1
    space = tmp_path / "nan.yaml"
    space.write_text(yaml.safe_dump(data))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    lines: list[str] = []
    code = run_sweep(SweepOptions(space_path=str(space), name="nan", storage=str(tmp_path / "ray"), tracking_uri=uri),
                     say=lines.append)  # fmt: skip
    assert code == 0, "\n".join(lines)
    trials = ray_trials(tmp_path / "ray", "nan")
    (bad,) = [t for t in trials if t.config.get("_point") == "explodes"]
    others = [t for t in trials if t is not bad]
    assert bad.status == "ERROR" and "TrainingDiverged" in str(bad.get_error())
    assert len(others) == 1 and all(t.status == "TERMINATED" for t in others)
    study = open_study(tmp_path / "ray" / "nan" / "optuna.journal", "nan")
    states = {t.user_attrs[RAY_TRIAL_ATTR]: t for t in study.trials}
    assert states[bad.trial_id].state.name == "FAIL" and "errored" in states[bad.trial_id].user_attrs[FAIL_ATTR]
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 1
    run = SweepTracker(uri, "nan").children()[bad.trial_id]
    assert run.info.status == "FAILED" and run.data.tags["none_sweep.error"].startswith("TrainingDiverged: loss became")
    assert any(math.isfinite(v) for v in run.data.metrics.values())  # the epochs before it diverged are there


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: {defense.lamda_q: {type: uniform, low: 0.1, high: 0.2}}\n")
    assert main(["sweep", str(bad), "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'defense.lamda_q' is not a config key" in err
    assert main(["sweep", str(DIGITS), "--name", "nope", "--storage", str(tmp_path), "--resume"]) == 2
    assert "no sweep 'nope'" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        run_sweep(SweepOptions(space_path=str(DIGITS), resume=True))


def test_register_model_of_a_trial_off_the_front_logs_it_from_its_checkpoint(
    digits_sweep: FinishedSweep, tmp_path: Path
) -> None:
    """``log_models: front`` leaves the other trials without a model; ``export --register-model`` logs the chosen
    one from its Ray checkpoint first, and the registered network is the trial's own (same outputs)."""
    import shutil

    import mlflow
    import torch

    from none_sweep.data import dataset_info
    from none_sweep.models import create_model

    db = tmp_path / "copy.db"  # a copy: the session's store stays as the sweep left it
    shutil.copy(digits_sweep.uri.removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    front = {row["trial"] for row in json.loads((digits_sweep.folder / "summary.json").read_text())["front"]}
    tracker = SweepTracker(uri, "digits-test")
    tid, run = next((tid, run) for tid, run in tracker.children().items() if tid not in front)
    assert not tracker.has_model(run.info.run_id)
    out = tmp_path / "off_front.yaml"
    args = ["export", "--run-id", run.info.run_id, "--tracking-uri", uri, "--out", str(out), "--register-model", "off"]
    assert main(args) == 0
    assert tracker.has_model(run.info.run_id) and out.exists()

    trial = next(t for t in digits_sweep.trials if t.trial_id == tid)
    with trial.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / "model_state.pt", weights_only=True)
    own = create_model("small_cnn", dataset_info("digits"))
    own.load_state_dict(state)
    own.eval()
    mlflow.set_tracking_uri(uri)
    registered = mlflow.pytorch.load_model("models:/off/1")
    images = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(registered(images), own(images), atol=1e-5)


def test_a_trial_worker_told_to_stop_prints_no_traceback() -> None:
    """Ray's SIGTERM handler raises SystemExit in a worker it stops; raised inside a finaliser, Python would print
    "Exception ignored in ..." with a traceback onto the user's console. That one is dropped, real errors are not."""
    import subprocess
    import sys

    code = (
        "import gc\n"
        "from none_sweep.sweep.trainable import quiet_termination\n"
        "class Stop:\n    def __del__(self): raise SystemExit(1)\n"
        "class Broken:\n    def __del__(self): raise ValueError('a real bug')\n"
        "quiet_termination(); quiet_termination()\n"
        "Stop(); gc.collect()\nBroken(); gc.collect()\nprint('alive')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "alive", out.stderr
    assert "SystemExit" not in out.stderr and "ValueError: a real bug" in out.stderr, out.stderr
