"""Plain passes take shortcuts (no TestResult each); the shortcuts give what the general
path gives for the same tests."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmharness import reporting
from llmharness import store as store_module
from llmharness.diff import DiffBuilder, diff
from llmharness.recorder import RunRecorder
from llmharness.store import Known, Store

# Durations in 1/64 s steps add up exactly, in any order.
durations = st.integers(0, 64 * 30).map(lambda n: n / 64)
nodeids = st.builds(
    "{}/test_{}.py::test_{}".format,
    st.sampled_from(["a", "a/b", "c"]),
    st.integers(0, 3),
    st.integers(0, 40),
)
others = st.builds(
    reporting.TestResult,
    nodeids,
    st.sampled_from(["failed", "error", "skipped", "xfailed", "xpassed"]),
    st.sampled_from(["setup", "call", "teardown"]),
    durations,
    st.sampled_from([None, "AssertionError: x (t.py:1)", "ValueError: 3 (t.py:2)"]),
)


@given(st.dictionaries(nodeids, durations), st.lists(others))
def test_passes_given_apart_aggregate_as_results_do(
    passes: dict[str, float], other: list[reporting.TestResult]
) -> None:
    other = [r for r in {r.nodeid: r for r in other}.values() if r.nodeid not in passes]
    whole = [reporting.TestResult(n, "passed", "call", d) for n, d in passes.items()] + other
    assert reporting.aggregate(other, passes=passes, slowest=5) == reporting.aggregate(
        whole, slowest=5
    )


known_outcomes = st.none() | st.sampled_from(
    ["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
)


@given(st.dictionaries(nodeids, st.tuples(durations, known_outcomes)))
def test_compare_pass_is_compare_of_a_pass(tests: dict[str, tuple[float, str | None]]) -> None:
    fast, slow = DiffBuilder(), DiffBuilder()
    for nodeid, (duration, before) in tests.items():
        known = None if before is None else Known(before, "r1", "7", 1.0, 0.5)
        fast.compare_pass(nodeid, duration, known)
        slow.compare(reporting.TestResult(nodeid, "passed", "call", duration), known)
    assert fast.result(run_id="r2", against="r1") == slow.result(run_id="r2", against="r1")


phases = st.lists(
    st.tuples(
        st.sampled_from(["setup", "call", "teardown"]),
        st.sampled_from(["passed", "passed", "failed", "skipped"]),
        st.booleans(),  # wasxfail
        durations,
    ),
    max_size=4,
)


def _report(nodeid: str, when: str, outcome: str, wasxfail: bool, duration: float) -> Any:
    report = SimpleNamespace(
        nodeid=nodeid,
        when=when,
        outcome=outcome,
        duration=duration,
        longrepr=None if outcome == "passed" else ("t.py", 1, "Skipped: why"),
        longreprtext="E   AssertionError: x",
        sections=[],
    )
    if wasxfail:
        report.wasxfail = ""
    return report


def _recorder(root: Path) -> RunRecorder:
    return RunRecorder(
        Store(root / "store"),
        "20261123T000000.000-abcdef",
        rootdir=root,
        agent_id="7",
        seed="s",
        max_reason_chars=200,
        max_output_bytes=1000,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["t.py::a", "t.py::b"]), phases), max_size=4))
def test_pass_shortcut_folds_reports_as_the_general_path(
    tmp_path_factory: pytest.TempPathFactory, tests: list[tuple[str, list[Any]]]
) -> None:
    """Any sequence of reports, the odd ones too (no call, no teardown, a test run twice)."""
    root = tmp_path_factory.mktemp("fold")
    fast, slow = _recorder(root / "fast"), _recorder(root / "slow")
    finished: list[str] = []
    fast.due = -math.inf  # every test finished calls on_due
    fast.on_due = lambda: finished.append("fast")
    for nodeid, reports in tests:
        for when, outcome, wasxfail, duration in reports:
            report = _report(nodeid, when, outcome, wasxfail, duration)
            fast.test_report(report)
            if slow._slow_report(nodeid, when, report):
                finished.append("slow")
            assert finished.count("fast") == finished.count("slow")  # finished at one report
    for recorder in (fast, slow):
        recorder.flush_pending()
        recorder.close()
    # Tests still in flight at the end are finished in no set order: their failure files may
    # be numbered differently.
    unnumbered = re.compile(r"failures/\d+-")
    results = [
        {k: dataclasses.replace(v, failure_file=None) for k, v in r.results.items()}
        for r in (fast, slow)
    ]
    assert results[0] == results[1]
    lines = [
        sorted(unnumbered.sub("", (r.dir / "results.jsonl").read_text()).splitlines())
        for r in (fast, slow)
    ]
    assert lines[0] == lines[1]


outcomes = st.sampled_from(["passed", "failed", "error", "skipped", "xfailed", "xpassed"])
before_entries = st.builds(
    Known,
    outcomes,
    st.sampled_from(["20261122T000000.000-aaaaaa", "20261122T010000.000-bbbbbb"]),
    st.sampled_from(["7", None]),
    st.just(1.5),
    durations,
)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(nodeids, before_entries),
    st.dictionaries(nodeids, durations),
    st.lists(others),
    st.integers(1, 4),
)
def test_index_merge_by_batches_gives_the_diff_and_index_of_a_plain_update(
    tmp_path_factory: pytest.TempPathFactory,
    before: dict[str, Known],
    passes: dict[str, float],
    other: list[reporting.TestResult],
    batch: int,
) -> None:
    """Batches wholly of passes not failing before take maps; any others go test by test.
    Both give what the pure diff and a plain dict update give."""
    other = [r for r in {r.nodeid: r for r in other}.values() if r.nodeid not in passes]
    recorder = _recorder(tmp_path_factory.mktemp("merge"))
    recorder.store.save_index(before)
    for nodeid, duration in passes.items():
        recorder.results.add_pass(nodeid, duration)
    for result in other:
        recorder.results.add(result)
    whole = [reporting.TestResult(n, "passed", "call", d) for n, d in passes.items()] + other

    with pytest.MonkeyPatch.context() as patch:  # small batches: many of them, of both kinds
        patch.setattr(store_module, "_BATCH", batch)
        summary = recorder.finish(0, "complete", update_history=True)

    expected = diff(whole, before, run_id=recorder.run_id, against=None)
    got = summary["regressions"]
    for key in ("against", "not_reached"):
        got.pop(key)
    assert got == {k: v for k, v in expected.items() if k != "against"}
    after = recorder.store.load_index()
    assert after.keys() == before.keys() | {r.nodeid for r in whole}
    for result in whole:
        now = after[result.nodeid]
        assert (now.outcome, now.run_id, now.agent_id, now.duration) == (
            result.outcome,
            recorder.run_id,
            "7",
            result.duration,
        )
    for nodeid, known in before.items():
        if nodeid not in passes and nodeid not in {r.nodeid for r in other}:
            assert after[nodeid] == known
