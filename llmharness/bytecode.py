"""A bytecode cache of llmharness's own, under the store, for where Python may not write one.

Containers commonly set `PYTHONDONTWRITEBYTECODE=1`; pytest then rewrites and compiles every
test module again in every run, and Python compiles every module that has no `.pyc` yet. With
the cache on, the run's process writes its bytecode (pytest's rewritten test modules and
conftests, and any other module it imports) under `<store>/pycache/` through Python's own
`sys.pycache_prefix`: nothing is written in the source tree or beside installed packages, and
processes the tests start still see `PYTHONDONTWRITEBYTECODE`.

Python and pytest tell a stale `.pyc` by its source's size and mtime in whole seconds (newer
pytest by a hash of the source), so a `.pyc` written less than two seconds after its source
was changed could miss a second edit of the same size within that second. Such files written by
this run are removed when it ends; the next run compiles them again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

__all__ = ["BytecodeCache", "wanted"]

PYCACHE = "pycache"
# How long after its source's mtime a .pyc must have been written to be trusted: mtimes are
# checked in whole seconds (two on some filesystems).
_TRUSTED_AFTER_S = 2.0


def wanted(setting: bool | None) -> bool:
    """Whether the run uses the cache: as set, else (auto) when Python may not write bytecode."""
    return sys.dont_write_bytecode if setting is None else setting


class BytecodeCache:
    """Points this process's bytecode at the store while the run lasts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started = time.time()
        self._saved: tuple[str | None, bool] | None = None

    def start(self) -> None:
        self._saved = (sys.pycache_prefix, sys.dont_write_bytecode)
        sys.pycache_prefix = str(self.root)
        sys.dont_write_bytecode = False

    def stop(self) -> int:
        """Give the process back its own settings; drop what this run wrote too early to trust
        and return how many files that was."""
        if self._saved is None:
            return 0
        sys.pycache_prefix, sys.dont_write_bytecode = self._saved
        self._saved = None
        return self._drop_untrusted()

    def _drop_untrusted(self) -> int:
        dropped = 0
        since = self.started - 1.0  # what an earlier run wrote was checked when it ended
        for folder, _, names in os.walk(self.root):
            for name in names:
                if not name.endswith(".pyc"):
                    continue
                pyc = os.path.join(folder, name)
                try:
                    written = os.stat(pyc).st_mtime
                    if written < since:
                        continue
                    changed = os.stat(self._source_of(folder, name)).st_mtime
                except OSError:
                    continue
                if written - changed < _TRUSTED_AFTER_S:
                    with contextlib.suppress(OSError):
                        os.unlink(pyc)
                        dropped += 1
        return dropped

    def _source_of(self, folder: str, name: str) -> str:
        """The source a .pyc under the prefix was compiled from: the prefix mirrors absolute
        paths, and the name is `<module>.<tag>[-pytest-<version>].pyc`."""
        mirrored = os.path.relpath(folder, self.root)
        return os.path.join(os.sep, mirrored, name.split(".", 1)[0] + ".py")
