"""Compact mode's terminal: pytest's own output goes to the run folder, a few lines to the screen.

pytest's terminal reporter is replaced, as it is registered, by one that writes to
`runs/<run-id>/terminal.txt` (a temporary file where the store cannot be written): every
plugin that writes through the reporter (xdist's start-up lines, pytest-cov's table, warnings,
failure sections) is kept there instead of lost, and the lines other plugins write in their
`pytest_terminal_summary` are counted, so the compact output can say that there is something to
read. llmharness's own lines go to the stream pytest's reporter would have written to.
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TextIO, cast

import pytest

from llmharness.reporting import counted

__all__ = ["TERMINAL_FILE", "CompactTerminal"]

TERMINAL_FILE = "terminal.txt"


class _KeptOutput(io.TextIOBase):
    """The file pytest's reporter writes to: a full disk loses the rest of the text, never the
    run (pytest would report a failed write as an internal error)."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.failed = False

    def write(self, text: str) -> int:
        if not self.failed:
            try:
                self.handle.write(text)
            except (OSError, ValueError):
                self.failed = True
        return len(text)

    def flush(self) -> None:
        # pytest flushes after each progress letter: a system call a test that a file (unlike
        # a terminal) does not need. The buffer is written when full, and by sync().
        pass

    def sync(self) -> None:
        if not self.failed:
            try:
                self.handle.flush()
            except (OSError, ValueError):
                self.failed = True

    def isatty(self) -> bool:
        return False

    def tell(self) -> int:
        return self.handle.tell()

    def close(self) -> None:
        self.sync()
        with contextlib.suppress(OSError, ValueError):
            self.handle.close()


class CompactTerminal:
    """Keeps pytest's terminal output in a file and prints llmharness's lines instead."""

    def __init__(self, config: pytest.Config, folder: Path | None) -> None:
        self.config = config
        self.stream: IO[str] = sys.stdout  # where pytest's reporter writes, taken as it does
        self.folder = folder
        self.path: Path | None = None
        self.output: _KeptOutput | None = None
        self.reporter: pytest.TerminalReporter | None = None
        #: Lines other plugins wrote in their terminal summaries (e.g. a coverage table).
        self.plugin_lines = 0
        self._pointer_written = False

    def open(self) -> Path | None:
        """Open the file pytest's output is to go to: in the run folder, else a temporary file;
        None (pytest's output shown as usual) if neither can be written."""
        handle: IO[str] | None = None
        if self.folder is not None:
            with contextlib.suppress(OSError):
                path = self.folder / TERMINAL_FILE
                handle = open(path, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        if handle is None:
            with contextlib.suppress(OSError):
                handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
                    "w", prefix="llmharness-terminal-", suffix=".txt", delete=False
                )
                path = Path(handle.name)
        if handle is None:
            return None
        self.path = path
        self.output = _KeptOutput(handle)
        return path

    @property
    def in_run_folder(self) -> bool:
        return self.path is not None and self.path.parent == self.folder

    def pytest_plugin_registered(self, plugin: object, plugin_name: str) -> None:
        # The reporter is swapped as it is registered, before any plugin (xdist's session)
        # looks it up in its own pytest_configure. Its class is taken from the instance:
        # pytest 8.0 does not export it as pytest.TerminalReporter.
        if (
            plugin_name != "terminalreporter"
            or plugin is self.reporter
            or self.output is None
            or type(plugin).__name__ != "TerminalReporter"
        ):
            return
        manager = self.config.pluginmanager
        make = cast("Callable[[pytest.Config, TextIO], pytest.TerminalReporter]", type(plugin))
        reporter = make(self.config, cast(TextIO, self.output))
        self.reporter = reporter
        # What compact mode replaces is not rendered: every failure's full text is already in
        # failures/ and its reason on an ERROR line, and rendering hundreds of tracebacks (with
        # --showlocals, and a scan of all reports for each one's teardown) is slow.
        reporter.reportchars = ""  # no short test summary
        for name in ("summary_failures", "summary_errors"):
            setattr(reporter, name, self._failures_pointer)
        manager.unregister(plugin)
        manager.register(reporter, "terminalreporter")

    def _failures_pointer(self) -> None:
        reporter = self.reporter
        if reporter is None or self.folder is None or self._pointer_written:
            return  # summary_errors and summary_failures both lead here: one line for both
        failing = len(reporter.stats.get("failed", ())) + len(reporter.stats.get("error", ()))
        if failing:
            reporter.write_sep("=", "FAILURES and ERRORS")
            reporter.write_line(
                f"{counted(failing, 'failure report', 'failure reports')}: one ERROR line each "
                f"in log.txt, the full text in failures/ (in {self.folder}; not rendered here "
                "in compact mode)"
            )
            self._pointer_written = True

    def position(self) -> int | None:
        """Where the next line written to the file will start (None without a file)."""
        if self.output is None:
            return None
        self.output.sync()
        if self.output.failed:
            return None
        with contextlib.suppress(OSError, ValueError):
            return self.output.tell()
        return None

    def count_plugin_lines(self, start: int) -> None:
        """Count the non-blank lines written since `start` as other plugins' output."""
        end = self.position()
        if end is None or self.path is None:
            return
        try:
            with open(self.path, "rb") as handle:
                handle.seek(start)
                text = handle.read(max(end - start, 0))
        except OSError:
            return
        self.plugin_lines += sum(1 for line in text.splitlines() if line.strip())

    def notes(self, where: str) -> list[str]:
        """Compact lines about pytest's output: where other plugins' lines are, when there are
        some, and that it could not all be kept, when so."""
        notes = []
        if self.plugin_lines:
            lines = "line" if self.plugin_lines == 1 else "lines"
            notes.append(f"other plugins wrote {self.plugin_lines:,} {lines}: {where}")
        if self.output is not None and self.output.failed:
            notes.append(f"pytest's output could not all be written to {where}")
        return notes

    def write(self, line: str) -> None:
        # A test may have closed or replaced the stream: the record on disk stands.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.output is not None:
            self.output.close()
