"""Runs that cannot end themselves: a fatal crash names its test, a termination signal is an
interrupt.

A segfault or an abort kills the process before any Python code can say what happened, so the
record is kept ahead of time: `crash.txt` in the run folder starts with a fixed-size slot that
names the test being run (rewritten in place as each test starts), and, in compact mode,
Python's fault handler writes its dump after that slot instead of onto the terminal. The next
run, `llmharness summary` and `regressions` read it back (`describe`).

SIGTERM and SIGHUP, which would end pytest without a summary, are turned into the interrupt
pytest already handles (the run is recorded as `interrupted`); once the run is recorded the
process ends by the same signal, so its exit status is what it would have been without
llmharness.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from pathlib import Path
from types import FrameType

__all__ = ["CRASH_FILE", "CrashRecord", "Signals", "describe"]

CRASH_FILE = "crash.txt"
# The head of crash.txt that names the running test; the fault handler's dump follows it.
_SLOT = 4096
_RUNNING = "running "


class CrashRecord:
    """crash.txt of one run: the running test, and the fatal-error dump when there is one."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CRASH_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self._fd, b" " * (_SLOT - 1) + b"\n")  # the dump is written from here on
        self._written = 0
        self._dumps = False
        self.mark("collecting")

    def mark(self, state: str) -> None:
        """Say what the run is doing now (`running <nodeid>`, `collecting`, ...)."""
        data = (state + "\n").encode("utf-8", "backslashreplace")[: _SLOT - 1]
        padding = b" " * max(self._written - len(data), 0)
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, data + padding, 0)  # one system call, the offset unmoved
        self._written = len(data)

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.mark(_RUNNING + nodeid)

    def take_dumps(self) -> None:
        """Have Python's fault handler write its dump here rather than on the terminal."""
        faulthandler.enable(file=self._fd, all_threads=True)
        self._dumps = True

    def close(self, finished: bool) -> None:
        """Stop recording; a finished run needs no crash record, so it is removed."""
        if self._fd < 0:
            return
        if self._dumps:
            faulthandler.disable()  # before its file is closed; pytest re-enables its own
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            os.close(fd)
        if finished:
            with contextlib.suppress(OSError):
                if self.path.stat().st_size <= _SLOT:
                    self.path.unlink()


def describe(folder: Path) -> str | None:
    """What a run that did not finish was doing when it ended, in one line, if it says."""
    try:
        data = (folder / CRASH_FILE).read_bytes()
    except OSError:
        return None
    state = data[:_SLOT].decode("utf-8", "replace").strip()
    dump = data[_SLOT:].decode("utf-8", "replace")
    fatal = next((line.strip() for line in dump.splitlines() if line.strip()), None)
    where = f"while running {state[len(_RUNNING) :]}" if state.startswith(_RUNNING) else state
    if fatal is not None:
        return f"crashed {where}: {fatal}"
    return f"ended {where} (the process exited, was killed or crashed)"


class Signals:
    """SIGTERM and SIGHUP as an interrupt of the session, then as the end of the process."""

    SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
    )

    def __init__(self) -> None:
        self.received: int | None = None
        self._installed: list[int] = []

    def install(self) -> None:
        """Trap the signals nobody else handles (Python can only do so in the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, self._interrupt)
                self._installed.append(signum)

    def _interrupt(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        self.uninstall()  # a second signal ends the process at once, as it would have
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} received")

    def uninstall(self) -> None:
        for signum in self._installed:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, signal.SIG_DFL)
        self._installed = []

    def end_process(self) -> None:
        """The run is recorded: end the process by the signal it received, if any."""
        self.uninstall()
        if self.received is not None:
            os.kill(os.getpid(), self.received)
