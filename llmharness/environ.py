"""The environment as the run started, for the processes llmharness starts after the tests
(the check at the base, verdict re-runs): tests may change `os.environ`, and a variable a test
leaked must not make a re-run fail (or pass)."""

from __future__ import annotations

import os

__all__ = ["at_start", "keep"]

_AT_START: dict[str, str] | None = None


def keep() -> None:
    """Remember the environment now, as the run starts."""
    global _AT_START
    _AT_START = dict(os.environ)


def at_start() -> dict[str, str]:
    """A copy of the environment the run started with (the current one if none was kept)."""
    return dict(_AT_START if _AT_START is not None else os.environ)
