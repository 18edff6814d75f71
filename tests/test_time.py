"""Time: a sample that fits a budget, a clean stop at a time limit, per-test timeouts, progress.

Selection is checked on recorded durations and counts, never on wall-clock timings.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import cli_json, error_lines, run_cli

from llmharness.sampling import DEFAULT_UNKNOWN_DURATION


def _results(path: Path) -> dict[str, dict[str, object]]:
    lines = (path / ".llmharness/last/results.jsonl").read_text().splitlines()
    return {item["nodeid"]: item for item in map(json.loads, lines)}


def _index_durations(path: Path) -> dict[str, float]:
    index = json.loads((path / ".llmharness/index.json").read_text())
    return {nodeid: float(entry[4]) for nodeid, entry in index["tests"].items()}


@pytest.fixture
def fast_and_slow(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fast="""
        import pytest
        @pytest.mark.parametrize("i", range(200))
        def test_fast(i):
            pass
        """,
        test_slow="""
        import time, pytest
        @pytest.mark.parametrize("i", range(10))
        def test_slow(i):
            time.sleep(0.4)
        """,
    )


def test_budget_sample_fits_recorded_durations(
    pytester: pytest.Pytester, fast_and_slow: None
) -> None:
    # One recorded full run (-n 2 halves its wall time; durations are per test all the same).
    assert pytester.runpytest_subprocess("-n", "2").ret == 0
    durations = _index_durations(pytester.path)
    assert len(durations) == 210

    first = pytester.runpytest("--fast-budget", "1.2", "--agent-id", "1")
    assert first.ret == 0
    chosen = set(_results(pytester.path))
    assert chosen
    assert sum(durations[nodeid] for nodeid in chosen) <= 1.2
    assert sum(nodeid.startswith("test_slow") for nodeid in chosen) <= 3
    summary = cli_json(pytester, "summary")
    assert summary["sample"]["mode"] == "budget"
    assert summary["sample"]["expected_s"] <= 1.2
    assert summary["sample"]["selected"] == len(chosen)
    first.stdout.fnmatch_lines(
        [
            f"llmharness: PASSED {len(chosen)} passed in *(fast budget 1.2s, expect *s: "
            f"{len(chosen)} of 210, agent 1, seed *"
        ]
    )

    pytester.runpytest("--fast-budget", "1.2", "--agent-id", "1")
    assert set(_results(pytester.path)) == chosen
    pytester.runpytest("--fast-budget", "1.2", "--agent-id", "2")
    assert set(_results(pytester.path)) != chosen


def test_budget_with_fraction_cuts_the_fraction_sample(
    pytester: pytest.Pytester, fast_and_slow: None
) -> None:
    pytester.runpytest_subprocess("-n", "2")
    pytester.runpytest("--fast-fraction", "50%", "--agent-id", "1")
    half = set(_results(pytester.path))
    pytester.runpytest("--fast-fraction", "50%", "--fast-budget", "0.8", "--agent-id", "1")
    cut = set(_results(pytester.path))
    assert cut and cut <= half and len(cut) < len(half)
    durations = _index_durations(pytester.path)
    assert sum(durations[nodeid] for nodeid in cut) <= 0.8


def test_never_timed_tests_cost_the_median_or_the_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_new="""
        import pytest
        @pytest.mark.parametrize("i", range(100))
        def test_new(i):
            pass
        """
    )
    # Nothing recorded yet: each test is expected to take DEFAULT_UNKNOWN_DURATION.
    pytester.runpytest("--fast-budget", "1", "--agent-id", "1", "--llmharness-store", "empty")
    summary = json.loads((pytester.path / "empty/last/summary.json").read_text())
    assert summary["sample"]["selected"] == int(1.0 / DEFAULT_UNKNOWN_DURATION)
    assert summary["sample"]["expected_s"] == pytest.approx(1.0)


def test_time_limit_stops_cleanly_and_unreached_tests_are_not_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_sleepy="""
        import time, pytest
        @pytest.mark.parametrize("i", range(60))
        def test_sleepy(i):
            time.sleep(0.1)
        """
    )
    pytester.makepyfile(conftest="")
    assert pytester.runpytest("-p", "no:randomly").ret == 0  # every test known as passing
    result = pytester.runpytest("--agent-id", "1", "--time-limit", "2")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    ran = _results(pytester.path)
    assert 5 <= len(ran) < 60
    result.stdout.fnmatch_lines(
        [
            f"llmharness: STOPPED {len(ran)} passed in *",
            f"TIMEOUT time limit of 2s reached after {len(ran)} of 60 tests; "
            f"{60 - len(ran)} not run",
        ]
    )
    log = (pytester.path / ".llmharness/last/log.txt").read_text()
    assert sum(line.startswith("TIMEOUT ") for line in log.splitlines()) == 1
    summary = cli_json(pytester, "summary")
    assert summary["status"] == "time-limit"
    assert len(summary["not_reached"]) == 60 - len(ran)
    assert set(summary["not_reached"]).isdisjoint(ran)
    diff = cli_json(pytester, "regressions")
    assert diff["not_run"] == 60 - len(ran)
    assert diff["fixed"] == [] and diff["new_failures"] == []
    assert any("time-limit" in note for note in diff["notes"])
    # The unreached tests are still known as passing, not forgotten.
    index = json.loads((pytester.path / ".llmharness/index.json").read_text())
    assert len(index["tests"]) == 60


_HANG = """
import time
def test_before():
    pass
def test_hangs():
    time.sleep(3600)
def test_after():
    pass
"""


# pytest-timeout, installed with the dev extras, takes the timeout over when it is loaded;
# `-p no:timeout` leaves it to llmharness's own timer, as where it is not installed.
@pytest.mark.parametrize("timer", [["-p", "no:timeout"], []], ids=["own", "pytest-timeout"])
def test_hanging_test_times_out_as_one_error_line(
    pytester: pytest.Pytester, timer: list[str]
) -> None:
    pytester.makepyfile(test_hang=_HANG)
    result = pytester.runpytest_subprocess("--agent-id", "1", "--test-timeout", "1", *timer)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert error_lines(pytester) == ["ERROR test_hang.py::test_hangs TIMEOUT after 1 s"]
    outcomes = {k: v["outcome"] for k, v in _results(pytester.path).items()}
    assert outcomes == {
        "test_hang.py::test_before": "passed",
        "test_hang.py::test_hangs": "failed",
        "test_hang.py::test_after": "passed",
    }
    result.stdout.fnmatch_lines(["ERROR test_hang.py::test_hangs TIMEOUT after 1 s"])
    owner = "pytest-timeout" if not timer else "llmharness"
    (failure,) = (pytester.path / ".llmharness/last/failures").iterdir()
    text = failure.read_text()
    assert re.search(rf"Failed: Timeout \(>1(\.0)?s\) from {owner}", text)
    assert "time.sleep(3600)" in text  # the traceback shows where the test was


def test_own_timeout_on_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_hang=_HANG)
    result = pytester.runpytest_subprocess(
        "--agent-id", "1", "--test-timeout", "1", "-p", "no:timeout", "-n", "2"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert error_lines(pytester) == ["ERROR test_hang.py::test_hangs TIMEOUT after 1 s"]
    outcomes = {k: v["outcome"] for k, v in _results(pytester.path).items()}
    assert sorted(outcomes.values()) == ["failed", "passed", "passed"]


def test_timeout_without_signals_ends_the_worker(pytester: pytest.Pytester) -> None:
    """Where no SIGALRM can interrupt a test (Windows), faulthandler ends the process: under
    xdist the worker is replaced and the run goes on."""
    pytester.makeconftest(
        """
        from llmharness.timeouts import TestTimeout
        TestTimeout._signals_usable = staticmethod(lambda: False)  # as on Windows
        """
    )
    pytester.makepyfile(test_hang=_HANG)
    result = pytester.runpytest_subprocess(
        "--agent-id", "1", "--test-timeout", "1", "-p", "no:timeout", "-n", "1"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = {k: v["outcome"] for k, v in _results(pytester.path).items()}
    assert outcomes == {
        "test_hang.py::test_before": "passed",
        "test_hang.py::test_hangs": "failed",
        "test_hang.py::test_after": "passed",
    }
    assert error_lines(pytester) == [
        "ERROR test_hang.py::test_hangs worker 'gw0' crashed while running "
        "'test_hang.py::test_hangs'"
    ]


def test_timeout_in_a_fixture_errors_and_teardown_still_runs(pytester: pytest.Pytester) -> None:
    """The budget covers setup; a test whose setup used it up still has its fixtures torn
    down, and the next test starts clean with a budget of its own."""
    pytester.makepyfile(
        test_fixture_hang="""
        import time, pytest
        @pytest.fixture
        def slow_resource(tmp_path_factory):
            marker = tmp_path_factory.getbasetemp() / "torn-down"
            yield
            marker.write_text("yes")
        @pytest.fixture
        def hangs(slow_resource):
            time.sleep(3600)
        def test_setup_hangs(hangs):
            pass
        def test_next(tmp_path_factory):
            time.sleep(0.6)  # with the previous test's budget it would time out
            assert (tmp_path_factory.getbasetemp() / "torn-down").read_text() == "yes"
        """
    )
    result = pytester.runpytest_subprocess(
        "--agent-id", "1", "--test-timeout", "1", "-p", "no:timeout"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    outcomes = {k: (v["outcome"], v["phase"]) for k, v in _results(pytester.path).items()}
    assert outcomes == {
        "test_fixture_hang.py::test_setup_hangs": ("error", "setup"),
        "test_fixture_hang.py::test_next": ("passed", "call"),
    }
    assert error_lines(pytester) == [
        "ERROR test_fixture_hang.py::test_setup_hangs TIMEOUT after 1 s"
    ]


def _progress_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("llmharness: progress")]


def test_progress_lines_are_rare(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_five="""
        import time, pytest
        @pytest.mark.parametrize("i", range(50))
        def test_five(i):
            time.sleep(0.1)
        """,
        test_short="""
        import pytest
        @pytest.mark.parametrize("i", range(5))
        def test_short(i):
            pass
        """,
    )
    pytester.makefile(".yaml", llmharness="progress_interval: 1\n")
    long_run = pytester.runpytest("--agent-id", "1", "test_five.py")
    lines = _progress_lines(long_run)
    assert 1 <= len(lines) <= 6
    assert lines[0].startswith("llmharness: progress ") and "/50 done, 0 failed" in lines[0]
    short_run = pytester.runpytest("--agent-id", "1", "test_short.py")
    assert _progress_lines(short_run) == []
    # Nothing was recorded before the first run: its lines have no estimate. The next run's
    # lines estimate the tests left by what the first recorded of each.
    assert not any("left by recorded durations" in line for line in lines)
    index = json.loads((pytester.path / ".llmharness" / "index.json").read_text())
    recorded = [known[4] for nodeid, known in index["tests"].items() if "test_five" in nodeid]
    assert len(recorded) == 50
    again = _progress_lines(pytester.runpytest("--agent-id", "1", "test_five.py"))
    assert again
    for line in again:
        found = re.search(
            r"progress ([\d,]+)/([\d,]+) done.*~(\d+)s left by recorded durations", line
        )
        assert found, line
        done, total, eta = (int(group.replace(",", "")) for group in found.groups())
        left = total - done
        assert left * min(recorded) - 1 <= eta <= left * max(recorded) + 1, (line, recorded)


def test_summary_shows_time_per_directory_and_slowest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{"slowdir/test_s": "import time\ndef test_s(): time.sleep(0.3)"})
    pytester.makepyfile(**{"quick/test_q": "def test_q(): pass"})
    pytester.runpytest("--agent-id", "1")
    summary = cli_json(pytester, "summary")
    assert summary["slowest"][0]["nodeid"] == "slowdir/test_s.py::test_s"
    assert summary["by_dir"]["slowdir"]["duration_s"] >= 0.3
    text = run_cli(pytester, "summary")
    text.stdout.fnmatch_lines(
        ["*slowest: slowdir/test_s.py::test_s 0.3*", "time by dir: slowdir 0.3s, quick 0.0s"]
    )
