"""A store many agents share: real concurrent pytest processes, and a run killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_json, run_cli

AGENTS = 16


def _write_suite(root: Path, modules: int = 3) -> list[str]:
    (root / "pytest.ini").write_text("[pytest]\n")
    ids = []
    for module in range(modules):
        lines = []
        for i in range(10):
            lines.append(f"def test_{i}():\n    assert {i} != {module % 10}\n")
            ids.append(f"test_m{module:02d}.py::test_{i}")
        (root / f"test_m{module:02d}.py").write_text("\n".join(lines))
    return ids


def _pytest(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sixteen_agents_at_once_lose_nothing(pytester: pytest.Pytester) -> None:
    """Each agent runs a file of its own, all at once: a write lost to a race would leave some
    agent's tests missing from the index, or learnt from another agent's run."""
    ids = _write_suite(pytester.path, AGENTS)
    procs = [
        _pytest(pytester.path, f"test_m{agent:02d}.py", "--agent-id", str(agent))
        for agent in range(AGENTS)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 1, (out, err)  # one test fails in every file: pytest's code
        assert "Traceback" not in out + err
        assert "llmharness warning" not in out, out
        assert out.splitlines()[0].startswith("llmharness: FAILED 1 failed, 9 passed")
    store = pytester.path / ".llmharness"
    runs = sorted(p.name for p in (store / "runs").iterdir())
    assert len(runs) == AGENTS
    run_of_agent = {}
    for run in runs:
        summary = json.loads((store / "runs" / run / "summary.json").read_text())
        assert summary["status"] == "complete"
        assert summary["counts"]["failed"] == 1
        run_of_agent[summary["agent_id"]] = run
    index = json.loads((store / "index.json").read_text())["tests"]
    assert sorted(index) == sorted(ids)
    for nodeid, (outcome, run_id, agent, _, _) in index.items():
        module = int(nodeid[len("test_m") : len("test_m") + 2])
        assert agent == str(module) and run_id == run_of_agent[agent], (nodeid, agent)
        assert outcome == ("failed" if nodeid.endswith(f"::test_{module % 10}") else "passed")
    agents = sorted(p.name for p in (store / "agents").iterdir())
    assert agents == sorted(str(agent) for agent in range(AGENTS))
    assert not list(store.glob("*.tmp")) and not list(store.glob(".*.tmp"))
    assert cli_json(pytester, "summary")["counts"]["failed"] == 1
    diff = cli_json(pytester, "regressions")
    assert diff["new_failures"] == []
    assert len(run_cli(pytester, "history", "-n", "100").outlines) == AGENTS


@pytest.mark.slow
def test_run_killed_with_sigkill_leaves_a_readable_store(pytester: pytest.Pytester) -> None:
    _write_suite(pytester.path)
    first = _pytest(pytester.path, "--agent-id", "1")
    first.communicate(timeout=120)
    assert first.returncode == 1
    pytester.makepyfile(
        test_zslow="""
        import time
        def test_hangs():
            time.sleep(120)
        """
    )
    proc = _pytest(pytester.path, "--agent-id", "2")
    store = pytester.path / ".llmharness"
    deadline = time.monotonic() + 60
    killed_run = None
    while time.monotonic() < deadline:
        running = [
            p
            for p in (store / "runs").iterdir()
            if (p / "results.jsonl").exists()
            and (p / "results.jsonl").stat().st_size > 0
            and not (p / "summary.json").exists()
        ]
        if running and len((running[0] / "results.jsonl").read_text().splitlines()) >= 30:
            killed_run = running[0].name
            break
        time.sleep(0.05)
    assert killed_run is not None, "the run never reached its slow test"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # What the killed run did up to then is on disk.
    lines = (store / "runs" / killed_run / "results.jsonl").read_text().splitlines()
    assert len(lines) == 30
    (pytester.path / "test_zslow.py").unlink()
    after = _pytest(pytester.path, "--agent-id", "3")
    out, err = after.communicate(timeout=120)
    assert after.returncode == 1, (out, err)
    history = run_cli(pytester, "history")
    history.stdout.fnmatch_lines([f"{killed_run} incomplete agent 2: 3 failed, 27 passed"])
    summary = cli_json(pytester, "summary")
    assert summary["run_id"] != killed_run and summary["status"] == "complete"
    regressions = run_cli(pytester, "regressions")
    assert regressions.ret == 0
    old = cli_json(pytester, "summary", killed_run)
    assert old["status"] == "incomplete"
    assert old["counts"]["passed"] == 27
