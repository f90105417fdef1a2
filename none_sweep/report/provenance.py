"""Where an exported file came from: code version and time, written beside every result."""

from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

from .. import __version__


def code_version() -> str:
    """``none-sweep 0.1.0 (git v0.1-3-gabc1234-dirty)``; the git part only in a source checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--tags", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        out = None
    described = out.stdout.strip() if out is not None and out.returncode == 0 else ""
    return f"none-sweep {__version__}" + (f" (git {described})" if described else "")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
