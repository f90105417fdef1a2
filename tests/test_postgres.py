"""The cluster's tracking path end to end: a sweep of 8 concurrent trials through ``mlflow server`` on PostgreSQL.

The cluster configs keep MLflow's runs in PostgreSQL (``cluster/README.md``: SQLite serialises every write
behind one file lock). Here a throw-away PostgreSQL (``bench/_postgres.py``: ``initdb`` in a temp dir, loopback
only) backs a real ``mlflow server`` on loopback, and the real ``none-sweep sweep`` CLI runs
``search_spaces/digits_tiny.yaml`` with 8 trials at once (a quarter CPU each) against it. Then every MLflow
run and metric is checked against the sweep's own stores: one child run per Ray trial, its per-epoch and final
metrics equal to Ray's results, the parent run with the baseline of ``baseline.json`` and a copy of
``sweep.json`` served back by the server, and the rows really in PostgreSQL (not in some local fallback).

Skips, saying why, where no PostgreSQL binaries exist (``.ci/run`` installs Debian's ``postgresql``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from support.net import free_port
from support.processes import NONE_SWEEP, ROOT, Proc, no_traceback, ray_sandbox
from support.results import children_by_trial, mlflow_runs, outcomes, ray_trials, trial_rows
from support.servers import mlflow_server

from bench._postgres import postgres_unavailable, throwaway_postgres

pytestmark = pytest.mark.slow

#: the top of the fine-tuning learning rate range: every trial trains to its end (this test is not about failures)
STABLE_LR = 0.02
TRIALS = 8
FINAL = ("asr", "clean_acc", "robust_acc", "clean_acc_drop", "asr_reduction", "der")


def concurrent_space(folder: Path) -> Path:
    """``digits_tiny.yaml`` with 8 trials, all 8 at once (0.25 CPU each: the 2 cores of the local Ray)."""
    data = yaml.safe_load((ROOT / "search_spaces" / "digits_tiny.yaml").read_text())
    data.update(num_samples=TRIALS, max_concurrent=TRIALS, resources={"cpu": 2 / TRIALS, "gpu": 0})
    data["space"]["defense.finetune_lr"]["high"] = STABLE_LR  # above ~0.035 fine-tuning can diverge to NaN
    path = folder / "digits_pg.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def most_at_once(rows: dict[str, list[dict]]) -> int:
    """How many trials had reported and not yet finished at the same moment (Ray's ``timestamp`` seconds)."""
    spans = [(r[0]["timestamp"] - r[0]["time_this_iter_s"], r[-1]["timestamp"]) for r in rows.values()]
    return max(sum(1 for s, e in spans if s <= start <= e) for start, _ in spans)


@pytest.mark.timeout(1800)
def test_sweep_of_eight_concurrent_trials_through_mlflow_on_postgres(tmp_path: Path) -> None:
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    import sqlalchemy
    from mlflow import MlflowClient

    from none_sweep.tracking.layout import metrics_of, step_of

    name, storage, port = "pg", tmp_path / "ray", free_port()
    uri = f"http://127.0.0.1:{port}"
    space = concurrent_space(tmp_path)
    t0 = time.monotonic()
    with throwaway_postgres(tmp_path) as db, mlflow_server(tmp_path, port, backend=db), ray_sandbox() as env:
        proc = Proc([NONE_SWEEP, "sweep", str(space), "--name", name, "--storage", str(storage),
                     "--tracking-uri", uri], tmp_path, env, "sweep")  # fmt: skip
        try:
            code = proc.wait(1500)
        finally:
            proc.close()
        assert code == 0, proc.tail()
        assert no_traceback(proc.out) and no_traceback(proc.err), proc.tail()
        assert "warning: MLflow missed" not in proc.out, proc.tail()
        assert "View run" not in proc.out, proc.tail()  # MLflow's per-run links: not one per trial on the console
        swept = time.monotonic() - t0

        runs = mlflow_runs(uri, name)
        client = MlflowClient(tracking_uri=uri)
        histories = {
            r.info.run_id: {k: [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, k)]
                            for k in ("asr", "clean_acc")}
            for r in runs if r.data.tags.get("none_sweep.role") == "trial"
        }  # fmt: skip
        parent = next(r for r in runs if r.data.tags.get("none_sweep.role") == "sweep")
        copy = client.download_artifacts(parent.info.run_id, "sweep.json", str(tmp_path / "copy"))
        record_copy = json.loads(Path(copy).read_text())
        engine = sqlalchemy.create_engine(db)
        with engine.connect() as conn:  # the rows are in PostgreSQL itself
            in_db = conn.execute(sqlalchemy.text(
                "SELECT count(*) FROM runs JOIN experiments USING (experiment_id) WHERE experiments.name = :n"
            ), {"n": name}).scalar()  # fmt: skip
            metric_rows = conn.execute(sqlalchemy.text("SELECT count(*) FROM metrics")).scalar()
        engine.dispose()
    server_log = (tmp_path / "server.log").read_text(errors="replace")
    assert "database is locked" not in server_log and "OperationalError" not in server_log

    # Ray's record of the sweep: 8 trials, all finished, 8 at once
    trials = ray_trials(storage, name)
    rows = trial_rows(storage, name)
    states = [(t.trial_id, t.status) for t in trials]
    assert len(trials) == TRIALS and all(t.status == "TERMINATED" for t in trials), states
    assert set(rows) == {t.trial_id for t in trials} == set(outcomes(storage, name))

    # one FINISHED child run per trial, with Ray's final metrics and every epoch Ray saw
    children = children_by_trial(runs)
    assert {tid: len(rs) for tid, rs in children.items()} == {t.trial_id: 1 for t in trials}
    for t in trials:
        (run,) = children[t.trial_id]
        assert run.info.status == "FINISHED", t.trial_id
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["none_sweep.node_id"] == t.last_result["node_id"]
        for key in FINAL:
            assert run.data.metrics[key] == pytest.approx(t.last_result[key]), (t.trial_id, key)
        history = histories[run.info.run_id]
        for row in rows[t.trial_id]:
            for key, value in metrics_of(row).items():
                if key in history:
                    assert (step_of(row), pytest.approx(value)) in history[key], (t.trial_id, key, row)
        key = "defense.max_reset_fraction"
        assert float(run.data.params[key]) == pytest.approx(float(t.config[key])), t.trial_id

    # the parent: finished, the baseline of baseline.json, the record of sweep.json
    baseline = json.loads((storage / name / "baseline.json").read_text())
    record = json.loads((storage / name / "sweep.json").read_text())
    assert parent.info.status == "FINISHED" and parent.data.tags["none_sweep.status"] == "finished"
    for key in ("asr", "clean_acc"):
        assert parent.data.metrics[f"baseline_{key}"] == pytest.approx(baseline["metrics"][key])
    assert record_copy == record and record["tracking_uri"] == uri and record["num_samples"] == TRIALS
    assert in_db == TRIALS + 1 and metric_rows > 0
    print(
        f"\nPostgreSQL-backed MLflow: {TRIALS} trials, up to {most_at_once(rows)} reporting at once, "
        f"{sum(len(r) for r in rows.values())} Ray reports, {metric_rows} metric rows in PostgreSQL; "
        f"sweep {swept:.0f}s"
    )
