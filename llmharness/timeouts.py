"""`--test-timeout`: a test that runs too long fails, and the run goes on.

The budget covers a test's setup, call and teardown together. Where the platform has SIGALRM
and tests run in the main thread (POSIX; xdist workers run tests there too), a timer is armed
for each phase with what is left of the budget, and on expiry the phase fails with a
`Failed: Timeout (>Ns) from llmharness` raised wherever the test is: pytest reports it as it
reports any failure of that phase. The timer is armed only inside a phase, so it can never go
off in pytest's own code between phases. Elsewhere (Windows) faulthandler dumps every thread's
stack and ends the process when the budget is spent: xdist replaces a lost worker, a serial run
stops there and its record is marked incomplete.

When pytest-timeout is installed it owns SIGALRM and its own markers, so the timeout is handed
to it instead, as a `timeout` marker on each test that has none of its own (`TimeoutMarks`).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
from collections.abc import Generator
from types import FrameType
from typing import Any

import pytest

__all__ = ["MESSAGE", "TestTimeout", "TimeoutMarks", "message"]

#: The text of a timed-out test's failure; the recorder reads the seconds back from it.
MESSAGE = "Timeout (>{seconds:g}s) from llmharness"


def message(seconds: float) -> str:
    return MESSAGE.format(seconds=seconds)


class TestTimeout:
    """The per-test timer: a plugin object registered only when a timeout is set."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = 0.0
        self.signals = self._signals_usable()

    @staticmethod
    def _signals_usable() -> bool:
        return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self.deadline = time.monotonic() + self.seconds
        if self.signals:
            return (yield)
        # No signal can interrupt the test: a watchdog thread ends the process instead.
        faulthandler.dump_traceback_later(self.seconds, exit=True, file=sys.stderr)
        try:
            return (yield)
        finally:
            faulthandler.cancel_dump_traceback_later()

    def _phase(self, teardown: bool = False) -> Generator[None, object, object]:
        if not self.signals:
            return (yield)
        left = self.deadline - time.monotonic()
        if left <= 0:
            if not teardown:
                pytest.fail(message(self.seconds), pytrace=False)
            left = self.seconds  # the budget went on setup or call: teardown must still run
        previous = signal.signal(signal.SIGALRM, self._expired)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            return (yield)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _expired(self, signum: int, _frame: FrameType | None) -> Any:
        __tracebackhide__ = True  # the traceback ends where the test was, not here
        pytest.fail(message(self.seconds))

    # The outermost wrapper of each phase, so that fixtures and other plugins' work count too.
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        return (yield from self._phase())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        return (yield from self._phase(teardown=True))


class TimeoutMarks:
    """Hands the timeout to pytest-timeout through its public marker, test by test; a test's
    own `timeout` marker, and pytest-timeout's own option, still win."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if config.getoption("timeout", None) is not None:
            return
        mark = pytest.mark.timeout(self.seconds)
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(mark)
