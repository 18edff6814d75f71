"""`llmharness export`: a recorded run as a standard report, for the tools around an agent.

- JUnit XML as pytest's `--junitxml` writes it (a `<testsuites>` holding one `<testsuite>` with
  pytest's counts; a `<testcase>` per test with `classname`, `name`, `file` and `time`, and a
  `<failure>`, `<error>` or `<skipped>` child carrying the reason as `message` and the test's
  whole failure file from the run folder as text). llmharness's own facts go in `<properties>`:
  the run's (`llmharness.*` on the suite) and each test's outcome word, regression status and
  verdict (on the test case). An attempt pytest-rerunfailures ran again is a Surefire-style
  `<flakyFailure>` (the test passed in the end), `<rerunFailure>` or `<rerunError>` (it did not),
  as Maven Surefire and junitparser's xunit2 module name them.
- CTRF JSON (https://ctrf.io, spec 1.0.0): `results.tests` with the CTRF status and the pytest
  outcome word as `rawStatus`, `retries` and `flaky` for a test run again; llmharness's facts in
  the `extra` fields of the summary, the environment, the report and each test.

Reads the store only; never imports pytest.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmharness import __version__
from llmharness.reader import NoRecordError, Records, RunSummary

__all__ = ["ExportError", "Exported", "command", "ctrf_report", "junit_report"]

CTRF_SPEC_VERSION = "1.0.0"
# Each list of a regression diff, and what a test in it is called in the reports.
_STATUS_KEYS = (
    ("new_failures", "new_failure"),
    ("new_tests_failing", "new_test_failing"),
    ("unknown_at_base", "unknown_at_base"),
    ("still_failing", "still_failing"),
    ("fixed", "fixed"),
    ("newly_skipped", "newly_skipped"),
    ("fixed_by_test_change", "fixed_by_test_change"),
)
_CTRF_STATUS = {
    "passed": "passed",
    "xpassed": "passed",  # as pytest's junitxml counts a non-strict XPASS
    "failed": "failed",
    "error": "failed",
    "skipped": "skipped",
    "xfailed": "skipped",
}
# An attempt run again, by the outcome the test had in the end (the Surefire report's names).
_RERUN_ELEMENT = {"passed": "flakyFailure", "xpassed": "flakyFailure", "error": "rerunError"}
# XML 1.0 has no way to write these; pytest's junitxml shows them as `#xNN` too.
_NOT_XML = re.compile("[^\t\n\r\x20-\x7e\x80-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# One report id per run, the same at every export of it.
_REPORT_NAMESPACE = uuid.UUID("5d1f4c2e-9a43-4e0b-8f0e-6c1f3b2a7d90")


class ExportError(Exception):
    """A report cannot be written; the message names the file and why."""


@dataclass(frozen=True)
class Exported:
    """One report written."""

    kind: str  # "JUnit XML" or "CTRF"
    path: Path
    run_id: str
    tests: int


def _xml_text(value: object) -> str:
    return _NOT_XML.sub(lambda m: f"#x{ord(m.group()):02X}", str(value))


def _split(nodeid: str) -> tuple[str, list[str]]:
    """(file, names below it) of a node id; a parametrization stays whole on the last name,
    as its brackets may hold `::`."""
    head, bracket, params = nodeid.partition("[")
    parts = head.split("::")
    parts[-1] += bracket + params
    return parts[0], parts[1:]


def _module(path: str) -> str:
    """A file as pytest's junitxml names it: its dotted module path."""
    return re.sub(r"\.py$", "", path.replace("/", "."))


@dataclass(frozen=True)
class _Run:
    summary: RunSummary
    results: list[dict[str, Any]]
    diff: Mapping[str, Any]
    argv: list[str]
    records: Records

    @property
    def data(self) -> Mapping[str, Any]:
        return self.summary.data

    def failure_text(self, result: Mapping[str, Any]) -> str | None:
        failure = result.get("failure_file")
        if not isinstance(failure, str) or not failure.startswith("failures/"):
            return None
        path = self.records.store.run_dir(self.summary.run_id) / failure
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def status_of(self) -> dict[str, dict[str, Any]]:
        """Each test in the regression diff: its status there, and its verdict if judged."""
        found: dict[str, dict[str, Any]] = {}
        for key, word in _STATUS_KEYS:
            for item in self.diff.get(key) or ():
                entry = found.setdefault(str(item.get("nodeid")), {"regression": word})
                for field in ("verdict", "before", "known_by"):
                    if item.get(field) is not None:
                        entry.setdefault(field, item[field])
        return found

    def facts(self) -> dict[str, Any]:
        """The run's own facts: id, status, the sample, the code version, the diff's counts."""
        data = self.data
        sample = data.get("sample") or {}
        git = data.get("git") or {}
        base = self.diff.get("base") or data.get("base") or {}
        return {
            "run_id": self.summary.run_id,
            "status": self.summary.status,
            "exitstatus": data.get("exitstatus"),
            "agent_id": self.summary.agent_id,
            "sample": {
                key: sample.get(key)
                for key in ("mode", "fraction", "seed", "agent_id", "selected", "total")
            },
            "counts": dict(self.summary.counts),
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "base_commit": base.get("commit"),
            "regressions": {key: len(self.diff.get(key) or ()) for key, _ in _STATUS_KEYS},
            "tampered": bool(self.diff.get("tampered") or data.get("tampered")),
            "source": self.source(),
        }

    def source(self) -> str:
        """What recorded the run: pytest, or the file `llmharness ingest` read."""
        if self.argv[:2] == ["llmharness", "ingest"] and len(self.argv) > 2:
            return f"ingested {self.argv[-1]}"
        return "pytest"


def _load(records: Records, ref: str | None) -> _Run:
    summary = records.summary(ref)
    run_id = summary.run_id
    results = list(records.results(run_id))
    try:
        diff: Mapping[str, Any] = records.regressions(run_id).to_json()
    except NoRecordError:  # an unfinished run has no diff: the report has the rest
        diff = {}
    meta = records.store.read_run_file(run_id, "meta.json") or {}
    argv = [str(arg) for arg in meta.get("argv") or ()]
    errors = _collection_errors(records, run_id, summary.data.get("collection_errors") or ())
    return _Run(summary, errors + results, diff, argv, records)


def _collection_errors(
    records: Records, run_id: str, errors: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The run's collection errors as results (pytest's report has a test case for each), with
    the failure file that holds each one's text."""
    items = [
        {"nodeid": str(e["nodeid"]), "outcome": "error", "phase": "collect", "duration": 0.0}
        | ({"reason": str(e["reason"])} if e.get("reason") else {})
        for e in errors
        if isinstance(e, Mapping) and isinstance(e.get("nodeid"), str)
    ]
    if not items:
        return items
    wanted = {item["nodeid"]: item for item in items}
    folder = records.store.run_dir(run_id) / "failures"
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return items
    for name in names:
        try:
            with open(folder / name, encoding="utf-8", errors="replace") as handle:
                head = handle.readline(), handle.readline()
        except OSError:
            continue
        nodeid = head[0].removeprefix("nodeid: ").rstrip("\n")
        if nodeid in wanted and head[1].startswith("outcome: error (in collect)"):
            wanted[nodeid].setdefault("failure_file", f"failures/{name}")
    return items


def _property(parent: ET.Element, name: str, value: object) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    ET.SubElement(parent, "property", name=name, value=_xml_text(text))


def _flat(prefix: str, data: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _flat(f"{prefix}{key}.", value)
        elif value is not None:
            yield f"{prefix}{key}", value


def junit_report(run: _Run) -> bytes:
    """The run as pytest's junitxml would have written it, with llmharness's properties."""
    data = run.data
    counts = run.summary.counts
    failures = counts.get("failed", 0)
    errors = counts.get("error", 0)
    skipped = counts.get("skipped", 0) + counts.get("xfailed", 0)
    started = float(data.get("started") or 0.0)
    suite = ET.Element(
        "testsuite",
        name="pytest",
        errors=str(errors),
        failures=str(failures),
        skipped=str(skipped),
        tests=str(len(run.results)),
        time=f"{float(data.get('duration_s') or 0.0):.3f}",
        timestamp=datetime.datetime.fromtimestamp(started).astimezone().isoformat(),
        hostname=platform.node(),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in _flat("llmharness.", run.facts()):
        _property(properties, name, value)
    statuses = run.status_of()
    for result in run.results:
        suite.append(_testcase(run, result, statuses.get(str(result["nodeid"]))))
    root = ET.Element("testsuites", name="pytest tests")
    root.append(suite)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>' + body + "\n").encode("utf-8")


def _testcase(run: _Run, result: Mapping[str, Any], status: Mapping[str, Any] | None) -> ET.Element:
    nodeid = str(result["nodeid"])
    path, names = _split(nodeid)
    outcome = str(result.get("outcome"))
    if names:  # the classname is the module, then the classes
        classname, name = ".".join([_module(path), *names[:-1]]), names[-1]
    else:  # a collection error or a skipped module: pytest names the file's module path
        classname, name = "", _module(path)
    case = ET.Element(
        "testcase",
        classname=_xml_text(classname),
        name=_xml_text(name),
        file=_xml_text(path),
        time=f"{float(result.get('duration') or 0.0):.3f}",
    )
    properties = ET.SubElement(case, "properties")
    _property(properties, "llmharness.nodeid", nodeid)
    _property(properties, "llmharness.outcome", outcome)
    if result.get("reruns"):
        _property(properties, "llmharness.reruns", result["reruns"])
    for key, value in (status or {}).items():
        _property(properties, f"llmharness.{key}", value)
    reason = _xml_text(result.get("reason") or "")
    text = run.failure_text(result)
    if outcome == "failed":
        ET.SubElement(case, "failure", message=reason).text = _xml_text(text or reason)
    elif outcome == "error":
        ET.SubElement(case, "error", message=reason).text = _xml_text(text or reason)
    elif outcome == "skipped":
        ET.SubElement(case, "skipped", type="pytest.skip", message=reason).text = reason
    elif outcome == "xfailed":
        ET.SubElement(case, "skipped", type="pytest.xfail", message=reason)
    reruns = int(result.get("reruns") or 0)
    for attempt in range(1, reruns + 1):
        element = _RERUN_ELEMENT.get(outcome, "rerunFailure")
        message = f"attempt {attempt} of {reruns + 1} failed and was run again"
        ET.SubElement(case, element, type="rerun", message=message)
    return case


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def ctrf_report(run: _Run) -> dict[str, Any]:
    """The run as a CTRF document (spec 1.0.0), llmharness's facts in its `extra` fields."""
    data = run.data
    started = float(data.get("started") or 0.0)
    finished = float(data.get("finished") or started)
    statuses = run.status_of()
    tests = []
    tally = dict.fromkeys(("passed", "failed", "skipped", "pending", "other"), 0)
    flaky = 0
    for result in run.results:
        test = _ctrf_test(run, result, statuses.get(str(result["nodeid"])))
        tally[test["status"]] += 1
        flaky += bool(test.get("flaky"))
        tests.append(test)
    facts = run.facts()
    git = data.get("git") or {}
    environment: dict[str, Any] = {"osPlatform": platform.system().lower()}
    if git.get("commit"):
        environment["commit"] = str(git["commit"])
    if git.get("branch"):
        environment["branchName"] = str(git["branch"])
    environment["extra"] = {
        "llmharness": {"sample": facts["sample"], "git": data.get("git"), "base": data.get("base")}
    }
    return {
        "reportFormat": "CTRF",
        "specVersion": CTRF_SPEC_VERSION,
        "reportId": str(uuid.uuid5(_REPORT_NAMESPACE, run.summary.run_id)),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "generatedBy": f"llmharness {__version__}",
        "results": {
            "tool": {
                # An ingested report's runner is not recorded: only that it came from a file.
                "name": "pytest" if facts["source"] == "pytest" else "llmharness-ingest",
                "extra": {"recordedBy": facts["source"]},
            },
            "summary": {
                "tests": len(tests),
                **tally,
                "flaky": flaky,
                "start": _ms(started),
                "stop": _ms(finished),
                "duration": _ms(finished - started),
                "extra": {"llmharness": facts},
            },
            "tests": tests,
            "environment": environment,
            "extra": {"llmharness": {"regressions": _diff_lists(run.diff)}},
        },
        "extra": {"llmharness": {"run_id": run.summary.run_id, "log": data.get("log")}},
    }


def _diff_lists(diff: Mapping[str, Any]) -> dict[str, Any]:
    lists = {key: list(diff.get(key) or ()) for key, _ in _STATUS_KEYS}
    return {"against": diff.get("against"), "base": diff.get("base"), **lists}


def _ctrf_test(run: _Run, result: Mapping[str, Any], status: Mapping[str, Any] | None) -> Any:
    nodeid = str(result["nodeid"])
    path, names = _split(nodeid)
    outcome = str(result.get("outcome"))
    # `filePath` + "::" + `name` is the node id again: `llmharness ingest` reads it back so.
    test: dict[str, Any] = {
        "name": "::".join(names) if names else nodeid,
        "status": _CTRF_STATUS.get(outcome, "other"),
        "duration": _ms(float(result.get("duration") or 0.0)),
        "rawStatus": outcome,
    }
    if names:
        test["filePath"] = path
        test["suite"] = [path, *names[:-1]]
    if result.get("reason"):
        test["message"] = str(result["reason"])
    text = run.failure_text(result)
    if text is not None:
        test["trace"] = text
    if result.get("worker"):
        test["threadId"] = str(result["worker"])
    if result.get("reruns"):
        test["retries"] = int(result["reruns"])
        test["flaky"] = test["status"] == "passed"  # failed first, passed when run again
    test["extra"] = {
        "llmharness": {"nodeid": nodeid, "phase": result.get("phase"), **(status or {})}
    }
    return test


def _write(path: Path, data: bytes) -> None:
    """Replace `path` whole: a reader never sees half a report."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None


def export(
    records: Records, ref: str | None, junit: Path | None, ctrf: Path | None
) -> list[Exported]:
    """Write the run's JUnit XML and/or CTRF report; return what was written."""
    run = _load(records, ref)
    written = []
    if junit is not None:
        _write(junit, junit_report(run))
        written.append(Exported("JUnit XML", junit, run.summary.run_id, len(run.results)))
    if ctrf is not None:
        text = json.dumps(ctrf_report(run), indent=2, ensure_ascii=False) + "\n"
        _write(ctrf, text.encode("utf-8", "surrogatepass"))
        written.append(Exported("CTRF", ctrf, run.summary.run_id, len(run.results)))
    return written


def command(records: Records, ref: str | None, junit: str | None, ctrf: str | None) -> int:
    """`llmharness export`: write the reports and print a line for each; return the exit code."""
    if junit is None and ctrf is None:
        raise ExportError("export needs --junit FILE, --ctrf FILE or both")
    done = export(
        records,
        ref,
        Path(junit) if junit is not None else None,
        Path(ctrf) if ctrf is not None else None,
    )
    for item in done:
        print(f"wrote {item.kind} of run {item.run_id} ({item.tests:,} tests) to {item.path}")
    return 0
