"""One run's record: combines pytest's reports into one result per test and writes the run folder.

Counting rule (each test counts once, whatever number of reports pytest makes for it):

* setup fails -> `error`; setup skips -> `skipped` (or `xfailed`);
* call decides otherwise: `passed`, `failed`, `skipped`, `xfailed`, `xpassed` (a strict XPASS is
  `failed`); several call reports (subtests) -> the worst of them;
* a teardown failure turns a passing test into `error` and is appended to the reason of a test
  that had already failed (pytest itself would count such a test twice);
* a module skipped at collection (`importorskip`) counts as one `skipped` entry for the file, and
  a collection error as one `error` entry for the file, as pytest counts them.

Files are written as the run goes (`log.txt` and `results.jsonl` line by line, one file per
failure), so a run that is killed keeps what it did; `summary.json` is written last and marks
the run finished.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import itertools
import json
import math
import operator
import os
import time
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from llmharness import diff as diffing
from llmharness import reporting
from llmharness.reasons import describe_failure
from llmharness.reporting import FAILING, TestResult, pass_json_line
from llmharness.sampling import Sample
from llmharness.store import (
    SCHEMA,
    IndexBatch,
    IndexBroken,
    Known,
    Store,
    StoreError,
    batched,
    new_known,
    safe_name,
    unfinished_before,
    unfinished_note,
)

__all__ = ["RunRecorder"]

_SEVERITY = {"skipped": 0, "xfailed": 1, "passed": 2, "xpassed": 3, "failed": 4, "error": 5}
_outcome_of = operator.itemgetter(0)  # of a Known
_run_id_of = operator.itemgetter(1)
_HEAD_TAIL_MARK = "\n…[{} characters cut here by llmharness]…\n"
_MAX_TRACEBACK = 256 * 1024


def _bounded(text: str, limit: int) -> str:
    """Keep the head and tail of a long text, saying how much was cut."""
    if len(text) <= limit // 4 or (
        len(text) <= limit and len(text.encode("utf-8", "surrogatepass")) <= limit
    ):
        return text
    half = limit // 2  # in UTF-8 bytes, cut back to whole characters
    head = text[:half].encode("utf-8", "surrogatepass")[:half].decode("utf-8", "ignore")
    tail = text[-half:].encode("utf-8", "surrogatepass")[-half:].decode("utf-8", "ignore")
    return head + _HEAD_TAIL_MARK.format(len(text) - len(head) - len(tail)) + tail


def _render_log_line(event: str, fields: Mapping[str, Any]) -> str:
    """`ERROR <nodeid> <reason>`, or `EVENT key=value ...` for the other events."""
    if event == "ERROR":
        return reporting.error_line(fields["nodeid"], fields["reason"], fields["limit"])
    pairs = " ".join(f"{key}={_kv(value)}" for key, value in fields.items())
    return f"{event} {pairs}".rstrip()


def _kv(value: Any) -> str:
    text = reporting.sanitize(str(value), 200)
    return json.dumps(text) if (not text or " " in text or '"' in text) else text


class RunLog:
    """log.txt: one line an event, appended and flushed at once, so a crash loses nothing.

    `log.error("ERROR", nodeid=..., reason=..., limit=...)` writes `ERROR <nodeid> <reason>`;
    any other event is written as `EVENT key=value ...`. (A few lines a run in a fixed form: a
    logging library would cost every pytest process its import, some 40 ms.)
    """

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def info(self, event: str, **fields: Any) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.handle.write(_render_log_line(event, fields) + "\n")
            self.handle.flush()

    warning = error = info


class _Appender:
    """A file that each write goes straight to, in one system call: no buffer to flush."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        #: One os.write of bytes to the file, returning how many were written: the per-test
        #: path's write, a C call. After close, it raises ValueError.
        self.write_bytes: Callable[[bytes], int] = functools.partial(os.write, self._fd)

    def write(self, text: str) -> None:
        self.write_rest(text.encode("utf-8", "surrogatepass"), 0)

    def write_rest(self, data: bytes, written: int) -> None:
        """Write what is left of `data` once its first `written` bytes are in the file."""
        while written < len(data):  # a short write: rare, but allowed to a regular file
            data = data[written:]
            written = self.write_bytes(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self.write_bytes = _closed  # never the number of a file opened since
            os.close(fd)


def _closed(data: bytes) -> int:
    raise ValueError("write to a closed results file")


@dataclass(slots=True)
class _Pending:
    outcome: str | None = None
    phase: str = "setup"
    duration: float = 0.0
    reasons: list[str] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)
    skip_reason: str | None = None


class Results(Mapping[str, TestResult]):
    """A run's results by node id, in little memory: a run keeps every result until it ends,
    and most are plain passes, so a pass is kept as its duration alone.

    `passed` (node id: duration of each plain pass) is a plain dict, which the recorder's
    per-test path writes to directly. A node id in it is a pass even where another result of
    that test was added before: a test run twice in one session (pytest-rerunfailures, a node
    id given twice) counts by its last result, so only a result after a pass removes the pass.
    """

    __slots__ = ("_other", "passed")

    def __init__(self) -> None:
        self.passed: dict[str, float] = {}
        self._other: dict[str, TestResult] = {}

    def add(self, result: TestResult) -> None:
        if (
            result.outcome == "passed"
            and result.phase == "call"
            and result.reason is None
            and result.failure_file is None
        ):
            self.passed[result.nodeid] = result.duration
        else:
            self.passed.pop(result.nodeid, None)
            self._other[result.nodeid] = result

    def passes(self) -> Mapping[str, float]:
        """The plain passes, node id: duration (most of a run's tests, kept without objects)."""
        return self.passed

    def others(self) -> Collection[TestResult]:
        """Every result that is not a plain pass."""
        if self.passed.keys().isdisjoint(self._other):
            return self._other.values()
        return [result for nodeid, result in self._other.items() if nodeid not in self.passed]

    def add_pass(self, nodeid: str, duration: float) -> None:
        """add() of a plain pass, without building its TestResult."""
        self.passed[nodeid] = duration

    def __getitem__(self, nodeid: str) -> TestResult:
        result: TestResult | None = self.get(nodeid)
        if result is None:
            raise KeyError(nodeid)
        return result

    def nodeids(self) -> set[str]:
        """The node ids as a set sized once (growing it one by one would take twice the room)."""
        ids = set(self.passed)
        ids.update(self._other)
        return ids

    def get(self, nodeid: str, default: Any = None) -> Any:
        duration = self.passed.get(nodeid)
        if duration is not None:
            return TestResult(nodeid, "passed", "call", duration)
        return self._other.get(nodeid, default)

    def __contains__(self, nodeid: object) -> bool:
        return nodeid in self.passed or nodeid in self._other

    def __iter__(self) -> Iterator[str]:
        yield from self.passed
        yield from (nodeid for nodeid in self._other if nodeid not in self.passed)

    def __len__(self) -> int:
        return len(self.passed) + len(self.others())


class RunRecorder:
    """Collects a run's results and writes its folder in the store."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        rootdir: Path,
        agent_id: str | None,
        seed: str,
        max_reason_chars: int,
        max_output_bytes: int,
        argv: Iterable[str] = (),
        record: bool = True,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.rootdir = rootdir
        self.agent_id = agent_id
        self.seed = seed
        self.max_reason = max_reason_chars
        self.max_output = max_output_bytes
        self.started = time.time()
        self.results = Results()
        self.collection_errors: list[dict[str, str]] = []
        self.error_lines: list[str] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.warning_count = 0
        self.sample: Sample | None = None
        self.not_reached: list[str] = []
        self.collected: list[str] | None = None
        self.deselected = 0  # by -k, -m, --deselect and other plugins, not by the sample
        self.selected_count: int | None = None  # the tests to run, once collection is over
        self.collected_files: set[str] | None = None
        # (files not imported, known tests not built) by a --fast run's collection plan
        self.uncollected = (0, 0)
        self.failing = 0  # tests failed or errored so far
        # A test that finishes at or after `due` (time.monotonic()) calls on_due: the plugin's
        # progress lines and time limit, checked with no call per test.
        self.due = math.inf
        self.on_due: Callable[[], None] = lambda: None
        # Tests in flight: those with only passed phases so far keep just their duration.
        self._set_up: dict[str, float] = {}
        self._called: dict[str, float] = {}
        self._pending: dict[str, _Pending] = {}
        self._failure_seq = 0
        self.dir = store.run_dir(run_id)
        self._results_file: _Appender | IO[str] = io.StringIO()
        self._appender: _Appender | None = None  # the results file, while the record is written
        self._passed = self.results.passed
        self._log_file: IO[str] = io.StringIO()
        self._writable = False
        self.argv = list(argv)
        if record:  # not for --collect-only and the like: they record no run
            self._open(self.argv)
        self.log = RunLog(self._log_file)
        self.log.info("START", run=run_id, agent=agent_id, seed=seed, pid=os.getpid())

    def _open(self, argv: Iterable[str]) -> None:
        try:
            self.store.ensure()
            (self.dir / "failures").mkdir(parents=True, exist_ok=True)
            meta = {
                "schema": SCHEMA,
                "run_id": self.run_id,
                "status": "running",
                "pid": os.getpid(),
                "host": os.uname().nodename,
                "started": self.started,
                "agent_id": self.agent_id,
                "seed": self.seed,
                "argv": list(argv),
            }
            self.store.write_json(self.dir / "meta.json", meta)
            appender = self._results_file = _Appender(self.dir / "results.jsonl")
            self._log_file = open(  # noqa: SIM115
                self.dir / "log.txt", "a", encoding="utf-8", errors="backslashreplace"
            )
            self._writable = True
            self._appender = appender
        except OSError as exc:
            self.warn(f"cannot write the run record in {self.dir}: {exc.strerror or exc}")

    @property
    def writable(self) -> bool:
        """Whether the run folder is being written."""
        return self._writable

    def _restore_dir(self) -> None:
        """A test deleted the run folder (or the whole store): write it again from memory."""
        if not self._writable or (self.dir / "failures").is_dir():
            return
        self._writable = False
        self._appender = None
        for handle in (self._results_file, self._log_file):
            with contextlib.suppress(OSError, ValueError):
                handle.close()
        self._open(self.argv)  # warns and leaves the record unwritable if it cannot
        if not self._writable:
            return
        self.log.handle = self._log_file
        try:
            for result in self.results.values():
                self._results_file.write(result.to_json_line() + "\n")
            self._results_file.flush()
            self._log_file.write(f"START run={self.run_id} pid={os.getpid()} rewritten=true\n")
            self._log_file.writelines(line + "\n" for line in self.error_lines)
            self._log_file.flush()
        except (OSError, ValueError) as exc:
            self.warn(f"cannot rewrite the run record in {self.dir}: {exc}")
            return
        self.warn("the run folder was deleted during the run; rewritten from memory")

    def warn(self, message: str) -> None:
        """Keep a one-line warning for the log, the summary and the terminal."""
        line = reporting.sanitize(message, 300)
        self.warnings.append(line)
        if hasattr(self, "log"):
            self.log.warning("WARNING", message=line)

    # -- reports -----------------------------------------------------------------------
    def _describe(self, longrepr: Any) -> str:
        """The failure's reason as stored everywhere: one escaped line, cut at the limit."""
        return reporting.sanitize(describe_failure(longrepr, self.rootdir), self.max_reason)

    def collection_error(self, nodeid: str, longrepr: Any) -> None:
        reason = self._describe(longrepr)
        self.collection_errors.append({"nodeid": nodeid, "reason": reason})
        path = self._failure_file(
            nodeid, "error", "collect", reason, [("collection", str(longrepr))], []
        )
        self._error(nodeid, reason, path)

    def collection_skip(self, nodeid: str, longrepr: Any) -> None:
        reason = self._describe(longrepr)
        self._finish(nodeid, _Pending("skipped", "collect", skip_reason=reason))

    def test_report(self, report: Any) -> None:
        """Fold one of pytest's TestReports into its test's result; a finished test calls
        on_due if it is due.

        Most tests pass: their setup and call reports only add a duration to a dict, and the
        teardown report writes the result. Anything else goes through _slow_report.
        """
        nodeid: str = report.nodeid
        when = report.when
        duration = getattr(report, "duration", None)
        if report.outcome == "passed" and type(duration) is float and nodeid not in self._pending:
            if when == "setup":
                if nodeid not in self._set_up and nodeid not in self._called:
                    self._set_up[nodeid] = duration
                    return
            elif when == "call":
                # Not hasattr: a missing attribute raises (and drops) an AttributeError.
                if "wasxfail" not in report.__dict__:
                    before = self._set_up.pop(nodeid, None)
                    if before is not None:
                        self._called[nodeid] = before + duration
                        return
            elif when == "teardown":
                before = self._called.pop(nodeid, None)
                if before is not None:  # _finish for a test that passed in every phase
                    duration += before
                    self._passed[nodeid] = duration  # self.results.add_pass
                    if self._appender is not None:  # _write_result, with one call less
                        data = (pass_json_line(nodeid, duration) + "\n").encode()  # ASCII
                        try:
                            written = self._appender.write_bytes(data)
                            if written != len(data):
                                self._appender.write_rest(data, written)
                        except (OSError, ValueError):
                            pass  # as in _write_result
                    if time.monotonic() >= self.due:
                        self.on_due()
                    return
        if self._slow_report(nodeid, when, report) and time.monotonic() >= self.due:
            self.on_due()

    pytest_runtest_logreport = test_report  # the plugin registers the recorder with pytest

    def _pending_of(self, nodeid: str) -> _Pending:
        pending = self._pending.get(nodeid)
        if pending is None:
            pending = self._pending[nodeid] = _Pending()
            set_up = self._set_up.pop(nodeid, None)
            if set_up is not None:
                pending.duration = set_up
            called = self._called.pop(nodeid, None)
            if called is not None:
                pending.duration = called
                pending.outcome, pending.phase = "passed", "call"
        return pending

    def _slow_report(self, nodeid: str, when: str, report: Any) -> bool:
        pending = self._pending_of(nodeid)
        pending.duration += float(getattr(report, "duration", 0.0) or 0.0)
        outcome = report.outcome
        wasxfail = hasattr(report, "wasxfail")
        if when == "call" or (when == "setup" and outcome != "passed"):
            if outcome == "failed":
                now = "error" if when == "setup" else "failed"
            elif outcome == "skipped":
                now = "xfailed" if wasxfail else "skipped"
            else:
                now = "xpassed" if wasxfail else "passed"
            if pending.outcome is None or _SEVERITY[now] > _SEVERITY[pending.outcome]:
                pending.outcome, pending.phase = now, when
            if outcome == "failed":
                self._keep_failure(pending, report, when)
            elif outcome == "skipped" and pending.skip_reason is None:
                pending.skip_reason = self._describe(report.longrepr)
        elif when == "teardown":
            if outcome == "failed":
                if pending.outcome not in FAILING:
                    pending.outcome, pending.phase = "error", "teardown"
                self._keep_failure(pending, report, when)
            self._finish(nodeid, self._pending.pop(nodeid))
            return True
        elif outcome == "failed":
            # xdist's report for a test whose worker died in it (when "???"): pytest counts it
            # as failed, and no teardown report follows.
            if pending.outcome not in FAILING:
                pending.outcome, pending.phase = "failed", "call"
            self._keep_failure(pending, report, "call")
            self._finish(nodeid, self._pending.pop(nodeid))
            return True
        return False

    def _keep_failure(self, pending: _Pending, report: Any, when: str) -> None:
        reason = self._describe(report.longrepr)
        if when == "teardown" and pending.reasons:
            reason = f"teardown: {reason}"
        elif len(pending.reasons) and when == "call":
            reason = f"subtest: {reason}"
        pending.reasons.append(reason)
        try:
            text = report.longreprtext
        except Exception:  # a broken repr must not stop the record
            text = repr(report.longrepr)
        pending.texts.append((when, _bounded(text, _MAX_TRACEBACK)))
        for title, content in getattr(report, "sections", ()):
            pending.sections.append((title, _bounded(content, self.max_output)))

    def flush_pending(self) -> None:
        """Finish tests whose teardown never reported (a crashed worker, an interrupt)."""
        for nodeid in list(self._called):
            self._pending_of(nodeid)
        self._set_up.clear()  # set up but never run: not a result
        for nodeid in list(self._pending):
            pending = self._pending.pop(nodeid)
            if pending.outcome is not None:
                self._finish(nodeid, pending)

    def _finish(self, nodeid: str, pending: _Pending) -> None:
        outcome = pending.outcome or "passed"
        reason = None
        failure_file = None
        if outcome in FAILING:
            if len(pending.reasons) == 1:
                # Already one bounded line: cut again, its marker would lose the count.
                reason = pending.reasons[0]
            else:
                joined = "; ".join(pending.reasons) or "failed without a report"
                reason = reporting.sanitize(joined, self.max_reason)
            failure_file = self._failure_file(
                nodeid, outcome, pending.phase, reason, pending.texts, pending.sections
            )
            self._error(nodeid, reason, failure_file)
        elif outcome in {"skipped", "xfailed"}:
            reason = pending.skip_reason
        result = TestResult(nodeid, outcome, pending.phase, pending.duration, reason, failure_file)
        if outcome in FAILING and nodeid not in self.results:
            self.failing += 1
        self.results.add(result)
        self._write_result(result.to_json_line())

    def _write_result(self, line: str) -> None:
        # One unbuffered write a test: a killed run keeps every finished result.
        if self._writable:
            try:  # noqa: SIM105 - contextlib.suppress would cost three calls a test
                self._results_file.write(line + "\n")
            except (OSError, ValueError):
                pass  # a full disk, a file closed by a test: the run goes on without the line

    def _error(self, nodeid: str, reason: str, failure_file: str | None) -> None:
        limit = max(self.max_reason, len(reason))  # already cut: keep its marker whole
        self.log.error("ERROR", nodeid=nodeid, reason=reason, limit=limit)
        self.error_lines.append(reporting.error_line(nodeid, reason, limit))

    def _failure_file(
        self,
        nodeid: str,
        outcome: str,
        phase: str,
        reason: str,
        texts: list[tuple[str, str]],
        sections: list[tuple[str, str]],
    ) -> str | None:
        self._restore_dir()
        if not self._writable:
            return None
        self._failure_seq += 1
        name = f"{self._failure_seq:05d}-{safe_name(nodeid.rsplit('::', 1)[-1])[:60]}.txt"
        parts = [f"nodeid: {nodeid}\noutcome: {outcome} (in {phase})\nreason: {reason}\n"]
        for when, text in texts:
            parts.append(f"\n=== traceback ({when}) ===\n{text}\n")
        for title, content in sections:
            parts.append(f"\n=== {title} ===\n{content}\n")
        try:
            with open(
                self.dir / "failures" / name, "w", encoding="utf-8", errors="backslashreplace"
            ) as handle:
                handle.write("".join(parts))
        except OSError as exc:
            self.warn(f"cannot write failure file {name}: {exc.strerror or exc}")
            return None
        return f"failures/{name}"

    # -- the end of the run ------------------------------------------------------------
    def finish(self, exitstatus: int, status: str, update_history: bool) -> dict[str, Any]:
        """Write summary.json, update the last-known index and the pointers; return the summary."""
        self.flush_pending()
        self._restore_dir()
        finished = time.time()
        summary: dict[str, Any] = {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "status": status,
            "exitstatus": exitstatus,
            "started": self.started,
            "finished": finished,
            "duration_s": round(finished - self.started, 3),
            "agent_id": self.agent_id,
            "sample": self.sample_json(),
            **reporting.aggregate(
                self.results.others(), self.collection_errors, passes=self.results.passes()
            ),
            "collection_errors": self.collection_errors,
            "not_reached": self.not_reached,
            "warnings": self.warning_count,
            "notes": self.notes,
            "store_warnings": self.warnings,
            "log": f"runs/{self.run_id}/log.txt",
        }
        for other, other_status in unfinished_before(self.store, self.run_id):
            self.notes.append(
                f"previous {unfinished_note(self.store, other, other_status)} "
                f"(llmharness summary {other})"
            )
        failed_files = {error["nodeid"].split("::")[0] for error in self.collection_errors}
        write = update_history and bool(self.results)
        try:
            with self.store.locked():
                try:
                    regressions = self._merge_index(
                        self.store.index_batches(), failed_files, status, write, finished
                    )
                except IndexBroken:  # found broken partway: load_index reports and sets aside
                    entries = batched(self.store.load_index().items())
                    regressions = self._merge_index(entries, failed_files, status, write, finished)
                summary["regressions"] = regressions
                if self._write_summary(summary):
                    self.store.point_to(self.run_id, self.agent_id)
        except StoreError as exc:
            self.warn(str(exc))
            self._write_summary(summary)
        self.log.info("END", status=status, exitstatus=exitstatus, **summary["counts"])
        self.close()
        return summary

    def _write_summary(self, summary: dict[str, Any]) -> bool:
        summary["store_warnings"] = self.warnings
        return self._writable and self.store.write_json(self.dir / "summary.json", summary)

    def _merge_index(
        self,
        batches: Iterator[IndexBatch],
        failed_files: set[str],
        status: str,
        write: bool,
        when: float,
    ) -> dict[str, Any]:
        """One pass over the last-known index: the regression diff against it and, when
        `write`, the index rewritten with this run's outcomes (streamed, never held whole)."""
        results = self.results
        passes = results.passes()
        builder = diffing.DiffBuilder(failed_files)
        run_ids: set[str] = set()
        unmatched = results.nodeids()  # what is left once the index is read: new tests
        gone = self._vanishing(failed_files) if write and status == "complete" else None
        passed_now = ("passed", self.run_id, self.agent_id, when)

        def merged() -> Iterator[IndexBatch]:
            for nodeids, knowns in batches:
                run_ids.update(map(_run_id_of, knowns))
                unmatched.difference_update(nodeids)
                durations = list(map(passes.get, nodeids))
                if None not in durations and FAILING.isdisjoint(map(_outcome_of, knowns)):
                    # Most batches of a full run: tests that passed and were not failing
                    # before. They are only counted, and their Knowns built by maps.
                    builder.quiet_passes(nodeids)
                    heads = itertools.repeat(passed_now)
                    yield nodeids, list(map(new_known, map(operator.add, heads, zip(durations))))
                    continue
                merged_ids, merged_knowns = [], []
                for nodeid, known, duration in zip(nodeids, knowns, durations, strict=True):
                    builder.known(nodeid)
                    if duration is not None:  # a plain pass: no TestResult is built for it
                        builder.compare_pass(nodeid, duration, known)
                        known = new_known((*passed_now, duration))
                    elif (result := results.get(nodeid)) is not None:
                        builder.compare(result, known)
                        known = self._known(result, when)
                    elif gone is not None and gone(nodeid):
                        continue
                    merged_ids.append(nodeid)
                    merged_knowns.append(known)
                yield merged_ids, merged_knowns
            if unmatched:
                yield from batched(new_tests())

        def new_tests() -> Iterator[tuple[str, Known]]:
            for nodeid, duration in passes.items():
                if nodeid in unmatched:
                    builder.compare_pass(nodeid, duration, None)
                    yield nodeid, new_known((*passed_now, duration))
            for result in results.others():
                if result.nodeid in unmatched:
                    builder.compare(result, None)
                    yield result.nodeid, self._known(result, when)

        if write:
            self.store.save_index_batches(merged())
        else:
            collections.deque(merged(), maxlen=0)
        data = builder.result(run_id=self.run_id, against=self._last_complete(run_ids))
        data["not_reached"] = len(self.not_reached)
        return data

    def _known(self, result: TestResult, when: float) -> Known:
        return Known(result.outcome, self.run_id, self.agent_id, when, result.duration)

    def _last_complete(self, run_ids: Iterable[str]) -> str | None:
        """The newest run the index learnt from that finished complete (or was since pruned)."""
        for run_id in sorted(run_ids, reverse=True):
            if not (self.store.runs_dir / run_id).is_dir():
                return run_id  # pruned: only complete runs prune others, so it is older
            if self.store.run_status(run_id)[0] == "complete":
                return run_id
        return None

    def _vanishing(self, failed_files: set[str]) -> Callable[[str], bool] | None:
        """A test for known tests this run did not run: whether they are gone from the suite
        (their file was collected cleanly this run without them, or no longer exists)."""
        if self.collected is None or self.collected_files is None:
            return None
        files = self.collected_files - failed_files
        keep: dict[str, bool] = {}
        present: set[str] | None = None  # built only if a known test was not run

        def gone(nodeid: str) -> bool:
            nonlocal present
            path = nodeid.split("::", 1)[0]
            if path not in keep:
                keep[path] = path not in files and (self.rootdir / path).exists()
            if keep[path]:
                return False
            if present is None:
                present = set(self.collected or ())
            return nodeid not in present

        return gone

    def sample_json(self) -> dict[str, Any]:
        """How the tests were chosen: `total` is every test collected (or known and left
        uncollected by the plan), `deselected` those options took out (-k, -m, --deselect,
        other plugins), `selected` those left to run, in every mode."""
        total = len(self.collected) if self.collected is not None else len(self.results)
        sample = self.sample
        selected = self.selected_count
        if selected is None:
            selected = len(sample.selected) if sample is not None else total - self.deselected
        data: dict[str, Any] = {
            "mode": "full",
            "fraction": None,
            "seed": self.seed,
            "agent_id": self.agent_id,
            "selected": selected,
            "total": total,
            "deselected": self.deselected,
        }
        if sample is None:
            return data
        data["mode"] = "budget" if sample.budget_s is not None else "fraction"
        data.update(
            fraction=sample.fraction,
            seed=sample.seed,
            budget_s=sample.budget_s,
            expected_s=None if sample.expected_s is None else round(sample.expected_s, 3),
            uncollected_files=self.uncollected[0],
            uncollected_tests=self.uncollected[1],
        )
        return data

    def close(self) -> None:
        self._appender = None
        for handle in (self._results_file, self._log_file):
            with contextlib.suppress(OSError, ValueError):
                handle.close()
