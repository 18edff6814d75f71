"""Time: a clean stop at `--time-limit`, and rare progress lines in long compact runs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest

__all__ = ["Progress", "TimeLimit"]


class TimeLimit:
    """Starts no test past the deadline: registered only when a time limit is set."""

    def __init__(self, deadline: float, on_reached: Callable[[], None] | None = None) -> None:
        self.deadline = deadline
        self.on_reached = on_reached

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self) -> bool | None:
        if time.time() < self.deadline:
            return None
        if self.on_reached is not None:
            self.on_reached()
        return True  # past the limit: the test is not run and reports nothing


class Progress:
    """Rare one-line progress, a bounded number however long the run: none in the first
    interval, then one each time the interval, doubled after each line, has passed again."""

    MAX_LINES = 4

    def __init__(self, interval: float, started: float) -> None:
        self.interval = interval
        self.started = started
        self.printed = 0
        self.due = started + interval  # time.monotonic() from which a line is due

    def line(self, done: int, failed: int, left: tuple[int, float | None]) -> str:
        """The next line, given the tests done and failed and (tests left, their seconds)."""
        now = time.monotonic()
        self.printed += 1
        self.interval *= 2
        self.due = now + self.interval if self.printed < self.MAX_LINES else math.inf
        remaining, seconds = left
        eta = f", ~{seconds:.0f}s left by recorded durations" if seconds is not None else ""
        return (
            f"llmharness: progress {done:,}/{done + remaining:,} done, {failed:,} failed, "
            f"{now - self.started:.0f}s elapsed{eta}"
        )
