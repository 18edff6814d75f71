"""The sampling laws through real pytest runs of the plugin on a 2,000-test synthetic suite."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import QUIET

from llmharness.sampling import agent_seed, select

FAST_10 = ("--fast", "--fast-fraction", "10%")


@dataclass(frozen=True)
class Record:
    """What the latest run wrote: the tests that ran and the summary's sample."""

    ran: frozenset[str]
    outcomes: dict[str, str]
    sample: dict[str, Any]


def last_record(pytester: pytest.Pytester) -> Record:
    last = pytester.path / ".llmharness" / "last"
    summary = json.loads((last / "summary.json").read_text(encoding="utf-8"))
    rows = [
        json.loads(line)
        for line in (last / "results.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    outcomes = {row["nodeid"]: row["outcome"] for row in rows}
    assert len(outcomes) == len(rows), "a test was recorded twice"
    sample = summary["sample"]
    assert sample["selected"] == len(rows), (sample, len(rows))
    return Record(ran=frozenset(outcomes), outcomes=outcomes, sample=sample)


def run(pytester: pytest.Pytester, *args: str) -> Record:
    """An in-process run that must pass; the record it left."""
    result = pytester.runpytest(*QUIET, *args)
    assert result.ret == pytest.ExitCode.OK, result.outlines[-5:]
    return last_record(pytester)


def run_subprocess(pytester: pytest.Pytester, *args: str) -> Record:
    """A run in a fresh interpreter (for environment changes) that must pass; its record."""
    result = pytester.runpytest_subprocess(*QUIET, *args)
    assert result.ret == pytest.ExitCode.OK, result.outlines[-5:] + result.errlines[-5:]
    return last_record(pytester)


@pytest.fixture
def suite(pytester: pytest.Pytester, generate: ModuleType) -> list[str]:
    """2,000 passing tests in 20 files; their node ids in collection order."""
    nodeids: list[str] = generate.synthetic(pytester.path, files=20, tests_per_file=100)
    return nodeids


def test_same_set_whatever_the_hash_seed_or_fraction_spelling(
    pytester: pytest.Pytester, suite: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONHASHSEED", "1")
    first = run_subprocess(pytester, *FAST_10, "--agent-id", "7")
    monkeypatch.setenv("PYTHONHASHSEED", "2")
    second = run_subprocess(pytester, "--fast", "--fast-fraction", "0.1", "--agent-id", "7")
    third = run(pytester, "--fast", "--fast-fraction", "0.10", "--agent-id", "7")
    assert 0 < len(first.ran) < len(suite)
    assert second.ran == first.ran
    assert third.ran == first.ran
    assert first.sample["fraction"] == second.sample["fraction"] == third.sample["fraction"] == 0.1
    assert first.sample["seed"] == second.sample["seed"] == third.sample["seed"] == "5ee06a94"


def test_another_agent_gets_a_different_set_overlapping_about_f_squared(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    seven = run(pytester, *FAST_10, "--agent-id", "7")
    eight = run(pytester, *FAST_10, "--agent-id", "8")
    assert seven.ran != eight.ran
    assert seven.sample["seed"] != eight.sample["seed"]
    assert eight.sample["agent_id"] == "8"
    # f^2 * N = 20 expected in common.
    assert 5 <= len(seven.ran & eight.ran) <= 45


def test_one_percent_set_lies_inside_ten_percent_set(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    ten = run(pytester, *FAST_10, "--agent-id", "7")
    one = run(pytester, "--fast-fraction", "1%", "--agent-id", "7")
    assert one.sample["fraction"] == 0.01
    assert one.ran
    assert one.ran < ten.ran


def _write_tests(path: Path, count: int) -> list[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"test_added_{i:03d}" for i in range(count)]
    path.write_text("\n\n".join(f"def {name}():\n    pass\n" for name in names))
    return names


def test_adding_tests_leaves_old_membership_unchanged(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    before = run(pytester, *FAST_10, "--agent-id", "7")
    added = []
    for name in ("test_new_a.py", "test_new_b.py"):
        rel = f"added/{name}"
        added += [f"{rel}::{test}" for test in _write_tests(pytester.path / rel, 100)]
    after = run(pytester, *FAST_10, "--agent-id", "7")
    assert after.sample["total"] == 2_200
    assert after.ran & set(suite) == before.ran
    assert after.ran - set(suite)  # some of the new tests join the sample
    assert after.ran <= set(suite) | set(added)


def test_removing_tests_leaves_remaining_membership_unchanged(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    before = run(pytester, *FAST_10, "--agent-id", "7")
    for name in ("test_m0003.py", "test_m0011.py"):
        (pytester.path / name).unlink()
    after = run(pytester, *FAST_10, "--agent-id", "7")
    remaining = {nodeid for nodeid in suite if not nodeid.startswith(("test_m0003", "test_m0011"))}
    assert after.sample["total"] == 1_800
    assert after.ran == before.ran & remaining


def test_sample_size_is_near_ten_percent_and_matches_the_pure_selection(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    record = run(pytester, *FAST_10, "--agent-id", "7")
    assert 140 <= len(record.ran) <= 260
    assert record.sample["total"] == 2_000
    assert record.sample["mode"] == "fraction"
    assert set(record.outcomes.values()) == {"passed"}
    assert record.ran == select(suite, 0.1, agent_seed("7")).selected_set


def test_three_test_suite_at_one_percent_is_never_empty(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_tiny="def test_a():\n    pass\n\ndef test_b():\n    pass\n\ndef test_c():\n    pass\n"
    )
    ids = [f"test_tiny.py::test_{name}" for name in "abc"]
    for agent in ("1", "2", "3", "7", "8"):
        record = run(pytester, "--fast-fraction", "1%", "--agent-id", agent)
        assert len(record.ran) >= 1, agent
        assert record.sample["total"] == 3
        assert record.ran == select(ids, 0.01, agent_seed(agent)).selected_set


def test_explicit_seed_reproduces_an_agents_set_without_its_id(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    seven = run(pytester, *FAST_10, "--agent-id", "7")
    seed = seven.sample["seed"]
    replay = run(pytester, *FAST_10, "--seed", seed)
    assert replay.sample["agent_id"] is None
    assert replay.sample["seed"] == seed
    assert replay.ran == seven.ran


def test_deselected_tests_reach_pytests_own_counts(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    result = pytester.runpytest(*QUIET, *FAST_10, "--agent-id", "7", "--no-compact")
    assert result.ret == pytest.ExitCode.OK
    record = last_record(pytester)
    selected, total = record.sample["selected"], record.sample["total"]
    assert 0 < selected < total == 2_000
    result.assert_outcomes(passed=selected, deselected=total - selected)
    assert result.parseoutcomes()["deselected"] == total - selected
    result.stdout.fnmatch_lines(
        [f"collected 2000 items / {total - selected} deselected / {selected} selected"]
    )


def test_xdist_workers_select_the_serial_set(pytester: pytest.Pytester, suite: list[str]) -> None:
    serial = run(pytester, *FAST_10, "--agent-id", "7")
    result = pytester.runpytest_subprocess(
        *QUIET, *FAST_10, "--agent-id", "7", "-n", "2", "--no-compact"
    )
    assert result.ret == pytest.ExitCode.OK, result.outlines[-5:]
    # Each worker collects the whole suite and must keep exactly the serial sample.
    result.stdout.fnmatch_lines([f"2 workers [[]{len(serial.ran)} items[]]"])
    distributed = last_record(pytester)
    assert distributed.ran == serial.ran
    assert set(distributed.outcomes.values()) == {"passed"}
    keys = ("mode", "fraction", "seed", "agent_id", "selected", "total")
    assert {k: distributed.sample[k] for k in keys} == {k: serial.sample[k] for k in keys}


_MARKED = """
import pytest

@pytest.mark.parametrize("i", range(30))
def test_quick(i):
    pass

@pytest.mark.slow
@pytest.mark.parametrize("i", range(10))
def test_slow(i):
    pass
"""


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_selected_and_total_mean_the_same_in_every_mode(
    pytester: pytest.Pytester, workers: tuple[str, ...]
) -> None:
    """`total` counts every test collected, `deselected` those that options (here addopts'
    `-m`) took out, `selected` those left to run, in a full run and in a sample alike."""
    pytester.makepyfile(test_marked=_MARKED)
    pytester.makeini("[pytest]\nmarkers = slow\naddopts = -m 'not slow'\n")
    full = run_subprocess(pytester, "--agent-id", "7", *workers)
    assert {k: full.sample[k] for k in ("selected", "total", "deselected")} == {
        "selected": 30,
        "total": 40,
        "deselected": 10,
    }
    fast = run_subprocess(pytester, "--agent-id", "7", "--fast-fraction", "50%", *workers)
    quick = [f"test_marked.py::test_quick[{i}]" for i in range(30)]
    expected = select(quick, 0.5, agent_seed("7")).selected
    assert fast.ran == frozenset(expected)
    assert {k: fast.sample[k] for k in ("selected", "total", "deselected")} == {
        "selected": len(expected),
        "total": 40,
        "deselected": 10,
    }
