"""Small text helpers every layer shares: one line of an exception, and "did you mean" hints.

They live at the bottom (beside ``errors``), so every message in the product has the same shape.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of ``exc`` (or of a message), at most ``limit`` characters.

    Library exceptions (MLflow, Ray, pyarrow) carry whole tracebacks or JSON bodies; a user needs one line.
    An exception with no text gives its type name, so the line is never empty.
    """
    text = str(exc).strip()
    fallback = type(exc).__name__ if isinstance(exc, BaseException) else ""
    return (text.splitlines() or [fallback])[0][:limit]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'blend'?)"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
