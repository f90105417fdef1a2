"""A small reader for the IDX format of (Fashion-)MNIST, plain or gzip'd.

Our own rather than torchvision's so the Debian package's ``.gz`` files are read in place, and so a
truncated download is one :class:`DataError` naming the file instead of a reshape error.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DataError

_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path, ndim: int | None = None) -> Tensor:
    """The uint8 tensor stored in IDX file ``path``; ``ndim`` (if given) must match the header."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != _UBYTE:
        magic = raw[:4].hex() or "empty file"
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {magic}, expected 0000 08 0N)")
    dims_count = raw[3]
    if ndim is not None and dims_count != ndim:
        raise DataError(f"{path}: IDX file has {dims_count} dimensions, expected {ndim}")
    header = 4 + 4 * dims_count
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{dims_count}I", raw[4:header])
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX file: header says {list(dims)} = {expected} bytes, "
            f"found {len(raw) - header}"
        )
    return torch.frombuffer(bytearray(raw[header:]), dtype=torch.uint8).reshape(dims)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it starts with the gzip magic number."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read it ({type(exc).__name__}: {exc})") from None


def find_idx(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (plain first, as torchvision extracts)."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None
