"""The per-test JSON written without json.dumps reads back as json.dumps would have written it."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmharness import reporting
from llmharness.store import Known, Store

texts = st.text(st.characters(codec=None, blacklist_categories=()), max_size=40)
durations = st.floats(allow_nan=True, allow_infinity=True)


def _same(read: object, expected: object) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(read, float) and isinstance(expected, float):
        return read == expected or (math.isnan(read) and math.isnan(expected))
    if isinstance(read, dict) and isinstance(expected, dict):
        return read.keys() == expected.keys() and all(_same(read[k], expected[k]) for k in read)
    return read == expected


@given(texts, st.sampled_from(["passed", "failed", "error"]), durations, st.none() | texts)
def test_result_line_reads_back_as_its_json(
    nodeid: str, outcome: str, duration: float, reason: str | None
) -> None:
    for result in (
        reporting.TestResult(nodeid, outcome, "call", duration, reason, None),
        reporting.TestResult(nodeid, outcome, "setup", duration, reason, "failures/00001-x.txt"),
    ):
        line = result.to_json_line()
        assert "\n" not in line and line.isascii()
        assert _same(json.loads(line), result.to_json())


@given(texts, durations)
def test_pass_line_is_the_result_line(nodeid: str, duration: float) -> None:
    result = reporting.TestResult(nodeid, "passed", "call", duration)
    assert reporting.pass_json_line(nodeid, duration) == result.to_json_line()


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(texts, st.tuples(texts, st.none() | texts, durations), max_size=20))
def test_index_lines_read_back(
    tmp_path_factory: pytest.TempPathFactory, entries: dict[str, tuple[str, str | None, float]]
) -> None:
    store = Store(tmp_path_factory.mktemp("index"))
    store.ensure()
    index = {
        nodeid: Known(outcome, "20261123T000000.000-abcdef", agent, 1.5, duration)
        for nodeid, (outcome, agent, duration) in entries.items()
    }
    assert store.save_index(index)
    back = dict(store.index_entries())
    assert list(back) == list(index)
    for nodeid, known in index.items():
        got = back[nodeid]
        assert (got.outcome, got.run_id, got.agent_id, got.when) == (
            known.outcome,
            known.run_id,
            known.agent_id,
            known.when,
        )
        assert _same(got.duration, round(known.duration, 6))  # kept to the microsecond
