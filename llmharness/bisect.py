"""`llmharness bisect`: the tests that make an order-dependent test fail, found among the
tests that ran before it in a recorded run (the same xdist worker's sequence under `-n`), each
step a fresh pytest process (`llmharness.rerun`).

Halving finds the shortest prefix of those tests after which the victim still fails: its last
test is needed. If that test alone is not enough, the halving is repeated over the tests before
it with the needed ones kept, until the needed ones alone make the victim fail. So a single
polluter among n tests costs about log2(n) processes, and a set of k tests (a pair that fails
only together) about k * log2(n), where ddmin's finer splits would cost several times that.
After each set is found, the tests left are run once more before the victim: if it still
fails, another set is looked for among them.

What is found is kept in `<store>/polluters.json` for run verdicts to name.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmharness.reporting import FAILING, counted, quote_nodeid
from llmharness.store import SCHEMA, Store, StoreError

if TYPE_CHECKING:  # the records API is not loaded in a pytest run that reads polluters
    from llmharness.reader import Records

__all__ = ["POLLUTERS_FILE", "Bisection", "NotOrderDependent", "bisect", "polluters_of"]

POLLUTERS_FILE = "polluters.json"
EXIT_FOUND = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
_PASSING = frozenset({"passed", "xpassed"})
_SHOWN = 10  # narrowed tests named on the line of an incomplete bisection


class NotOrderDependent(Exception):
    """The test cannot be bisected here: not in the run, did not fail, fails alone, or passes
    after the tests that ran before it; the message says which, in one line."""


@dataclass(frozen=True)
class Bisection:
    """What bisecting one victim found, and what it cost."""

    victim: str
    run_id: str
    worker: str | None  # the xdist worker whose sequence was bisected
    predecessors: int  # how many tests ran before the victim (on its worker)
    polluters: tuple[tuple[str, ...], ...]  # each a 1-minimal set that makes the victim fail
    # Incomplete: the victim needs `needed` and one of `suspects` (None: perhaps no more) to
    # run before it to fail, as far as the search got.
    needed: tuple[str, ...]
    suspects: tuple[str, ...] | None
    processes: int
    seconds: float
    complete: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "victim": self.victim,
            "run_id": self.run_id,
            "worker": self.worker,
            "predecessors": self.predecessors,
            "polluters": [list(found) for found in self.polluters],
            "needed": list(self.needed),
            "suspects": None if self.suspects is None else list(self.suspects),
            "processes": self.processes,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
        }


class _OutOfTime(Exception):
    """The budget ran out before a step's answer was in."""


class _Probe:
    """Runs the victim after a subset of its predecessors, once per distinct subset."""

    def __init__(
        self, rootdir: Path, store_root: Path, victim: str, deadline: float, python: str
    ) -> None:
        self.rootdir = rootdir
        self.store_root = store_root
        self.victim = victim
        self.deadline = deadline
        self.python = python
        self.processes = 0
        # Where the search stands: the victim needs `needed` and one of `suspects` (None: no
        # more known to be needed) before it to fail.
        self.needed: list[str] = []
        self.suspects: list[str] | None = None
        self.note: str | None = None
        self._seen: dict[frozenset[str], str | None] = {}

    def outcome(self, before: Sequence[str]) -> str | None:
        """The victim's outcome after `before`, in that order; None when it did not run."""
        key = frozenset(before)
        if key in self._seen:
            return self._seen[key]
        from llmharness.rerun import run_tests  # pytest processes only once a step needs one

        if time.monotonic() >= self.deadline:
            raise _OutOfTime
        self.processes += 1
        rerun = run_tests(
            self.rootdir,
            self.store_root,
            [*before, self.victim],
            deadline=self.deadline,
            ordered=True,
            python=self.python,
        )
        outcome = rerun.outcomes.get(self.victim)
        if outcome is None and rerun.timed_out:
            raise _OutOfTime
        self.note = rerun.note
        self._seen[key] = outcome
        return outcome

    def fails(self, before: Sequence[str]) -> bool:
        """Whether the victim fails after `before`; a victim that did not run did not fail."""
        return self.outcome(before) in FAILING


def _one_set(probe: _Probe, failing: list[str]) -> list[str]:
    """A subset of `failing` (which makes the victim fail) that still does, and from which no
    test can be left out when more tests never make it pass (1-minimal)."""
    place = {test: index for index, test in enumerate(failing)}
    needed: list[str] = []
    candidates = failing
    # Invariant: the victim fails after `candidates` + `needed`, in run order.
    while True:
        probe.needed, probe.suspects = needed, None  # perhaps `needed` alone is enough
        if probe.fails(needed):
            return needed
        low, high = 1, len(candidates)  # the shortest failing prefix is in [low, high]
        while low < high:
            probe.suspects = candidates[low - 1 : high]
            middle = (low + high) // 2
            if probe.fails(sorted([*candidates[:middle], *needed], key=place.__getitem__)):
                high = middle
            else:
                low = middle + 1
        needed = sorted([candidates[high - 1], *needed], key=place.__getitem__)
        candidates = candidates[: high - 1]


def _predecessors(results: Sequence[dict[str, Any]], victim: str) -> tuple[list[str], str | None]:
    """The tests that ran before `victim` in a run's results, on its xdist worker if any."""
    worker = next((item.get("worker") for item in results if item["nodeid"] == victim), None)
    before: list[str] = []
    for item in results:
        if item["nodeid"] == victim:
            break
        if item.get("worker") == worker and item.get("phase") != "collect":
            before.append(str(item["nodeid"]))
    return list(dict.fromkeys(before)), worker


def _failing_run(
    records: Records, victim: str, ref: str | None
) -> tuple[str, list[dict[str, Any]]]:
    """The run to bisect in and its results: the one named, else the latest the victim failed in."""
    shown = quote_nodeid(victim)
    if ref is not None:
        run_id = records.resolve(ref)
        results = list(records.results(run_id))
        outcome = next((str(i.get("outcome")) for i in results if i["nodeid"] == victim), None)
        if outcome is None:
            raise NotOrderDependent(f"bisect: {shown} is not in run {run_id}")
        if outcome not in FAILING:
            raise NotOrderDependent(f"bisect: {shown} did not fail in run {run_id} ({outcome})")
        return run_id, results
    seen = None
    for run_id in reversed(records.store.list_runs()):
        results = list(records.results(run_id))
        outcome = next((str(i.get("outcome")) for i in results if i["nodeid"] == victim), None)
        if outcome in FAILING:
            return run_id, results
        seen = seen or (run_id if outcome is not None else None)
    if seen is None:
        raise NotOrderDependent(f"bisect: {shown} is not in any recorded run; check the node id")
    raise NotOrderDependent(
        f"bisect: {shown} did not fail in any recorded run (last ran in {seen})"
    )


def _rootdir(records: Records, run_id: str) -> Path:
    """Where the run's pytest ran: as its record says, else the folder holding the store."""
    for name in ("summary.json", "meta.json"):
        recorded = (records.store.read_run_file(run_id, name) or {}).get("rootdir")
        if isinstance(recorded, str) and Path(recorded).is_dir():
            return Path(recorded)
    return records.root.resolve().parent


def bisect(
    records: Records,
    victim: str,
    run: str | None = None,
    *,
    budget: float = 300.0,
    python: str = sys.executable,
) -> Bisection:
    """Find the sets of tests that make `victim` fail when they run before it, within `budget`
    seconds; raise NotOrderDependent when there is nothing to bisect."""
    started = time.monotonic()
    run_id, results = _failing_run(records, victim, run)
    before, worker = _predecessors(results, victim)
    probe = _Probe(_rootdir(records, run_id), records.root, victim, started + budget, python)
    shown = quote_nodeid(victim)
    found: list[list[str]] = []
    complete = False
    try:
        alone = probe.outcome([])
        if alone in FAILING:
            raise NotOrderDependent(f"bisect: {shown} is not order-dependent here: it fails alone")
        if alone not in _PASSING:
            why = probe.note or f"its outcome was {alone}"
            raise NotOrderDependent(f"bisect: {shown} did not run alone in {probe.rootdir}: {why}")
        on = f" on {worker}" if worker else ""
        after = probe.outcome(before) if before else alone
        if after not in FAILING:
            if after is None:
                raise NotOrderDependent(
                    f"bisect: {shown} did not run after the {len(before)} tests that ran before "
                    f"it{on}: {probe.note}"
                )
            raise NotOrderDependent(
                f"bisect: {shown} is not order-dependent here: it passes after the "
                f"{len(before)} tests that ran before it{on}"
            )
        rest = before
        while True:
            polluters = _one_set(probe, rest)
            found.append(polluters)
            members = set(polluters)
            rest = [test for test in rest if test not in members]
            probe.needed, probe.suspects = [], None  # what is left may not make it fail
            if not rest or not probe.fails(rest):
                break
        complete = True
    except _OutOfTime:
        pass
    return Bisection(
        victim=victim,
        run_id=run_id,
        worker=worker,
        predecessors=len(before),
        polluters=tuple(tuple(item) for item in found),
        needed=() if complete else tuple(probe.needed),
        suspects=None if complete or probe.suspects is None else tuple(probe.suspects),
        processes=probe.processes,
        seconds=time.monotonic() - started,
        complete=complete,
    )


def _valid(data: dict[str, Any]) -> bool:
    return isinstance(data.get("victims"), dict)


def _sets(entry: Any) -> list[list[str]]:
    """The polluter sets of one victim's entry; nothing for a misshapen entry."""
    sets = entry.get("polluters") if isinstance(entry, dict) else None
    if not isinstance(sets, list):
        return []
    return [
        [str(test) for test in found]
        for found in sets
        if isinstance(found, list) and all(isinstance(test, str) for test in found)
    ]


def _keep(store: Store, found: Bisection) -> bool:
    """Merge a bisection's polluter sets into the store's polluters file, under its lock."""
    path = store.root / POLLUTERS_FILE
    with store.locked():
        data = store.read_json(path, _valid) or {"schema": SCHEMA, "victims": {}}
        data["victims"][found.victim] = {
            "polluters": [list(item) for item in found.polluters],
            "run_id": found.run_id,
            "found": time.time(),
            "complete": found.complete,
        }
        return store.write_json(path, data)


def polluters_of(store_root: Path) -> dict[str, list[str]]:
    """Each bisected victim's polluters (the tests of all its sets, in run order), from the
    store's polluters file; {} when it is missing or unreadable."""
    data = Store(store_root, readonly=True).read_json(store_root / POLLUTERS_FILE, _valid)
    if data is None:
        return {}
    found = {}
    for victim, entry in data["victims"].items():
        tests = [test for item in _sets(entry) for test in item]
        if tests:
            found[str(victim)] = list(dict.fromkeys(tests))
    return found


def _lines(found: Bisection, budget: float) -> list[str]:
    victim = quote_nodeid(found.victim)
    lines = [
        f"ERROR polluter {' + '.join(quote_nodeid(test) for test in item)} -> {victim}"
        for item in found.polluters
    ]
    cost = f"{counted(found.processes, 'pytest process', 'pytest processes')}, {found.seconds:.1f}s"
    if found.complete:
        return [*lines, f"bisect: {victim}: {cost}"]
    if found.suspects is not None:
        cost = f"after narrowing: {cost}"
        named = ", ".join(quote_nodeid(test) for test in found.suspects[:_SHOWN])
        if len(found.suspects) > _SHOWN:
            named += f" and {len(found.suspects) - _SHOWN} more (--json)"
        kept = "".join(f"{quote_nodeid(test)} + " for test in found.needed)
        lines.append(
            f"ERROR polluter {kept}one of {len(found.suspects)} tests -> {victim}: {named}"
        )
    elif found.needed:
        cost = f"after narrowing: {cost}"
        kept = " + ".join(quote_nodeid(test) for test in found.needed)
        lines.append(f"ERROR polluter {kept} + perhaps others -> {victim}")
    elif found.polluters:
        cost = f"before the other tests were run for more polluters: {cost}"
    else:
        # Not even confirmed: naming the tests before it as polluters would claim too much.
        cost = f"before it was seen to fail after the {found.predecessors} tests before it: {cost}"
    return [
        *lines,
        f"bisect: {victim}: incomplete, the {budget:g}s budget ran out {cost}; "
        "give it more with --budget",
    ]


def command(records: Records, nodeid: str, run: str | None, budget: float, as_json: bool) -> int:
    """`llmharness bisect`: print what was found, keep it in the store, return the exit code."""
    import json

    if not budget > 0:
        sys.stderr.write(
            f"llmharness: error: --budget must be more than 0 seconds, not {budget:g}\n"
        )
        return EXIT_USAGE
    try:
        found = bisect(records, nodeid, run, budget=budget)
    except NotOrderDependent as exc:
        sys.stderr.write(f"llmharness: {exc}\n")
        return EXIT_USAGE
    if found.polluters:
        try:
            _keep(records.store, found)
        except StoreError as exc:
            records.warnings.append(f"bisect result not kept: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(found.to_json(), indent=2, ensure_ascii=True) + "\n")
    else:
        for line in _lines(found, budget):
            print(line)
    return EXIT_FOUND if found.complete else EXIT_INCOMPLETE
