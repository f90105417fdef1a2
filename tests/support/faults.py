"""The fault-injection tests' sweep: a tiny digits space file and the ``none-sweep sweep`` command line.

Trials are tiny (scikit-learn digits, a few epochs, one torch thread); on a loaded 2-core machine most of a
trial's time is process start-up, so the fault windows are built from epochs *after* the first checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from support.processes import NONE_SWEEP

BASE: dict[str, Any] = {
    "seed": 0,
    "data": {"name": "digits", "train_subset": 400, "test_subset": 120},
    "attack": {"name": "badnets", "poison_rate": 0.1, "target": 0,
               "params": {"patch_size": 2, "location": "bottom_right", "pattern": "white"}},
    "model": {"name": "small_cnn"},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "num_threads": 1, "eval_batch_size": 512},
    "defense": {"pretrain_epochs": 2, "after_reset": "finetune", "reset_interval": 2, "rounds": 1, "finetune_lr": 0.01},
}  # fmt: skip


def space_file(folder: Path, *, base: dict[str, Any] | None = None, space: dict[str, Any] | None = None,
               name: str = "space.yaml", **top: Any) -> Path:  # fmt: skip
    """A space file over :data:`BASE` (deep-merged with ``base``); ``top`` sets top-level sections."""
    merged = json.loads(json.dumps(BASE))
    for section, values in (base or {}).items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    data: dict[str, Any] = {
        "description": "fault-injection test space",
        "base": merged,
        "space": space or {"defense.max_reset_fraction": {"type": "uniform", "low": 0.02, "high": 0.3}},
        "search": {"sampler": "random", "seed": 0},
        "resources": {"cpu": 1, "gpu": 0},
        "num_samples": 2,
        "max_concurrent": 2,
        "max_failures": 1,
    }
    data.update(top)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep_args(space: Path, name: str, storage: Path, uri: str | None, *extra: str) -> list[str]:
    args = [NONE_SWEEP, "sweep", str(space), "--name", name, "--storage", str(storage)]
    if uri:
        args += ["--tracking-uri", uri]
    return args + list(extra)
