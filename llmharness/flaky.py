"""`llmharness flaky`: flakiness from the recorded runs. A flip is a test's outcome changing
between passed and failed (or error) from one run to the next at the same code version: the
same commit with a clean tree, or the same commit and uncommitted changes. A test's flip rate is
its flips over its transitions (observations less one), summed over the versions.

An attempt that pytest-rerunfailures ran again is an observation too: a test that failed and
then passed on its rerun flipped within one run, at one code version for certain, so a version
run only once still counts when one of its tests passed on a rerun (its summary says so). A
version run once without reruns has no transition, so its results are not read.

Runs with no code version (outside git, or unfinished, with no summary) are skipped: a change
of outcome between them may be a change of code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmharness.reporting import FAILING, counted, quote_nodeid

if TYPE_CHECKING:  # loaded by flaky_tests only: a pytest run may import this module
    from llmharness.reader import Records

__all__ = ["Flakiness", "FlakyTest", "flakiness", "flaky_tests", "version_of"]


@dataclass(frozen=True)
class FlakyTest:
    """One test that flipped: how often, over how many runs and versions."""

    nodeid: str
    flips: int
    observations: int  # attempts it passed or failed in (runs and reruns) at those versions
    versions: int
    transitions: int  # observations less one at each version
    passed_on_rerun: int = 0  # runs in which it failed and then passed when run again

    @property
    def flip_rate(self) -> float:
        """Flips over transitions: 0 for a test that never flips, 1 for one that flips each run."""
        return self.flips / self.transitions if self.transitions else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "flip_rate": round(self.flip_rate, 4),
            "flips": self.flips,
            "observations": self.observations,
            "versions": self.versions,
            "passed_on_rerun": self.passed_on_rerun,
        }


@dataclass(frozen=True)
class Flakiness:
    """The tests that flipped, flakiest first, and how much history that was read from."""

    tests: tuple[FlakyTest, ...]
    runs: int  # runs with a code version
    versions: int
    skipped: int  # runs without a code version


def version_of(git: Any) -> str | None:
    """The code version a run's `git` record names, None when it names none."""
    if not isinstance(git, Mapping) or not isinstance(git.get("commit"), str):
        return None
    if git.get("dirty") is False:
        return str(git["commit"])
    changes = git.get("changes")
    if git.get("dirty") is True and isinstance(changes, str):
        return f"{git['commit']}+{changes}"
    return None


@dataclass
class _Seen:
    last: bool  # passed
    observations: int = 1
    flips: int = 0
    passed_on_rerun: int = 0

    def see(self, passed: bool) -> None:
        self.observations += 1
        self.flips += self.last != passed
        self.last = passed


def flakiness(records: Records) -> Flakiness:
    """Every test's flips at each code version across the store's runs, in run order."""
    by_version: dict[str, list[str]] = {}
    skipped = 0
    rerun_versions: set[str] = set()
    for run_id in records.store.list_runs():
        summary = records.store.run_status(run_id)[1] or {}
        version = version_of(summary.get("git"))
        if version is None:
            skipped += 1
            continue
        by_version.setdefault(version, []).append(run_id)
        if (summary.get("reruns") or {}).get("count"):
            rerun_versions.add(version)
    seen: dict[str, dict[str, _Seen]] = {}  # node id to version to its run of outcomes there
    for version, run_ids in by_version.items():
        if len(run_ids) < 2 and version not in rerun_versions:
            continue
        for run_id in run_ids:
            for item in records.results(run_id):
                outcome = item.get("outcome")
                if outcome != "passed" and outcome not in FAILING:
                    continue
                passed = outcome == "passed"
                # The attempts run again all failed: they come before the outcome kept.
                reruns = int(item.get("reruns") or 0)
                attempts = [False] * reruns + [passed]
                at = seen.setdefault(str(item["nodeid"]), {})
                state = at.get(version)
                if state is None:
                    state = at[version] = _Seen(attempts.pop(0))
                for attempt in attempts:
                    state.see(attempt)
                state.passed_on_rerun += passed and reruns > 0
    tests = []
    for nodeid, at in seen.items():
        flips = sum(state.flips for state in at.values())
        if flips:
            observations = sum(state.observations for state in at.values())
            passed_on_rerun = sum(state.passed_on_rerun for state in at.values())
            tests.append(
                FlakyTest(
                    nodeid, flips, observations, len(at), observations - len(at), passed_on_rerun
                )
            )
    tests.sort(key=lambda test: (-test.flip_rate, -test.flips, test.nodeid))
    runs = sum(len(run_ids) for run_ids in by_version.values())
    return Flakiness(tuple(tests), runs, len(by_version), skipped)


def flaky_tests(store_root: Path, min_rate: float = 0.0) -> dict[str, float]:
    """The flip rate of each test that flipped at a code version, at least `min_rate`; {}
    without a store."""
    from llmharness.reader import NoRecordError, Records

    try:
        records = Records(store_root)
    except NoRecordError:
        return {}
    return {
        test.nodeid: test.flip_rate
        for test in flakiness(records).tests
        if test.flip_rate >= min_rate
    }


def _looked_at(found: Flakiness) -> str:
    versions = counted(found.versions, "code version", "code versions")
    line = f"{counted(found.runs, 'run', 'runs')} at {versions}"
    if found.skipped:
        line += (
            f"; {counted(found.skipped, 'run', 'runs')} without a code version skipped "
            "(outside git, or unfinished)"
        )
    return line


def command(records: Records, top: int, as_json: bool) -> int:
    """`llmharness flaky`: print the flakiest tests; return the exit code."""
    found = flakiness(records)
    shown = found.tests[: max(top, 1)]
    if as_json:
        data = {
            "tests": [test.to_json() for test in shown],
            "flaky": len(found.tests),
            "runs": found.runs,
            "versions": found.versions,
            "skipped_runs": found.skipped,
        }
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=True) + "\n")
        return 0
    for test in shown:
        at = counted(test.versions, "version", "versions")
        attempts = "attempts" if test.passed_on_rerun else "runs"
        rerun = (
            f"; passed only on a rerun in {counted(test.passed_on_rerun, 'run', 'runs')}"
            if test.passed_on_rerun
            else ""
        )
        print(
            f"FLAKY {quote_nodeid(test.nodeid)} flip rate {test.flip_rate:.2f} "
            f"({counted(test.flips, 'flip', 'flips')} in {test.observations} {attempts} "
            f"at {at}{rerun})"
        )
    if not found.tests:
        print(f"flaky: no test flipped in {_looked_at(found)}")
    else:
        more = (
            f" (the first {len(shown)} shown; more with -n)"
            if len(shown) < len(found.tests)
            else ""
        )
        flipped = counted(len(found.tests), "test", "tests")
        print(f"flaky: {flipped} flipped{more} in {_looked_at(found)}")
    return 0
