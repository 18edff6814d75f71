"""A verdict on each new failure: run again alone, then after the tests that ran before it.

- fails again alone: `regression`;
- passes alone, fails again after the same tests in the same order (the same xdist worker's
  sequence under `-n`): `order-dependent`, naming its polluters when `llmharness bisect` found
  them;
- passes both ways: `flaky`; a test known to flip at this code version is `flaky` unrun;
- matches an entry of `known_failures`: `known`, unrun;
- what the budget (`verdict_budget`) leaves: `unchecked`.

A run with no new failure starts no process.
"""

from __future__ import annotations

import datetime
import fnmatch
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmharness.config import KnownFailure
from llmharness.reporting import FAILING, TestResult

__all__ = ["BLOCKING", "VERDICTS", "Judged", "judge", "known_entry", "known_failures_report"]

VERDICTS = ("regression", "order-dependent", "unchecked", "flaky", "known")
#: Verdicts `regressions --check` fails on; `flaky` too when `flaky_blocks` is set.
BLOCKING = frozenset({"regression", "order-dependent", "unchecked"})
_PASSING = frozenset({"passed", "xpassed"})


@dataclass
class Judged:
    """The verdicts of one run's new failures, and what judging them cost."""

    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def known_entry(
    nodeid: str, entries: Iterable[KnownFailure], today: datetime.date
) -> KnownFailure | None:
    """The known_failures entry that covers `nodeid` today, if any."""
    for entry in entries:
        if entry.until is not None and datetime.date.fromisoformat(entry.until) < today:
            continue
        if nodeid == entry.nodeid or fnmatch.fnmatchcase(nodeid, entry.nodeid):
            return entry
    return None


def known_failures_report(
    results: Mapping[str, TestResult], entries: Sequence[KnownFailure], today: datetime.date
) -> tuple[dict[str, Any], list[str]]:
    """Which accepted failures failed, which entries now only pass (so can go) and which have
    expired; and the notes to print about the last two."""
    failing: list[str] = []
    matched: dict[int, list[str]] = {}
    for nodeid, result in results.items():
        for index, entry in enumerate(entries):
            if entry.until is not None and datetime.date.fromisoformat(entry.until) < today:
                continue
            if nodeid == entry.nodeid or fnmatch.fnmatchcase(nodeid, entry.nodeid):
                matched.setdefault(index, []).append(result.outcome)
                if result.outcome in FAILING:
                    failing.append(nodeid)
                break
    expired = [
        entry.to_json()
        for entry in entries
        if entry.until is not None and datetime.date.fromisoformat(entry.until) < today
    ]
    passing = [
        entries[index].to_json()
        for index, outcomes in matched.items()
        if outcomes and all(outcome in _PASSING for outcome in outcomes)
    ]
    notes = [
        f"known failure {entry['nodeid']} passes now: remove its known_failures entry"
        for entry in passing
    ]
    notes += [
        f"known failure {entry['nodeid']} expired on {entry['until']}: its failures count again"
        for entry in expired
    ]
    data = {"failing": sorted(failing), "passing": passing, "expired": expired}
    return data, notes


def _before(order: Sequence[TestResult], nodeid: str) -> list[str]:
    """The tests that ran before `nodeid` in the process that ran it."""
    worker = None
    for result in order:
        if result.nodeid == nodeid:
            worker = result.worker
            break
    preceding = []
    for result in order:
        if result.nodeid == nodeid:
            break
        if result.worker == worker and result.phase != "collect":
            preceding.append(result.nodeid)
    return preceding


def judge(
    rootdir: Path,
    store_root: Path,
    order: Sequence[TestResult],
    nodeids: Sequence[str],
    *,
    budget_s: float,
    known: Sequence[KnownFailure] = (),
    flaky: Callable[[str], bool] = lambda nodeid: False,
    polluters: Mapping[str, list[str]] | None = None,
    today: datetime.date | None = None,
) -> Judged:
    """Verdicts on `nodeids`, the run's new failures, within `budget_s` seconds."""
    judged = Judged()
    today = today or datetime.date.today()
    todo: list[str] = []
    for nodeid in nodeids:
        entry = known_entry(nodeid, known, today)
        if entry is not None:
            judged.verdicts[nodeid] = {"verdict": "known", "known_reason": entry.reason}
        elif flaky(nodeid):
            judged.verdicts[nodeid] = {"verdict": "flaky", "by": "history"}
        else:
            todo.append(nodeid)
    if not todo:
        return judged
    if budget_s <= 0:
        for nodeid in todo:
            judged.verdicts[nodeid] = {"verdict": "unchecked"}
        judged.notes.append(f"{len(todo)} new failures not re-run (verdict_budget is 0)")
        return judged
    from llmharness.rerun import run_tests  # only runs with a new failure start processes

    started = time.monotonic()
    deadline = started + budget_s

    def run(tests: list[str], ordered: bool) -> str | None:
        if time.monotonic() >= deadline:
            return None
        judged.processes += 1
        rerun = run_tests(rootdir, store_root, tests, deadline=deadline, ordered=ordered)
        return rerun.outcomes.get(tests[-1])

    passed_alone = []
    for nodeid in todo:
        outcome = run([nodeid], ordered=False)
        if outcome in FAILING:
            judged.verdicts[nodeid] = {"verdict": "regression"}
        elif outcome in _PASSING:
            passed_alone.append(nodeid)
        else:
            judged.verdicts[nodeid] = {"verdict": "unchecked", "alone": outcome}
    for nodeid in passed_alone:
        preceding = _before(order, nodeid)
        if not preceding:
            judged.verdicts[nodeid] = {"verdict": "flaky", "by": "re-run"}
            continue
        outcome = run([*preceding, nodeid], ordered=True)
        if outcome in FAILING:
            verdict: dict[str, Any] = {"verdict": "order-dependent", "after": len(preceding)}
            found = (polluters or {}).get(nodeid)
            if found:
                verdict["polluters"] = list(found)
            judged.verdicts[nodeid] = verdict
        elif outcome in _PASSING:
            judged.verdicts[nodeid] = {"verdict": "flaky", "by": "re-run"}
        else:
            judged.verdicts[nodeid] = {"verdict": "unchecked", "alone": "passed"}
    judged.seconds = time.monotonic() - started
    unchecked = sum(1 for v in judged.verdicts.values() if v["verdict"] == "unchecked")
    if unchecked:
        judged.notes.append(
            f"{unchecked} new failures have no verdict: the {budget_s:g}s budget ran out "
            "(setting verdict_budget)"
        )
    return judged
