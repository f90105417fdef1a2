"""The sweep record: how a sweep was started and its resolved space, parsed and validated once.

It is written as ``sweep.json`` in the sweep's storage before the first trial, and it is where every later
step starts: ``--resume`` continues exactly the recorded sweep, ``sync-mlflow`` rebuilds its MLflow projection,
and ``report``/``export`` read the objectives and constraints from it (a copy is an artifact of the parent run,
so the tracking store alone is enough for them).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import parse_overrides, to_dict
from ..errors import ConfigError, StorageError
from .space import SweepSpace, load_space, space_from_dict
from .storage import SPEC_FILE, SweepStorage


@dataclass(frozen=True)
class SweepRecord:
    """One sweep, as started. ``space`` is parsed from ``space_text`` once, when the record is made or read."""

    name: str
    space_path: str
    space_text: str
    overrides: tuple[str, ...]
    tracking_uri: str
    num_samples: int
    max_concurrent: int | None
    storage: str
    created: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    space: SweepSpace = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))
        if self.space is None:  # read back: the paths were confined when the sweep started, maybe elsewhere
            data = yaml.safe_load(self.space_text) or {}
            parsed = space_from_dict(
                data, self.space_path, parse_overrides(self.overrides), self.space_text, check_paths=False
            )
            object.__setattr__(self, "space", parsed)

    # ------------------------------------------------------------------ making one
    @classmethod
    def start(
        cls,
        space_path: str,
        *,
        name: str | None,
        overrides: list[str],
        tracking_uri: str,
        storage: str,
        num_samples: int | None = None,
        max_concurrent: int | None = None,
    ) -> SweepRecord:
        """A new sweep from its space file (validated here, paths confined), with the library versions."""
        space = load_space(space_path, parse_overrides(overrides))
        return cls(
            name=name or f"{Path(space_path).stem}-{time.strftime('%Y%m%d-%H%M%S')}",
            space_path=str(space_path),
            space_text=space.text,
            overrides=tuple(overrides),
            tracking_uri=tracking_uri,
            num_samples=num_samples or space.num_samples,
            max_concurrent=max_concurrent or space.max_concurrent,
            storage=storage,
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
            versions=library_versions(),
            space=space,
        )

    # ------------------------------------------------------------------ storage
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("space")
        data["overrides"] = list(self.overrides)
        data["versions"] = dict(self.versions)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = SPEC_FILE) -> SweepRecord:
        known = {f for f in cls.__dataclass_fields__ if f != "space"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: not a sweep record of this none-sweep (unknown keys {unknown})")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"{source}: not a complete sweep record ({exc})") from None

    def save(self, storage: SweepStorage) -> None:
        storage.write_json(SPEC_FILE, self.to_json())

    @classmethod
    def load(cls, storage: SweepStorage) -> SweepRecord:
        data = storage.read_json(SPEC_FILE)
        if data is None:
            raise StorageError(
                f"no sweep {storage.name!r} in {storage.root} ({SPEC_FILE} missing); check --name and --storage"
            )
        return cls.from_json(data, f"{storage.experiment_path}/{SPEC_FILE}")

    @classmethod
    def from_text(cls, text: str, source: str) -> SweepRecord:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc})") from None
        return cls.from_json(data, source)

    def open_storage(self) -> SweepStorage:
        return SweepStorage(self.storage, self.name)

    # ------------------------------------------------------------------ what others read from it
    def resolved_config(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's full config (the base with its sampled keys) as a plain mapping; raises ConfigError."""
        return to_dict(self.space.trial_config(sampled, source="trial config"))

    def concurrency(self, cpus: float, gpus: float) -> int:
        """``max_concurrent``, else as many trials as the cluster holds at once; never above num_samples."""
        if self.max_concurrent:
            return min(self.max_concurrent, self.num_samples)
        r = self.space.resources
        fits = [math.floor(cpus / r.cpu + 1e-9)]
        if r.gpu > 0:
            fits.append(math.floor(gpus / r.gpu + 1e-9))
        return max(1, min(*fits, self.num_samples))

    def resume_command(self) -> str:
        words = ["none-sweep", "sweep", self.space_path, "--name", self.name, "--storage", self.storage, "--resume"]
        return " ".join(shlex.quote(w) for w in words)

    def parent_params(self) -> dict[str, Any]:
        """What the MLflow parent run shows of the sweep (``tracking/layout.py`` names the keys' prefix)."""
        space = self.space
        params: dict[str, Any] = {
            "sweep.space_file": self.space_path,
            "sweep.num_samples": self.num_samples,
            "sweep.max_concurrent": self.max_concurrent,
            "sweep.sampler": space.search.sampler,
            "sweep.objectives": ", ".join(f"{o.metric} {o.mode}" for o in space.objectives),
            "sweep.constraints": "; ".join(c.text for c in space.constraints) or "none",
            "sweep.scheduler": space.scheduler.name,
            "sweep.storage": self.storage,
            "sweep.overrides": " ".join(self.overrides) or "none",
        }
        params.update({f"version.{k}": v for k, v in self.versions.items()})
        return params


def library_versions() -> dict[str, str]:
    import mlflow
    import optuna
    import ray
    import torch

    from .. import __version__

    return {
        "none_sweep": __version__,
        "ray": ray.__version__,
        "optuna": optuna.__version__,
        "mlflow": mlflow.__version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
