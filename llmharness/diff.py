"""The regression diff: a run's outcomes against what was last known of each test. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmharness.knowledge import ABSENT, AtCommit
from llmharness.reporting import FAILING, TestResult
from llmharness.store import Known

__all__ = ["CATEGORIES", "PASSING", "DiffBuilder", "against_base", "diff"]

PASSING = frozenset({"passed", "xpassed"})
NOT_RUN_ON_PURPOSE = frozenset({"skipped", "xfailed"})
#: The lists every diff has, in the order they matter to an agent.
CATEGORIES = ("new_failures", "new_tests_failing", "newly_skipped", "fixed", "still_failing")


def _item(result: TestResult, before: str | None, known: Known | None) -> dict[str, Any]:
    item: dict[str, Any] = {"nodeid": result.nodeid, "before": before, "after": result.outcome}
    if result.reason:
        item["reason"] = result.reason
    if known is not None:
        item["last_run"] = known.run_id
        item["last_agent"] = known.agent_id
    item["known_by"] = "last-known" if known is not None else None
    return item


class DiffBuilder:
    """A diff built one test at a time, so neither side need be held whole in memory.

    Call `known` for every test known before (once each) and `compare` for every result of
    this run, with what was known of it (or None), in any order; `result` gives the diff.
    """

    def __init__(self, unknown_files: Iterable[str] = ()) -> None:
        self.lists: dict[str, list[dict[str, Any]]] = {name: [] for name in CATEGORIES}
        self.known_before = 0
        self.compared = 0
        self.new_tests = 0
        self.unknown = 0
        self._prefixes = tuple(f"{path}::" for path in unknown_files)

    def known(self, nodeid: str) -> None:
        """A test known before this run (whether or not this run ran it)."""
        self.known_before += 1
        if self._prefixes and nodeid.startswith(self._prefixes):
            self.unknown += 1

    def compare(self, result: TestResult, known: Known | None) -> None:
        """Classify one result of this run by what was known of its test."""
        if known is None:
            self.new_tests += 1
            if result.outcome in FAILING:
                self.lists["new_tests_failing"].append(_item(result, None, None))
            return
        self.compared += 1
        old, now = known.outcome, result.outcome
        if old in PASSING and now in FAILING:
            self.lists["new_failures"].append(_item(result, old, known))
        elif old in FAILING and now in FAILING:
            self.lists["still_failing"].append(_item(result, old, known))
        elif old in FAILING and now in PASSING:
            self.lists["fixed"].append(_item(result, old, known))
        elif old in PASSING and now in NOT_RUN_ON_PURPOSE:
            self.lists["newly_skipped"].append(_item(result, old, known))

    def result(self, *, run_id: str, against: str | None) -> dict[str, Any]:
        for items in self.lists.values():
            items.sort(key=lambda item: item["nodeid"])  # not the order tests or workers ran in
        return {
            "run_id": run_id,
            "against": against,
            **self.lists,
            "known_before": self.known_before,
            "compared": self.compared,
            "new_tests": self.new_tests,
            "not_run": self.known_before - self.compared,
            "unknown": self.unknown,
        }


def diff(
    results: Iterable[TestResult],
    before: Mapping[str, Known],
    *,
    run_id: str,
    against: str | None,
    unknown_files: Iterable[str] = (),
) -> dict[str, Any]:
    """Classify each test of this run by its previous outcome.

    `before` maps node ids to what was known before this run (another run's outcomes or the
    last-known index). Tests of `before` that this run did not run are counted as `not_run`,
    never as fixed or removed; those in files that failed to collect are `unknown`.
    """
    builder = DiffBuilder(unknown_files)
    for nodeid in before:
        builder.known(nodeid)
    for result in results:
        builder.compare(result, before.get(result.nodeid))
    return builder.result(run_id=run_id, against=against)


def against_base(
    results: Iterable[TestResult],
    at_base: Mapping[str, AtCommit],
    *,
    run_id: str,
    base: Mapping[str, Any],
    known_before: int | None = None,
) -> dict[str, Any]:
    """Classify each test of this run by its outcome at the base commit.

    A failure whose outcome at the base is not known is in `unknown_at_base`, never counted as
    new or fixed; a test that did not exist at the base and fails is a new test failing.
    """
    lists: dict[str, list[dict[str, Any]]] = {name: [] for name in (*CATEGORIES, "unknown_at_base")}
    compared = new_tests = 0
    for result in results:
        known = at_base.get(result.nodeid)
        now = result.outcome
        if known is None:
            if now in FAILING:
                lists["unknown_at_base"].append(_base_item(result, None))
            continue
        if known.outcome == ABSENT:
            new_tests += 1
            if now in FAILING:
                lists["new_tests_failing"].append(_base_item(result, known))
            continue
        compared += 1
        old = known.outcome
        if now in FAILING:
            name = "still_failing" if old in FAILING else "new_failures"
            lists[name].append(_base_item(result, known))
        elif now in PASSING and old in FAILING:
            lists["fixed"].append(_base_item(result, known))
        elif now in NOT_RUN_ON_PURPOSE and old in PASSING:
            lists["newly_skipped"].append(_base_item(result, known))
    for items in lists.values():
        items.sort(key=lambda item: item["nodeid"])
    if known_before is None:  # `at_base` holds every test known there
        known_before = sum(1 for known in at_base.values() if known.outcome != ABSENT)
    return {
        "run_id": run_id,
        "against": f"base {str(base.get('commit'))[:12]}",
        "base": dict(base),
        **lists,
        "known_before": known_before,
        "compared": compared,
        "new_tests": new_tests,
        "not_run": known_before - compared,
        "unknown": len(lists["unknown_at_base"]),
    }


def _base_item(result: TestResult, known: AtCommit | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "nodeid": result.nodeid,
        "before": None if known is None or known.outcome == ABSENT else known.outcome,
        "after": result.outcome,
        "known_by": None if known is None else known.known_by,
    }
    if known is not None and known.flaky:
        item["flaky_at_base"] = True
    if result.reason:
        item["reason"] = result.reason
    return item
