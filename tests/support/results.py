"""What a sweep left behind, read directly: Ray's files (without importing Ray where possible), the
trainable's outcome records, and MLflow's runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def trial_rows(storage: Path, name: str) -> dict[str, list[dict[str, Any]]]:
    """Ray trial id → the rows of its ``result.json`` (complete lines only), read without importing Ray."""
    out: dict[str, list[dict[str, Any]]] = {}
    folder = storage / name
    if not folder.is_dir():
        return out
    for path in folder.glob("*/result.json"):
        rows = []
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        if rows:
            out[rows[0]["trial_id"]] = rows
    return out


def checkpointed(storage: Path, name: str) -> set[str]:
    """Trial ids with at least one checkpoint in storage (persisted by the trial itself, unlike result.json,
    which the driver writes through a buffer and may lose to a SIGKILL)."""
    out = set()
    for folder in (storage / name).glob("train_trial_*/checkpoint_*"):
        out.add(folder.parent.name.split("_")[2])
    return out


def snapshotted_checkpoints(storage: Path, name: str) -> set[str]:
    """Trial ids whose checkpoint Ray's latest experiment-state snapshot records (what a restore resumes from).

    Ray snapshots the experiment every ~10 s; a driver killed before the snapshot that records a checkpoint
    restarts that trial from the previous one it recorded (or from scratch).
    """
    states = sorted((storage / name).glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return set()
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, ValueError):
        return set()
    out = set()
    for trial_json, run_meta in data.get("trial_data", []):
        if "checkpoint_0" in run_meta:
            out.add(json.loads(trial_json)["trial_id"])
    return out


def outcomes(storage: Path, name: str) -> dict[str, dict[str, Any]]:
    """``trial_outcomes/<trial id>/outcome.json`` written by the trainable before Ray hears of an ending."""
    out = {}
    for path in (storage / name / "trial_outcomes").glob("*/outcome.json"):
        try:
            out[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def ray_trials(storage: Path, name: str) -> list[Any]:
    from ray.tune import ExperimentAnalysis

    return list(ExperimentAnalysis(str(storage / name)).trials)


def mlflow_runs(uri: str, name: str) -> list[Any]:
    """Every run of the sweep's experiment (parent and children), straight from the store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        return []
    return list(client.search_runs([exp.experiment_id], max_results=5000))


def children_by_trial(runs: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in runs:
        if r.data.tags.get("none_sweep.role") == "trial":
            out.setdefault(r.data.tags.get("ray.trial_id", "?"), []).append(r)
    return out
