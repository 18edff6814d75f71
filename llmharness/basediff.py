"""What broke, against the base: each failure's outcome at the base commit, from what the store
knows there (recorded by clean runs, synced from other clones) or found by running it there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmharness import diff as diffing
from llmharness.gitinfo import CodeVersion
from llmharness.knowledge import Knowledge
from llmharness.reporting import FAILING, TestResult
from llmharness.store import Store, StoreError

__all__ = ["BaseFacts", "check_unknown", "compare", "record_clean_run"]


@dataclass
class BaseFacts:
    """What the run learnt of the base, for its summary."""

    checked: int = 0  # failures run at the base by this run
    unchecked: int = 0  # failures the budget (or a failure to check out) left unknown
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def check_unknown(
    store: Store,
    version: CodeVersion,
    rootdir: Path,
    results: Mapping[str, TestResult],
    budget_s: float,
    warn: Callable[[str], None],
) -> BaseFacts:
    """Run at the base the failures whose outcome there nobody knows yet, within the budget,
    and keep what was seen as `checked` knowledge."""
    facts = BaseFacts()
    base = version.base
    if base is None or version.at_base:
        return facts
    failing = {nodeid for nodeid, result in results.items() if result.outcome in FAILING}
    known = Knowledge(store).at(base, only=failing) if failing else {}
    unknown = sorted(failing.difference(known))
    if not unknown:
        return facts
    if budget_s <= 0:
        facts.unchecked = len(unknown)
        facts.notes.append(
            f"{len(unknown)} failures not checked at base {base[:12]} (base_check_budget is 0)"
        )
        return facts
    from llmharness.basecheck import check_at_base  # only runs that have something to check

    found = check_at_base(Path(version.top), rootdir, store.root, base, unknown, budget_s)
    facts.checked = len(found.outcomes)
    facts.unchecked = len(found.unchecked)
    facts.seconds = found.seconds
    if found.note:
        facts.notes.append(found.note)
    if found.outcomes:
        try:
            with store.locked():
                Knowledge(store).add(base, "checked", ((o, n) for n, o in found.outcomes.items()))
        except (StoreError, OSError) as exc:
            warn(f"cannot keep the outcomes checked at the base: {exc}")
    return facts


def record_clean_run(
    store: Store,
    version: CodeVersion,
    results: Mapping[str, TestResult],
    suite: Sequence[str] | None = None,
) -> None:
    """A clean tree's outcomes are known at its commit, and so is its `suite` when the run
    collected all of it. The caller holds the store's lock."""
    if version.dirty or not results:
        return
    knowledge = Knowledge(store)
    learnt = _Learnt(results)
    if not knowledge.holds(version.commit, "recorded", learnt):
        knowledge.add(version.commit, "recorded", learnt)
    if suite:
        knowledge.set_suite(version.commit, suite)


class _Learnt(Collection[tuple[str, str]]):
    """The (outcome, nodeid) pairs a clean run knows of its tests, read from its results as
    asked, not built: a whole suite's pairs were that run's peak of memory. A test that passed
    only when pytest-rerunfailures ran it again also failed there."""

    def __init__(self, results: Mapping[str, TestResult]) -> None:
        self.results = results
        self.count = len(results) + sum(
            1 for result in results.values() if result.reruns and result.outcome != "failed"
        )

    def __contains__(self, pair: object) -> bool:
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        outcome, nodeid = pair
        result = self.results.get(nodeid)
        if result is None:
            return False
        return outcome == result.outcome or (outcome == "failed" and result.reruns > 0)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for nodeid, result in self.results.items():
            yield result.outcome, nodeid
            if result.reruns and result.outcome != "failed":
                yield "failed", nodeid

    def __len__(self) -> int:
        return self.count


def compare(
    store: Store, version: CodeVersion, results: Mapping[str, TestResult], run_id: str
) -> dict[str, Any] | None:
    """The regression diff against the base, or None when there is no base to compare with."""
    if version.base is None:
        return None
    # Only this run's tests: a sample need not hold the whole suite's knowledge in memory.
    at_base, known_before = Knowledge(store).at_counted(version.base, only=results)
    return diffing.against_base(
        results.values(),
        at_base,
        run_id=run_id,
        base=version.base_json(),
        known_before=known_before,
    )
