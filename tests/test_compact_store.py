"""Finished runs nobody points to keep their results compressed, and stay readable."""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest
from conftest import QUIET, cli_json, run_cli
from gitenv import agent_env

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


KNOWN = """
import pytest

@pytest.mark.parametrize("case", [f"a-long-parametrized-case-{n:04d}" for n in range(300)])
def test_param(case):
    pass

def test_a():
    assert True

def test_b():
    assert True
"""


def _git(pytester: pytest.Pytester, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=pytester.path,
        env=agent_env(pytester.path / "home"),
        text=True,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_what_is_known_at_a_commit_is_gzipped_and_an_older_plain_file_still_counts(
    pytester: pytest.Pytester,
) -> None:
    # No check at the base: what is known there comes from the store's commits/ alone.
    pytester.makefile(".yaml", llmharness="base_check_budget: 0\n")
    pytester.makepyfile(test_k=KNOWN)
    (pytester.path / ".gitignore").write_text(".llmharness/\nhome/\n__pycache__/\nstdout\nstderr\n")
    _git(pytester, "init", "-q", "-b", "main")
    _git(pytester, "add", "-A")
    _git(pytester, "commit", "-q", "-m", "suite")
    commit = _git(pytester, "rev-parse", "HEAD")
    pytester.runpytest(*QUIET).assert_outcomes(passed=302)  # a clean run at the commit

    at = pytester.path / ".llmharness" / "commits" / commit
    assert sorted(p.name for p in at.iterdir()) == ["recorded.gz", "suite.gz"]
    text = gzip.decompress((at / "recorded.gz").read_bytes()).decode()
    lines = text.splitlines()
    assert len(lines) == 302 and lines == sorted(lines)
    assert "passed test_k.py::test_a" in lines
    assert (at / "recorded.gz").stat().st_size * 5 < len(text.encode())

    # The store as an earlier llmharness left it: the same file uncompressed, in which test_a
    # failed at the commit.
    older = text.replace("passed test_k.py::test_a\n", "failed test_k.py::test_a\n")
    (at / "recorded").write_text(older)
    (at / "recorded.gz").unlink()
    kept = (pytester.path / "test_k.py").read_text()
    pytester.makepyfile(test_k=KNOWN.replace("assert True", "assert False"))
    pytester.runpytest(*QUIET).assert_outcomes(passed=300, failed=2)  # a change, not committed
    diff = cli_json(pytester, "regressions")
    assert [item["nodeid"] for item in diff["new_failures"]] == ["test_k.py::test_b"]
    assert [item["nodeid"] for item in diff["still_failing"]] == ["test_k.py::test_a"]
    assert diff["unknown_at_base"] == [] and diff["known_before"] == 302

    # The next clean run at the commit learns that test_a passes there too: the lines are
    # gzipped together and the plain file is gone.
    (pytester.path / "test_k.py").write_text(kept)
    assert _git(pytester, "status", "--porcelain") == ""
    pytester.runpytest(*QUIET).assert_outcomes(passed=302)
    assert sorted(p.name for p in at.iterdir()) == ["recorded.gz", "suite.gz"]
    merged = gzip.decompress((at / "recorded.gz").read_bytes()).decode().splitlines()
    assert set(merged) == set(older.splitlines()) | {"passed test_k.py::test_a"}

    # A damaged file is moved aside, not overwritten: what it held is not lost.
    (at / "recorded.gz").write_bytes(b"not gzip at all")
    pytester.runpytest(*QUIET).assert_outcomes(passed=302)
    aside = [p for p in at.iterdir() if p.name.startswith("recorded.gz.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"not gzip at all"
    warnings = cli_json(pytester, "summary")["store_warnings"]
    assert any("recorded.gz: cannot read" in line and "moved aside" in line for line in warnings)
    assert len(gzip.decompress((at / "recorded.gz").read_bytes()).splitlines()) == 302

    # A run that learns nothing new leaves both files as they were: not rewritten, which
    # would replace them with new files (new inodes) even with the same bytes...
    recorded, suite = (at / "recorded.gz").read_bytes(), (at / "suite.gz").read_bytes()
    inodes = [(at / name).stat().st_ino for name in ("recorded.gz", "suite.gz")]
    pytester.runpytest(*QUIET).assert_outcomes(passed=302)
    assert [(at / name).stat().st_ino for name in ("recorded.gz", "suite.gz")] == inodes
    assert (at / "recorded.gz").read_bytes() == recorded
    assert (at / "suite.gz").read_bytes() == suite

    # ...and is not fooled by a file it did not write: here test_b's line is test_a's twice,
    # which is as many lines as the run's, all of them its own. test_b is learnt again, and
    # a suite that lost a test is written whole again.
    lines = gzip.decompress(recorded).decode().splitlines()
    doubled = [
        line if line != "passed test_k.py::test_b" else "passed test_k.py::test_a" for line in lines
    ]
    text = "".join(f"{line}\n" for line in doubled)
    (at / "recorded.gz").write_bytes(gzip.compress(text.encode()))
    ids = gzip.decompress(suite).decode().splitlines()
    (at / "suite.gz").write_bytes(gzip.compress("".join(f"{i}\n" for i in ids[1:]).encode()))
    pytester.runpytest(*QUIET).assert_outcomes(passed=302)
    assert gzip.decompress((at / "recorded.gz").read_bytes()).decode().splitlines() == lines
    assert gzip.decompress((at / "suite.gz").read_bytes()).decode().splitlines() == ids
