"""A real sweep run through the runner in-process, and what it left behind.

``tests/conftest.py`` builds one :func:`run_digits_sweep` per session (fixture ``digits_sweep``) for every test
that only reads a finished sweep's results; a test that needs a sweep of another shape runs its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.processes import ROOT
from support.results import ray_trials

DIGITS = ROOT / "search_spaces" / "digits_tiny.yaml"


@dataclass(frozen=True)
class FinishedSweep:
    """A sweep that ran to its end: its options, what it printed, and Ray's trials as read back from storage."""

    name: str
    root: Path  # the temp folder holding both stores
    storage: Path  # Ray's storage (``--storage``); the sweep's own folder is ``storage / name``
    uri: str  # the MLflow tracking URI (a sqlite file under ``root``)
    opts: Any  # the ``SweepOptions`` it ran with
    code: int  # ``run_sweep``'s exit code
    lines: list[str]  # everything the sweep said
    trials: list[Any]  # ``ray.tune`` trials from ``ExperimentAnalysis``

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def folder(self) -> Path:
        return self.storage / self.name


def run_digits_sweep(root: Path, name: str = "digits-test", space: Path = DIGITS) -> FinishedSweep:
    """Run ``space`` (default ``search_spaces/digits_tiny.yaml``: 6 tiny digits trials) to its end in-process.

    Uses whatever Ray this process has initialised (the runner calls ``ray.init(ignore_reinit_error=True)``).
    """
    from none_sweep.sweep.runner import SweepOptions, run_sweep

    lines: list[str] = []
    storage = root / "ray"
    opts = SweepOptions(
        space_path=str(space), name=name, storage=str(storage), tracking_uri=f"sqlite:///{root / 'mlflow.db'}"
    )
    code = run_sweep(opts, say=lines.append)
    if code == 0:  # what `none-sweep sweep --export` adds: the report and the chosen defense on the parent run
        from none_sweep.report.publish import publish

        verdict = publish(name, opts.tracking_uri, root / "report", root / "best_defense.yaml", say=lines.append)
        lines.append(verdict.line())
    trials = ray_trials(storage, name) if (storage / name).is_dir() else []
    return FinishedSweep(name, root, storage, opts.tracking_uri, opts, code, lines, trials)
