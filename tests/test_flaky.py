"""`llmharness flaky`, through the installed CLI on runs recorded by real pytest processes in a
real git repository: a test that flips at one commit is listed with its flip rate, a test that
a commit fixed is not, and runs outside git are skipped, saying so."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from llmharness.flaky import flaky_tests

PYTEST = str(Path(sys.executable).parent / "pytest")
STABLE = "def test_passes():\n    pass\n\ndef test_always_fails():\n    assert False\n"


@pytest.fixture(autouse=True)
def _git_and_quick_runs(_no_randomly_inside: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "agent")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "agent@example.com")
    # Failures are neither re-run for a verdict nor run at the base: only history matters here.
    monkeypatch.setenv("LLMHARNESS_VERDICT_BUDGET", "0")
    monkeypatch.setenv("LLMHARNESS_BASE_CHECK_BUDGET", "0")
    monkeypatch.setenv(
        "PYTEST_ADDOPTS", "-p no:randomly -p no:hypothesispytest -p no:cacheprovider"
    )


def _git(pytester: pytest.Pytester, *args: str) -> None:
    # pytester.run keeps each command's output in ./stdout and ./stderr: not the suite's code.
    (pytester.path / ".gitignore").write_text("/stdout\n/stderr\n")
    result = pytester.run("git", *args)
    assert result.ret == 0, result.stderr.str()


def _commit(pytester: pytest.Pytester, message: str) -> None:
    _git(pytester, "add", "-A")
    _git(pytester, "commit", "-q", "-m", message)


def _runs(pytester: pytest.Pytester, times: int) -> None:
    for _ in range(times):
        pytester.run(PYTEST)


def _counting(tmp_path: Path, passes_when: str) -> str:
    """A test module whose `test_flips` passes when `passes_when` holds of `count`, the number
    of its earlier attempts (kept outside the repository, so the tree stays clean)."""
    counter = tmp_path / "count"
    return (
        "import pathlib\n\ndef test_flips():\n"
        f"    path = pathlib.Path({str(counter)!r})\n"
        "    count = int(path.read_text()) if path.exists() else 0\n"
        "    path.write_text(str(count + 1))\n"
        f"    assert {passes_when}\n"
    )


def test_a_test_that_flips_at_one_commit_is_listed_with_its_rate(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # Passes, fails, fails, passes in four runs: 2 flips in 3 transitions.
    pytester.makepyfile(test_stable=STABLE, test_flip=_counting(tmp_path, "count not in (1, 2)"))
    _git(pytester, "init", "-q", "-b", "main")
    _commit(pytester, "suite")
    _runs(pytester, 4)

    result = run_cli(pytester, "flaky")
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == [
        "FLAKY test_flip.py::test_flips flip rate 0.67 (2 flips in 4 runs at 1 version)",
        "flaky: 1 test flipped in 4 runs at 1 code version",
    ]
    data = json.loads(run_cli(pytester, "flaky", "--json").stdout.str())
    assert data["tests"] == [
        {
            "nodeid": "test_flip.py::test_flips",
            "flip_rate": 0.6667,
            "flips": 2,
            "observations": 4,
            "versions": 1,
            "passed_on_rerun": 0,
        }
    ]
    assert (data["runs"], data["versions"], data["skipped_runs"]) == (4, 1, 0)
    store = pytester.path / ".llmharness"
    assert flaky_tests(store) == {"test_flip.py::test_flips": pytest.approx(2 / 3)}
    assert flaky_tests(store, min_rate=0.7) == {}


def test_a_test_that_passed_only_on_a_rerun_is_flaky_from_one_run(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """pytest-rerunfailures' attempts are observations: failed, then passed, at one commit."""
    # Fails on its first attempt of all, passes from then on.
    pytester.makepyfile(test_stable=STABLE, test_flip=_counting(tmp_path, "count != 0"))
    _git(pytester, "init", "-q", "-b", "main")
    _commit(pytester, "suite")
    result = pytester.run(PYTEST, "--reruns", "1")
    assert result.ret == 1  # test_always_fails failed its rerun too

    result = run_cli(pytester, "flaky")
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == [
        "FLAKY test_flip.py::test_flips flip rate 1.00 (1 flip in 2 attempts at 1 version; "
        "passed only on a rerun in 1 run)",
        "flaky: 1 test flipped in 1 run at 1 code version",
    ]
    data = json.loads(run_cli(pytester, "flaky", "--json").stdout.str())
    assert [
        (t["nodeid"], t["flips"], t["observations"], t["passed_on_rerun"]) for t in data["tests"]
    ] == [("test_flip.py::test_flips", 1, 2, 1)]

    # A second run at the same commit, a plain pass: 1 flip in 2 transitions.
    _runs(pytester, 1)
    data = json.loads(run_cli(pytester, "flaky", "--json").stdout.str())
    assert [(t["flips"], t["observations"], t["flip_rate"]) for t in data["tests"]] == [(1, 3, 0.5)]
    assert data["runs"] == 2


def test_a_test_a_change_fixed_is_not_flaky(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stable=STABLE, test_fixed="def test_fixed():\n    assert 1 == 2\n")
    _git(pytester, "init", "-q", "-b", "main")
    _commit(pytester, "broken")
    _runs(pytester, 2)
    # Fixed in the work tree first (a version of its own: the commit and the changes), then
    # committed (another): it fails twice, then passes three times, never flipping at one.
    pytester.makepyfile(test_fixed="def test_fixed():\n    assert 1 == 1\n")
    _runs(pytester, 2)
    _commit(pytester, "fixed")
    _runs(pytester, 1)

    result = run_cli(pytester, "flaky")
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == ["flaky: no test flipped in 5 runs at 3 code versions"]


def test_outside_git_runs_without_a_code_version_are_skipped(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_stable=STABLE)
    _runs(pytester, 2)
    result = run_cli(pytester, "flaky")
    assert result.ret == 0, result.stderr.str()
    assert result.stdout.lines == [
        "flaky: no test flipped in 0 runs at 0 code versions; 2 runs without a code version "
        "skipped (outside git, or unfinished)"
    ]
