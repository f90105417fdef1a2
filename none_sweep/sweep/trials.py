"""Ray's record of a sweep's trials, read back from storage: the source of truth for what each trial reported.

Ray Tune writes it (the experiment state, every trial's ``result.json`` and checkpoints); the driver's summary,
the MLflow back-fill and ``sync-mlflow`` read it here, through Ray's public ``ExperimentAnalysis``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ..errors import StorageError
from ..text import first_line
from .storage import SweepStorage

TERMINAL = ("TERMINATED", "ERROR")


@contextlib.contextmanager
def quiet_analysis() -> Iterator[None]:
    """Ray warns for every trial that has not reported yet when it reads an experiment back: not news here."""
    logger = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def ray_trials(storage: SweepStorage) -> list[Any]:
    """Every trial Ray recorded (status, config, last result, checkpoint); StorageError when there is no state."""
    from ray.tune import ExperimentAnalysis

    try:
        with quiet_analysis():
            return list(ExperimentAnalysis(storage.experiment_path).trials)
    except Exception as exc:  # ValueError / FileNotFoundError when no experiment state exists yet
        raise StorageError(f"no Ray experiment state at {storage.experiment_path} ({first_line(exc)})") from None


def tally(trials: list[Any]) -> dict[str, float]:
    """How the trials ended, and the pre-training time the shared cache saved them."""
    return {
        "trials_completed": float(sum(t.status == "TERMINATED" for t in trials)),
        "trials_failed": float(sum(t.status == "ERROR" for t in trials)),
        "pretrain_saved_s": sum(float((t.last_result or {}).get("pretrain_saved_s") or 0.0) for t in trials),
    }


def all_ended(trials: list[Any], num_samples: int) -> bool:
    """Every planned trial exists and ended (completed or errored)."""
    return len(trials) >= num_samples and all(t.status in TERMINAL for t in trials)
