"""Where a sweep lives: Ray's experiment folder plus our few files beside Ray's (a local/NFS path or a URI).

Files we add to ``<storage>/<name>/``: ``sweep.json`` (the resolved space and how the sweep was started,
read back by ``--resume`` and ``sync-mlflow``), ``baseline.json`` (the undefended run, measured once) and
``optuna.journal`` (the Optuna study, an NFS-friendly journal file). ``<storage>/pretrain_cache/`` holds
the shared pre-trained checkpoints (local or NFS storage only).
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from pathlib import Path
from typing import Any

from ..errors import StorageError

SPEC_FILE = "sweep.json"
BASELINE_FILE = "baseline.json"
JOURNAL_FILE = "optuna.journal"
PRETRAIN_CACHE = "pretrain_cache"
#: ``<trial id>/outcome.json`` (+ ``model_state.pt``): how a trial ended, written before Ray hears of it.
OUTCOMES = "trial_outcomes"


def is_uri(storage: str) -> bool:
    return "://" in storage and not storage.startswith("file://")


class SweepStorage:
    """The storage root and the sweep's experiment folder in it."""

    def __init__(self, storage: str, name: str) -> None:
        self.name = name
        if is_uri(storage):
            self.root = storage.rstrip("/")
            self.local_root: Path | None = None
        else:
            path = storage[len("file://") :] if storage.startswith("file://") else storage
            self.local_root = Path(path).expanduser().resolve()
            self.root = str(self.local_root)
        if self.local_root is None:
            self.experiment_path = posixpath.join(self.root, name)
        else:
            self.experiment_path = str(self.local_root / name)

    @property
    def is_local(self) -> bool:
        return self.local_root is not None

    @property
    def local_experiment(self) -> Path | None:
        return None if self.local_root is None else self.local_root / self.name

    @property
    def pretrain_cache_root(self) -> str | None:
        """Shared pre-training needs a file system every trial sees: local or NFS paths, not object stores."""
        return None if self.local_root is None else str(self.local_root / PRETRAIN_CACHE)

    def journal_path(self) -> Path:
        """The Optuna journal: in the experiment folder, or (object stores) a local working copy."""
        if self.local_experiment is not None:
            return self.local_experiment / JOURNAL_FILE
        return Path(".none_sweep") / self.name / JOURNAL_FILE

    # ------------------------------------------------------------------ files
    def _fs(self) -> tuple[Any, str]:
        import pyarrow.fs

        if self.local_root is not None:
            return pyarrow.fs.LocalFileSystem(), str(self.local_root / self.name)
        try:
            fs, path = pyarrow.fs.FileSystem.from_uri(self.experiment_path)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for unknown schemes or credentials
            raise StorageError(f"storage {self.root}: cannot open it ({exc})") from None
        return fs, path

    def read_json(self, name: str) -> dict[str, Any] | None:
        data = self.read_bytes(name)
        if data is None:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise StorageError(f"{self.experiment_path}/{name}: not valid JSON ({exc})") from None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        self.write_bytes(name, json.dumps(data, indent=2, default=float).encode("utf-8"))

    def read_bytes(self, name: str) -> bytes | None:
        """``name`` (a relative path in the experiment folder), or None when it does not exist."""
        fs, base = self._fs()
        try:
            with fs.open_input_stream(posixpath.join(base, name)) as handle:
                return handle.readall()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                return None
            raise StorageError(f"{self.experiment_path}/{name}: cannot read it ({exc})") from None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write atomically (temp file + move) so a reader never sees half a file."""
        fs, base = self._fs()
        path = posixpath.join(base, name)
        folder = posixpath.dirname(path)
        try:
            fs.create_dir(folder, recursive=True)
            tmp = posixpath.join(folder, f".{posixpath.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
            with fs.open_output_stream(tmp) as handle:
                handle.write(data)
            fs.move(tmp, path)
        except OSError as exc:
            raise StorageError(f"{path}: cannot write it ({exc})") from None

    def copy_to(self, local: Path, name: str) -> None:
        """Upload a local file into the experiment folder (object stores: the Optuna journal)."""
        fs, base = self._fs()
        with open(local, "rb") as src, fs.open_output_stream(posixpath.join(base, name)) as dst:
            dst.write(src.read())

    def copy_from(self, name: str, local: Path) -> bool:
        fs, base = self._fs()
        try:
            with fs.open_input_stream(posixpath.join(base, name)) as src:
                data = src.readall()
        except (FileNotFoundError, OSError):
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        return True

    def check_writable(self) -> None:
        """Create, write and delete a probe file; any failure is one StorageError."""
        fs, base = self._fs()
        root = base.rsplit("/", 1)[0] if "/" in base else base
        probe = posixpath.join(root, f".none-sweep-probe-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        try:
            fs.create_dir(root, recursive=True)
            with fs.open_output_stream(probe) as handle:
                handle.write(b"ok")
            fs.delete_file(probe)
        except Exception as exc:  # pyarrow: OSError, ArrowException; permissions, read-only mounts, credentials
            raise StorageError(f"--storage {self.root} is not writable ({exc.__class__.__name__}: {exc})") from None
