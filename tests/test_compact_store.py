"""Finished runs nobody points to keep their results compressed, and stay readable."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import QUIET, cli_json, run_cli

SUITE = """
import pytest

@pytest.mark.parametrize("i", range(200))
def test_many(i):
    pass

def test_broken():
    assert 1 == 2, "broken on purpose"
"""


def test_older_runs_are_compressed_and_still_read(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_many=SUITE)
    runs = []
    for agent in ("1", "2", "1"):
        pytester.runpytest(*QUIET, "--agent-id", agent)
        runs.append(cli_json(pytester, "summary")["run_id"])
    first, second, third = runs
    folder = pytester.path / ".llmharness" / "runs"
    # The latest run, and each agent's latest, keep plain results for grep; the rest shrink.
    assert (folder / third / "results.jsonl").exists()
    assert (folder / second / "results.jsonl").exists()  # agent 2's latest
    assert not (folder / first / "results.jsonl").exists()
    packed = folder / first / "results.jsonl.gz"
    rows = [json.loads(line) for line in gzip.decompress(packed.read_bytes()).splitlines()]
    assert len(rows) == 201
    plain_size = (folder / third / "results.jsonl").stat().st_size
    assert packed.stat().st_size * 5 < plain_size
    # Every reader still reads the compressed run.
    assert cli_json(pytester, "summary", first)["counts"]["passed"] == 200
    against = cli_json(pytester, "regressions", "--against", first)
    assert against["compared"] == 201 and against["still_failing"][0]["nodeid"].endswith(
        "test_broken"
    )
    show = run_cli(pytester, "show", "test_many.py::test_broken", "--run", first)
    assert show.ret == 0
    assert "broken on purpose" in show.stdout.str()
    history = cli_json(pytester, "history")
    assert [run["run_id"] for run in history] == runs
