"""MLflow tracking of sweeps: the layout, the one writer (a driver-side Ray callback) and the back-fill.

Tracking receives plain data (resolved configs, metrics, the objectives' front) and Ray's trial records; it
never imports :mod:`none_sweep.sweep`. The public names below are loaded on first use, so importing the
package (or :mod:`.layout`) pulls in neither MLflow nor Ray.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SweepTracker": "store",
    "default_tracking_uri": "store",
    "sqlite_file": "store",
    "config_text": "store",
    "MlflowSweepCallback": "callback",
    "SyncStats": "sync",
    "backfill_trial": "sync",
    "attach_model_of": "sync",
    "out_of_step": "sync",
    "Resolver": "sync",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
