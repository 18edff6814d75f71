"""One run's record (the write path): folds pytest's reports into one result per test and
writes the run folder; `llmharness.reader` is the read path.

Counting rule (each test counts once, whatever number of reports pytest makes for it):

* setup fails -> `error`; setup skips -> `skipped` (or `xfailed`);
* call decides otherwise: `passed`, `failed`, `skipped`, `xfailed`, `xpassed` (a strict XPASS is
  `failed`); several call reports (subtests) -> the worst of them;
* a teardown failure turns a passing test into `error` and is appended to the reason of a test
  that had already failed (pytest itself would count such a test twice);
* a test run twice in one session (pytest-rerunfailures, a node id given twice) counts by its
  last run;
* a module skipped at collection (`importorskip`) counts as one `skipped` entry for the file, and
  a collection error as one `error` entry for the file, as pytest counts them.

Files are written as the run goes (`log.txt` and `results.jsonl` line by line, one file per
failure), so a run that is killed keeps what it did; `summary.json` is written last and marks
the run finished.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from llmharness import basediff, reporting
from llmharness import diff as diffing
from llmharness.config import KnownFailure, Settings
from llmharness.diagnostics import Diagnostics
from llmharness.gitinfo import CodeVersion
from llmharness.index import Entry, IndexBroken, Known
from llmharness.reasons import describe_failure
from llmharness.reporting import FAILING, TestResult
from llmharness.sampling import Sample
from llmharness.store import (
    RESULTS_FILE,
    SCHEMA,
    Store,
    StoreError,
    safe_name,
    unfinished_before,
    unfinished_note,
)
from llmharness.tripwire import NODEID

__all__ = ["RunFacts", "RunRecorder"]


def _polluters(store_root: Path) -> dict[str, list[str]]:
    """What `llmharness bisect` found making tests fail, by victim."""
    from llmharness.bisect import polluters_of

    return polluters_of(store_root)


_SEVERITY = {"skipped": 0, "xfailed": 1, "passed": 2, "xpassed": 3, "failed": 4, "error": 5}
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


_RUNS_IN_PROCESS: list[str] = []  # the run ids this process has started


def _subtest_label(context: Any) -> str:
    """A subtest as pytest names it in its summary: `[msg] (key=value, ...)`."""
    msg = getattr(context, "msg", None)
    kwargs = getattr(context, "kwargs", None) or {}
    parts = [f"[{msg}]"] if msg is not None else []
    if kwargs:
        parts.append("(" + ", ".join(f"{key}={value}" for key, value in kwargs.items()) + ")")
    return reporting.sanitize(" ".join(parts) or "(<subtest>)", 100)


def _process_age() -> float | None:
    """Seconds since this process started, from Linux's /proc; None where it cannot be read."""
    try:
        with open("/proc/self/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        # The fields after the command's name, which may hold spaces: the start is field 22.
        ticks = int(stat.rpartition(")")[2].split()[19])
        return max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        return None


def _kv(value: Any) -> str:
    text = reporting.sanitize(str(value), 200)
    return json.dumps(text) if (not text or " " in text or '"' in text) else text


class RunLog:
    """log.txt: one line an event, appended and flushed at once, so a crash loses nothing:
    `ERROR <nodeid> <reason>` for each failure, `EVENT key=value ...` for the others."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def event(self, event: str, **fields: Any) -> None:
        pairs = " ".join(f"{key}={_kv(value)}" for key, value in fields.items())
        self.line(f"{event} {pairs}".rstrip())

    def line(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.handle.write(text + "\n")
            self.handle.flush()


@dataclass(slots=True)
class _Pending:
    """A test whose reports are still coming in."""

    outcome: str | None = None
    phase: str = "setup"
    duration: float = 0.0
    reasons: list[str] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[tuple[str, str]] = field(default_factory=list)
    skip_reason: str | None = None
    worker: str | None = None  # the xdist worker that ran it ("gw0"), None in a serial run

    def decide(self, outcome: str, phase: str) -> None:
        """Keep the worse of the outcome so far and `outcome`."""
        if self.outcome is None or _SEVERITY[outcome] > _SEVERITY[self.outcome]:
            self.outcome, self.phase = outcome, phase


@dataclass(frozen=True)
class RunFacts:
    """What the controller knows of the run once it is over, for its summary."""

    exitstatus: int
    status: str
    settings: Settings | None = None  # the run's settings, for what its next runs would cost
    collected: list[str] | None = None  # every test collected (or known and left uncollected)
    collected_files: set[str] | None = None  # files collected cleanly
    sample: Sample | None = None
    deselected: int = 0  # by -k, -m, --deselect and other plugins, not by the sample
    selected: int | None = None  # the tests left to run once collection was over
    uncollected: tuple[int, int] = (0, 0)  # files not imported, known tests not built
    not_reached: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: int = 0  # pytest warnings
    bytecode: dict[str, Any] | None = None
    version: CodeVersion | None = None  # the code version tested, None outside git
    version_note: str = ""  # why there is no version (or no base)
    base_check_budget: float = 0.0  # seconds to run unknown failures at the base
    code_under_test: list[str] = field(default_factory=list)  # project code from elsewhere
    verdict_budget: float = 0.0  # seconds to re-run new failures for their verdict
    known_failures: tuple[KnownFailure, ...] = ()
    flaky_blocks: bool = False
    tamper_reason: str | None = None  # why the run's reports cannot be trusted, if they cannot
    protected: tuple[str, ...] = ()
    allow_test_changes: bool = False
    rotation: int | None = None  # how far a team's parts were shifted (the base's generation)
    team_note: str | None = None  # why a team's parts were not rotated
    whole_suite: bool = False  # `collected` is the whole suite (no paths narrowed it)


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
        diagnostics: Diagnostics | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.rootdir = rootdir
        self.agent_id = agent_id
        self.seed = seed
        self.max_reason = max_reason_chars
        self.max_output = max_output_bytes
        self.argv = list(argv)
        self.diagnostics = diagnostics or Diagnostics(None)
        self.started = time.time()
        # Before the recorder started: Python, pytest, the plugins; known only where the
        # process was started for this run (not pytest.main() called from another program).
        own = not _RUNS_IN_PROCESS and self.argv == sys.argv[1:]
        self.startup_s = _process_age() if own else None
        _RUNS_IN_PROCESS.append(run_id)
        self._tests_started: float | None = None  # when the first test's setup began
        self._suite_files: dict[str, list[float]] = {}  # by file: known tests, their seconds
        self.dir = store.run_dir(run_id)
        self.results: dict[str, TestResult] = {}
        self.collection_errors: list[dict[str, str]] = []
        self.error_lines: list[str] = []
        self.error_ids: list[str] = []  # the node id of each of error_lines
        self.warnings: list[str] = []
        self.failing = 0  # tests failed or errored so far
        self._pending: dict[str, _Pending] = {}
        self._reruns: dict[str, tuple[int, str]] = {}  # attempts run again, the first one's why
        self._failure_seq = 0
        self._results_file: IO[str] | None = None
        self.log = RunLog(open(os.devnull, "w"))  # noqa: SIM115 - until the folder is open
        if record:  # not for --collect-only and the like: they record no run
            self._open()
        self.log.event("START", run=run_id, agent=agent_id, seed=seed, pid=os.getpid())

    # -- the run folder ----------------------------------------------------------------
    @property
    def writable(self) -> bool:
        """Whether the run folder is being written."""
        return self._results_file is not None

    def _open(self) -> None:
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
                "argv": self.argv,
            }
            self.store.write_json(self.dir / "meta.json", meta)
            # Line-buffered: each result is on disk when its test ends, as a killed run needs.
            results = open(self.dir / RESULTS_FILE, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            log = open(self.dir / "log.txt", "a", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        except OSError as exc:
            self.warn(f"cannot write the run record in {self.dir}: {exc.strerror or exc}")
            return
        self._results_file = results
        self.log.handle.close()
        self.log.handle = log

    def _restore_dir(self) -> None:
        """A test deleted the run folder (or the whole store): write it again from memory."""
        if self._results_file is None or (self.dir / "failures").is_dir():
            return
        self.close()
        self._open()  # warns and leaves the record unwritable if it cannot
        if self._results_file is None:
            return
        try:
            for result in self.results.values():
                self._results_file.write(json.dumps(result.to_json()) + "\n")
            self.log.line(f"START run={self.run_id} pid={os.getpid()} rewritten=true")
            for line in self.error_lines:
                self.log.line(line)
        except (OSError, ValueError) as exc:
            self.warn(f"cannot rewrite the run record in {self.dir}: {exc}")
            return
        self.warn("the run folder was deleted during the run; rewritten from memory")

    def warn(self, message: str) -> None:
        """Keep a one-line warning for the log, the summary and the terminal."""
        line = reporting.sanitize(message, 300)
        self.warnings.append(line)
        self.diagnostics.event("warning", message=message)
        if hasattr(self, "log"):
            self.log.event("WARNING", message=line)

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

    def fold(self, report: pytest.TestReport) -> bool:
        """Fold one of pytest's reports into its test's result; True when the test is done."""
        nodeid, when, outcome = report.nodeid, report.when, report.outcome
        if self._tests_started is None:  # collection (and xdist's start-up) ends here
            self._tests_started = time.time() - float(report.duration or 0.0)
        pending = self._pending.get(nodeid)
        if pending is None:
            # xdist names the worker on each report it forwards: the order a verdict replays.
            pending = self._pending[nodeid] = _Pending(worker=getattr(report, "worker_id", None))
        pending.duration += float(report.duration or 0.0)
        wasxfail = hasattr(report, "wasxfail")
        if when == "call" or (when == "setup" and outcome != "passed"):
            if outcome == "failed":
                pending.decide("error" if when == "setup" else "failed", when)
                self._keep_failure(pending, report)
            elif outcome == "skipped":
                pending.decide("xfailed" if wasxfail else "skipped", when)
                if pending.skip_reason is None:
                    pending.skip_reason = self._describe(report.longrepr)
            elif outcome == "passed":
                pending.decide("xpassed" if wasxfail else "passed", when)
            else:
                # Any other word (pytest-rerunfailures' "rerun") is an attempt that does not
                # count; the test passing later still says it needed one. Counted here: with
                # some versions no teardown report follows such an attempt.
                count, first = self._reruns.get(nodeid, (0, None))
                first = first or self._describe(report.longrepr) or outcome
                self._reruns[nodeid] = (count + 1, first)
            return False
        if when == "teardown":
            if pending.outcome is None and outcome != "failed":
                # No call counted (an attempt run again, or --setup-only): the next one decides.
                del self._pending[nodeid]
                return False
            if outcome == "failed":
                if pending.outcome not in FAILING:
                    pending.decide("error", "teardown")
                self._keep_failure(pending, report)
            self._finish(nodeid, self._pending.pop(nodeid))
            return True
        if outcome == "failed" and when != "setup":
            # xdist's report for a test whose worker died in it (when "???"): pytest counts it
            # as failed, and no teardown report follows.
            if pending.outcome not in FAILING:
                pending.decide("failed", "call")
            self._keep_failure(pending, report)
            self._finish(nodeid, self._pending.pop(nodeid))
            return True
        return False

    def _keep_failure(self, pending: _Pending, report: pytest.TestReport) -> None:
        reason = self._describe(report.longrepr)
        context = getattr(report, "context", None)  # a subtest's (pytest 9, pytest-subtests)
        if context is not None:
            reason = f"subtest {_subtest_label(context)}: {reason}"
        elif report.when == "teardown" and pending.reasons:
            reason = f"teardown: {reason}"
        pending.reasons.append(reason)
        try:
            text = report.longreprtext
        except Exception:  # a broken repr must not stop the record
            text = repr(report.longrepr)
        when = report.when if report.when in ("setup", "call", "teardown") else "call"
        pending.texts.append((when, _bounded(text, _MAX_TRACEBACK)))
        for title, content in report.sections:
            pending.sections.append((title, _bounded(content, self.max_output)))

    def flush_pending(self) -> None:
        """Finish tests whose teardown never reported (a crashed worker, an interrupt)."""
        for nodeid in list(self._pending):
            pending = self._pending.pop(nodeid)
            if pending.outcome is not None:  # set up but never run: not a result
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
        reruns, first = self._reruns.pop(nodeid, (0, None))
        if reruns:
            self.log.event("RERUN", nodeid=nodeid, outcome=outcome, reruns=reruns, first=first)
        result = TestResult(
            nodeid,
            outcome,
            pending.phase,
            pending.duration,
            reason,
            failure_file,
            pending.worker,
            reruns,
        )
        previous = self.results.get(nodeid)
        if outcome in FAILING and (previous is None or previous.outcome not in FAILING):
            self.failing += 1
        elif previous is not None and previous.outcome in FAILING and outcome not in FAILING:
            self.failing -= 1
        self.results[nodeid] = result
        if self._results_file is not None:
            # A full disk, a file closed by a test: the run goes on without the line.
            with contextlib.suppress(OSError, ValueError):
                self._results_file.write(json.dumps(result.to_json()) + "\n")

    def _error(self, nodeid: str, reason: str, failure_file: str | None) -> None:
        limit = max(self.max_reason, len(reason))  # already cut: keep its marker whole
        line = reporting.error_line(nodeid, reason, limit)
        self.log.line(line)
        self.error_lines.append(line)
        self.error_ids.append(nodeid)

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
        if self._results_file is None:
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
    def finish(self, facts: RunFacts) -> dict[str, Any]:
        """Write summary.json, update the last-known index and the pointers; return the summary."""
        self.flush_pending()
        self._restore_dir()
        finished = time.time()
        notes = list(facts.notes)
        version = facts.version
        at_base = basediff.BaseFacts()
        if version is not None and facts.exitstatus != pytest.ExitCode.INTERRUPTED:
            at_base = basediff.check_unknown(
                self.store, version, self.rootdir, self.results, facts.base_check_budget, self.warn
            )
        notes[:0] = facts.code_under_test
        notes.extend(at_base.notes)
        for other, other_status in unfinished_before(self.store, self.run_id):
            note = unfinished_note(self.store, other, other_status)
            notes.append(f"previous {note} (llmharness summary {other})")
        if facts.tamper_reason is not None:
            notes.insert(0, f"TAMPERED: {facts.tamper_reason}")
            reason = f"tampered: {facts.tamper_reason}"
            self.log.line(reporting.error_line(NODEID, reason, max(self.max_reason, len(reason))))
        summary: dict[str, Any] = {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "status": facts.status,
            "exitstatus": facts.exitstatus,
            "started": self.started,
            "finished": finished,
            "duration_s": round(finished - self.started, 3),
            "agent_id": self.agent_id,
            "detected_agent": facts.settings.detected_agent if facts.settings else None,
            "rootdir": str(self.rootdir),  # where re-runs and `llmharness bisect` run pytest
            "sample": self.sample_json(facts),
            **reporting.aggregate(self.results.values(), self.collection_errors),
            "collection_errors": self.collection_errors,
            "not_reached": facts.not_reached,
            "warnings": facts.warnings,
            "notes": notes,
            "bytecode_cache": facts.bytecode,
            "git": version.to_json() if version is not None else None,
            "git_note": facts.version_note or None,
            "base": version.base_json() if version is not None else None,
            "base_check": {
                "checked": at_base.checked,
                "unchecked": at_base.unchecked,
                "seconds": round(at_base.seconds, 3),
            },
            "code_under_test": facts.code_under_test,
            "tampered": facts.tamper_reason is not None,
            "tamper_reason": facts.tamper_reason,
            "verdicts": {"processes": 0, "seconds": 0.0},
            "store_warnings": self.warnings,
            "log": f"runs/{self.run_id}/log.txt",
        }
        failed_files = {error["nodeid"].split("::")[0] for error in self.collection_errors}
        recording = time.time()
        try:
            with self.store.locked():
                try:
                    known = self.store.index_entries()
                    regressions = self._merge_index(known, failed_files, facts, finished)
                except IndexBroken:  # found broken partway: load_index reports and sets aside
                    loaded = self.store.load_index()
                    known = (Entry(nodeid, before) for nodeid, before in loaded.items())
                    regressions = self._merge_index(known, failed_files, facts, finished)
                summary["regressions"] = regressions
                # The index as this run leaves it: how much of the known suite the run covered.
                summary["sample"]["known"] = sum(count for count, _ in self._suite_files.values())
                if version is not None and facts.tamper_reason is None:  # a lie is not knowledge
                    try:
                        whole = facts.whole_suite and not self.collection_errors
                        suite = facts.collected if whole else None
                        basediff.record_clean_run(self.store, version, self.results, suite)
                    except OSError as exc:
                        self.warn(f"cannot keep this clean run's outcomes at its commit: {exc}")
                if version is not None:
                    against_base = basediff.compare(self.store, version, self.results, self.run_id)
                    if against_base is not None:
                        against_base["not_reached"] = regressions["not_reached"]
                        summary["regressions"] = against_base
                        summary["since_last"] = regressions
                if self._write_summary(summary):
                    self.store.point_to(self.run_id, self.agent_id)
        except StoreError as exc:
            self.warn(str(exc))
            self._write_summary(summary)
        self._next_runs(summary, facts, time.time() - recording)
        if isinstance(summary.get("regressions"), dict):
            self._integrity(summary, facts)  # an interrupted run's too: it may be tampered
            if facts.status != "interrupted":
                self._judge(summary, facts)
        self.log.event("END", status=facts.status, exitstatus=facts.exitstatus, **summary["counts"])
        self.diagnostics.event(
            "finish", status=facts.status, exitstatus=facts.exitstatus, **summary["counts"]
        )
        self.close()
        return summary

    def _integrity(self, summary: dict[str, Any], facts: RunFacts) -> None:
        """Tests fixed by changing them, failing tests removed or skipped, hooks and protected
        paths changed since the base, and the tripwire, into the diff; summary.json rewritten."""
        from llmharness import integrity
        from llmharness.knowledge import Knowledge

        diff = summary["regressions"]
        failed_files = {error["nodeid"].split("::")[0] for error in self.collection_errors}
        try:
            found = integrity.check(
                facts.version,
                self.rootdir,
                self.results,
                Knowledge(self.store).at,
                diff,
                facts.collected,
                facts.collected_files,
                facts.protected,
                failed_files=failed_files,
                tamper_reason=facts.tamper_reason,
                allow_test_changes=facts.allow_test_changes,
            )
        except Exception as exc:  # a check of the record must never cost the record
            self.warn(f"cannot check what the change did to the tests: {exc!r}")
            tampered = facts.tamper_reason is not None
            found = {"tampered": tampered, "tamper_reason": facts.tamper_reason}
        diff.update(found)
        self._write_summary(summary)

    def _judge(self, summary: dict[str, Any], facts: RunFacts) -> None:
        """Verdicts on the new failures, accepted failures apart; summary.json rewritten."""
        from llmharness import verdicts

        diff = summary["regressions"]
        diff["flaky_blocks"] = facts.flaky_blocks
        today = datetime.date.today()
        report, notes = verdicts.known_failures_report(self.results, facts.known_failures, today)
        summary["known_failures"] = report
        summary["notes"].extend(notes)
        # Outside git a test never seen before is "new" (every failure of a first run is):
        # only against the base is a new test one that did not exist there.
        keys = ("new_failures", "new_tests_failing") if "base" in diff else ("new_failures",)
        new = [item for key in keys for item in diff[key]]
        for item in diff.get("still_failing", ()):
            entry = verdicts.known_entry(item["nodeid"], facts.known_failures, today)
            if entry is not None:
                item["known_reason"] = entry.reason
        if not new:
            if notes:
                self._write_summary(summary)
            return
        judged = verdicts.judge(
            self.rootdir,
            self.store.root,
            list(self.results.values()),
            [item["nodeid"] for item in new],
            budget_s=facts.verdict_budget,
            known=facts.known_failures,
            flaky=self._known_flaky(facts),
            polluters=_polluters(self.store.root),
            today=today,
        )
        for item in new:
            item.update(judged.verdicts.get(item["nodeid"], {"verdict": "unchecked"}))
            polluters = " after " + " + ".join(item["polluters"]) if item.get("polluters") else ""
            self.log.line(
                f"VERDICT {reporting.quote_nodeid(item['nodeid'])} {item['verdict']}{polluters}"
            )
        summary["verdicts"] = {"processes": judged.processes, "seconds": round(judged.seconds, 3)}
        summary["notes"].extend(judged.notes)
        self._write_summary(summary)

    def _known_flaky(self, facts: RunFacts) -> Callable[[str], bool]:
        """Whether a test is known to flip at this code version (clean) or at the base."""
        from llmharness.knowledge import Knowledge

        version = facts.version
        if version is None:
            return lambda nodeid: False
        known = Knowledge(self.store)
        commits = {c for c in (None if version.dirty else version.commit, version.base) if c}
        flips = {
            nodeid for commit in commits for nodeid, at in known.at(commit).items() if at.flaky
        }
        return flips.__contains__

    def _write_summary(self, summary: dict[str, Any]) -> bool:
        summary["store_warnings"] = self.warnings
        return self.writable and self.store.write_json(self.dir / "summary.json", summary)

    def _merge_index(
        self,
        known: Iterator[Entry],
        failed_files: set[str],
        facts: RunFacts,
        when: float,
    ) -> dict[str, Any]:
        """One pass over the last-known index: the regression diff against it and, for a run
        that ran tests, the index rewritten with this run's outcomes (streamed, never held
        whole)."""
        results = self.results
        builder = diffing.DiffBuilder(failed_files)
        run_ids: set[str] = set()
        # Those of this run's tests not yet found in the index: a dict of the run's own node id
        # strings, a quarter of what a set of the ones found grew to at the end.
        unseen = dict.fromkeys(results)
        complete = facts.status == "complete"
        gone = self._vanishing(facts, failed_files) if complete else None
        self._suite_files = {}

        def merged() -> Iterator[Entry]:
            for entry in known:
                nodeid, before = entry.nodeid, entry.known
                run_ids.add(before.run_id)
                builder.known(nodeid)
                result = results.get(nodeid)
                if result is not None:
                    unseen.pop(nodeid, None)
                    builder.compare(result, before)
                    yield Entry(nodeid, self._known(result, when))
                elif gone is None or not gone(nodeid):
                    yield entry  # unchanged: written back as it was read
            for nodeid in unseen:
                result = results[nodeid]
                builder.compare(result, None)
                yield Entry(nodeid, self._known(result, when))

        if results:
            self.store.save_index(self._tallied(merged()))
        else:
            for _ in self._tallied(merged()):  # still the diff: nothing ran, nothing is learnt
                pass
        data = builder.result(run_id=self.run_id, against=self._last_complete(run_ids))
        data["not_reached"] = len(facts.not_reached)
        return data

    def _tallied(self, entries: Iterator[Entry]) -> Iterator[Entry]:
        """The index's entries, each counted on its way to the file: the known tests of each
        test file and their recorded seconds, what the next runs would cost."""
        files = self._suite_files
        for entry in entries:
            duration = entry.known.duration
            seconds = duration if 0.0 <= duration < math.inf else 0.0
            path = entry.nodeid.partition("::")[0]
            tally = files.get(path)
            if tally is None:
                files[path] = [1, seconds]
            else:
                tally[0] += 1
                tally[1] += seconds
            yield entry

    def _next_runs(self, summary: dict[str, Any], facts: RunFacts, record_s: float) -> None:
        """The run's own timing and, from it and the recorded durations, what a full and a
        --fast run would cost next (`timing` and `next` in summary.json)."""
        workers = len({r.worker for r in self.results.values() if r.worker is not None}) or 1
        tests_s = float(summary.get("test_time_s") or 0.0) / workers
        duration = float(summary["duration_s"])
        started = self._tests_started if self._tests_started is not None else summary["finished"]
        collect_s = min(max(started - self.started, 0.0), duration)
        settings = facts.settings or Settings()
        files = {nodeid.partition("::")[0] for nodeid in facts.collected or self.results}
        imported = len(files)
        if facts.sample is not None and settings.fast_collect:
            imported -= facts.uncollected[0]  # the files --fast did not import
        timing = {
            "startup_s": None if self.startup_s is None else round(self.startup_s, 4),
            "collect_s": round(collect_s, 4),
            "tests_s": round(tests_s, 4),
            "other_s": round(max(duration - collect_s - tests_s, 0.0), 4),
            "record_s": round(record_s, 4),
            "workers": workers,
            "files": max(imported, 0),
            "tests": len(self.results),
        }
        summary["timing"] = timing
        fraction, budget = settings.fast_fraction, settings.fast_budget
        if fraction is None and budget is None:
            team = getattr(settings, "agents", None)  # a team's agent runs its part
            fraction = 1.0 / team if team else 0.10
        suite = {path: (int(n), seconds) for path, (n, seconds) in self._suite_files.items()}
        full = facts.sample is None
        other = self._latest_timing(sampled=full)
        summary["next"] = reporting.next_runs(
            timing,
            suite,
            fraction,
            budget,
            settings.fast_collect,
            full_timing=timing if full else other,
            fast_timing=other if full else timing,
        )
        if not isinstance(summary.get("regressions"), dict):
            self._write_summary(summary)

    def _latest_timing(self, sampled: bool, look_back: int = 10) -> dict[str, Any] | None:
        """The `timing` of the latest earlier run that sampled (or ran in full), among the last
        `look_back` runs: what prices the other kind of run."""
        for run_id in sorted(self.store.list_runs(), reverse=True)[:look_back]:
            if run_id == self.run_id:
                continue
            data = self.store.read_run_file(run_id, "summary.json")
            if not data or data.get("status") != "complete":
                continue
            timing = data.get("timing")
            keys = ("record_s", "collect_s", "other_s", "files", "tests")
            if not isinstance(timing, dict) or not all(
                isinstance(timing.get(key), (int, float)) for key in keys
            ):
                continue
            if (data.get("sample", {}).get("mode") != "full") == sampled:
                return timing
        return None

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

    def _vanishing(self, facts: RunFacts, failed_files: set[str]) -> Callable[[str], bool] | None:
        """A test for known tests this run did not run: whether they are gone from the suite
        (their file was collected cleanly this run without them, or no longer exists)."""
        if facts.collected is None or facts.collected_files is None:
            return None
        files = facts.collected_files - failed_files
        collected = facts.collected
        present: set[str] = set()  # made when first asked: a run of the whole suite never is
        kept: dict[str, bool] = {}  # by file: not collected this run, but still there

        def gone(nodeid: str) -> bool:
            path = nodeid.split("::", 1)[0]
            if path not in kept:
                kept[path] = path not in files and (self.rootdir / path).exists()
            if kept[path]:
                return False
            if not present:
                present.update(collected)
            return nodeid not in present

        return gone

    def sample_json(self, facts: RunFacts) -> dict[str, Any]:
        """How the tests were chosen: `total` is every test collected (or known and left
        uncollected by the plan), `deselected` those options took out (-k, -m, --deselect,
        other plugins), `selected` those left to run, in every mode."""
        total = len(facts.collected) if facts.collected is not None else len(self.results)
        sample = facts.sample
        selected = facts.selected
        if selected is None:
            selected = len(sample.selected) if sample is not None else total - facts.deselected
        data: dict[str, Any] = {
            "mode": "full",
            "fraction": None,
            "seed": self.seed,
            "agent_id": self.agent_id,
            "selected": selected,
            "total": total,
            "deselected": facts.deselected,
        }
        if sample is None:
            return data
        data["mode"] = "budget" if sample.budget_s is not None else "fraction"
        data.update(
            fraction=sample.fraction,
            seed=sample.seed,
            budget_s=sample.budget_s,
            expected_s=None if sample.expected_s is None else round(sample.expected_s, 3),
            uncollected_files=facts.uncollected[0],
            uncollected_tests=facts.uncollected[1],
            added_for_changes=sample.added_for_changes,
        )
        if sample.agents is not None:
            data.update(
                agents=sample.agents,
                part=sample.part,
                rotation=facts.rotation,
                team_note=facts.team_note,
            )
        return data

    def close(self) -> None:
        for handle in (self._results_file, self.log.handle):
            if handle is not None:
                with contextlib.suppress(OSError, ValueError):
                    handle.close()
        self._results_file = None
