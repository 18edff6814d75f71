"""Agent detection: a coding agent's environment variables turn compact output on by themselves,
through the real `python -m pytest` in a child process whose environment each test sets whole
(the outer run may itself be under an agent: every detector variable is taken out first)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
from conftest import ROOT
from gitenv import outside_env

from llmharness import agents

DEMO = ROOT / "suites" / "demo"
HEADLINE = "llmharness: FAILED 7 failed, 318 passed, 1 skipped, 1 xfailed in *"


def _env(**extra: str) -> dict[str, str]:
    return outside_env(**extra)


def _pytest(folder: Path, env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, [line for line in proc.stdout.splitlines() if line.strip()]


def _summary(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (folder / ".llmharness" / "last" / "summary.json").read_text(encoding="utf-8")
    )
    return data


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    shutil.copytree(
        DEMO, folder, ignore=shutil.ignore_patterns(".llmharness", ".pytest_cache", "__pycache__")
    )
    return folder


@pytest.fixture
def small(tmp_path: Path) -> Path:
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_one.py").write_text("def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    return folder


def test_claudecode_makes_the_demo_compact(demo: Path) -> None:
    code, lines = _pytest(demo, _env(CLAUDECODE="1"))
    assert code == 1, lines
    assert len(lines) <= 8, lines
    assert fnmatch(lines[0], HEADLINE), lines
    assert any(line.startswith("ERROR tests/") for line in lines), lines
    assert not any("test session starts" in line for line in lines), lines
    summary = _summary(demo)
    assert summary["detected_agent"] == "claude-code"
    assert summary["agent_id"] is None  # CLAUDECODE names the tool, not one agent


def test_without_agent_variables_the_demo_prints_pytests_own_output(demo: Path) -> None:
    env = _env()
    assert not set(agents.VARIABLES) & set(env)
    code, lines = _pytest(demo, env)
    assert code == 1, lines
    assert any("test session starts" in line for line in lines), lines
    assert any("7 failed, 318 passed, 1 skipped, 1 xfailed" in line for line in lines), lines
    assert not any(line.startswith("llmharness: ") for line in lines), lines
    assert _summary(demo)["detected_agent"] is None  # recorded all the same


def test_compact_false_in_the_config_wins_over_claudecode(small: Path) -> None:
    (small / "llmharness.yaml").write_text("compact: false\n")
    code, lines = _pytest(small, _env(CLAUDECODE="1"))
    assert code == 0, lines
    assert any("test session starts" in line for line in lines), lines
    assert not any(line.startswith("llmharness: ") for line in lines), lines
    assert _summary(small)["detected_agent"] == "claude-code"


def test_a_thread_id_names_the_agent_and_the_settings_can_say_otherwise(small: Path) -> None:
    thread = "019a7c3e-5b2d-7f00-9c1e-3d4b5a6f7e80"
    code, lines = _pytest(small, _env(CODEX_THREAD_ID=thread))
    assert code == 0, lines
    assert lines[0].startswith("llmharness: PASSED 2 passed in "), lines
    assert f"agent {thread}, seed " in lines[0], lines
    assert _summary(small)["agent_id"] == thread
    assert (small / ".llmharness" / "agents" / thread).exists()

    # An agent id given the usual way wins over the variable.
    code, lines = _pytest(small, _env(CODEX_THREAD_ID=thread, LLMHARNESS_AGENT_ID="7"))
    assert "agent 7, seed " in lines[0], lines

    # detect_agent: false, and a Replit shell (REPL_ID is set for its human too): pytest's own.
    code, lines = _pytest(small, _env(CODEX_THREAD_ID=thread, LLMHARNESS_DETECT_AGENT="false"))
    assert any("test session starts" in line for line in lines), lines
    assert _summary(small)["agent_id"] is None
    code, lines = _pytest(small, _env(REPL_ID="a1b2", CLAUDECODE="0"))
    assert any("test session starts" in line for line in lines), lines
    assert _summary(small)["detected_agent"] is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"AI_AGENT": "Devin@1"}, "devin@1"),
        ({"AI_AGENT": "claude-code", "CURSOR_AGENT": "1"}, "claude-code"),
        ({"CURSOR_AGENT": "1"}, "cursor"),
        ({"CURSOR_TRACE_ID": "abc"}, None),  # Cursor's own terminal, a human's too
        ({"GEMINI_CLI": "1"}, "gemini-cli"),
        ({"GEMINI_CLI": "false"}, None),
        ({"CLINE_ACTIVE": "true"}, "cline"),
        ({"OR_APP_NAME": "Aider"}, "aider"),
        ({"AIDER_API_KEY": "sk-x"}, None),  # a key a person sets in their shell
        ({"COPILOT_CLI": "1"}, "copilot"),
        ({"AGENT": "amp"}, "amp"),
        ({"AGENT": "other"}, None),
        ({"EDITOR": "/opt/devin/bin/code --wait"}, "devin"),
        ({"EDITOR": "vim"}, None),
        ({"REPLIT_MODE": "assistant", "REPL_ID": "x"}, "replit"),
    ],
)
def test_detect_reads_only_the_variables_that_name_an_agent(
    environ: dict[str, str], expected: str | None
) -> None:
    assert agents.detect(environ) == expected


def test_only_session_variables_give_an_agent_id() -> None:
    assert agents.agent_id({"CLAUDECODE": "1", "AI_AGENT": "claude-code"}) is None
    assert agents.agent_id({"AMP_CURRENT_THREAD_ID": "T-123"}) == "T-123"
