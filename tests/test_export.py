"""`llmharness export`: a pytest run through the real plugin, exported by the installed CLI as
JUnit XML (read back with junitparser, against pytest's own --junitxml of the same run) and as
CTRF (validated against the format's published schema, tests/data/ctrf.schema.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import QUIET, run_cli
from junitparser import Error as JError
from junitparser import Failure as JFailure
from junitparser import JUnitXml, Properties, TestCase
from junitparser import Skipped as JSkipped

SCHEMA = Path(__file__).parent / "data" / "ctrf.schema.json"

SUITE = {
    "test_mix": """
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")

        def test_pass():
            pass

        def test_fail():
            assert 1 + 1 == 3

        def test_error(broken):
            pass

        def test_skip():
            pytest.skip("not today")

        @pytest.mark.xfail(reason="known bug")
        def test_xfail():
            assert False

        @pytest.mark.xfail(reason="maybe fixed")
        def test_xpass():
            pass

        class TestKit:
            @pytest.mark.parametrize("x", [1, 2])
            def test_param(self, x):
                assert x == 1
        """,
    "test_flip": "def test_flip():\n    assert FLIP\n\nFLIP = True\n",
    "test_broken": "import nowhere_to_be_found\n",
}


def kinds(case: TestCase) -> list[str]:
    return [type(result).__name__ for result in case.result]


def case_properties(case: TestCase) -> dict[str, str]:
    found = case.child(Properties)
    return {} if found is None else {prop.name: prop.value for prop in found}


@pytest.fixture
def exported(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two runs (test_flip passes, then fails: a new failure); pytest's own JUnit file of the
    second, and llmharness's JUnit and CTRF exports of it."""
    monkeypatch.setenv("LLMHARNESS_VERDICT_BUDGET", "0")  # a verdict without re-running
    pytester.makepyfile(**SUITE)
    args = (*QUIET, "--continue-on-collection-errors")
    pytester.runpytest(*args).assert_outcomes(
        passed=3, failed=2, errors=2, skipped=1, xfailed=1, xpassed=1
    )
    pytester.makepyfile(test_flip="def test_flip():\n    assert FLIP\n\nFLIP = False\n")
    pytester.runpytest(*args, "--junitxml=pytest.xml")
    done = run_cli(pytester, "export", "--junit", "ours.xml", "--ctrf", "ours.json")
    assert done.ret == 0, done.stderr.str()
    summary = json.loads(run_cli(pytester, "summary", "--json").stdout.str())
    done.stdout.fnmatch_lines(
        [
            f"wrote JUnit XML of run {summary['run_id']} (10 tests) to ours.xml",
            f"wrote CTRF of run {summary['run_id']} (10 tests) to ours.json",
        ],
        consecutive=True,
    )
    return {
        "pytest": JUnitXml.fromfile(str(pytester.path / "pytest.xml")),
        "ours": JUnitXml.fromfile(str(pytester.path / "ours.xml")),
        "ctrf": json.loads((pytester.path / "ours.json").read_text(encoding="utf-8")),
        "summary": summary,
        "path": pytester.path,
    }


def test_the_junit_export_has_pytests_own_counts_and_cases(exported: dict[str, Any]) -> None:
    (theirs,) = list(exported["pytest"])
    (ours,) = list(exported["ours"])
    counts = ("tests", "failures", "errors", "skipped")
    assert [getattr(ours, key) for key in counts] == [getattr(theirs, key) for key in counts]
    assert [getattr(ours, key) for key in counts] == [10, 3, 2, 2]

    def cases(suite: Any) -> list[tuple[str, str, list[str]]]:
        return sorted((case.classname or "", case.name, kinds(case)) for case in suite)

    assert cases(ours) == cases(theirs)
    assert ("", "test_broken", ["Error"]) in cases(ours)  # the collection error


def test_the_junit_export_carries_failure_texts_and_llmharness_facts(
    pytester: pytest.Pytester, exported: dict[str, Any]
) -> None:
    (suite,) = list(exported["ours"])
    summary = exported["summary"]
    props = {prop.name: prop.value for prop in suite.properties()}
    sample = summary["sample"]
    assert props["llmharness.run_id"] == summary["run_id"]
    assert props["llmharness.sample.seed"] == sample["seed"]
    assert props["llmharness.sample.selected"] == str(sample["selected"])
    assert props["llmharness.sample.total"] == str(sample["total"])
    assert props["llmharness.sample.mode"] == "full"
    assert props["llmharness.regressions.new_failures"] == "1"
    by_name = {case.name: case for case in suite}
    flip = by_name["test_flip"]
    assert case_properties(flip) == {
        "llmharness.nodeid": "test_flip.py::test_flip",
        "llmharness.outcome": "failed",
        "llmharness.regression": "new_failure",
        "llmharness.verdict": "unchecked",
        "llmharness.before": "passed",
        "llmharness.known_by": "last-known",
    }
    assert case_properties(by_name["test_xfail"])["llmharness.outcome"] == "xfailed"
    (failure,) = flip.result
    assert isinstance(failure, JFailure)
    assert failure.message == summary_reason(pytester, "test_flip.py::test_flip")
    shown = run_cli(pytester, "show", "test_flip.py::test_flip").stdout.str()
    # The whole failure file, as `show` prints it after its `# run ...` line.
    assert failure.text.rstrip("\n") == shown.split("\n", 1)[1]
    assert "E       assert False" in failure.text
    (error,) = by_name["test_error"].result
    assert isinstance(error, JError) and error.message.startswith("RuntimeError: fixture broke")
    skips = {name: by_name[name].result[0] for name in ("test_skip", "test_xfail")}
    assert all(isinstance(skip, JSkipped) for skip in skips.values())
    assert [skips["test_skip"].type, skips["test_xfail"].type] == ["pytest.skip", "pytest.xfail"]


def summary_reason(pytester: pytest.Pytester, nodeid: str) -> str:
    log = (pytester.path / ".llmharness" / "last" / "log.txt").read_text(encoding="utf-8")
    (line,) = [line for line in log.splitlines() if line.startswith(f"ERROR {nodeid} ")]
    return line.removeprefix(f"ERROR {nodeid} ")


def test_the_ctrf_export_validates_against_the_ctrf_schema(exported: dict[str, Any]) -> None:
    document = exported["ctrf"]
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    results = document["results"]
    summary = results["summary"]
    statuses = [test["status"] for test in results["tests"]]
    assert {key: summary[key] for key in ("tests", "passed", "failed", "skipped", "other")} == {
        "tests": 10,
        "passed": 3,  # xpassed included, as in JUnit
        "failed": 5,  # errors included; rawStatus tells them apart
        "skipped": 2,
        "other": 0,
    }
    assert len(statuses) == 10
    facts = summary["extra"]["llmharness"]
    assert facts["sample"]["seed"] == exported["summary"]["sample"]["seed"]
    assert facts["regressions"]["new_failures"] == 1
    by_id = {test["extra"]["llmharness"]["nodeid"]: test for test in results["tests"]}
    flip = by_id["test_flip.py::test_flip"]
    assert (flip["filePath"], flip["name"], flip["rawStatus"]) == (
        "test_flip.py",
        "test_flip",
        "failed",
    )
    assert flip["extra"]["llmharness"]["regression"] == "new_failure"
    assert flip["extra"]["llmharness"]["verdict"] == "unchecked"
    assert "E       assert False" in flip["trace"]
    param = by_id["test_mix.py::TestKit::test_param[2]"]
    assert (param["name"], param["suite"]) == ("TestKit::test_param[2]", ["test_mix.py", "TestKit"])
    assert by_id["test_mix.py::test_error"]["rawStatus"] == "error"
    assert by_id["test_broken.py"]["rawStatus"] == "error"


def test_export_without_a_report_file_or_a_writable_place_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    nothing = run_cli(pytester, "export", "--junit", "out.xml")
    assert nothing.ret == 2
    assert nothing.stderr.lines[0].startswith("llmharness: no llmharness store at or above ")
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    pytester.runpytest(*QUIET).assert_outcomes(passed=1)
    bare = run_cli(pytester, "export")
    assert (bare.ret, bare.stderr.lines) == (
        2,
        ["llmharness: export: export needs --junit FILE, --ctrf FILE or both"],
    )
    nowhere = run_cli(pytester, "export", "--ctrf", "missing/dir/out.json")
    assert nowhere.ret == 2
    assert nowhere.stderr.lines == [
        "llmharness: export: cannot write missing/dir/out.json: No such file or directory"
    ]
    assert not (pytester.path / "missing").exists()


def test_reruns_are_exported_and_ingested_back(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """pytest-rerunfailures' attempts: Surefire-style elements in JUnit, `retries`/`flaky` in
    CTRF, and `llmharness ingest` of either file records them again."""
    pytester.makepyfile(
        test_again="""
        ATTEMPTS = []

        def test_flaky():
            ATTEMPTS.append(1)
            assert len(ATTEMPTS) > 1

        def test_broken():
            assert False

        def test_fine():
            pass
        """
    )
    pytester.runpytest(*QUIET, "--reruns", "2").assert_outcomes(passed=2, failed=1)
    done = run_cli(pytester, "export", "--junit", "ours.xml", "--ctrf", "ours.json")
    assert done.ret == 0, done.stderr.str()

    (suite,) = list(JUnitXml.fromfile(str(pytester.path / "ours.xml")))
    cases = {case.name: case for case in suite}
    assert [child.tag for child in cases["test_flaky"]._elem] == ["properties", "flakyFailure"]
    assert [child.tag for child in cases["test_broken"]._elem] == [
        "properties",
        "failure",
        "rerunFailure",
        "rerunFailure",
    ]
    assert case_properties(cases["test_flaky"])["llmharness.reruns"] == "1"
    assert "llmharness.reruns" not in case_properties(cases["test_fine"])

    document = json.loads((pytester.path / "ours.json").read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert list(jsonschema.Draft7Validator(schema).iter_errors(document)) == []
    tests = {test["name"]: test for test in document["results"]["tests"]}
    assert (tests["test_flaky"]["retries"], tests["test_flaky"]["flaky"]) == (1, True)
    assert (tests["test_broken"]["retries"], tests["test_broken"]["flaky"]) == (2, False)
    assert "retries" not in tests["test_fine"] and "flaky" not in tests["test_fine"]
    assert document["results"]["summary"]["flaky"] == 1

    for name in ("ours.xml", "ours.json"):
        other = tmp_path / name.replace(".", "-")  # a store of its own for each file
        other.mkdir()
        ingested = subprocess.run(
            [sys.executable, "-m", "llmharness", "ingest", str(pytester.path / name)],
            cwd=other,
            capture_output=True,
            text=True,
            check=False,
        )
        assert ingested.returncode == 0, ingested.stderr
        summary = json.loads(
            subprocess.run(
                [sys.executable, "-m", "llmharness", "summary", "--json"],
                cwd=other,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert summary["reruns"] == {
            "count": 3,
            "tests": 2,
            "nodeids": ["test_again.py::test_broken", "test_again.py::test_flaky"],
        }, name
