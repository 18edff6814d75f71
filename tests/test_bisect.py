"""`llmharness bisect`, through the installed CLI on suites recorded by real pytest runs: it
names the test (or the pair) that makes an order-dependent test fail, in few processes, on the
victim's xdist worker's sequence only, and refuses what is not order-dependent in one line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from llmharness.bisect import polluters_of

PYTEST = str(Path(sys.executable).parent / "pytest")
#: Inner runs without the plugins no test here needs: each bisection step is a pytest process.
ADDOPTS = "-p no:randomly -p no:cacheprovider -p no:hypothesispytest -p no:cov"


@pytest.fixture(autouse=True)
def _quick_runs(_no_randomly_inside: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # The recorded runs judge their new failures by re-running them; not wanted here.
    monkeypatch.setenv("LLMHARNESS_VERDICT_BUDGET", "0")
    monkeypatch.setenv("PYTEST_ADDOPTS", ADDOPTS)


def _plain(count: int, start: int = 0) -> str:
    return "".join(f"def test_{i:02d}():\n    pass\n\n" for i in range(start, start + count))


def _setter(name: str, variable: str) -> str:
    """A test that leaves an environment variable set: the state a polluter leaks."""
    return f"def test_{name}():\n    import os\n    os.environ[{variable!r}] = '1'\n\n"


def _record(pytester: pytest.Pytester, *args: str) -> list[dict[str, Any]]:
    """Run the suite with llmharness, as an agent does; the results it recorded, in order."""
    result = pytester.run(PYTEST, *args)
    assert result.ret == 1, result.stdout.str()
    lines = (pytester.path / ".llmharness" / "last" / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _bisect(pytester: pytest.Pytester, nodeid: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(pytester, "bisect", nodeid, "--json", *args)
    assert result.ret in (0, 1), result.stderr.str()
    return result.ret, json.loads(result.stdout.str())


def test_one_polluter_among_sixteen_is_named_in_few_processes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a_first=_plain(8),
        test_b_second=_plain(3, 8) + _setter("polluter", "POLLUTER") + _plain(4, 12),
        test_c_victim="import os\n\ndef test_victim():\n    assert 'POLLUTER' not in os.environ\n",
    )
    results = _record(pytester)
    assert [item["nodeid"] for item in results].index("test_c_victim.py::test_victim") == 16

    code, data = _bisect(pytester, "test_c_victim.py::test_victim")
    assert (code, data["polluters"], data["complete"]) == (
        0,
        [["test_b_second.py::test_polluter"]],
        True,
    )
    assert data["predecessors"] == 16
    assert data["processes"] <= 2 * math.log2(16) + 4
    found = polluters_of(pytester.path / ".llmharness")
    assert found == {"test_c_victim.py::test_victim": ["test_b_second.py::test_polluter"]}

    # Out of time before its order-dependence is even confirmed: said so, naming no polluter.
    short = run_cli(pytester, "bisect", "test_c_victim.py::test_victim", "--budget", "0.2")
    assert short.ret == 1
    short.stdout.fnmatch_lines(
        [
            "bisect: test_c_victim.py::test_victim: incomplete, the 0.2s budget ran out before "
            "it was seen to fail after the 16 tests before it: * pytest process*, *s; give it "
            "more with --budget"
        ]
    )
    assert len(short.stdout.lines) == 1


def test_a_pair_needed_together_is_found(pytester: pytest.Pytester) -> None:
    # The halving splits the pair: neither half alone makes the victim fail.
    pytester.makepyfile(
        test_a_first=_plain(2) + _setter("left", "LEFT") + _plain(5, 3),
        test_b_second=_plain(4, 8) + _setter("right", "RIGHT") + _plain(3, 13),
        test_c_victim=(
            "def test_victim():\n    import os\n"
            "    assert not ('LEFT' in os.environ and 'RIGHT' in os.environ)\n"
        ),
    )
    _record(pytester)
    result = run_cli(pytester, "bisect", "test_c_victim.py::test_victim")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(
        [
            "ERROR polluter test_a_first.py::test_left + test_b_second.py::test_right"
            " -> test_c_victim.py::test_victim",
            "bisect: test_c_victim.py::test_victim: * pytest processes, *s",
        ],
        consecutive=True,
    )
    assert (len(result.stdout.lines), result.stderr.lines) == (2, [])
    # Two confirmations, a halving of the 16 and a check for each of the two, one of the rest.
    processes = int(result.stdout.lines[-1].split(": ")[-1].split()[0])
    assert processes <= 2 + 2 * (math.log2(16) + 1) + 1
    assert polluters_of(pytester.path / ".llmharness") == {
        "test_c_victim.py::test_victim": [
            "test_a_first.py::test_left",
            "test_b_second.py::test_right",
        ]
    }


def test_under_xdist_only_the_victims_workers_sequence_is_bisected(
    pytester: pytest.Pytester,
) -> None:
    # loadfile gives each of the two files a worker. The other worker's polluter pollutes its
    # own process only; its tests finish before the victim, which waits for their marker file.
    marker = pytester.path / "other-worker-done"
    pytester.makepyfile(
        test_other=_setter("other_pollutes", "POLLUTER")
        + f"def test_other_done():\n    open({str(marker)!r}, 'w').close()\n",
        test_victims=(
            "import os, pathlib, time\n\n"
            "def test_waits():\n"
            f"    path = pathlib.Path({str(marker)!r})\n"
            "    for _ in range(200):\n"
            "        if path.exists():\n            break\n"
            "        time.sleep(0.05)\n\n"
            + _setter("polluter", "POLLUTER")
            + _plain(3)
            + "def test_victim():\n    assert 'POLLUTER' not in os.environ\n"
        ),
    )
    results = _record(pytester, "-n", "2", "--dist", "loadfile")
    victim = "test_victims.py::test_victim"
    ids = [item["nodeid"] for item in results]
    worker = results[ids.index(victim)]["worker"]
    same = [item["nodeid"] for item in results[: ids.index(victim)] if item["worker"] == worker]
    assert len(same) == 5 < ids.index(victim)  # the other worker's tests came before it too

    code, data = _bisect(pytester, victim)
    assert code == 0
    assert (data["worker"], data["predecessors"]) == (worker, 5)
    assert data["polluters"] == [["test_victims.py::test_polluter"]]


def test_what_is_not_order_dependent_is_refused_in_one_line(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    pytester.makepyfile(
        test_suite=_plain(3)
        + "def test_broken():\n    assert False\n\n"
        # Fails in its first run only: the recorded one.
        + "def test_once():\n    import pathlib\n"
        f"    path = pathlib.Path({str(counter)!r})\n"
        "    first = not path.exists()\n    path.write_text('ran')\n    assert not first\n"
    )
    results = _record(pytester)
    run_id = pytester.path.joinpath(".llmharness", "last").resolve().name
    assert {item["nodeid"]: item["outcome"] for item in results}["test_suite.py::test_once"] == (
        "failed"
    )

    refused = {
        ("test_suite.py::test_broken",): "llmharness: bisect: test_suite.py::test_broken is not "
        "order-dependent here: it fails alone",
        ("test_suite.py::test_once",): "llmharness: bisect: test_suite.py::test_once is not "
        "order-dependent here: it passes after the 4 tests that ran before it",
        ("test_suite.py::test_nope",): "llmharness: bisect: test_suite.py::test_nope is not in "
        "any recorded run; check the node id",
        ("test_suite.py::test_nope", "--run", run_id): "llmharness: bisect: "
        f"test_suite.py::test_nope is not in run {run_id}",
        ("test_suite.py::test_00", "--run", run_id): "llmharness: bisect: "
        f"test_suite.py::test_00 did not fail in run {run_id} (passed)",
    }
    for args, line in refused.items():
        result = run_cli(pytester, "bisect", *args)
        assert (result.ret, result.stderr.lines, result.stdout.lines) == (2, [line], [])
    assert not (pytester.path / ".llmharness" / "polluters.json").exists()
