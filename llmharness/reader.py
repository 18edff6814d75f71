"""Reading the store (the read path): runs, summaries, regression diffs and failures as typed
objects, for the CLI and the Python API; `llmharness.recorder` is the write path. It never
imports pytest.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmharness import diff as _diff
from llmharness import integrity
from llmharness.reporting import FAILING, OUTCOMES, quote_nodeid
from llmharness.store import (
    SCHEMA,
    Known,
    Store,
    StoreError,
    find_store,
    open_results,
    unfinished_before,
    unfinished_note,
)
from llmharness.verdicts import BLOCKING

__all__ = [
    "Change",
    "NoRecordError",
    "Records",
    "Regressions",
    "RunInfo",
    "RunSummary",
    "TestRun",
]


class NoRecordError(LookupError):
    """Nothing is recorded where asked (no store, no such run, no baseline)."""


@dataclass(frozen=True)
class RunSummary:
    """The aggregates of one run, as `llmharness summary --json` prints them."""

    run_id: str
    status: str
    exitstatus: int | None
    duration_s: float
    agent_id: str | None
    counts: Mapping[str, int]
    pass_rate: float | None
    sample: Mapping[str, Any]
    data: Mapping[str, Any] = field(repr=False)

    @property
    def failed(self) -> int:
        """Failed plus errored tests (collection errors included)."""
        return int(self.counts.get("failed", 0)) + int(self.counts.get("error", 0))

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True)
class Change:
    """One test in a regression diff: its outcome before and after, and why it fails now."""

    nodeid: str
    before: str | None
    after: str
    reason: str | None = None
    last_run: str | None = None
    known_by: str | None = None  # recorded, checked, synced (at the base) or last-known
    verdict: str | None = None  # regression, order-dependent, flaky, known or unchecked
    polluters: tuple[str, ...] = ()  # for an order-dependent failure, when bisect found them


@dataclass(frozen=True)
class Regressions:
    """What changed for each test between a run and what was known before it."""

    run_id: str
    against: str | None
    new_failures: tuple[Change, ...]
    new_tests_failing: tuple[Change, ...]
    newly_skipped: tuple[Change, ...]
    fixed: tuple[Change, ...]
    still_failing: tuple[Change, ...]
    not_run: int
    notes: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)
    unknown_at_base: tuple[Change, ...] = ()
    base: Mapping[str, Any] | None = None  # the base commit compared with, None without one

    @property
    def broken(self) -> bool:
        """What `--check` gates on: against the base, a test that passed there fails now, a new
        test fails, or a failure's outcome at the base is unknown; without a base, a test
        whose last known outcome was a pass fails now. A new failure found flaky (unless
        `flaky_blocks`) or known does not count. Always: the run is tampered, a protected path
        changed, or (unless `allow_test_changes`) a test was fixed by changing it or a failing
        test was removed or skipped (`integrity.blocking`). And the run did not finish (`-x`,
        `--maxfail`, a time limit, a signal): what it did not run, it cannot vouch for."""
        blocking = set(BLOCKING)
        if self.data.get("flaky_blocks"):
            blocking.add("flaky")

        def blocks(change: Change) -> bool:
            return change.verdict is None or change.verdict in blocking

        if self.data.get("unfinished") or integrity.blocking(self.data):
            return True
        if self.base is None:
            return any(map(blocks, self.new_failures))
        new = (*self.new_failures, *self.new_tests_failing)
        return any(map(blocks, new)) or bool(self.unknown_at_base)

    def to_json(self) -> dict[str, Any]:
        return {**self.data, "notes": list(self.notes)}


@dataclass(frozen=True)
class RunInfo:
    """One line of history: a run, its status and counts."""

    run_id: str
    status: str
    agent_id: str | None
    counts: Mapping[str, int]
    duration_s: float | None
    sample_mode: str | None
    total: int | None = None  # the tests collected (sample.total)
    known: int | None = None  # the tests the index knew of then (a narrowed run: more)

    @property
    def scope(self) -> str | None:
        """`fast`, `full`, or `25 of 257 known` for a run narrowed by paths or --lf."""
        if self.sample_mode == "full" and (self.known or 0) > (self.total or 0):
            return f"{self.total or 0:,} of {self.known:,} known"
        return self.sample_mode


@dataclass(frozen=True)
class TestRun:
    """One test in one run: `llmharness history NODEID`'s line."""

    run_id: str
    status: str
    agent_id: str | None
    commit: str | None  # the code version the run tested (None outside git)
    dirty: bool | None  # with uncommitted changes
    outcome: str
    duration: float
    reason: str | None
    reruns: int = 0


def _changes(items: Any) -> tuple[Change, ...]:
    return tuple(
        Change(
            nodeid=str(item["nodeid"]),
            before=item.get("before"),
            after=str(item.get("after")),
            reason=item.get("reason"),
            last_run=item.get("last_run"),
            known_by=item.get("known_by"),
            verdict=item.get("verdict"),
            polluters=tuple(item.get("polluters") or ()),
        )
        for item in items or ()
    )


def _regressions_from(data: Mapping[str, Any], notes: tuple[str, ...] = ()) -> Regressions:
    return Regressions(
        run_id=str(data.get("run_id")),
        against=data.get("against"),
        new_failures=_changes(data.get("new_failures")),
        new_tests_failing=_changes(data.get("new_tests_failing")),
        newly_skipped=_changes(data.get("newly_skipped")),
        fixed=_changes(data.get("fixed")),
        still_failing=_changes(data.get("still_failing")),
        not_run=int(data.get("not_run", 0)),
        notes=notes,
        data=data,
        unknown_at_base=_changes(data.get("unknown_at_base")),
        base=data["base"] if isinstance(data.get("base"), Mapping) else None,
    )


class Records:
    """A store opened for reading, found from a folder upward as git finds a repository."""

    def __init__(self, where: str | os.PathLike[str] | None = None) -> None:
        shared = os.environ.get("LLMHARNESS_STORE")
        if where is None and shared:
            where = shared  # the store several clones share, as pytest runs were told
        start = Path(where) if where is not None else Path.cwd()
        if (start / "runs").is_dir():
            root: Path | None = start
        else:
            root = find_store(start)
        if root is None:
            raise NoRecordError(
                f"no llmharness store at or above {start}: run pytest with llmharness first "
                "(or pass --dir)"
            )
        self.warnings: list[str] = []
        self.store = Store(root, on_warning=self.warnings.append)
        self.root = root

    # -- runs --------------------------------------------------------------------------
    def resolve(self, ref: str | None = None) -> str:
        """A run id from a reference: None/`last` (latest finished run), an id or its prefix."""
        if ref in (None, "last", "latest"):
            run_id = self.store.latest_run()
            if run_id is None:
                raise NoRecordError(f"no finished run recorded in {self.root}")
            return run_id
        assert ref is not None
        runs = self.store.list_runs()
        if ref in runs:
            return ref
        matches = [run_id for run_id in runs if run_id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise NoRecordError(f"no run {ref!r} in {self.root}; see `llmharness history`")
        raise NoRecordError(f"run {ref!r} is ambiguous ({len(matches)} runs start with it)")

    def summary(self, ref: str | None = None) -> RunSummary:
        """The aggregates of a run (default: the latest finished one)."""
        run_id = self.resolve(ref)
        status, data = self.store.run_status(run_id)
        if data is None or "counts" not in data:
            data = self._partial_summary(run_id, status, data or {})
        counts = {outcome: int(data.get("counts", {}).get(outcome, 0)) for outcome in OUTCOMES}
        return RunSummary(
            run_id=run_id,
            status=status,
            exitstatus=data.get("exitstatus"),
            duration_s=float(data.get("duration_s") or 0.0),
            agent_id=data.get("agent_id"),
            counts=counts,
            pass_rate=data.get("pass_rate"),
            sample=data.get("sample") or {},
            data=data,
        )

    def _partial_summary(self, run_id: str, status: str, meta: Mapping[str, Any]) -> dict[str, Any]:
        """What an unfinished run recorded before it stopped, from its results file."""
        counts = dict.fromkeys(OUTCOMES, 0)
        for result in self.results(run_id):
            outcome = str(result.get("outcome"))
            if outcome in counts:
                counts[outcome] += 1
        return {
            "schema": SCHEMA,
            "run_id": run_id,
            "status": status,
            "exitstatus": None,
            "agent_id": meta.get("agent_id"),
            "counts": counts,
            "duration_s": None,
            "sample": {"seed": meta.get("seed"), "agent_id": meta.get("agent_id")},
            "notes": [unfinished_note(self.store, run_id, status)],
        }

    def results(self, run_id: str, needle: str = "") -> Iterator[dict[str, Any]]:
        """Each test result line of a run (only those holding `needle`, when given); a torn or
        garbled line (a killed run) is skipped."""
        try:
            handle = open_results(self.store.run_dir(run_id))
        except OSError:
            return
        if handle is None:
            return
        with handle:
            try:
                for line in handle:
                    if needle not in line:
                        continue
                    try:
                        item = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(item, dict) and isinstance(item.get("nodeid"), str):
                        yield item
            except (
                OSError,
                EOFError,
                zlib.error,
            ):  # a truncated or corrupt .gz: what was read stands
                self.warnings.append(f"run {run_id}: results file is damaged; read in part")

    def history(self) -> list[RunInfo]:
        """Every run in the store, oldest first."""
        infos = []
        for run_id in self.store.list_runs():
            status, data = self.store.run_status(run_id)
            if data is None or "counts" not in data:
                data = self._partial_summary(run_id, status, data or {})
            sample = data.get("sample") or {}
            infos.append(
                RunInfo(
                    run_id=run_id,
                    status=status,
                    agent_id=data.get("agent_id"),
                    counts=data.get("counts") or {},
                    duration_s=data.get("duration_s"),
                    sample_mode=sample.get("mode"),
                    total=sample.get("total"),
                    known=sample.get("known"),
                )
            )
        return infos

    def test_history(self, nodeid: str, most: int = 20) -> list[TestRun]:
        """The latest `most` runs that ran `nodeid`, oldest first, with its result in each."""
        needle = json.dumps(nodeid)  # as results.jsonl spells it: lines without it are not read
        found: list[TestRun] = []
        for run_id in reversed(self.store.list_runs()):
            if len(found) >= most:
                break
            item = next(self._results_of(run_id, nodeid, needle), None)
            if item is None:
                continue
            status, summary = self.store.run_status(run_id)
            data = summary or {}
            git = data.get("git") or {}
            commit = git.get("commit") if isinstance(git.get("commit"), str) else None
            found.append(
                TestRun(
                    run_id=run_id,
                    status=status,
                    agent_id=data.get("agent_id"),
                    commit=commit,
                    dirty=git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
                    outcome=str(item.get("outcome")),
                    duration=float(item.get("duration") or 0.0),
                    reason=item.get("reason") if isinstance(item.get("reason"), str) else None,
                    reruns=int(item.get("reruns") or 0),
                )
            )
        if not found:
            raise self._not_recorded(nodeid, "any recorded run")
        return found[::-1]

    def _results_of(self, run_id: str, nodeid: str, needle: str) -> Iterator[dict[str, Any]]:
        """The result lines of `nodeid` in a run; only lines holding `needle` are parsed."""
        return (item for item in self.results(run_id, needle) if item["nodeid"] == nodeid)

    def unfinished_after(self, run_id: str) -> list[str]:
        """Runs started after `run_id` that never wrote a summary (killed, crashed, running)."""
        return [
            other
            for other in self.store.list_runs()
            if other > run_id and self.store.run_status(other)[0] in {"incomplete", "running"}
        ]

    def later_note(self, run_id: str) -> str:
        """One line on a run, started after the one shown, that has not finished."""
        status = self.store.run_status(run_id)[0]
        if status == "running":
            return f"run {run_id} is still running"
        return unfinished_note(self.store, run_id, status)

    # -- regressions -------------------------------------------------------------------
    def _outcomes_of(self, run_id: str) -> dict[str, Known]:
        return {
            str(item["nodeid"]): Known(str(item.get("outcome")), run_id, None, 0.0, 0.0)
            for item in self.results(run_id)
        }

    def regressions(self, ref: str | None = None, against: str | None = None) -> Regressions:
        """The diff of a run against each test's last known outcome, a named run or the baseline."""
        run_id = self.resolve(ref)
        summary = self.summary(run_id)
        notes = []
        unfinished = None
        if summary.status != "complete":
            reached = summary.data.get("not_reached") or ()
            # A run that left no summary (compared --against, by name) never said what it missed.
            count = len(reached) if "not_reached" in summary.data else None
            unfinished = {"status": summary.status, "not_reached": count}
            unreached = f" ({len(reached)} tests not reached)" if reached else ""
            notes.append(
                f"run {run_id} is {summary.status}{unreached}: tests it did not reach count as "
                "not run, never as fixed or removed; `regressions --check` fails on it"
            )
        for other, other_status in unfinished_before(self.store, run_id):
            notes.append(f"previous {unfinished_note(self.store, other, other_status)}")
        for other in self.unfinished_after(run_id):
            notes.append(self.later_note(other))
        if against is None:
            data = summary.data.get("regressions")
            if not isinstance(data, Mapping):
                raise NoRecordError(f"run {run_id} has no regression diff recorded")
            base = data.get("base")
            if data.get("unknown_at_base") and isinstance(base, Mapping) and base.get("commit"):
                data = self._against_base_now(run_id, data, base)
            return _regressions_from({**data, "unfinished": unfinished}, tuple(notes))
        if against == "baseline":
            baseline = self.store.load_baseline()
            if baseline is None:
                raise NoRecordError("no baseline pinned: run `llmharness baseline [RUN]` first")
            before = {
                nodeid: Known(str(outcome), str(baseline["run_id"]), None, 0.0, 0.0)
                for nodeid, outcome in baseline["outcomes"].items()
            }
            label = f"baseline {baseline['run_id']}"
        else:
            other = self.resolve(against)
            status = self.store.run_status(other)[0]
            if status != "complete":
                notes.append(f"compared against run {other}, which is {status}")
            before = self._outcomes_of(other)
            label = other
        results = [_result(item) for item in self.results(run_id)]
        data = _diff.diff(results, before, run_id=run_id, against=label)
        return _regressions_from({**data, "unfinished": unfinished}, tuple(notes))

    def _against_base_now(
        self, run_id: str, recorded: Mapping[str, Any], base: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """The run's diff against what is known at its base now (a sync or a later check
        may have learnt what the run could not)."""
        from llmharness.knowledge import Knowledge

        try:
            at_base = Knowledge(self.store).at(str(base["commit"]))
        except ValueError:
            return recorded
        results = [_result(item) for item in self.results(run_id)]
        data = _diff.against_base(results, at_base, run_id=run_id, base=base)
        data["newly_skipped"] = integrity.newly_skipped(data["newly_skipped"], results, at_base)
        return {**recorded, **data}

    # -- baseline ----------------------------------------------------------------------
    def pin_baseline(self, ref: str | None = None, force: bool = False) -> tuple[str, int]:
        """Pin a run's outcomes as the baseline; refuse an unfinished run unless forced."""
        run_id = self.resolve(ref)
        status = self.store.run_status(run_id)[0]
        if status != "complete" and not force:
            raise NoRecordError(
                f"run {run_id} is {status}, not complete: pin a complete run (or pass --force)"
            )
        outcomes = {str(item["nodeid"]): str(item.get("outcome")) for item in self.results(run_id)}
        try:
            with self.store.locked():
                if not self.store.save_baseline(run_id, outcomes):
                    raise NoRecordError(f"could not write the baseline: {'; '.join(self.warnings)}")
        except StoreError as exc:
            raise NoRecordError(str(exc)) from None
        return run_id, len(outcomes)

    def baseline(self) -> Mapping[str, Any] | None:
        return self.store.load_baseline()

    # -- failures ----------------------------------------------------------------------
    def failure_text(self, nodeid: str, ref: str | None = None) -> tuple[str, str]:
        """(run id, full failure text) of a test, from the named run or the latest that ran it."""
        runs = [self.resolve(ref)] if ref else list(reversed(self.store.list_runs()))
        needle = json.dumps(nodeid)
        for run_id in runs:
            for item in self._results_of(run_id, nodeid, needle):
                if item.get("outcome") not in FAILING:
                    return run_id, f"{nodeid}: {item.get('outcome')} in run {run_id}\n"
                failure = item.get("failure_file")
                if not isinstance(failure, str) or not failure.startswith("failures/"):
                    return run_id, f"{nodeid}: {item.get('outcome')}: {item.get('reason')}\n"
                path = self.store.run_dir(run_id) / failure
                try:
                    return run_id, path.read_text(encoding="utf-8", errors="replace")
                except OSError as exc:
                    return run_id, f"{nodeid}: {item.get('reason')} ({path}: {exc.strerror})\n"
        raise self._not_recorded(nodeid, f"run {ref}" if ref else "any recorded run")

    def _not_recorded(self, nodeid: str, where: str) -> NoRecordError:
        similar, more = self._similar_nodeids(nodeid)
        hint = f"; did you mean {' or '.join(similar)}" if similar else "; check the node id"
        if more:
            hint += f" ({more:,} more match)"
        return NoRecordError(f"test {nodeid!r} is not in {where}{hint}{'?' if similar else ''}")

    def _similar_nodeids(self, text: str, most: int = 3) -> tuple[list[str], int]:
        """Known node ids that `text` could be short for: those it ends (from a path or `::`
        boundary), else those it is part of; the first `most`, and how many more there are."""
        known = sorted(self.store.load_index())
        for matches in (
            lambda nodeid: nodeid.endswith(("/" + text, "::" + text)),
            lambda nodeid: text in nodeid,
        ):
            found = [quote_nodeid(nodeid) for nodeid in known if matches(nodeid)]
            if found:
                return found[:most], max(len(found) - most, 0)
        return [], 0


def _result(item: Mapping[str, Any]) -> Any:
    from llmharness.reporting import TestResult

    return TestResult(
        nodeid=str(item["nodeid"]),
        outcome=str(item.get("outcome")),
        phase=str(item.get("phase", "call")),
        duration=float(item.get("duration") or 0.0),
        reason=item.get("reason"),
        failure_file=item.get("failure_file"),
        worker=item.get("worker"),
        reruns=int(item.get("reruns") or 0),
    )
