"""llmharness's own diagnostic events, for when its decisions need explaining: why the
collection cache was or was not used, how the sample was drawn, what the store warned about,
what the bytecode cache dropped.

Written as structlog key=value lines to `debug.log` in the run folder when asked for
(`debug_log: true`, or `LLMHARNESS_DEBUG_LOG=1`); structlog is imported only then, so a run
that does not ask pays nothing for it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import IO, Any

__all__ = ["DEBUG_FILE", "Diagnostics"]

DEBUG_FILE = "debug.log"


class Diagnostics:
    """Diagnostic events of one run, to a file or nowhere."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._logger: Any = None

    def event(self, event: str, **fields: Any) -> None:
        """Log one event with its fields, if a debug log was asked for."""
        if self.path is None:
            return
        if self._logger is None:
            self._logger = self._open(self.path)
            if self._logger is None:
                self.path = None
                return
        with contextlib.suppress(OSError, ValueError):
            self._logger.info(event, **fields)

    def _open(self, path: Path) -> Any:
        import structlog

        try:
            self._file = open(path, "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        except OSError:
            return None
        return structlog.wrap_logger(
            structlog.PrintLogger(self._file),
            processors=[
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.KeyValueRenderer(key_order=["timestamp", "event"]),
            ],
        )

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
