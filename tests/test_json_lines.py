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


@given(texts, st.sampled_from(["passed", "failed", "error"]), durations, st.none() | texts)
def test_result_line_is_what_json_dumps_writes(
    nodeid: str, outcome: str, duration: float, reason: str | None
) -> None:
    for result in (
        reporting.TestResult(nodeid, outcome, "call", duration, reason, None),
        reporting.TestResult(nodeid, outcome, "setup", duration, reason, "failures/00001-x.txt"),
    ):
        assert result.to_json_line() == json.dumps(result.to_json())


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
        assert got.duration == known.duration or (
            math.isnan(got.duration) and math.isnan(known.duration)
        )
