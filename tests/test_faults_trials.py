"""Failing trials in a real sweep: one raises, one's loss goes NaN, one ends without a usable objective.

Each must be failed with its reason in all three records — Ray (``ERROR`` and the error text), Optuna
(``TrialState.FAIL`` with ``fail_reason``) and MLflow (``FAILED`` and tag ``none_sweep.error``) — while the
healthy trial completes and the sweep itself ends normally. Retries (``max_failures: 1``) must not turn a
failure into a success. The NaN-loss case alone is also in ``tests/test_sweep.py``; here it shares a sweep
with the other two failure kinds.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from support.faults import space_file, sweep_args
from support.processes import Proc, no_traceback, ray_sandbox
from support.results import children_by_trial, mlflow_runs, ray_trials, trial_rows

pytestmark = pytest.mark.slow

SAFE = {"train.lr": 0.05, "train.momentum": 0.9, "train.weight_decay": 0.0005, "train.batch_size": 64}
POINTS = {
    "ok": {"data.train_subset": 400, **SAFE, "attack.name": "badnets"},
    "raises": {"data.train_subset": 5000, **SAFE, "attack.name": "badnets"},  # DataError inside the trial
    "nan_loss": {
        "data.train_subset": 400,
        "train.lr": 10.0,
        "train.momentum": 0.99,
        "train.weight_decay": 1.0,
        "train.batch_size": 8,
        "attack.name": "badnets",
    },  # loss nan in the first epoch
    "no_objective": {"data.train_subset": 400, **SAFE, "attack.name": "none"},  # no trigger: asr never measured
}
#: (Ray error text, Optuna fail_reason, MLflow none_sweep.error) fragments per failing point
EXPECTED = {
    "raises": ("DataError", "errored", "DataError: data.train_subset=5000 exceeds the"),
    "nan_loss": ("TrainingDiverged", "errored", "TrainingDiverged: loss became"),
    "no_objective": ("MissingObjective", "errored", "MissingObjective: final result has no usable asr"),
}


@pytest.mark.timeout(600)
def test_raising_diverging_and_objectiveless_trials_fail_everywhere_others_complete(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from none_sweep.sweep.search import FAIL_ATTR, RAY_TRIAL_ATTR, open_study

    space = space_file(
        tmp_path,
        base={"attack": {"name": "badnets", "poison_rate": 0.1, "target": 0, "params": {}}},
        space={"data.train_subset": {"type": "choice", "values": [400, 5000]},
               "train.lr": {"type": "choice", "values": [0.05, 10.0]},
               "train.momentum": {"type": "choice", "values": [0.9, 0.99]},
               "train.weight_decay": {"type": "choice", "values": [0.0005, 1.0]},
               "train.batch_size": {"type": "choice", "values": [64, 8]},
               "attack.name": {"type": "choice", "values": ["badnets", "none"]}},
        search={"sampler": "random", "seed": 0,
                "points_to_evaluate": [{"name": n, "params": p} for n, p in POINTS.items()]},
        num_samples=len(POINTS), max_concurrent=2, max_failures=1,
    )  # fmt: skip
    storage, name, uri = tmp_path / "ray", "failing", f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.monotonic()
    with ray_sandbox() as env:
        proc = Proc(sweep_args(space, name, storage, uri), tmp_path, env, "sweep")
        try:
            code = proc.wait(540)
        finally:
            proc.close()
    elapsed = time.monotonic() - t0
    assert code == 0, proc.tail()  # failed trials do not fail the sweep
    assert no_traceback(proc.out), proc.tail()
    assert f"sweep {name!r} finished: 4/4 trials, 1 completed, 3 failed" in proc.out, proc.tail()

    trials = {t.config["_point"]: t for t in ray_trials(storage, name)}
    assert set(trials) == set(POINTS)
    assert trials["ok"].status == "TERMINATED"
    study = {t.user_attrs[RAY_TRIAL_ATTR]: t for t in open_study(storage / name / "optuna.journal", name).trials}
    runs = children_by_trial(mlflow_runs(uri, name))
    assert study[trials["ok"].trial_id].state == TrialState.COMPLETE
    (ok_run,) = runs[trials["ok"].trial_id]
    assert ok_run.info.status == "FINISHED" and "asr" in ok_run.data.metrics

    for point, (ray_text, optuna_text, mlflow_text) in EXPECTED.items():
        trial = trials[point]
        assert trial.status == "ERROR", (point, trial.status)
        (error_txt,) = (storage / name).glob(f"train_trial_{trial.trial_id}_*/error.txt")  # Ray's record of why
        assert ray_text in error_txt.read_text(), point
        ot = study[trial.trial_id]
        assert ot.state == TrialState.FAIL and optuna_text in ot.user_attrs[FAIL_ATTR], (point, ot.state, ot.user_attrs)
        (run,) = runs[trial.trial_id]
        assert run.info.status == "FAILED", point
        assert mlflow_text in run.data.tags["none_sweep.error"], (point, run.data.tags.get("none_sweep.error"))
    # the objectiveless trial still delivered what it measured: in Ray's results and in MLflow (Ray's
    # last_result is reset to the checkpoint's when the retry restores it, so read the full history)
    tid = trials["no_objective"].trial_id
    (final,) = [r for r in trial_rows(storage, name)[tid] if r.get("final") == 1]
    assert 0.0 <= final["clean_acc"] <= 1.0 and math.isnan(final["asr"])
    history = MlflowClient(tracking_uri=uri).get_metric_history(runs[tid][0].info.run_id, "clean_acc")
    assert {m.step: m.value for m in history}[final["epoch"]] == pytest.approx(final["clean_acc"])
    print(f"\nfailing-trials sweep: {elapsed:.0f}s; "
          + "; ".join(f"{p}: {trials[p].status}" for p in POINTS))  # fmt: skip
