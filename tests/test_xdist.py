"""Under pytest-xdist: the serial run's sample, outcomes, record and exit code, written once.

Every comparison runs the same suite serially and with real workers (`-n 2`, once `-n auto`),
in-process (where pytester's hook recorder shows what each worker collected) and in a fresh
interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import QUIET

from llmharness.reporting import parse_error_line
from llmharness.sampling import agent_seed, select, select_budget

SAMPLE_KEYS = ("mode", "fraction", "seed", "agent_id", "selected", "total", "budget_s")
STORE = ".llmharness"


@dataclass(frozen=True)
class Record:
    """One run: its exit code, terminal output and the run folder it added to the store."""

    result: pytest.RunResult
    run_dir: Path
    outcomes: dict[str, str]
    reasons: dict[str, str]
    summary: dict[str, Any]
    errors: frozenset[str]

    @property
    def ran(self) -> frozenset[str]:
        return frozenset(self.outcomes)

    @property
    def sample(self) -> dict[str, Any]:
        return {key: self.summary["sample"].get(key) for key in SAMPLE_KEYS}


def _run_dirs(root: Path) -> set[str]:
    runs = root / STORE / "runs"
    return {path.name for path in runs.iterdir()} if runs.is_dir() else set()


def _read_record(result: pytest.RunResult, run_dir: Path) -> Record:
    rows = [
        json.loads(line)
        for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    outcomes = {row["nodeid"]: row["outcome"] for row in rows}
    nodeids = [row["nodeid"] for row in rows]
    assert len(outcomes) == len(rows), sorted({n for n in nodeids if nodeids.count(n) > 1})
    reasons = {row["nodeid"]: row["reason"] for row in rows if row.get("reason")}
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    log = (run_dir / "log.txt").read_text(encoding="utf-8").splitlines()
    errors = [line for line in log if line.startswith("ERROR ")]
    assert len(set(errors)) == len(errors), "an ERROR line was written twice"
    return Record(result, run_dir, outcomes, reasons, summary, frozenset(errors))


def run(
    pytester: pytest.Pytester, *args: str, subprocess: bool = False, status: str = "complete"
) -> Record:
    """One pytest run of the plugin; it must add exactly one run folder to the store."""
    before = _run_dirs(pytester.path)
    if subprocess:
        result = pytester.runpytest_subprocess(*QUIET, *args)
    else:
        result = pytester.runpytest(*QUIET, *args)
    new = _run_dirs(pytester.path) - before
    assert len(new) == 1, (sorted(new), result.outlines[-8:], result.errlines[-8:])
    record = _read_record(result, pytester.path / STORE / "runs" / new.pop())
    assert record.summary["status"] == status, (record.summary["status"], result.outlines[-8:])
    return record


def _counts_only(groups: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: {key: value for key, value in entry.items() if key != "duration_s"}
        for name, entry in groups.items()
    }


def _clusters(record: Record) -> set[tuple[str, int, frozenset[str]]]:
    clusters = record.summary["clusters"]
    errors = {e["nodeid"]: e["reason"] for e in record.summary["collection_errors"]}
    for cluster in clusters:
        # The example is one member's reason (which one may depend on the order tests finish).
        members = cluster["nodeids"]
        assert cluster["example"] in {record.reasons.get(n, errors.get(n)) for n in members}
    return {(c["cause"], c["count"], frozenset(c["nodeids"])) for c in clusters}


def assert_same_run(serial: Record, distributed: Record) -> None:
    """What a run records does not depend on -n: tests, outcomes, errors and aggregates."""
    assert distributed.result.ret == serial.result.ret
    assert distributed.ran == serial.ran, sorted(distributed.ran ^ serial.ran)[:10]
    assert distributed.outcomes == serial.outcomes
    assert distributed.errors == serial.errors, sorted(distributed.errors ^ serial.errors)[:6]
    assert distributed.sample == serial.sample
    s, d = serial.summary, distributed.summary
    assert d["counts"] == s["counts"]
    assert d["exitstatus"] == s["exitstatus"]
    assert d["sample"].get("expected_s") == s["sample"].get("expected_s")
    assert _counts_only(d["by_file"]) == _counts_only(s["by_file"])
    assert _counts_only(d["by_dir"]) == _counts_only(s["by_dir"])
    assert _clusters(distributed) == _clusters(serial)
    assert sorted(map(str, d["collection_errors"])) == sorted(map(str, s["collection_errors"]))


def worker_collections(result: pytest.RunResult) -> list[list[str]]:
    """What each xdist worker kept after sampling, from an in-process run's hook recorder."""
    reprec: pytest.HookRecorder = result.reprec  # type: ignore[attr-defined]
    calls = reprec.getcalls("pytest_xdist_node_collection_finished")
    return [list(call.ids) for call in calls]


@pytest.fixture
def suite(pytester: pytest.Pytester, generate: ModuleType) -> list[str]:
    """400 tests in 20 files (2 folders), a fifth of them failing; node ids in order."""
    nodeids: list[str] = generate.synthetic(
        pytester.path, files=20, tests_per_file=20, fail_rate=0.2, seed=1, subdirs=2
    )
    return nodeids


@pytest.mark.parametrize(
    ("args", "fraction", "seed"),
    [
        (("--fast", "--agent-id", "7"), 0.1, agent_seed("7")),
        (("--fast-fraction", "1%", "--seed", "abc"), 0.01, "abc"),
    ],
    ids=["fast-agent-7", "one-percent-seed-abc"],
)
def test_two_workers_record_the_serial_sample_and_outcomes(
    pytester: pytest.Pytester,
    suite: list[str],
    args: tuple[str, ...],
    fraction: float,
    seed: str,
) -> None:
    expected = select(suite, fraction, seed)
    serial = run(pytester, *args)
    distributed = run(pytester, *args, "-n", "2")
    assert serial.result.ret == pytest.ExitCode.TESTS_FAILED
    assert serial.ran == expected.selected_set
    assert 0 < len(serial.ran) < len(suite)
    assert set(serial.outcomes.values()) == {"passed", "failed"}
    assert serial.sample["selected"] == len(expected.selected)
    assert serial.sample["total"] == 400
    assert serial.sample["seed"] == seed
    assert serial.sample["fraction"] == fraction
    assert_same_run(serial, distributed)
    # Both workers drew the whole sample themselves, in collection order.
    assert worker_collections(distributed.result) == [list(expected.selected)] * 2


def test_clusters_name_the_same_tests_whatever_order_the_workers_finish_in(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_cluster="""
        import os, time, pytest

        @pytest.mark.parametrize("i", range(30))
        def test_f(i):
            if i == 0 and os.environ.get("PYTEST_XDIST_WORKER"):
                time.sleep(1.5)  # meanwhile the other worker finishes most of the others
            assert i < 0
        """
    )
    serial = run(pytester, "--agent-id", "1")
    distributed = run(pytester, "--agent-id", "1", "-n", "2")
    assert serial.summary["clusters"][0]["count"] == 30
    assert_same_run(serial, distributed)
    # One cluster of 30: the ten tests it names and its example do not depend on -n either.
    assert distributed.summary["clusters"] == serial.summary["clusters"]


@pytest.fixture
def restore_store(pytester: pytest.Pytester) -> Iterator[Any]:
    saved = pytester.path.parent / f"{pytester.path.name}-store"

    class Snapshot:
        @staticmethod
        def save() -> None:
            shutil.copytree(pytester.path / STORE, saved, symlinks=True)

        @staticmethod
        def restore() -> None:
            shutil.rmtree(pytester.path / STORE)
            shutil.copytree(saved, pytester.path / STORE, symlinks=True)

    yield Snapshot
    shutil.rmtree(saved, ignore_errors=True)


def test_budget_sample_after_a_recorded_run_is_the_serial_one(
    pytester: pytest.Pytester, suite: list[str], restore_store: Any
) -> None:
    run(pytester, "--agent-id", "7")  # records every test's duration
    index = json.loads((pytester.path / STORE / "index.json").read_text())
    durations = {nodeid: float(entry[4]) for nodeid, entry in index["tests"].items()}
    assert set(durations) == set(suite)
    budget = f"{sum(durations.values()) / 5:.6f}"
    expected = select_budget(suite, float(budget), agent_seed("7"), durations)
    assert 0 < len(expected.selected) < len(suite)

    # Both runs plan from the same recorded durations: the serial run's own ones are set aside.
    restore_store.save()
    serial = run(pytester, "--fast-budget", budget, "--agent-id", "7")
    restore_store.restore()
    distributed = run(pytester, "--fast-budget", budget, "--agent-id", "7", "-n", "2")
    assert serial.ran == expected.selected_set
    assert serial.sample["mode"] == "budget"
    assert serial.sample["budget_s"] == float(budget)
    assert_same_run(serial, distributed)
    assert worker_collections(distributed.result) == [list(expected.selected)] * 2


def test_seed_reaches_every_worker(pytester: pytest.Pytester, suite: list[str]) -> None:
    args = ("--fast", "--seed", "Xq7", "--no-compact")
    expected = select(suite, 0.1, "Xq7")
    distributed = run(pytester, *args, "-n", "2", subprocess=True)
    output = "\n".join(distributed.result.outlines + distributed.result.errlines)
    assert "Different tests were collected" not in output
    # Each worker collected the same sample, so xdist scheduled it once.
    distributed.result.stdout.fnmatch_lines([f"2 workers [[]{len(expected.selected)} items[]]"])
    assert distributed.ran == expected.selected_set
    assert sum(distributed.result.parseoutcomes().values()) == len(expected.selected)
    assert distributed.summary["sample"]["seed"] == "Xq7"
    assert distributed.summary["collection_errors"] == []
    serial = run(pytester, *args, subprocess=True)
    assert_same_run(serial, distributed)


def test_messy_suite_with_two_workers_counts_and_reports_as_serial(
    pytester: pytest.Pytester, messy: dict[str, int]
) -> None:
    args = ("--continue-on-collection-errors", "--agent-id", "1")
    serial = run(pytester, *args)
    distributed = run(pytester, *args, "-n", "2", subprocess=True)
    assert messy == {"failed": 41, "passed": 250, "error": 7, "skipped": 1, "xfailed": 1}
    for record in (serial, distributed):
        assert record.result.ret == pytest.ExitCode.TESTS_FAILED
        assert record.summary["counts"] == {**messy, "xpassed": 0}
        assert len(record.errors) == 48
        parsed = dict(map(parse_error_line, record.errors))
        assert parsed["test_broken_import.py"].startswith("ModuleNotFoundError: No module named")
    assert_same_run(serial, distributed)

    # The compact output stays compact, and names the collection error.
    result = distributed.result
    lines = [line for line in result.outlines if line.strip()]
    assert len(lines) <= 8, lines
    assert len("\n".join(result.outlines).encode()) <= 2000
    result.stdout.fnmatch_lines(
        [
            "llmharness: FAILED 41 failed, 250 passed, 1 skipped, 1 xfailed, 7 errors in *"
            "(full run, agent 1, seed *, run *)",
            "regressions: *",
            "ERROR test_broken_import.py ModuleNotFoundError: No module named*",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(["... 43 more: grep '^ERROR ' .llmharness/last/log.txt"])
    assert "line 1999" not in result.stdout.str()
    shown = [line for line in lines if line.startswith("ERROR ")]
    assert len(shown) == 5, lines
    for line in shown:  # each one of the serial run's ERROR lines (perhaps cut to fit)
        assert any(error.startswith(line.rstrip("…")) for error in serial.errors), line

    plain = pytester.runpytest(*QUIET, "-p", "no:llmharness", *args[:1], "-n", "2")
    assert plain.ret == serial.result.ret
    assert plain.parseoutcomes() == {
        "failed": 41,
        "passed": 250,
        "errors": 7,
        "skipped": 1,
        "xfailed": 1,
    }


def test_only_the_controller_writes_the_store(
    pytester: pytest.Pytester, generate: ModuleType
) -> None:
    generate.synthetic(pytester.path, files=6, tests_per_file=10, fail_rate=0.2, seed=1)
    first = run(pytester, "--agent-id", "7", "-n", "2")
    second = run(pytester, "--fast", "--agent-id", "7", "-n", "auto")
    store = pytester.path / STORE
    assert _run_dirs(pytester.path) == {first.run_dir.name, second.run_dir.name}
    assert len(worker_collections(first.result)) == 2  # real workers ran the tests
    assert worker_collections(second.result)
    for record in (first, second):
        # The run folder is the controller's (this process): one START, one meta.json.
        meta = json.loads((record.run_dir / "meta.json").read_text())
        assert meta["pid"] == os.getpid()
        log = (record.run_dir / "log.txt").read_text().splitlines()
        starts = [line for line in log if line.startswith("START ")]
        assert len(starts) == 1 and f"pid={os.getpid()}" in starts[0].split(), starts
        assert sum(line.startswith("END ") for line in log) == 1
    assert sum(first.summary["counts"].values()) == len(first.outcomes) == 60
    assert os.readlink(store / "last") == f"runs/{second.run_dir.name}"
    # No store, run record or leftover temp file anywhere else.
    found = [p for p in pytester.path.rglob("*") if p.name in {STORE, "meta.json", "summary.json"}]
    expected = {
        store,
        first.run_dir / "meta.json",
        first.run_dir / "summary.json",
        second.run_dir / "meta.json",
        second.run_dir / "summary.json",
    }
    assert set(found) == expected, sorted(map(str, set(found) ^ expected))
    assert not list(store.rglob("*.tmp"))


def _exit_case(root: Path, case: str) -> None:
    (root / "pytest.ini").write_text("[pytest]\n")
    passing = "def test_a():\n    pass\n\ndef test_b():\n    pass\n"
    if case != "no-tests":
        (root / "test_ok.py").write_text(passing)
    if case == "collection-error":
        (root / "test_broken.py").write_text("import nonexistent_module_xyz\n")


# Failing runs (1) are compared in the tests above, with and without the plugin.
@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("passing", pytest.ExitCode.OK),
        ("no-tests", pytest.ExitCode.NO_TESTS_COLLECTED),
    ],
)
def test_exit_code_is_the_serial_one_and_xdists_own(
    pytester: pytest.Pytester, case: str, code: pytest.ExitCode
) -> None:
    _exit_case(pytester.path, case)
    assert pytester.runpytest(*QUIET, "--agent-id", "1").ret == code
    assert pytester.runpytest(*QUIET, "--agent-id", "1", "-n", "2").ret == code
    assert pytester.runpytest(*QUIET, "-p", "no:llmharness", "-n", "2").ret == code


def test_collection_error_exit_code_is_pytests_own_with_and_without_workers(
    pytester: pytest.Pytester,
) -> None:
    # Serial pytest stops on a collection error (2); xdist runs the rest and reports it (1).
    _exit_case(pytester.path, "collection-error")
    for workers in ((), ("-n", "2")):
        plain = pytester.runpytest(*QUIET, "-p", "no:llmharness", *workers)
        status = "complete" if workers else "interrupted"
        harnessed = run(pytester, "--agent-id", "1", *workers, status=status)
        assert harnessed.result.ret == plain.ret, workers
        if not workers:
            assert plain.ret == pytest.ExitCode.INTERRUPTED
        assert harnessed.summary["exitstatus"] == plain.ret
        assert [e["nodeid"] for e in harnessed.summary["collection_errors"]] == ["test_broken.py"]
        assert any(line.startswith("ERROR test_broken.py ") for line in harnessed.errors)
