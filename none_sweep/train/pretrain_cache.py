"""Shared pre-training: trials with the same prefix fork from one cached pre-trained state.

The prefix is everything that determines the first ``pretrain_epochs`` epochs: data, attack, model,
the main training config, the seed, and the lr-schedule horizon. A trial takes a per-key file lock;
the first trains and publishes (atomic rename), the others wait and load. Where the lock does not
work across machines (some NFS setups), two trials may train the same prefix; both produce the same
bytes-equivalent state, and whichever rename lands last wins, so the result is still correct.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..config import ExperimentConfig, to_dict
from ..errors import CheckpointError
from .checkpoint import load_state, save_state
from .schedule import pretrain_epochs, pretrain_horizon


def prefix_key(cfg: ExperimentConfig) -> str:
    """A digest of what determines the pre-trained state (not the defense thresholds)."""
    train = to_dict(cfg.train)
    for key in ("eval_batch_size", "num_threads", "analysis_cache_mb"):  # do not change the trained weights
        train.pop(key, None)
    prefix = {
        "seed": cfg.seed,
        "data": to_dict(cfg.data),
        "attack": to_dict(cfg.attack),
        "model": to_dict(cfg.model),
        "train": train,
        "pretrain_epochs": pretrain_epochs(cfg),
        "horizon": pretrain_horizon(cfg),
    }
    text = json.dumps(prefix, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class PretrainCache:
    """A folder of pre-trained states, keyed by :func:`prefix_key`; safe for concurrent trials."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 6 * 3600) -> None:
        self.root = Path(root)
        self.lock_timeout_s = lock_timeout_s

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    @contextmanager
    def claim(self, key: str) -> Iterator[dict[str, Any] | None]:
        """Hold the key's lock; yield the cached state, or None when the caller must train and :meth:`store`."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock"), timeout=self.lock_timeout_s):
            yield self._load_or_discard(self.path(key))

    @staticmethod
    def _load_or_discard(path: Path) -> dict[str, Any] | None:
        """A damaged cache entry is dropped and re-trained rather than trusted."""
        if not path.is_file():
            return None
        try:
            return load_state(path)
        except CheckpointError:
            path.unlink(missing_ok=True)
            return None

    def store(self, key: str, state: dict[str, Any]) -> None:
        save_state(state, self.path(key))
