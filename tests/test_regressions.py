"""The regression diff, the CI gate, baselines, history, show and the Python API."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import cli_json, run_cli

import llmharness
from llmharness.sampling import agent_seed, select

N_TESTS = 40


def _suite(
    pytester: pytest.Pytester, broken: frozenset[int] = frozenset(), skipped: int = -1
) -> None:
    """Forty tests in two files; the numbered ones in `broken` fail, `skipped` is skip-marked."""
    for name, numbers in (("test_a", range(0, 20)), ("test_b", range(20, N_TESTS))):
        body = ["import pytest"]
        for i in numbers:
            if i == skipped:
                body.append("@pytest.mark.skip(reason='flaky, skipped for now')")
            check = f"assert {i} < 0, 'broken number {i}'" if i in broken else "pass"
            body.append(f"def test_{i}():\n    {check}\n")
        pytester.makepyfile(**{name: "\n".join(body)})


def _nodeid(i: int) -> str:
    return f"{'test_a' if i < 20 else 'test_b'}.py::test_{i}"


def _not_sampled_by(agent: str, count: int) -> list[int]:
    """Test numbers outside `agent`'s 10% sample, so its --fast run cannot see them."""
    ids = [_nodeid(i) for i in range(N_TESTS)]
    chosen = set(select(ids, 0.1, agent_seed(agent)).selected)
    return [i for i in range(N_TESTS) if _nodeid(i) not in chosen][:count]


def test_break_three_then_mend_them(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    assert pytester.runpytest("--agent-id", "1").ret == 0
    broken = frozenset(_not_sampled_by("2", 3))
    _suite(pytester, broken)
    # Another agent's --fast run in between records only its sample; what was known stays.
    pytester.runpytest("--agent-id", "2", "--fast")
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["regressions: 3 new failures (3 confirmed) (vs last known outcome of each test)"]
    )
    diff = cli_json(pytester, "regressions")
    assert sorted(item["nodeid"] for item in diff["new_failures"]) == sorted(
        _nodeid(i) for i in broken
    )
    assert all(
        item["before"] == "passed" and item["after"] == "failed" for item in diff["new_failures"]
    )
    assert all("broken number" in item["reason"] for item in diff["new_failures"])
    assert diff["fixed"] == [] and diff["still_failing"] == []
    assert run_cli(pytester, "regressions", "--check").ret == 1

    _suite(pytester)
    assert pytester.runpytest("--agent-id", "1").ret == 0
    diff = cli_json(pytester, "regressions")
    assert sorted(item["nodeid"] for item in diff["fixed"]) == sorted(_nodeid(i) for i in broken)
    assert diff["new_failures"] == [] and diff["new_tests_failing"] == []
    assert run_cli(pytester, "regressions", "--check").ret == 0


def test_passing_test_made_to_skip_is_reported(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    assert pytester.runpytest("--agent-id", "1").ret == 0
    _suite(pytester, skipped=7)
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["regressions: 1 passing test now skipped*"])
    diff = cli_json(pytester, "regressions")
    assert diff["newly_skipped"] == [
        {
            "nodeid": "test_a.py::test_7",
            "before": "passed",
            "after": "skipped",
            "reason": diff["newly_skipped"][0]["reason"],
            "last_run": diff["newly_skipped"][0]["last_run"],
            "last_agent": "1",
            "known_by": "last-known",  # outside git: today's rule
        }
    ]
    assert "flaky, skipped for now" in diff["newly_skipped"][0]["reason"]
    text = run_cli(pytester, "regressions")
    text.stdout.fnmatch_lines(["NOW SKIPPED test_a.py::test_7 was passed:*flaky*"])


def test_sampled_runs_compare_against_the_last_known_outcome(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest("--agent-id", "1")
    pytester.runpytest("--agent-id", "3", "--fast")
    diff = cli_json(pytester, "regressions")
    summary = cli_json(pytester, "summary")
    selected = summary["sample"]["selected"]
    assert summary["sample"]["mode"] == "fraction"
    assert diff["compared"] == selected
    assert diff["not_run"] == N_TESTS - selected
    assert diff["new_failures"] == []


def test_new_failing_test_is_its_own_category(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest("--agent-id", "1")
    pytester.makepyfile(test_c="def test_new(): assert 1 == 2")
    pytester.runpytest("--agent-id", "1")
    diff = cli_json(pytester, "regressions")
    assert [item["nodeid"] for item in diff["new_tests_failing"]] == ["test_c.py::test_new"]
    assert diff["new_failures"] == []
    assert run_cli(pytester, "regressions", "--check").ret == 0


def test_baseline_pins_a_run_for_the_ci_gate(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest()
    pinned = run_cli(pytester, "baseline")
    assert pinned.ret == 0
    pinned.stdout.fnmatch_lines(["baseline pinned: run * (40 tests)*"])
    _suite(pytester, frozenset({5}))
    pytester.runpytest()
    _suite(pytester, frozenset({5, 6}))
    pytester.runpytest()
    # Against the last known outcome only test 6 is new; against the baseline both are.
    assert [i["nodeid"] for i in cli_json(pytester, "regressions")["new_failures"]] == [
        "test_a.py::test_6"
    ]
    diff = cli_json(pytester, "regressions", "--against", "baseline")
    assert sorted(i["nodeid"] for i in diff["new_failures"]) == [
        "test_a.py::test_5",
        "test_a.py::test_6",
    ]
    assert diff["against"].startswith("baseline ")
    assert run_cli(pytester, "regressions", "--against", "baseline", "--check").ret == 1


def test_the_gate_fails_a_run_that_stopped_before_the_tests_it_did_not_run(
    pytester: pytest.Pytester,
) -> None:
    """`-x` stopped at a test that was failing already: the test it broke further on was never
    run, so the gate cannot say nothing broke."""
    _suite(pytester, frozenset({0}))
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    complete = cli_json(pytester, "summary")["run_id"]
    _suite(pytester, frozenset({0, 30}))
    assert pytester.runpytest("-x").ret == pytest.ExitCode.TESTS_FAILED
    diff = cli_json(pytester, "regressions")
    assert [item["nodeid"] for item in diff["still_failing"]] == [_nodeid(0)]
    assert diff["new_failures"] == [] and diff["new_tests_failing"] == []
    assert diff["unfinished"] == {"status": "stopped", "not_reached": N_TESTS - 1}
    gate = run_cli(pytester, "regressions", "--check")
    assert gate.ret == 1
    gate.stdout.fnmatch_lines(["note: run * is stopped (39 tests not reached)*check` fails on it"])
    assert run_cli(pytester, "regressions", "--check", "--against", complete).ret == 1
    assert llmharness.regressions(directory=pytester.path).broken  # the API says the same

    # The whole suite run again: the broken test is found, and once mended the gate passes
    # with the old failure still failing.
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    diff = cli_json(pytester, "regressions")
    assert diff["unfinished"] is None
    assert [item["nodeid"] for item in diff["new_failures"]] == [_nodeid(30)]
    assert run_cli(pytester, "regressions", "--check").ret == 1
    _suite(pytester, frozenset({0}))
    assert pytester.runpytest().ret == pytest.ExitCode.TESTS_FAILED
    assert run_cli(pytester, "regressions", "--check").ret == 0


def test_against_a_named_run(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest()
    first = cli_json(pytester, "summary")["run_id"]
    _suite(pytester, frozenset({1}))
    pytester.runpytest()
    diff = cli_json(pytester, "regressions", "--against", first[:15] + first[15:])
    assert [i["nodeid"] for i in diff["new_failures"]] == ["test_a.py::test_1"]
    assert diff["against"] == first


def test_history_and_show(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest("--agent-id", "1")
    _suite(pytester, frozenset({4}))
    pytester.runpytest("--agent-id", "2")
    pytester.runpytest("--agent-id", "3", "test_a.py::test_4")  # narrowed: not a full run
    history = run_cli(pytester, "history")
    assert history.ret == 0
    history.stdout.fnmatch_lines(
        [
            "* complete agent 1 full: 40 passed",
            "* complete agent 2 full: 1 failed, 39 passed",
            "* complete agent 3 1 of 40 known: 1 failed",
        ],
        consecutive=True,
    )
    (last,) = cli_json(pytester, "history", "-n", "1")
    assert (last["sample_mode"], last["total"], last["known"]) == ("full", 1, 40)
    # One test across the runs that ran it: its outcome in each, oldest first.
    one = run_cli(pytester, "history", "test_a.py::test_4")
    assert one.ret == 0, one.stderr.str()
    one.stdout.fnmatch_lines(
        [
            "* agent 1: passed *s",
            "* agent 2: failed *s AssertionError: broken number 4*",
            "* agent 3: failed *s AssertionError: broken number 4*",
            "test_a.py::test_4: 3 runs: 1 passed, 2 failed; last passed in run *; "
            "last failed in run *",
        ],
        consecutive=True,
    )
    data = cli_json(pytester, "history", "test_a.py::test_4", "-n", "2")
    assert [run["outcome"] for run in data["runs"]] == ["failed", "failed"]
    assert [run["agent_id"] for run in data["runs"]] == ["2", "3"]
    assert data["counts"] == {"failed": 2}
    unknown = run_cli(pytester, "history", "test_4")
    assert (unknown.ret, unknown.stderr.lines) == (
        2,
        ["llmharness: test 'test_4' is not in any recorded run; did you mean test_a.py::test_4?"],
    )
    shown = run_cli(pytester, "show", "test_a.py::test_4")
    assert shown.ret == 0
    shown.stdout.fnmatch_lines(
        [
            "# run *",
            "nodeid: test_a.py::test_4",
            "outcome: failed (in call)",
            "reason: AssertionError: broken number 4*",
            "=== traceback (call) ===",
        ]
    )
    missing = run_cli(pytester, "show", "test_a.py::nope")
    assert missing.ret == 2
    assert missing.stderr.lines == [
        "llmharness: test 'test_a.py::nope' is not in any recorded run; check the node id"
    ]
    # A short form of a known id is not guessed at, but the ids it may mean are named.
    assert run_cli(pytester, "show", "test_4").stderr.lines == [
        "llmharness: test 'test_4' is not in any recorded run; did you mean test_a.py::test_4?"
    ]
    assert run_cli(pytester, "show", "test_1").stderr.lines == [
        "llmharness: test 'test_1' is not in any recorded run; did you mean test_a.py::test_1?"
    ]
    assert run_cli(pytester, "show", "a.py::test_1").stderr.lines == [
        "llmharness: test 'a.py::test_1' is not in any recorded run; did you mean "
        "test_a.py::test_1 or test_a.py::test_10 or test_a.py::test_11 (8 more match)?"
    ]


def test_cli_without_a_store_says_so_in_one_line(pytester: pytest.Pytester) -> None:
    for verb in ("summary", "regressions", "history"):
        result = run_cli(pytester, verb)
        assert result.ret == 2
        assert len(result.stderr.lines) == 1
        assert result.stderr.lines[0].startswith("llmharness: no llmharness store at or above")
    bad = run_cli(pytester, "frobnicate")
    assert bad.ret == 2
    assert len(bad.stderr.lines) == 1


def test_store_found_from_a_subfolder(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest()
    sub = pytester.mkdir("deeper")
    out = subprocess.run(
        [sys.executable, "-m", "llmharness", "summary", "--json"],
        cwd=sub,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0
    assert json.loads(out.stdout)["counts"]["passed"] == N_TESTS


def test_python_api_gives_the_same_data_as_the_cli(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    pytester.runpytest("--agent-id", "1")
    _suite(pytester, frozenset({2, 30}))
    pytester.runpytest("--agent-id", "1")
    summary = llmharness.summary(directory=pytester.path)
    assert isinstance(summary, llmharness.RunSummary)
    assert summary.counts["failed"] == 2 and summary.failed == 2
    assert summary.to_json() == cli_json(pytester, "summary")
    diff = llmharness.regressions(directory=pytester.path)
    assert isinstance(diff, llmharness.Regressions)
    assert diff.broken
    assert [change.nodeid for change in diff.new_failures] == [
        "test_a.py::test_2",
        "test_b.py::test_30",
    ]
    assert all(isinstance(change, llmharness.Change) for change in diff.new_failures)
    assert diff.to_json() == cli_json(pytester, "regressions")
    assert [run.status for run in llmharness.history(directory=pytester.path)] == [
        "complete",
        "complete",
    ]
    runs = llmharness.test_history("test_a.py::test_2", directory=pytester.path)
    assert all(isinstance(run, llmharness.TestRun) for run in runs)
    assert [run.outcome for run in runs] == ["passed", "failed"]
    assert [run.__dict__ for run in runs] == cli_json(pytester, "history", "test_a.py::test_2")[
        "runs"
    ]
    with pytest.raises(llmharness.NoRecordError, match=r"did you mean test_a\.py::test_2\?"):
        llmharness.test_history("test_2", directory=pytester.path)
