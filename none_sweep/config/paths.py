"""Where a config may point: file paths stay in the working folder or under explicit roots.

A config or space file may come from someone else (a shared sweep space, an exported ``best_defense.yaml``).
The paths it names are ``data.root`` (read, and written to when ``data.download`` is true) and the attack
params that name files (the blend attack's ``attack.params.pattern``, an image; each attack says which, in
``Attack.path_params``). The rule:

- a relative path resolves under the working folder; one that climbs out of it with ``..`` is refused;
- an absolute path (``~`` expanded) must lie under an allowed root: the working folder, the dataset cache
  (``$NONE_SWEEP_DATA``, default ``~/.cache/none-sweep/data``), ``/usr/share/datasets`` (Debian's dataset
  packages), the system temp folder (scratch space), or a folder listed in ``NONE_SWEEP_DATA_ROOTS``
  (``os.pathsep``-separated, e.g. ``/mnt/nfs/datasets:/data``).

The check is lexical (``..`` collapsed, symlinks not followed): a link the user made on purpose works, a
config cannot climb out. It runs where a config enters from a file or the command line
(``none_sweep.experiment.load_experiment``, space files, their ``--set`` overrides), not again inside trials,
whose configs come from an already-checked space (so cluster workers need no copy of ``NONE_SWEEP_DATA_ROOTS``).

The dataset cache (:func:`default_root`) is declared here, at the bottom, so this check needs no dataset
code; ``none_sweep.data`` takes it from here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .validation import ConfigIssue, fail

ROOTS_ENV = "NONE_SWEEP_DATA_ROOTS"
DATA_ENV = "NONE_SWEEP_DATA"
DEFAULT_DATA_ROOT = "~/.cache/none-sweep/data"
SYSTEM_DATASETS = "/usr/share/datasets"


def default_root() -> Path:
    """Where torchvision datasets live unless ``data.root`` says otherwise (``$NONE_SWEEP_DATA`` overrides)."""
    return Path(os.environ.get(DATA_ENV, DEFAULT_DATA_ROOT)).expanduser()


def allowed_roots() -> list[Path]:
    """The folders absolute config paths may point into (normalised, in the order they are listed)."""
    roots = [Path.cwd(), default_root(), Path(SYSTEM_DATASETS), Path(tempfile.gettempdir())]
    roots += [Path(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for root in roots:
        norm = _normal(root.expanduser())
        if norm not in out:
            out.append(norm)
    return out


def check_path(key: str, value: str) -> None:
    """Raise :class:`ConfigIssue` when ``value`` (the path at config key ``key``) leaves the allowed folders."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        cwd = _normal(Path.cwd())
        if not _under(_normal(cwd / path), cwd):
            raise fail(key, f"{key}: {value!r} climbs out of the working folder {cwd} with '..'; "
                            f"use a path inside it, or an absolute path under {_roots_text()}")  # fmt: skip
        return
    if not any(_under(_normal(path), root) for root in allowed_roots()):
        raise fail(key, f"{key}: {value!r} is outside the allowed folders {_roots_text()}; move the files there, "
                        f"or add its folder to {ROOTS_ENV}")  # fmt: skip


def _normal(path: Path) -> Path:
    return Path(os.path.normpath(os.path.abspath(path)))


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _roots_text() -> str:
    return "[" + ", ".join(str(r) for r in allowed_roots()) + "]"


__all__ = ["DATA_ENV", "DEFAULT_DATA_ROOT", "ROOTS_ENV", "ConfigIssue", "allowed_roots", "check_path", "default_root"]
