"""llmharness: test runs that LLM coding agents can read.

The pytest plugin (loaded on install) samples, records and prints a few lines; this package
gives agent scripts the same records the `llmharness` command shows::

    import llmharness

    run = llmharness.summary()            # the latest run's aggregates
    diff = llmharness.regressions()       # what it broke, against each test's last outcome
    for change in diff.new_failures:
        print(change.nodeid, change.reason)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmharness.reader import (
        Change,
        NoRecordError,
        Records,
        Regressions,
        RunInfo,
        RunSummary,
        TestRun,
    )

__all__ = [
    "Change",
    "NoRecordError",
    "Records",
    "Regressions",
    "RunInfo",
    "RunSummary",
    "TestRun",
    "__version__",
    "coverage",
    "history",
    "regressions",
    "summary",
    "test_history",
]

__version__ = "0.1.0"

PathLike = str | os.PathLike[str]

_RECORDS = frozenset(
    {"Change", "NoRecordError", "Records", "Regressions", "RunInfo", "RunSummary", "TestRun"}
)


def __getattr__(name: str) -> Any:
    # pytest imports this package in every run, for its plugin: the records API, which the
    # plugin does not need, is imported on first use.
    if name in _RECORDS:
        from llmharness import reader

        return getattr(reader, name)
    raise AttributeError(f"module 'llmharness' has no attribute {name!r}")


def summary(run: str | None = None, directory: PathLike | None = None) -> RunSummary:
    """The aggregates of a run (default: the latest finished run in the nearest store)."""
    from llmharness.reader import Records

    return Records(directory).summary(run)


def regressions(
    run: str | None = None, against: str | None = None, directory: PathLike | None = None
) -> Regressions:
    """A run's regression diff, against each test's last known outcome, a run or `baseline`."""
    from llmharness.reader import Records

    return Records(directory).regressions(run, against)


def history(directory: PathLike | None = None) -> list[RunInfo]:
    """Every recorded run, oldest first."""
    from llmharness.reader import Records

    return Records(directory).history()


def test_history(nodeid: str, most: int = 20, directory: PathLike | None = None) -> list[TestRun]:
    """One test in each of the latest `most` runs that ran it, oldest first; NoRecordError
    (naming the ids it may mean) when no run did."""
    from llmharness.reader import Records

    return Records(directory).test_history(nodeid, most)


def coverage(run: str | None = None, directory: PathLike | None = None) -> dict[str, Any] | None:
    """Which share of the suite has a known outcome at a run's base (default: the latest run's),
    as `llmharness coverage --json` gives it; None when the run had no base."""
    from llmharness import team
    from llmharness.reader import Records

    records = Records(directory)
    return team.of_run(records.store, records.summary(run).data)
