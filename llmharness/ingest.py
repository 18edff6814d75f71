"""`llmharness ingest FILE`: another runner's report recorded as a run, so that `go test`,
`cargo test`, jest or a home-made harness get the same log, summary, index, regression diff,
base and gate as a pytest run.

The file is JUnit XML (parsed by junitparser) or CTRF JSON, told apart by its first character.
It is read whole and checked before anything is written: a file that cannot be read records
nothing. Each test case then becomes the `pytest.TestReport`s pytest would have made for it and
goes through `RunRecorder`, the write path of a pytest run, so the record is the same.

Node ids:

* JUnit: `file::name` when the case has a `file` attribute, with the classes between when the
  classname is the file's module path followed by them (as pytest's junitxml writes a
  `file`); else `classname::name`; else `name`. Where two cases of one file would get the same
  id, both are `file::classname::name`.
* CTRF: `filePath::name` when there is a `filePath`, else the `suite` names and `name` joined by
  `::`, else `name` (so `llmharness export --ctrf` reads back to the same ids).

Outcomes: a JUnit `<error>` is `error`, `<failure>` `failed` (both: `failed`, the error named in
the reason, as a test whose teardown fails after its call did), `<skipped>` `skipped` (`xfailed`
for pytest's `pytest.xfail` type), none `passed`. CTRF: `rawStatus` when it is one of pytest's
outcome words agreeing with `status`, else `passed`, `failed`, and `skipped` for `skipped`,
`pending` and `other`.

Attempts run again (as pytest-rerunfailures counts them): JUnit's Surefire-style
`<flakyFailure>`, `<flakyError>`, `<rerunFailure>` and `<rerunError>` children, one an attempt;
CTRF's `retries` (a test `flaky` without it: one).

The tests of a file cannot be re-run by llmharness: failures whose outcome at the base is not
known stay unknown, and new failures get the verdict `unchecked` (both fail the gate).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from junitparser import Attr, JUnitXml, JUnitXmlError, TestCase, TestSuite
from junitparser import Error as JError
from junitparser import Failure as JFailure
from junitparser import Skipped as JSkipped
from junitparser.xunit2 import FlakyError, FlakyFailure, InterimResult, RerunError, RerunFailure

from llmharness import gitinfo, reporting, sampling
from llmharness.config import ConfigError, Settings, load_settings
from llmharness.reporting import OUTCOMES
from llmharness.store import Store, StoreError, find_store, new_run_id

if TYPE_CHECKING:  # pytest is imported only once a file is read and good to record
    import pytest

    from llmharness.recorder import RunRecorder

__all__ = ["Case", "IngestError", "Report", "command", "ingest", "read_report"]

# Messages that say only that something failed: the text's first line says what.
_GENERIC = frozenset({"", "failed", "failure", "error", "errored", "test failed", "fail"})
_CTRF_STATUSES = frozenset({"passed", "failed", "skipped", "pending", "other"})
_CTRF_OUTCOME = {"passed": "passed", "failed": "failed", "skipped": "skipped"}
# A pytest outcome word in CTRF's `rawStatus` is taken when CTRF's `status` agrees with it.
_RAW_AGREES = {
    "passed": "passed",
    "xpassed": "passed",
    "failed": "failed",
    "error": "failed",
    "skipped": "skipped",
    "xfailed": "skipped",
}


class IngestError(Exception):
    """The file cannot be recorded; the message names it, what is wrong and how to fix it."""


@dataclass(frozen=True)
class Case:
    """One test of the report, in pytest's terms."""

    nodeid: str
    outcome: str  # one of pytest's outcome words
    duration: float = 0.0
    reason: str = ""  # one line: why it failed or was skipped
    text: str = ""  # the runner's whole failure text
    also_error: str | None = None  # a failed case that also errored: the error's reason
    sections: tuple[tuple[str, str], ...] = ()  # captured output, as pytest names it
    reruns: int = 0  # attempts that failed and were run again before this outcome
    rerun_reason: str = ""  # why the first of them failed


@dataclass(frozen=True)
class Report:
    """A report file, read and checked."""

    path: Path
    kind: str  # "JUnit XML" or "CTRF"
    cases: list[Case] = field(default_factory=list)


# -- reading -------------------------------------------------------------------------------
class _Case(TestCase):
    # Not in junitparser's own schema; written by pytest (xunit1), jest-junit and others.
    file = Attr()


class _Suite(TestSuite):
    testcase = _Case  # junitparser's way to read its elements as a subclass


class _JUnit(JUnitXml):
    testsuite = _Suite


def read_report(path: Path) -> Report:
    """Read and check a JUnit XML or CTRF JSON file; raise IngestError saying what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"<":
        return Report(path, "JUnit XML", _junit_cases(path, data))
    if start == b"{":
        return Report(path, "CTRF", _ctrf_cases(path, data))
    if not start:
        raise IngestError(f"{path}: the file is empty (give a JUnit XML or CTRF JSON report)")
    raise IngestError(
        f"{path}: neither JUnit XML nor CTRF JSON (it starts with {data[:16]!r}; "
        "give a JUnit XML or CTRF JSON report)"
    )


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _reason(result: JFailure | JError | JSkipped | InterimResult) -> tuple[str, str]:
    """(one-line reason, whole text) of a result element: its type and message, or the first
    line of its text where the message says no more than that it failed."""
    message = _first_line(str(result.message or ""))
    text = str(result.text or "").strip("\n")
    if message.lower() in _GENERIC:
        detail = _first_line(text)
        message = f"{message}: {detail}" if message and detail else (detail or message)
    kind = str(result.type or "").strip()
    if kind and not message.startswith(kind):
        message = f"{kind}: {message}" if message else kind
    return message, text


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):  # an empty or odd `time`: the rest of the case stands
        return 0.0
    return seconds if seconds >= 0 and seconds == seconds else 0.0


def _junit_nodeid(file: str, classname: str, name: str) -> str:
    if file:
        module = re.sub(r"\.py$", "", file.replace("\\", "/").replace("/", "."))
        if classname.startswith(module + "."):
            return "::".join([file, *classname[len(module) + 1 :].split("."), name])
        return f"{file}::{name}"
    return f"{classname}::{name}" if classname else name


def _junit_cases(path: Path, data: bytes) -> list[Case]:
    try:
        report = _JUnit.fromstring(data)
    except SyntaxError as exc:  # ElementTree's ParseError, and lxml's when it is installed
        raise IngestError(
            f"{path}: not well-formed XML: {exc} (a truncated or damaged report?)"
        ) from None
    except JUnitXmlError:
        raise IngestError(
            f"{path}: not a JUnit report: the root element is neither <testsuites> nor <testsuite>"
        ) from None
    raw: list[tuple[str, str, str, _Case]] = []
    for suite in report:
        for item in suite:
            case = cast(_Case, item)  # a _Suite's test cases are _Case
            name = str(case.name or "").strip()
            if not name:
                suite_name = suite.name or "?"
                raise IngestError(f"{path}: a <testcase> without a name in suite {suite_name!r}")
            raw.append(
                (str(case.file or "").strip(), str(case.classname or "").strip(), name, case)
            )
    if not raw:
        raise IngestError(f"{path}: no <testcase> in it: nothing to record")
    owners: dict[str, set[tuple[str, str]]] = {}
    for file, classname, name, _ in raw:
        owners.setdefault(_junit_nodeid(file, classname, name), set()).add((classname, name))
    cases = []
    for file, classname, name, case in raw:
        nodeid = _junit_nodeid(file, classname, name)
        if file and len(owners[nodeid]) > 1:
            nodeid = f"{file}::{classname}::{name}"
        cases.append(_junit_reruns(_junit_case(nodeid, case), case))
    return cases


def _junit_reruns(found: Case, case: _Case) -> Case:
    """The case with the attempts run again that its Surefire-style children name."""
    attempts = [
        attempt
        for kind in (FlakyFailure, FlakyError, RerunFailure, RerunError)
        for attempt in case.iterchildren(kind)  # type: ignore[no-untyped-call]
    ]
    if not attempts:
        return found
    return replace(found, reruns=len(attempts), rerun_reason=_reason(attempts[0])[0])


def _junit_case(nodeid: str, case: _Case) -> Case:
    results = case.result
    errors = [r for r in results if isinstance(r, JError)]
    failures = [r for r in results if isinstance(r, JFailure)]
    skips = [r for r in results if isinstance(r, JSkipped)]
    sections = tuple(
        (title, str(text))
        for title, text in (
            ("Captured stdout call", case.system_out),
            ("Captured stderr call", case.system_err),
        )
        if text and str(text).strip()
    )
    try:
        duration = _seconds(case.time)
    except ValueError:  # junitparser reads `time` as a float on access
        duration = 0.0
    if failures:
        reason, text = _reason(failures[0])
        also = (_reason(errors[0])[0] or "error") if errors else None
        return Case(nodeid, "failed", duration, reason, text, also, sections)
    if errors:
        reason, text = _reason(errors[0])
        return Case(nodeid, "error", duration, reason, text, None, sections)
    if skips:
        reason, text = _reason(skips[0])
        kind = str(skips[0].type or "")
        outcome = "xfailed" if kind.endswith("xfail") else "skipped"
        if kind and reason.startswith(kind):  # pytest's type says how it skipped, not why
            reason = reason[len(kind) :].lstrip(": ")
        return Case(nodeid, outcome, duration, reason or _first_line(text))
    return Case(nodeid, "passed", duration)


def _ctrf_cases(path: Path, data: bytes) -> list[Case]:
    try:
        doc = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise IngestError(
            f"{path}: not valid JSON: {exc} (a truncated or damaged report?)"
        ) from None
    results = doc.get("results") if isinstance(doc, dict) else None
    tests = results.get("tests") if isinstance(results, dict) else None
    if not isinstance(tests, list):
        raise IngestError(f"{path}: not a CTRF report: it has no results.tests list")
    if not tests:
        raise IngestError(f"{path}: results.tests is empty: nothing to record")
    return [_ctrf_case(path, at, test) for at, test in enumerate(tests)]


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _ctrf_case(path: Path, at: int, test: Any) -> Case:
    where = f"{path}: results.tests[{at}]"
    if not isinstance(test, dict):
        raise IngestError(f"{where} is not an object")
    name, status = test.get("name"), test.get("status")
    if not isinstance(name, str) or not name.strip():
        raise IngestError(f"{where} has no name")
    if status not in _CTRF_STATUSES:
        raise IngestError(
            f"{where}: status {status!r} is none of {', '.join(sorted(_CTRF_STATUSES))}"
        )
    file = test.get("filePath")
    suite = _strings(test.get("suite"))
    if isinstance(file, str) and file.strip():
        nodeid = f"{file.strip()}::{name}"
    elif suite:
        nodeid = "::".join([*suite, name])
    else:
        nodeid = name
    raw = test.get("rawStatus")
    if raw in OUTCOMES and _RAW_AGREES.get(raw) == status:
        outcome = str(raw)
    else:
        outcome = _CTRF_OUTCOME.get(status, "skipped")
    duration = test.get("duration")
    seconds = _seconds(duration) / 1000 if isinstance(duration, (int, float)) else 0.0
    message, trace = (test.get(key) for key in ("message", "trace"))
    message = message if isinstance(message, str) else ""
    trace = trace if isinstance(trace, str) else ""
    reason = _first_line(message) or _first_line(trace)
    if status in ("pending", "other") and not reason:
        reason = f"CTRF status {status}"
    sections = tuple(
        (title, "\n".join(lines))
        for title, lines in (
            ("Captured stdout call", _strings(test.get("stdout"))),
            ("Captured stderr call", _strings(test.get("stderr"))),
        )
        if lines
    )
    text = "\n".join(part for part in (message, trace) if part and part.strip() != reason)
    retries = test.get("retries", 1 if test.get("flaky") is True else 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise IngestError(f"{where}: retries {retries!r} is not a whole number of 0 or more")
    attempts = test.get("retryAttempts")
    first = attempts[0] if isinstance(attempts, list) and attempts else None
    first_reason = ""
    if isinstance(first, dict):
        first_reason = _first_line(str(first.get("message") or first.get("trace") or ""))
    return Case(nodeid, outcome, seconds, reason, text, None, sections, retries, first_reason)


# -- recording -----------------------------------------------------------------------------
_Outcome = Literal["passed", "failed", "skipped"]
_When = Literal["setup", "call", "teardown"]


def _report(
    case: Case,
    when: _When,
    outcome: _Outcome,
    longrepr: str | None = None,
    duration: float = 0.0,
    **extra: Any,
) -> pytest.TestReport:
    import pytest

    path = case.nodeid.split("::", 1)[0]
    sections = case.sections if outcome == "failed" else ()
    return pytest.TestReport(
        case.nodeid,
        (path, None, case.nodeid.rsplit("::", 1)[-1]),
        {},
        outcome,
        longrepr,
        when,
        sections,
        duration,
        **extra,
    )


def _failure(case: Case) -> str:
    """The longrepr pytest would have: the reason on the first line (what llmharness reads as
    the reason when the text has no pytest `E ` lines), then the runner's whole text."""
    reason = case.reason or f"{case.outcome} without a message"
    return f"{reason}\n\n{case.text}" if case.text else reason


def _reports(case: Case) -> Iterator[pytest.TestReport]:
    """The reports pytest makes for a test with this outcome, in its order."""
    for _ in range(case.reruns):  # as pytest-rerunfailures reports an attempt it runs again
        rerun = cast("_Outcome", "rerun")
        yield _report(case, "call", rerun, case.rerun_reason or "failed and run again")
        yield _report(case, "teardown", "passed")
    outcome = case.outcome
    took = case.duration
    if outcome == "error":
        yield _report(case, "setup", "failed", _failure(case), took)
    elif outcome == "skipped":
        yield _report(case, "setup", "skipped", case.reason or "skipped", took)
    elif outcome == "xfailed":
        yield _report(case, "call", "skipped", case.reason or "xfail", took, wasxfail=case.reason)
    elif outcome == "xpassed":
        yield _report(case, "call", "passed", None, took, wasxfail=case.reason)
    elif outcome == "failed":
        yield _report(case, "call", "failed", _failure(case), took)
        if case.also_error is not None:
            yield _report(case, "teardown", "failed", case.also_error)
            return
    else:
        yield _report(case, "call", "passed", None, took)
    yield _report(case, "teardown", "passed")


@dataclass(frozen=True)
class _Where:
    store: Path
    rootdir: Path  # where the project is, for the config file and the code version


def _locate(where: str | None, cwd: Path, env: Mapping[str, str]) -> _Where:
    """The store, found as the other verbs find it; when there is none, `.llmharness/` here."""
    if where is not None:
        start = Path(where)
        root = start if (start / "runs").is_dir() else find_store(start)
        if root is None:
            raise IngestError(f"no llmharness store at or above {start} (check --dir)")
        return _Where(root, cwd)
    shared = env.get("LLMHARNESS_STORE")
    if shared:
        return _Where(Path(shared), cwd)
    found = find_store(cwd)
    if found is not None:
        return _Where(found, found.parent)  # the project the store was made for
    return _Where(cwd / ".llmharness", cwd)


def _settings(rootdir: Path, agent_id: str | None) -> Settings:
    try:
        return load_settings(rootdir, {"agent_id": agent_id})
    except ConfigError as exc:
        raise IngestError(str(exc)) from None


def ingest(
    report: Report, where: _Where, settings: Settings, stored_by_default: bool
) -> tuple[dict[str, Any], RunRecorder]:
    """Record the report's cases as a run in the store; return its summary and recorder."""
    from llmharness.recorder import RunFacts, RunRecorder

    root = where.store
    if stored_by_default:  # no store yet: where a pytest run here would make it
        named = Path(settings.store).expanduser()
        root = named if named.is_absolute() else where.rootdir / named
    store = Store(root)
    agent = settings.agent_id
    seed = settings.seed or (
        sampling.agent_seed(agent) if agent is not None else sampling.machine_seed()
    )
    run_id = new_run_id()
    recorder = RunRecorder(
        store,
        run_id,
        rootdir=where.rootdir,
        agent_id=agent,
        seed=seed,
        max_reason_chars=settings.max_reason_chars,
        max_output_bytes=settings.max_output_bytes,
        argv=["llmharness", "ingest", str(report.path)],
    )
    if not recorder.writable:
        recorder.close()
        raise IngestError(f"cannot record the run: {'; '.join(recorder.warnings)}")
    for case in report.cases:
        for test_report in _reports(case):
            recorder.fold(test_report)
    version, version_note = gitinfo.read_version(where.rootdir, settings.base)
    note = (
        f"ingested {report.path} ({report.kind}): its tests cannot be re-run by llmharness, so "
        "failures unknown at the base stay unknown and new failures unchecked"
    )
    facts = RunFacts(
        exitstatus=1 if recorder.failing else 0,
        status="complete",
        collected=[case.nodeid for case in report.cases],
        notes=[note],
        version=version,
        version_note=version_note,
        base_check_budget=0.0,
        verdict_budget=0.0,
        known_failures=settings.known_failures,
        flaky_blocks=settings.flaky_blocks,
        protected=settings.protected,
        allow_test_changes=settings.allow_test_changes,
    )
    baseline = store.load_baseline()
    protect = {run_id} | ({str(baseline["run_id"])} if baseline is not None else set())
    summary = recorder.finish(facts)
    try:
        with store.locked():
            store.prune(settings.keep_runs, protect)
    except StoreError as exc:
        recorder.warn(str(exc))
    store.compress_results(protect)
    return summary, recorder


def _hint(store: Path, cwd: Path) -> str:
    path = store / "last" / "log.txt"
    try:
        return os.path.relpath(path, cwd)
    except ValueError:
        return str(path)


def command(where: str | None, file: str, agent_id: str | None, as_json: bool) -> int:
    """`llmharness ingest`: record the file, print the run's few lines (or its summary as JSON);
    return the exit code: 0 recorded, 2 nothing recorded (the file or the store is unusable)."""
    cwd = Path.cwd()
    started = time.monotonic()
    try:
        found = _locate(where, cwd, os.environ)
        report = read_report(Path(file))
        settings = _settings(found.rootdir, agent_id)
        fresh = where is None and not os.environ.get("LLMHARNESS_STORE")
        fresh = fresh and not (found.store / "runs").is_dir()
        summary, recorder = ingest(report, found, settings, fresh)
    except IngestError as exc:
        sys.stderr.write(f"llmharness: ingest: {exc}\n")
        return 2
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=True) + "\n")
        return 0
    took = time.monotonic() - started
    print(
        f"llmharness: ingested {report.path} ({report.kind}, "
        f"{reporting.counted(len(report.cases), 'test case', 'test cases')}) as run "
        f"{summary['run_id']} in {took:.1f}s"
    )
    store_root = recorder.store.root
    for line in reporting.compact_lines(
        summary, _broken_first(summary, recorder), settings.max_lines, _hint(store_root, cwd)
    ):
        print(line)
    return 0


def _broken_first(summary: Mapping[str, Any], recorder: RunRecorder) -> Sequence[str]:
    """The ERROR lines, those of the tests the diff calls new failures first."""
    diff = summary.get("regressions") or {}
    keys = ["new_failures", "unknown_at_base"] + (["new_tests_failing"] if "base" in diff else [])
    first = {item["nodeid"] for key in keys for item in diff.get(key, ())}
    pairs = zip(recorder.error_ids, recorder.error_lines, strict=True)
    return [line for _, line in sorted(pairs, key=lambda pair: pair[0] not in first)]
