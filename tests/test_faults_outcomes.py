"""Outcomes pytest finds awkward, each counted once by the README's rule ("How tests are counted").

Every scenario is a real pytest run; the counts come from `llmharness summary --json`, the
ERROR lines from `.llmharness/last/log.txt`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import cli_json, error_lines, run_cli

from llmharness.reporting import OUTCOMES, parse_error_line


def _counts(**nonzero: int) -> dict[str, int]:
    """The full `counts` object of a summary: every outcome word, zero unless given."""
    counts = dict.fromkeys(OUTCOMES, 0)
    counts.update(nonzero)
    return counts


def _results(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """The latest run's results.jsonl, by node id (a duplicate node id fails the test)."""
    path = pytester.path / ".llmharness" / "last" / "results.jsonl"
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    by_id = {item["nodeid"]: item for item in items}
    assert len(by_id) == len(items), f"a test was recorded twice: {items}"
    return by_id


def _errors(pytester: pytest.Pytester) -> dict[str, str]:
    """ERROR lines of the latest run as {nodeid: reason}; a node id on two lines fails."""
    parsed = [parse_error_line(line) for line in error_lines(pytester)]
    by_id = dict(parsed)
    assert len(by_id) == len(parsed), f"a test has several ERROR lines: {parsed}"
    return by_id


def _index(pytester: pytest.Pytester) -> dict[str, list[Any]]:
    data = json.loads((pytester.path / ".llmharness" / "index.json").read_text(encoding="utf-8"))
    tests: dict[str, list[Any]] = data["tests"]
    return tests


# -- setup and teardown ------------------------------------------------------------------


def test_setup_error_is_one_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_setup="""
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture exploded")

        def test_uses_it(broken):
            pass

        def test_fine():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, errors=1)
    assert cli_json(pytester, "summary")["counts"] == _counts(passed=1, error=1)
    errors = _errors(pytester)
    assert list(errors) == ["test_setup.py::test_uses_it"]
    assert errors["test_setup.py::test_uses_it"].startswith("RuntimeError: fixture exploded (")
    item = _results(pytester)["test_setup.py::test_uses_it"]
    assert (item["outcome"], item["phase"]) == ("error", "setup")


_TEARDOWN_SUITE = """
import pytest

@pytest.fixture
def fragile():
    yield
    raise RuntimeError("teardown exploded")

def test_fails_then_teardown_errors(fragile):
    assert 1 == 2, "call went wrong"

def test_passes_then_teardown_errors(fragile):
    pass

def test_plain():
    pass
"""


def test_teardown_error_after_a_failure_is_one_failed_test_on_one_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_td=_TEARDOWN_SUITE)
    result = pytester.runpytest("-k", "fails_then or plain")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # pytest itself counts the test twice: as a failure and as an error.
    result.assert_outcomes(failed=1, passed=1, errors=1)
    assert cli_json(pytester, "summary")["counts"] == _counts(failed=1, passed=1)
    lines = error_lines(pytester)
    assert len(lines) == 1, lines
    nodeid, reason = parse_error_line(lines[0])
    assert nodeid == "test_td.py::test_fails_then_teardown_errors"
    assert "AssertionError: call went wrong" in reason
    assert "RuntimeError: teardown exploded" in reason
    assert reason.index("AssertionError") < reason.index("RuntimeError")
    item = _results(pytester)[nodeid]
    assert item["outcome"] == "failed"
    assert item["reason"] == reason
    # The failure file holds both tracebacks.
    text = (pytester.path / ".llmharness" / "last" / item["failure_file"]).read_text()
    assert "=== traceback (call) ===" in text
    assert "=== traceback (teardown) ===" in text


def test_teardown_error_after_a_pass_is_one_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_td=_TEARDOWN_SUITE)
    result = pytester.runpytest("-k", "passes_then or plain")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # pytest counts it as passed and as an error; llmharness as one error.
    result.assert_outcomes(passed=2, errors=1)
    assert cli_json(pytester, "summary")["counts"] == _counts(passed=1, error=1)
    errors = _errors(pytester)
    assert list(errors) == ["test_td.py::test_passes_then_teardown_errors"]
    assert errors["test_td.py::test_passes_then_teardown_errors"].startswith(
        "RuntimeError: teardown exploded ("
    )
    item = _results(pytester)["test_td.py::test_passes_then_teardown_errors"]
    assert (item["outcome"], item["phase"]) == ("error", "teardown")


def test_a_test_run_twice_counts_once_by_its_last_result(pytester: pytest.Pytester) -> None:
    """As pytest-rerunfailures or a repeated node id run it: a pass after a failure is a pass
    (the pass is kept apart from other results, as a bare duration), a failure after a pass
    a failure."""
    pytester.makepyfile(
        test_twice="""
        import pathlib

        def test_fails_first():
            flag = pathlib.Path("fails-first")
            if not flag.exists():
                flag.write_text("")
                raise AssertionError("first run fails")

        def test_fails_second():
            flag = pathlib.Path("fails-second")
            if flag.exists():
                raise AssertionError("second run fails")
            flag.write_text("")
        """
    )
    result = pytester.runpytest("--keep-duplicates", "test_twice.py", "test_twice.py")
    result.assert_outcomes(passed=2, failed=2)  # pytest counts each run
    summary = cli_json(pytester, "summary")
    assert summary["counts"] == _counts(passed=1, failed=1)
    index = _index(pytester)
    assert index["test_twice.py::test_fails_first"][0] == "passed"
    assert index["test_twice.py::test_fails_second"][0] == "failed"


# -- xfail and subtests ------------------------------------------------------------------


def test_strict_xpass_is_failed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
        import pytest

        @pytest.mark.xfail(strict=True, reason="should still be broken")
        def test_strict():
            pass

        @pytest.mark.xfail(reason="might be fixed")
        def test_lenient():
            pass

        @pytest.mark.xfail(reason="known bug")
        def test_still_broken():
            assert 0
        """
    )
    result = pytester.runpytest("-rA")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, xpassed=1, xfailed=1)
    assert cli_json(pytester, "summary")["counts"] == _counts(failed=1, xpassed=1, xfailed=1)
    errors = _errors(pytester)
    assert list(errors) == ["test_x.py::test_strict"]
    assert "XPASS(strict)" in errors["test_x.py::test_strict"]
    outcomes = {nodeid: item["outcome"] for nodeid, item in _results(pytester).items()}
    assert outcomes == {
        "test_x.py::test_strict": "failed",
        "test_x.py::test_lenient": "xpassed",
        "test_x.py::test_still_broken": "xfailed",
    }


def test_subtests_count_once_by_the_worst_report(pytester: pytest.Pytester) -> None:
    pytest.importorskip("_pytest.subtests", reason="the subtests fixture is built in from pytest 9")
    pytester.makepyfile(
        test_sub="""
        def test_one_bad(subtests):
            for i in range(3):
                with subtests.test(i=i):
                    assert i != 1, f"subtest {i} broke"

        def test_two_bad(subtests):
            for i in range(3):
                with subtests.test(i=i):
                    assert i == 0, f"subtest {i} broke"

        def test_all_good(subtests):
            for i in range(3):
                with subtests.test(i=i):
                    assert i >= 0

        def test_skips_and_passes(subtests):
            with subtests.test("skipped"):
                import pytest
                pytest.skip("not today")
            with subtests.test("fine"):
                pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert cli_json(pytester, "summary")["counts"] == _counts(failed=2, passed=2)
    outcomes = {nodeid: item["outcome"] for nodeid, item in _results(pytester).items()}
    assert outcomes == {
        "test_sub.py::test_one_bad": "failed",
        "test_sub.py::test_two_bad": "failed",
        "test_sub.py::test_all_good": "passed",
        "test_sub.py::test_skips_and_passes": "passed",
    }
    errors = _errors(pytester)
    assert sorted(errors) == ["test_sub.py::test_one_bad", "test_sub.py::test_two_bad"]
    assert "subtest 1 broke" in errors["test_sub.py::test_one_bad"]
    two = errors["test_sub.py::test_two_bad"]
    assert "subtest 1 broke" in two and "subtest 2 broke" in two
    # Each subtest's failure is named as pytest names it; the test's own report is not one.
    assert two.startswith("subtest (i=1): AssertionError: subtest 1 broke"), two
    assert "; subtest (i=2): AssertionError: subtest 2 broke" in two, two
    assert two.endswith("; contains 2 failed subtests"), two


# -- collection ----------------------------------------------------------------------------


def test_module_level_importorskip_is_one_skipped_entry(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_optional="""
        import pytest
        pytest.importorskip("no_such_module_xyz")

        def test_a():
            pass

        def test_b():
            pass
        """,
        test_plain="def test_ok(): pass",
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1)
    assert cli_json(pytester, "summary")["counts"] == _counts(passed=1, skipped=1)
    results = _results(pytester)
    assert sorted(results) == ["test_optional.py", "test_plain.py::test_ok"]
    assert results["test_optional.py"]["outcome"] == "skipped"
    assert "no_such_module_xyz" in results["test_optional.py"]["reason"]
    assert error_lines(pytester) == []


_MODULE_B_FINE = """
def test_b_passes():
    pass

def test_b_fails():
    assert 1 == 2, "b is broken"
"""


def test_collection_error_makes_the_files_tests_unknown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a="def test_a1(): pass\ndef test_a2(): pass",
        test_b=_MODULE_B_FINE,
    )
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    first = cli_json(pytester, "summary")["run_id"]
    before = _index(pytester)
    assert before["test_b.py::test_b_fails"][:2] == ["failed", first]
    assert before["test_b.py::test_b_passes"][:2] == ["passed", first]

    # The module stops importing: its tests are neither fixed nor removed, only unknown.
    pytester.makepyfile(test_b="import no_such_module_xyz\n" + _MODULE_B_FINE)
    result = pytester.runpytest("--continue-on-collection-errors")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, errors=1)
    summary = cli_json(pytester, "summary")
    assert summary["status"] == "complete"
    assert summary["counts"] == _counts(passed=2, error=1)
    errors = _errors(pytester)
    assert list(errors) == ["test_b.py"]
    assert errors["test_b.py"].startswith(
        "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    )
    diff = cli_json(pytester, "regressions")
    for category in ("fixed", "new_failures", "new_tests_failing", "still_failing"):
        assert [item["nodeid"] for item in diff[category]] == [], category
    assert diff["against"] == first
    assert diff["known_before"] == 4
    assert diff["compared"] == 2
    assert diff["unknown"] == 2
    assert diff["not_run"] == 2
    after = _index(pytester)
    assert after["test_b.py::test_b_fails"] == before["test_b.py::test_b_fails"]
    assert after["test_b.py::test_b_passes"] == before["test_b.py::test_b_passes"]
    # The file's node id is not a test: it does not enter the index.
    assert "test_b.py" not in after

    # Mended: the file's tests compare with what was known before the breakage.
    pytester.makepyfile(test_b=_MODULE_B_FINE)
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    diff = cli_json(pytester, "regressions")
    assert diff["new_tests"] == 0
    assert [item["nodeid"] for item in diff["still_failing"]] == ["test_b.py::test_b_fails"]
    assert diff["fixed"] == [] and diff["new_failures"] == []


# -- nothing selected ----------------------------------------------------------------------


def test_zero_tests_selected_keeps_exit_5_and_does_not_poison_the_diff(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_z="def test_one(): pass\ndef test_two(): assert 0")
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    real = cli_json(pytester, "summary")["run_id"]
    index = _index(pytester)

    empty = pytester.runpytest("-k", "nomatch_at_all")
    assert empty.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    summary = cli_json(pytester, "summary")
    assert summary["exitstatus"] == 5
    assert summary["counts"] == _counts()
    assert _index(pytester) == index
    assert run_cli(pytester, "regressions", "--check").ret == 0

    # The next real run diffs against the earlier real run, not the empty one.
    pytester.makepyfile(test_z="def test_one(): assert 0\ndef test_two(): pass")
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    diff = cli_json(pytester, "regressions")
    assert diff["against"] == real
    assert diff["known_before"] == 2 and diff["compared"] == 2 and diff["new_tests"] == 0
    assert [item["nodeid"] for item in diff["new_failures"]] == ["test_z.py::test_one"]
    assert [item["nodeid"] for item in diff["fixed"]] == ["test_z.py::test_two"]
    assert all(item["last_run"] == real for item in diff["new_failures"] + diff["fixed"])


# -- internal errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "hook",
    [
        "def pytest_runtest_logreport(report):\n"
        "    if report.when == 'call':\n"
        "        raise RuntimeError('conftest hook exploded')\n",
        "def pytest_collection_finish(session):\n"
        "    raise RuntimeError('conftest hook exploded')\n",
    ],
    ids=["runtest_logreport", "collection_finish"],
)
def test_internal_error_from_a_conftest_hook(pytester: pytest.Pytester, hook: str) -> None:
    pytester.makeconftest(hook)
    pytester.makepyfile(test_i="def test_one(): pass\ndef test_two(): pass")
    plain = pytester.runpytest("-p", "no:llmharness")
    assert plain.ret == pytest.ExitCode.INTERNAL_ERROR
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    naming = [line for line in result.outlines if "conftest hook exploded" in line]
    assert len(naming) == 1, result.outlines
    assert "INTERNALERROR" in naming[0]
    assert len([line for line in result.outlines if line.strip()]) <= 8
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    summary = cli_json(pytester, "summary")
    assert summary["status"] == "internal-error"
    assert summary["exitstatus"] == 3
    log = (pytester.path / ".llmharness" / "last" / "log.txt").read_text(encoding="utf-8")
    assert sum("conftest hook exploded" in line for line in log.splitlines()) == 1


_STOPPABLE = """
import time, pytest
@pytest.mark.parametrize("i", range(20))
def test_slowish(i):
    time.sleep(0.05)
    assert i not in (1, 2)
"""


@pytest.mark.parametrize(
    "args",
    [("-x",), ("--maxfail=2",), ("--sw",), ("-x", "-n", "2")],
    ids=["x", "maxfail", "stepwise", "x-n2"],
)
def test_a_run_pytest_stops_early_is_stopped_not_complete(
    pytester: pytest.Pytester, args: tuple[str, ...]
) -> None:
    pytester.makepyfile(test_stop=_STOPPABLE)
    pytester.runpytest("--agent-id", "1", "-p", "no:randomly")
    assert cli_json(pytester, "summary")["status"] == "complete"  # run to its end
    args = (*args, "--cache-clear")  # --sw would start where the plain run stopped
    plain = pytester.runpytest("-p", "no:llmharness", "-p", "no:randomly", *args)
    result = pytester.runpytest("--agent-id", "1", "-p", "no:randomly", *args)
    assert result.ret == plain.ret  # the exit status is pytest's own
    ran = _results(pytester)
    summary = cli_json(pytester, "summary")
    assert summary["status"] == "stopped"
    everything = [f"test_stop.py::test_slowish[{i}]" for i in range(20)]
    unrun = [nodeid for nodeid in everything if nodeid not in ran]
    assert unrun and summary["not_reached"] == unrun
    result.stdout.fnmatch_lines(
        [
            "llmharness: STOPPED * failed, * passed in *",
            f"STOPPED {len(unrun)} of 20 tests not run: *",
        ]
    )
    log = (pytester.path / ".llmharness/last/log.txt").read_text()
    assert sum(line.startswith("STOPPED ") for line in log.splitlines()) == 1
    diff = cli_json(pytester, "regressions")
    assert diff["not_run"] == len(unrun) and diff["fixed"] == []
    assert any("is stopped" in note for note in diff["notes"])
    assert run_cli(pytester, "baseline").ret != 0  # not a run to pin as the baseline
