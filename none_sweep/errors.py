"""One error hierarchy, so the CLI can map every expected failure to one line and exit code 2.

Anything that is *not* a :class:`NoneSweepError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class NoneSweepError(Exception):
    """A failure the user can fix; its message says what happened and what to do."""

    exit_code = 2


class ConfigError(NoneSweepError):
    """A config or space file (or a CLI override) is malformed, unknown or out of range."""


class DataError(NoneSweepError):
    """A dataset is missing, corrupt or inconsistent with the config."""


class CheckpointError(NoneSweepError):
    """A checkpoint is missing, truncated, corrupt or from an incompatible run."""


class TrackingError(NoneSweepError):
    """The MLflow tracking store is unreachable, read-only, or lacks what was asked for."""


class StorageError(NoneSweepError):
    """The sweep's storage (local folder, NFS path or bucket) cannot be written."""


class ResourceError(NoneSweepError):
    """The requested per-trial resources do not exist on the Ray cluster."""


class TrainingDiverged(NoneSweepError):
    """The loss became NaN or infinite; the trial is failed with this reason."""


class MissingObjective(NoneSweepError):
    """A trial's final result lacks an objective or constraint metric, or holds a non-finite one."""
