"""What the store remembers across runs, through real runs: each test's last known outcome,
the diff against it, the results file, and run ids as the CLI resolves them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, cli_json, run_cli

# Each test's outcome is chosen by a file the test reads, so one suite plays every flip.
SUITE = """
import json, pathlib, pytest

PLAN = json.loads(pathlib.Path(__file__).with_name("plan.json").read_text())

@pytest.mark.parametrize("name", sorted(PLAN))
def test_t(name):
    what = PLAN[name]
    if what == "skip":
        pytest.skip("planned")
    if what == "error":
        raise RuntimeError("planned error")
    assert what == "pass", "planned failure"
"""
NAMES = [f"n{i:02d}" for i in range(12)]


def _nodeid(name: str) -> str:
    return f"test_plan.py::test_t[{name}]"


def _run(pytester: pytest.Pytester, plan: dict[str, str], *args: str) -> dict[str, Any]:
    (pytester.path / "plan.json").write_text(json.dumps(plan))
    pytester.runpytest(*QUIET, "--agent-id", "1", *args)
    summary: dict[str, Any] = cli_json(pytester, "summary")
    return summary


def _index(root: Path) -> dict[str, list[Any]]:
    tests: dict[str, list[Any]] = json.loads((root / ".llmharness/index.json").read_text())["tests"]
    return tests


OUTCOME = {"pass": "passed", "fail": "failed", "error": "failed", "skip": "skipped"}


def test_index_and_diff_follow_a_model_of_last_known_outcomes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plan=SUITE)
    plans = [
        dict.fromkeys(NAMES, "pass"),
        {**dict.fromkeys(NAMES, "pass"), "n01": "fail", "n02": "error", "n03": "skip"},
        {**dict.fromkeys(NAMES, "pass"), "n02": "fail", "n04": "fail"},
        {**dict.fromkeys(NAMES, "pass"), "n04": "fail"},
    ]
    model: dict[str, tuple[str, str]] = {}  # node id: (outcome, run id)
    for plan in plans:
        before = {nodeid: outcome for nodeid, (outcome, _) in model.items()}
        summary = _run(pytester, plan)
        run_id = summary["run_id"]
        now = {_nodeid(name): OUTCOME[what] for name, what in plan.items()}
        diff = summary["regressions"]
        expected = {
            "new_failures": sorted(
                n for n, o in now.items() if o == "failed" and before.get(n) == "passed"
            ),
            "fixed": sorted(
                n for n, o in now.items() if o == "passed" and before.get(n) == "failed"
            ),
            "still_failing": sorted(
                n for n, o in now.items() if o == "failed" and before.get(n) == "failed"
            ),
            "newly_skipped": sorted(
                n for n, o in now.items() if o == "skipped" and before.get(n) == "passed"
            ),
        }
        assert {key: [item["nodeid"] for item in diff[key]] for key in expected} == expected
        for nodeid, outcome in now.items():
            model[nodeid] = (outcome, run_id)
        index = _index(pytester.path)
        assert {n: (entry[0], entry[1]) for n, entry in index.items()} == model
        assert all(entry[2] == "1" for entry in index.values())  # the agent that learnt it


def test_a_sample_updates_only_what_it_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plan=SUITE)
    first = _run(pytester, dict.fromkeys(NAMES, "pass"))
    before = _index(pytester.path)
    sample = _run(pytester, dict.fromkeys(NAMES, "fail"), "--fast-fraction", "30%")
    ran = {
        json.loads(line)["nodeid"]
        for line in (pytester.path / ".llmharness/last/results.jsonl").read_text().splitlines()
    }
    assert 0 < len(ran) < len(NAMES)
    index = _index(pytester.path)
    for nodeid, entry in index.items():
        if nodeid in ran:
            assert entry[:2] == ["failed", sample["run_id"]]
        else:
            assert entry == before[nodeid] and entry[1] == first["run_id"]
    assert sorted(item["nodeid"] for item in sample["regressions"]["new_failures"]) == sorted(ran)
    assert sample["regressions"]["not_run"] == len(NAMES) - len(ran)


def test_results_lines_read_back_exactly(pytester: pytest.Pytester) -> None:
    """One JSON object a test, whatever its node id holds."""
    pytester.makepyfile(
        test_odd="""
        import pytest
        @pytest.mark.parametrize("v", ['a"b', "c\\\\d", "e\\nf", "ü€", " sp ", "x::y"])
        def test_v(v):
            assert v != "c\\\\d"
        """
    )
    pytester.runpytest(*QUIET, "--agent-id", "1")
    lines = (pytester.path / ".llmharness/last/results.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 6
    by_id = {row["nodeid"]: row for row in rows}
    assert by_id["test_odd.py::test_v[c\\\\d]"]["outcome"] == "failed"
    for row in rows:
        assert set(row) >= {"nodeid", "outcome", "phase", "duration"}
        assert isinstance(row["duration"], float)


def test_a_run_id_prefix_resolves_and_an_ambiguous_one_is_refused(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_plan=SUITE)
    runs = [_run(pytester, dict.fromkeys(NAMES, "pass"))["run_id"] for _ in range(2)]
    # Ids sort by time: a prefix long enough to name one run finds it.
    unique = next(
        runs[0][:n] for n in range(1, len(runs[0]) + 1) if not runs[1].startswith(runs[0][:n])
    )
    assert cli_json(pytester, "summary", unique)["run_id"] == runs[0]
    common = runs[0][:8]  # the date: both runs
    assert runs[1].startswith(common)
    ambiguous = run_cli(pytester, "summary", common)
    assert ambiguous.ret == 2
    assert ambiguous.stderr.lines == [
        f"llmharness: run {common!r} is ambiguous (2 runs start with it)"
    ]
    missing = run_cli(pytester, "summary", "19990101")
    assert missing.ret == 2
    assert len(missing.stderr.lines) == 1 and "no run '19990101'" in missing.stderr.lines[0]
