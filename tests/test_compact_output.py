"""Compact terminal output: a handful of short lines whatever the suite does."""

from __future__ import annotations

import json

import pytest
from conftest import cli_json, error_lines

from llmharness.reporting import parse_error_line


def _nonempty(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.strip()]


def test_messy_suite_fits_in_eight_lines_and_2000_bytes(
    pytester: pytest.Pytester, messy: dict[str, int]
) -> None:
    result = pytester.runpytest_subprocess("--agent-id", "1", "--continue-on-collection-errors")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = _nonempty(result)
    assert len(lines) <= 8
    assert len("\n".join(result.outlines).encode()) <= 2000
    result.stdout.fnmatch_lines(
        [
            "llmharness: FAILED 41 failed, 250 passed, 1 skipped, 1 xfailed, 7 errors in *"
            "(full run, agent 1, seed *, run *)",
            "regressions: no earlier outcomes recorded*",
            "ERROR test_broken_import.py ModuleNotFoundError: No module named*",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(["... 43 more: grep '^ERROR ' .llmharness/last/log.txt"])
    # The 200,000 printed lines and pytest's long diffs stay out of the terminal.
    assert "line 1999" not in result.stdout.str()
    result.stdout.no_fnmatch_line("*test session starts*")
    result.stdout.no_fnmatch_line("*Captured stdout*")


def test_messy_suite_log_has_one_error_line_per_failed_or_errored_test(
    pytester: pytest.Pytester, messy: dict[str, int]
) -> None:
    result = pytester.runpytest_subprocess("--agent-id", "1", "--continue-on-collection-errors")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = error_lines(pytester)
    assert len(lines) == messy["failed"] + messy["error"] == 48
    parsed = [parse_error_line(line) for line in lines]
    nodeids = [nodeid for nodeid, _ in parsed]
    assert len(set(nodeids)) == 48
    results = [
        json.loads(line)
        for line in (pytester.path / ".llmharness/last/results.jsonl").read_text().splitlines()
    ]
    failing = {r["nodeid"] for r in results if r["outcome"] in {"failed", "error"}}
    assert failing | {"test_broken_import.py"} == set(nodeids)
    for nodeid, reason in parsed:
        assert reason.split(":", 1)[0] in {
            "AssertionError",
            "RuntimeError",
            "KeyError",
            "ModuleNotFoundError",
        }, (nodeid, reason)
        assert len(reason) <= 330


def test_messy_suite_summary_counts_equal_pytests_own(
    pytester: pytest.Pytester, messy: dict[str, int]
) -> None:
    plain = pytester.runpytest_subprocess(
        "-p", "no:llmharness", "--continue-on-collection-errors", "-q"
    )
    pytest_counts = plain.parseoutcomes()
    pytester.runpytest_subprocess("--agent-id", "1", "--continue-on-collection-errors")
    summary = cli_json(pytester, "summary")
    assert summary["schema"] == 1
    counts = summary["counts"]
    assert counts["failed"] == pytest_counts["failed"] == 41
    assert counts["passed"] == pytest_counts["passed"] == 250
    assert counts["error"] == pytest_counts["errors"] == 7
    assert counts["skipped"] == 1 and counts["xfailed"] == 1


def test_hundreds_of_failures_keep_the_cap(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_many="""
        import pytest
        @pytest.mark.parametrize("i", range(300))
        def test_fail(i):
            assert i < 0, "x" * 5000
        """
    )
    result = pytester.runpytest("--agent-id", "a")
    assert result.ret == 1
    lines = _nonempty(result)
    assert len(lines) == 8
    assert all(len(line) <= 200 for line in lines)
    assert lines[-1] == "... 295 more: grep '^ERROR ' .llmharness/last/log.txt"


def test_max_lines_is_configurable(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_many="""
        import pytest
        @pytest.mark.parametrize("i", range(20))
        def test_fail(i):
            assert i < 0
        """
    )
    pytester.makefile(".yaml", llmharness="max_lines: 4\n")
    result = pytester.runpytest("--fast", "--fast-fraction", "100%")
    assert len(_nonempty(result)) == 4


def test_collection_error_is_named_even_when_it_stops_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_ok(): pass", test_bad="import not_a_module_here")
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "llmharness: INTERRUPTED 1 error in *",
            "ERROR test_bad.py ModuleNotFoundError: No module named 'not_a_module_here' *",
        ]
    )
    result.stdout.fnmatch_lines(["collection errors stopped the run*"])
    assert len(_nonempty(result)) <= 8


def test_passing_run_is_three_lines(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_a(): pass\ndef test_b(): pass")
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "llmharness: PASSED 2 passed in *s (full run, agent 1, seed *, run *)",
            "regressions: no earlier outcomes recorded*",
            "next: full about * s, --fast (10%) about * s",
        ],
        consecutive=True,
    )
    assert len(_nonempty(result)) == 3


def _varies(line: str) -> bool:
    return line.startswith("plugins:") or " in " in line


def test_without_compact_mode_pytest_output_is_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_a(): pass\ndef test_b(): assert 0")
    with_plugin = pytester.runpytest()
    without = pytester.runpytest("-p", "no:llmharness")
    assert with_plugin.ret == without.ret == 1
    # Only the timing and the list of loaded plugins may differ.
    result_lines = [line for line in with_plugin.outlines if not _varies(line)]
    plain_lines = [line for line in without.outlines if not _varies(line)]
    assert result_lines == plain_lines
    with_plugin.stdout.no_fnmatch_line("llmharness:*")
    assert (pytester.path / ".llmharness" / "last" / "summary.json").exists()


def test_exit_code_is_pytests_own(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_a(): pass")
    assert pytester.runpytest("--agent-id", "1").ret == 0
    pytester.makepyfile(test_ok="def test_a(): assert 0")
    assert pytester.runpytest("--agent-id", "1").ret == 1
    assert pytester.runpytest("--agent-id", "1", "-k", "nothing_matches").ret == 5
    assert pytester.runpytest("--agent-id", "1", "--no-such-flag").ret == 4


_SUMMARY_PLUGIN = """
def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_sep("-", "table of a plugin")
    terminalreporter.write_line("row 1")
    terminalreporter.write_line("row 2")
"""


def test_other_plugins_output_is_kept_and_pointed_to(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_a(): pass\ndef test_b(): assert 0")
    pytester.makeconftest(_SUMMARY_PLUGIN)
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "llmharness: FAILED 1 failed, 1 passed in *",
            "regressions: no earlier outcomes recorded*",
            "other plugins wrote 3 lines: .llmharness/last/terminal.txt",
            "ERROR test_ok.py::test_b AssertionError: assert 0 (test_ok.py:2)",
        ],
        consecutive=True,
    )
    result.stdout.no_fnmatch_line("*row 1*")
    # Everything pytest wrote is in the file, in pytest's own order.
    kept = (pytester.path / ".llmharness" / "last" / "terminal.txt").read_text()
    lines = kept.splitlines()
    assert lines[0].startswith("=") and "test session starts" in lines[0]
    plugin = lines.index("row 1")
    assert lines[plugin - 1].startswith("-") and "table of a plugin" in lines[plugin - 1]
    assert lines[plugin + 1] == "row 2"
    assert lines[-1].startswith("=") and "1 failed, 1 passed in" in lines[-1]
    # pytest's failure sections and short summary are not rendered, only pointed to: the full
    # text is in failures/ already.
    pointer = next(i for i, line in enumerate(lines) if line.startswith("1 failure report: "))
    assert lines[pointer].startswith(
        "1 failure report: one ERROR line each in log.txt, the full text in failures/ (in "
    )
    assert "FAILURES and ERRORS" in lines[pointer - 1]
    assert "short test summary info" not in kept
    assert "def test_b" not in kept


def test_no_pointer_line_when_no_plugin_wrote_anything(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_a(): pass")
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == 0
    result.stdout.no_fnmatch_line("*other plugins wrote*")
    assert (pytester.path / ".llmharness" / "last" / "terminal.txt").stat().st_size > 0


def test_whole_output_of_a_long_failing_run_is_bounded(pytester: pytest.Pytester) -> None:
    """The cap of 8 lines, plus at most 4 progress lines however long the run."""
    pytester.makepyfile(
        test_slow="""
        import time, pytest
        @pytest.mark.parametrize("i", range(40))
        def test_slow(i):
            time.sleep(0.05)
            assert i % 3
        """
    )
    pytester.makefile(".yaml", llmharness="progress_interval: 0.05\n")
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == 1
    lines = [line for line in result.outlines if line.strip()]
    progress = [line for line in lines if line.startswith("llmharness: progress ")]
    assert 1 <= len(progress) <= 4, progress
    assert len(lines) - len(progress) <= 8, lines


def test_a_narrowed_run_says_how_much_of_the_known_suite_it_ran(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_one="def test_a():\n    pass\ndef test_b():\n    assert False\n",
        test_two="".join(f"def test_{i}():\n    pass\n" for i in range(8)),
    )
    agent = ("--agent-id", "1", "-p", "no:randomly")
    pytester.runpytest(*agent).stdout.fnmatch_lines(["llmharness: FAILED * (full run, agent 1, *"])
    assert cli_json(pytester, "summary")["sample"]["known"] == 10
    pytester.runpytest(*agent, "test_two.py").stdout.fnmatch_lines(
        ["llmharness: PASSED 8 passed in *s (8 of 10 known tests, agent 1, *"]
    )
    pytester.runpytest(*agent, "--lf").stdout.fnmatch_lines(
        ["llmharness: FAILED 1 failed in *s (1 of 10 known tests, agent 1, *"]
    )
    # Deselected tests were collected: the run is whole, and says what it left out.
    pytester.runpytest(*agent, "-k", "test_one").stdout.fnmatch_lines(
        ["llmharness: FAILED 1 failed, 1 passed in *s (full run, 8 deselected, agent 1, *"]
    )
