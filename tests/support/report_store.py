"""A real MLflow sqlite store populated exactly per the layout in docs/architecture.md.

The report, ls and export tests read it through the session fixture ``store`` (tests/conftest.py); tests that
write to their store (``--verify-seeds`` logging, the UI screenshot) build their own with :func:`populate_store`.
The store is real: MLflow's own client writes runs, params, per-epoch metrics, ``config.yaml`` artifacts and
PyTorch models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from none_sweep.config import ExperimentConfig, dump_config, flatten, to_dict

SWEEP = "digits-demo"
BASELINE = {"baseline_asr": 0.95, "baseline_clean_acc": 0.97, "baseline_robust_acc": 0.04}

#: name → (max_reset_fraction, lamda_l, lamda_h, finetune_lr, asr, clean_acc). Built so that
#: max-asr 0.02 → t4, max-drop 0.01 → t3, max-drop 0.02 → t9 (boundary), knee → t3, paper defaults → t5.
TRIALS = {
    "t0": (0.01, 0.05, 0.95, 1e-5, 0.90, 0.968),
    "t1": (0.02, 0.10, 0.90, 3e-5, 0.50, 0.966),
    "t2": (0.03, 0.20, 0.80, 1e-4, 0.20, 0.965),
    "t3": (0.04, 0.15, 0.85, 3e-4, 0.030, 0.960),
    "t4": (0.06, 0.10, 0.85, 1e-4, 0.015, 0.955),
    "t5": (0.05, 0.10, 0.90, 1e-4, 0.010, 0.940),
    "t6": (0.20, 0.30, 0.70, 1e-3, 0.005, 0.900),
    "t7": (0.07, 0.12, 0.88, 2e-4, 0.020, 0.950),
    "t8": (0.10, 0.25, 0.75, 5e-5, 0.40, 0.930),
    "t9": (0.06, 0.12, 0.86, 1.5e-4, 0.012, 0.950),
}
EXPECTED = {"max_asr_0.02": "t4", "max_drop_0.01": "t3", "max_drop_0.02": "t9", "knee": "t3", "paper": "t5"}
EPOCHS = 3


@dataclass
class Store:
    uri: str
    root: Path
    experiment_id: str
    parent_id: str
    run_ids: dict[str, str] = field(default_factory=dict)  # trial name → run id
    configs: dict[str, str] = field(default_factory=dict)  # trial name → config.yaml text
    empty_experiment: str = "digits-empty"


def trial_config(name: str, params: tuple) -> ExperimentConfig:
    mrf, lo, hi, lr = params[:4]
    cfg = ExperimentConfig()
    cfg.seed = 0
    cfg.data.name = "digits"
    cfg.attack.name = "badnets"
    cfg.attack.poison_rate = 0.1
    cfg.attack.params = {"patch_size": 2, "location": "bottom_right", "pattern": "white"}
    cfg.model.name = "small_cnn"
    cfg.train.epochs = EPOCHS
    cfg.train.batch_size = 64
    cfg.defense.pretrain_epochs = 2
    cfg.defense.max_reset_fraction = mrf
    cfg.defense.lamda_l = lo
    cfg.defense.lamda_h = hi
    cfg.defense.finetune_lr = lr
    return cfg


def small_model():
    """A real model for the digits data: the project's own when it exists, else a small Sequential."""
    import torch

    try:
        from none_sweep.data import dataset_info
        from none_sweep.models import create_model

        return create_model("small_cnn", dataset_info("digits"))
    except ImportError:
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )


def log_model(uri: str, run_id: str) -> None:
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            small_model().eval(), name="model", serialization_format="pickle", pip_requirements=["torch"]
        )


def populate_store(root: Path, models: tuple[str, ...] = ()) -> Store:
    """Write the sweep ``SWEEP`` (parent + TRIALS + one failed + one running trial) and an experiment
    ``digits-empty`` whose trials never finished. ``models``: trial names that get a logged model."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    art = (root / "artifacts").as_uri()
    exp_id = client.create_experiment(SWEEP, artifact_location=f"{art}/{SWEEP}")
    parent = client.create_run(
        exp_id,
        run_name=SWEEP,
        tags={"none_sweep.role": "sweep", "none_sweep.sweep": SWEEP, "none_sweep.status": "finished"},
    )
    pid = parent.info.run_id
    client.log_batch(
        pid,
        params=[
            Param("sweep.space_file", "search_spaces/digits_tiny.yaml"),
            Param("sweep.num_samples", str(len(TRIALS) + 2)),
            Param("version.none_sweep", "0.1.0"),
            Param("version.ray", "2.60.0"),
            Param("version.optuna", "5.0.0"),
            Param("version.mlflow", mlflow.__version__),
        ],
        metrics=[Metric(k, v, 0, 0) for k, v in BASELINE.items()],
    )
    client.log_text(pid, "space: {}\n", "space.yaml")
    client.log_text(pid, dump_config(trial_config("baseline", (0.05, 0.1, 0.9, 1e-4))), "baseline_config.yaml")
    store = Store(uri, root, exp_id, pid)

    def child(name: str, params: tuple, status: str, asr=None, acc=None, extra_tags=None) -> str:
        cfg = trial_config(name, params)
        run = client.create_run(
            exp_id,
            run_name=f"trial_{name}",
            tags={
                "mlflow.parentRunId": pid,
                "none_sweep.role": "trial",
                "none_sweep.sweep": SWEEP,
                "ray.trial_id": f"ray_{name}",
                **(extra_tags or {}),
            },
        )
        rid = run.info.run_id
        flat = flatten(to_dict(cfg))
        metrics = []
        if asr is not None:
            for epoch in range(EPOCHS):
                frac = (epoch + 1) / EPOCHS
                metrics += [
                    Metric("asr", round(0.95 + (asr - 0.95) * frac, 6), 0, epoch),
                    Metric("clean_acc", round(0.5 + (acc - 0.5) * frac, 6), 0, epoch),
                ]
            drop = round(BASELINE["baseline_clean_acc"] - acc, 6)
            final = {
                "robust_acc": round(1 - asr, 6),
                "clean_acc_drop": drop,
                "asr_reduction": round(BASELINE["baseline_asr"] - asr, 6),
                "der": round((max(0.0, BASELINE["baseline_asr"] - asr) - max(0.0, drop) + 1) / 2, 6),
            }
            metrics += [Metric(k, v, 0, EPOCHS) for k, v in final.items()]
            metrics += [Metric("asr", asr, 0, EPOCHS), Metric("clean_acc", acc, 0, EPOCHS)]
        client.log_batch(
            rid,
            params=[Param(k, str(v)) for k, v in flat.items()],
            metrics=metrics,
            tags=[RunTag("none_sweep.config_digest", name)],
        )
        text = dump_config(cfg)
        client.log_text(rid, text, "config.yaml")
        store.run_ids[name], store.configs[name] = rid, text
        if name in models:
            log_model(uri, rid)
        if status != "RUNNING":
            client.set_terminated(rid, status)
        return rid

    for name, row in TRIALS.items():
        child(name, row, "FINISHED", asr=row[4], acc=row[5])
    child("failed", (0.3, 0.1, 0.9, 1e-2), "FAILED", extra_tags={"none_sweep.error": "TrainingDiverged: loss is nan"})
    child("running", (0.15, 0.1, 0.9, 1e-4), "RUNNING")
    client.set_terminated(pid, "FINISHED")

    empty_id = client.create_experiment("digits-empty", artifact_location=f"{art}/digits-empty")
    eparent = client.create_run(
        empty_id,
        run_name="digits-empty",
        tags={"none_sweep.role": "sweep", "none_sweep.sweep": "digits-empty", "none_sweep.status": "running"},
    )
    client.log_metric(eparent.info.run_id, "baseline_clean_acc", 0.97)
    for i, status in enumerate(("FAILED", "RUNNING")):
        r = client.create_run(
            empty_id,
            run_name=f"trial_{i}",
            tags={
                "mlflow.parentRunId": eparent.info.run_id,
                "none_sweep.role": "trial",
                "none_sweep.sweep": "digits-empty",
                "ray.trial_id": f"e{i}",
            },
        )
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status)
    return store


def name_of(store: Store, trial) -> str:
    return {rid: name for name, rid in store.run_ids.items()}[trial.run_id]
