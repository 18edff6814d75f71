"""Time hints: after a run, `llmharness summary` says what a full and a --fast run would cost,
computed from the recorded durations and the run's own start-up, collection and record time.
The expected figures are computed here from results.jsonl and the recorded timing (the README's
rule), never from the clock."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from gitenv import outside_env

DEMO = ROOT / "suites" / "demo"
NEXT = re.compile(r"^next: full about ([\d.]+) (s|min), --fast \(10%\) about ([\d.]+) (s|min)$")


def _env() -> dict[str, str]:
    return outside_env()


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _expected(timing: dict[str, Any], results: list[dict[str, Any]]) -> tuple[float, float]:
    """The README's rule, from the run's results and timing: (full, --fast 10%) seconds."""
    files: dict[str, list[float]] = {}
    for result in results:
        tally = files.setdefault(result["nodeid"].split("::")[0], [0, 0.0])
        tally[0] += 1
        tally[1] += result["duration"]
    tests = sum(int(n) for n, _ in files.values())
    seconds = sum(s for _, s in files.values())
    fixed = (timing["startup_s"] or 0.0) + timing["record_s"]
    per_file = timing["collect_s"] / timing["files"]
    per_test = timing["other_s"] / timing["tests"]
    workers = timing["workers"]
    full = fixed + per_file * len(files) + seconds / workers + per_test * tests
    sampled_files = sum(1 - 0.9 ** int(n) for n, _ in files.values())
    fast = fixed + per_file * sampled_files + 0.1 * seconds / workers + per_test * 0.1 * tests
    return full, fast


def test_after_a_full_run_of_the_demo_the_summary_states_both_costs(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(
        DEMO, demo, ignore=shutil.ignore_patterns(".llmharness", ".pytest_cache", "__pycache__")
    )
    run = _run(demo, "pytest", "--agent-id", "7")
    assert run.returncode == 1, run.stdout

    data = json.loads(_run(demo, "llmharness", "summary", "--json").stdout)
    timing, hint = data["timing"], data["next"]
    results = [
        json.loads(line)
        for line in (demo / ".llmharness" / "last" / "results.jsonl").read_text().splitlines()
    ]
    assert len(results) == timing["tests"] == hint["tests"] == 327
    assert timing["files"] == hint["files"] == len({r["nodeid"].split("::")[0] for r in results})
    assert timing["workers"] == 1
    assert timing["startup_s"] is not None and timing["startup_s"] > 0  # a process of its own
    assert hint["test_time_s"] == pytest.approx(sum(r["duration"] for r in results), abs=1e-3)
    full, fast = _expected(timing, results)
    assert hint["full_s"] == pytest.approx(full, abs=0.011)
    assert hint["fast_s"] == pytest.approx(fast, abs=0.011)
    assert hint["fast_fraction"] == pytest.approx(0.10)
    assert 0 < hint["fast_s"] < hint["full_s"]

    text = _run(demo, "llmharness", "summary")
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if line.startswith("next: ")]
    assert len(lines) == 1, text.stdout
    match = NEXT.match(lines[0])
    assert match is not None, lines[0]
    shown_full, shown_fast = float(match.group(1)), float(match.group(3))
    assert match.group(2) == match.group(4) == "s"  # the demo takes seconds, not minutes
    assert shown_full == pytest.approx(hint["full_s"], abs=0.51)  # "about 4.2 s", "about 34 s"
    assert shown_fast == pytest.approx(hint["fast_s"], abs=0.51)
    assert hint["priced_by"] == {"full": "this run", "fast": "this run"}

    # After a --fast run, a full run is still priced by the full run's timing: the --fast run
    # built only the sampled tests of the files it imported.
    fast_run = _run(demo, "pytest", "--fast", "--agent-id", "7")
    assert fast_run.returncode in (0, 1), fast_run.stdout
    after = json.loads(_run(demo, "llmharness", "summary", "--json").stdout)["next"]
    assert after["priced_by"] == {"full": "a full run", "fast": "this run"}
    fixed = (timing["startup_s"] or 0.0) + timing["record_s"]
    priced = (
        fixed
        + timing["collect_s"] / timing["files"] * after["files"]
        + after["test_time_s"] / timing["workers"]
        + timing["other_s"] / timing["tests"] * after["tests"]
    )
    assert after["full_s"] == pytest.approx(priced, abs=0.011)


def test_the_compact_lines_say_it_when_a_line_is_free(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ok="def test_a(): pass\ndef test_b(): pass")
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == 0
    lines = [line for line in result.outlines if line.strip()]
    assert len(lines) == 3, lines
    assert lines[0].startswith("llmharness: PASSED 2 passed"), lines
    assert re.match(r"^next: full about [\d.]+ s, --fast \(10%\) about [\d.]+ s$", lines[2])

    pytester.makepyfile(
        test_ok="import pytest\n@pytest.mark.parametrize('i', range(9))\n"
        "def test_a(i): assert i < 0"
    )
    result = pytester.runpytest("--agent-id", "1")
    lines = [line for line in result.outlines if line.strip()]
    assert len(lines) == 8, lines  # the failures take every line: no room for the hint
    assert not any(line.startswith("next: ") for line in lines), lines
