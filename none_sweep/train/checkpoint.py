"""Full-state checkpoints: written atomically, loaded with ``weights_only=True``, checked on load.

A checkpoint holds only tensors and plain data (no pickled objects), so loading one can never run
code. A truncated or corrupt file is a :class:`CheckpointError`, never a silently wrong resume.

The random state a run continues from (:func:`rng_state`, :func:`restore_rng`) is torch's CPU RNG, the CUDA
RNG of the run's own device (one state: under Ray a trial sees one GPU, and its index may differ on the node
it resumes on) and the run's data-order generator, which lives on the training device.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

FORMAT = "none-sweep-checkpoint/1"
REQUIRED_KEYS = ("format", "digest", "payload")


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically (temp file + rename), with a digest of its bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _serialise(state)
    blob = {"format": FORMAT, "digest": hashlib.sha256(payload).hexdigest(), "payload": payload}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(blob, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rng_state(device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    """What :func:`restore_rng` needs: CPU and CUDA RNG states, the data-order generator, the device type."""
    return {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": [torch.cuda.get_rng_state(device)] if device.type == "cuda" else [],
        "generator": generator.get_state(),
        "rng_device": device.type,
    }


def restore_rng(state: dict[str, Any], device: torch.device, generator: torch.Generator) -> bool:
    """Restore :func:`rng_state`'s capture; False when it was written on another device type.

    A CUDA generator's state (seed and offset) means nothing to a CPU generator and vice versa, so a
    checkpoint moved between a GPU and a CPU node cannot continue the same data order: the caller reseeds
    ``generator`` (the run stays valid, but is no longer bit-identical to an uninterrupted one). A checkpoint
    without ``rng_device`` was written before it was recorded, always on the same device type.
    """
    torch.set_rng_state(state["rng_cpu"])
    if state.get("rng_device", device.type) != device.type:
        return False
    if device.type == "cuda" and state["rng_cuda"]:
        torch.cuda.set_rng_state(state["rng_cuda"][0], device)
    generator.set_state(state["generator"])
    return True


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_state`; raise CheckpointError on any damage."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError for damaged files
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({exc.__class__.__name__}); it is truncated or corrupt"
        ) from None
    if not isinstance(blob, dict) or any(k not in blob for k in REQUIRED_KEYS) or blob["format"] != FORMAT:
        raise CheckpointError(f"{path}: not a none-sweep checkpoint (expected format {FORMAT})")
    payload = blob["payload"]
    if hashlib.sha256(payload).hexdigest() != blob["digest"]:
        raise CheckpointError(f"{path}: checkpoint digest mismatch; the file is corrupt")
    return _deserialise(payload, path)


def _serialise(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _deserialise(payload: bytes, path: Path) -> dict[str, Any]:
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: checkpoint payload unreadable ({exc.__class__.__name__})") from None
