"""The regression diff: a run's outcomes against what was last known of each test. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llmharness.reporting import FAILING, TestResult
from llmharness.store import Known

__all__ = ["CATEGORIES", "PASSING", "diff", "update_index"]

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
    return item


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
    lists: dict[str, list[dict[str, Any]]] = {name: [] for name in CATEGORIES}
    seen = 0
    new_tests = 0
    for result in results:
        known = before.get(result.nodeid)
        if known is None:
            new_tests += 1
            if result.outcome in FAILING:
                lists["new_tests_failing"].append(_item(result, None, None))
            continue
        seen += 1
        old, now = known.outcome, result.outcome
        if old in PASSING and now in FAILING:
            lists["new_failures"].append(_item(result, old, known))
        elif old in FAILING and now in FAILING:
            lists["still_failing"].append(_item(result, old, known))
        elif old in FAILING and now in PASSING:
            lists["fixed"].append(_item(result, old, known))
        elif old in PASSING and now in NOT_RUN_ON_PURPOSE:
            lists["newly_skipped"].append(_item(result, old, known))
    prefixes = tuple(f"{path}::" for path in unknown_files)
    unknown = sum(1 for nodeid in before if prefixes and nodeid.startswith(prefixes))
    return {
        "run_id": run_id,
        "against": against,
        **lists,
        "known_before": len(before),
        "compared": seen,
        "new_tests": new_tests,
        "not_run": len(before) - seen,
        "unknown": unknown,
    }


def update_index(
    index: dict[str, Known],
    results: Iterable[TestResult],
    *,
    run_id: str,
    agent_id: str | None,
    when: float,
    vanished: Iterable[str] = (),
) -> None:
    """Record this run's outcomes as the last known ones; forget tests that vanished."""
    for result in results:
        index[result.nodeid] = Known(result.outcome, run_id, agent_id, when, result.duration)
    for nodeid in vanished:
        index.pop(nodeid, None)
