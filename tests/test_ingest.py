"""`llmharness ingest`: reports written by other runners (go test through go-junit-report, jest,
a CTRF reporter), recorded by the installed CLI in a real subprocess, outside git and in a clone
of a bare upstream; bad files record nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gitenv import agent_env

# As go-junit-report writes `go test -v` output: one suite per package, classname the package.
GO_REPORT = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" failures="{failures}">
\t<testsuite name="example.com/calc" tests="3" failures="{failures}" errors="0" id="0"
\t\thostname="ci" time="0.004" timestamp="2026-11-30T10:00:00Z">
\t\t<properties>
\t\t\t<property name="go.version" value="go1.22.4 linux/amd64"></property>
\t\t</properties>
\t\t<testcase name="TestAdd" classname="example.com/calc" time="0.000"></testcase>
\t\t<testcase name="TestSub" classname="example.com/calc" time="0.001">{sub}</testcase>
\t\t<testcase name="TestDiv/by_zero" classname="example.com/calc" time="0.000">
\t\t\t<skipped message="calc_test.go:31: not on this platform"></skipped>
\t\t</testcase>
\t</testsuite>
\t<testsuite name="example.com/calc/parse" tests="2" failures="0" errors="0" id="1"
\t\thostname="ci" time="0.002" timestamp="2026-11-30T10:00:00Z">
\t\t<testcase name="TestParse" classname="example.com/calc/parse" time="0.001"></testcase>
\t\t<testcase name="TestParse/empty" classname="example.com/calc/parse" time="0.000">
\t\t\t<system-out><![CDATA[=== RUN   TestParse/empty]]></system-out>
\t\t</testcase>
\t</testsuite>
</testsuites>
"""
SUB_BROKEN = """
\t\t\t<failure message="Failed" type=""><![CDATA[    calc_test.go:14: Sub(3, 1) = 4, want 2
    calc_test.go:15: Sub(0, 0) = 1, want 0]]></failure>
\t\t\t<system-out><![CDATA[=== RUN   TestSub
--- FAIL: TestSub (0.00s)]]></system-out>
\t\t"""

# As jest-junit writes it with addFileAttribute: suites per file, nested, classnames of titles.
JEST_REPORT = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="jest tests" tests="4" failures="1" errors="1" time="1.2">
  <testsuite name="calc" tests="4" failures="1" errors="1" skipped="0" time="1.2"
      file="src/calc.test.js">
    <testcase classname="calc adds" name="adds" time="0.01" file="src/calc.test.js"/>
    <testcase classname="calc subtracts" name="works" time="0.02" file="src/calc.test.js">
      <failure message="Error: expect(received).toBe(expected)" type="failure"
        >Error: expect(received).toBe(expected)
    at Object.toBe (src/calc.test.js:9:20)</failure>
    </testcase>
    <testsuite name="calc nested" tests="2">
      <testcase classname="calc divides" name="works" time="0.01" file="src/calc.test.js">
        <error message="" type="TypeError">TypeError: x is not a function</error>
      </testcase>
      <testcase classname="tests.test_legacy.TestOld" name="test_it" time="0.5"
          file="tests/test_legacy.py"/>
    </testsuite>
  </testsuite>
</testsuites>
"""

CTRF_REPORT = {
    "reportFormat": "CTRF",
    "specVersion": "1.0.0",
    "results": {
        "tool": {"name": "jest"},
        "summary": {
            "tests": 4,
            "passed": 1,
            "failed": 1,
            "skipped": 1,
            "pending": 1,
            "other": 0,
            "start": 1764496800000,
            "stop": 1764496801500,
        },
        "tests": [
            {
                "name": "user can log in",
                "status": "passed",
                "duration": 1200,
                "filePath": "e2e/login.spec.ts",
            },
            {
                "name": "cart totals",
                "status": "failed",
                "duration": 300,
                "suite": ["shop", "cart"],
                "message": "expected 30 to equal 31",
                "trace": "AssertionError: expected 30 to equal 31\n    at cart.spec.ts:12:5",
                "stdout": ["adding 3 items"],
            },
            {"name": "old checkout", "status": "skipped", "duration": 0},
            {"name": "new checkout", "status": "pending", "duration": 0},
        ],
    },
}


def cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmharness", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=agent_env(cwd.parent / "home", **env),
        check=False,
    )


def cli_json(cwd: Path, *args: str) -> Any:
    done = cli(cwd, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=agent_env(cwd.parent / "home"),
        check=False,
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def go_report(folder: Path, name: str, broken: bool) -> Path:
    path = folder / name
    text = GO_REPORT.format(failures=int(broken), sub=SUB_BROKEN if broken else "")
    path.write_text(text, encoding="utf-8")
    return path


def results(store: Path) -> dict[str, dict[str, Any]]:
    lines = (store / "last" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {item["nodeid"]: item for item in map(json.loads, lines)}


def error_lines(store: Path) -> list[str]:
    log = (store / "last" / "log.txt").read_text(encoding="utf-8")
    return [line for line in log.splitlines() if line.startswith("ERROR ")]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` and a digest of its content."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty project folder outside any git work tree, and a folder for the reports."""
    (tmp_path / "home").mkdir()
    (tmp_path / "reports").mkdir()
    project = tmp_path / "project"
    project.mkdir()
    return project


SUB = "example.com/calc::TestSub"


def test_a_go_report_ingested_twice_finds_the_one_test_broken_between(work: Path) -> None:
    reports = work.parent / "reports"
    first = cli(work, "ingest", str(go_report(reports, "go-1.xml", broken=False)))
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.splitlines()[1].startswith("llmharness: PASSED 4 passed, 1 skipped in ")
    assert cli(work, "regressions", "--check").returncode == 0
    second = cli(work, "ingest", str(go_report(reports, "go-2.xml", broken=True)))
    assert (second.returncode, second.stderr) == (0, "")
    lines = second.stdout.splitlines()
    assert lines[0].startswith(f"llmharness: ingested {reports / 'go-2.xml'} (JUnit XML, 5 ")
    assert lines[1].startswith("llmharness: FAILED 1 failed, 3 passed, 1 skipped in ")
    reason = "Failed: calc_test.go:14: Sub(3, 1) = 4, want 2"
    assert f"ERROR {SUB} {reason}" in lines

    store = work / ".llmharness"
    assert error_lines(store) == [f"ERROR {SUB} {reason}"]
    outcomes = {nodeid: item["outcome"] for nodeid, item in results(store).items()}
    assert outcomes == {
        "example.com/calc::TestAdd": "passed",
        SUB: "failed",
        "example.com/calc::TestDiv/by_zero": "skipped",
        "example.com/calc/parse::TestParse": "passed",
        "example.com/calc/parse::TestParse/empty": "passed",
    }
    summary = cli_json(work, "summary")
    assert summary["counts"] == {
        "failed": 1,
        "passed": 3,
        "skipped": 1,
        "xfailed": 0,
        "xpassed": 0,
        "error": 0,
    }
    assert summary["git"] is None and summary["sample"]["total"] == 5
    diff = cli_json(work, "regressions")
    assert [(i["nodeid"], i["before"], i["verdict"]) for i in diff["new_failures"]] == [
        (SUB, "passed", "unchecked")
    ]
    assert diff["new_tests_failing"] == diff["fixed"] == diff["still_failing"] == []
    gate = cli(work, "regressions", "--check")
    assert gate.returncode == 1
    assert f"NEW FAILURE {SUB} was passed: {reason}" in gate.stdout.splitlines()
    shown = cli(work, "show", SUB).stdout
    assert "calc_test.go:15: Sub(0, 0) = 1, want 0" in shown
    assert "=== Captured stdout call ===\n=== RUN   TestSub\n--- FAIL: TestSub" in shown


def test_in_a_clone_the_base_is_what_a_clean_ingest_at_the_base_recorded(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    reports = tmp_path / "reports"
    reports.mkdir()
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(upstream))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", upstream.as_uri(), str(seed))
    (seed / "calc.go").write_text("package calc\n\nfunc Sub(a, b int) int { return a - b }\n")
    git(seed, "add", "calc.go")
    git(seed, "commit", "-q", "-m", "calc")
    git(seed, "push", "-q", "origin", "HEAD:main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", upstream.as_uri(), str(clone))
    base = git(clone, "rev-parse", "HEAD")

    assert (
        cli(clone, "ingest", str(go_report(reports, "at-base.xml", broken=False))).returncode == 0
    )
    assert cli_json(clone, "summary")["git"]["commit"] == base
    (clone / "calc.go").write_text("package calc\n\nfunc Sub(a, b int) int { return a + b }\n")
    assert cli(clone, "ingest", str(go_report(reports, "changed.xml", broken=True))).returncode == 0

    summary = cli_json(clone, "summary")
    assert (summary["git"]["dirty"], summary["base"]["commit"]) == (True, base)
    diff = cli_json(clone, "regressions")
    assert diff["base"]["commit"] == base
    assert [(i["nodeid"], i["before"], i["known_by"]) for i in diff["new_failures"]] == [
        (SUB, "passed", "recorded")
    ]
    assert diff["unknown_at_base"] == [] and diff["new_tests_failing"] == []
    assert cli(clone, "regressions", "--check").returncode == 1
    assert git(clone, "status", "--porcelain") == "M calc.go"  # the store keeps out of git


def test_node_ids_come_from_file_and_name_else_classname_and_name(work: Path) -> None:
    report = work.parent / "reports" / "jest.xml"
    report.write_text(JEST_REPORT, encoding="utf-8")
    done = cli(work, "ingest", str(report), "--agent-id", "7")
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    found = results(work / ".llmharness")
    assert {nodeid: item["outcome"] for nodeid, item in found.items()} == {
        "src/calc.test.js::adds": "passed",
        # Two cases named "works" in one file: told apart by their classnames.
        "src/calc.test.js::calc subtracts::works": "failed",
        "src/calc.test.js::calc divides::works": "error",
        # pytest's own (xunit1) layout: the classname is the file's module, then its class.
        "tests/test_legacy.py::TestOld::test_it": "passed",
    }
    assert error_lines(work / ".llmharness") == [
        'ERROR "src/calc.test.js::calc subtracts::works" failure: Error: expect(received).'
        "toBe(expected)",
        'ERROR "src/calc.test.js::calc divides::works" TypeError: x is not a function',
    ]
    summary = cli_json(work, "summary")
    assert (summary["agent_id"], summary["sample"]["agent_id"]) == ("7", "7")


def test_a_ctrf_report_is_ingested(work: Path) -> None:
    report = work.parent / "reports" / "ctrf-report.json"
    report.write_text(json.dumps(CTRF_REPORT), encoding="utf-8")
    done = cli(work, "ingest", str(report))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[0].startswith(f"llmharness: ingested {report} (CTRF, 4 ")
    found = results(work / ".llmharness")
    assert {nodeid: (item["outcome"], item["duration"]) for nodeid, item in found.items()} == {
        "e2e/login.spec.ts::user can log in": ("passed", 1.2),
        "shop::cart::cart totals": ("failed", 0.3),
        "old checkout": ("skipped", 0.0),
        "new checkout": ("skipped", 0.0),
    }
    assert found["new checkout"]["reason"] == "CTRF status pending"
    assert error_lines(work / ".llmharness") == [
        'ERROR "shop::cart::cart totals" expected 30 to equal 31'
    ]
    shown = cli(work, "show", "shop::cart::cart totals").stdout
    assert "at cart.spec.ts:12:5" in shown and "adding 3 items" in shown


BAD_FILES = {
    "truncated.xml": (
        GO_REPORT.format(failures=0, sub="")[:700],
        "not well-formed XML: unclosed token: line 14, column 1 (a truncated or damaged report?)",
    ),
    "malformed.xml": (
        GO_REPORT.format(failures=0, sub="").replace("</testsuite>", "</testsuit>", 1),
        "not well-formed XML: mismatched tag: line 13, column 3 (a truncated or damaged report?)",
    ),
    "truncated.json": (
        json.dumps(CTRF_REPORT)[:200],
        "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 201 "
        "(char 200) (a truncated or damaged report?)",
    ),
    "retries.json": (
        json.dumps({"results": {"tests": [{"name": "t", "status": "passed", "retries": "two"}]}}),
        "results.tests[0]: retries 'two' is not a whole number of 0 or more",
    ),
    "other.xml": (
        "<report><case/></report>",
        "not a JUnit report: the root element is neither <testsuites> nor <testsuite>",
    ),
    "output.txt": (
        "PASS src/calc.test.js\n",
        "neither JUnit XML nor CTRF JSON (it starts with b'PASS src/calc.te'; give a JUnit XML "
        "or CTRF JSON report)",
    ),
}


def test_a_bad_file_is_one_line_exit_2_and_records_nothing(work: Path) -> None:
    reports = work.parent / "reports"
    assert cli(work, "ingest", str(go_report(reports, "good.xml", broken=False))).returncode == 0
    before = snapshot(work)
    for name, (content, problem) in BAD_FILES.items():
        bad = reports / name
        bad.write_text(content, encoding="utf-8")
        done = cli(work, "ingest", str(bad))
        assert (done.returncode, done.stdout) == (2, ""), name
        assert done.stderr.splitlines() == [f"llmharness: ingest: {bad}: {problem}"]
        assert snapshot(work) == before, name

    elsewhere = work.parent / "fresh"
    elsewhere.mkdir()
    assert cli(elsewhere, "ingest", str(reports / "truncated.xml")).returncode == 2
    assert list(elsewhere.iterdir()) == []  # no store made for nothing
