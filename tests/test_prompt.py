"""`llmharness prompt` through the installed CLI in a child process: the section is filled in from
the project's settings, works with no store yet, and a broken llmharness.yaml is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gitenv import outside_env

CONFIG = """\
fast_fraction: 5%
base: origin/develop
flaky_blocks: true
protected: [ci/gate.sh, llmharness.yaml]
known_failures:
  - {nodeid: "tests/test_locale.py::test_*", reason: needs the de_DE locale}
  - {nodeid: tests/test_net.py::test_fetch, reason: no network in CI}
"""


def _env() -> dict[str, str]:
    return outside_env()


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=folder, env=_env(), capture_output=True, text=True, timeout=120)


def _prompt(folder: Path) -> subprocess.CompletedProcess[str]:
    return _run(folder, sys.executable, "-m", "llmharness", "prompt")


def _project(tmp_path: Path, config: str) -> Path:
    folder = tmp_path / "project"
    (folder / "tests").mkdir(parents=True)
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "llmharness.yaml").write_text(config)
    (folder / "tests" / "test_one.py").write_text("def test_a():\n    pass\n")
    return folder


def test_the_section_is_filled_in_from_the_configuration_in_a_fresh_clone(
    tmp_path: Path,
) -> None:
    folder = _project(tmp_path, CONFIG)
    (folder / ".git").mkdir()  # the base is git's; nothing here needs a real history
    result = _prompt(folder / "tests")  # from a subfolder too, as an agent may stand there
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("## "), lines
    assert len(lines) <= 25, lines
    text = result.stdout
    assert "runs a deterministic 5% sample" in text
    assert "`llmharness regressions --check`" in text
    assert "the merge-base of HEAD and `origin/develop`" in text
    assert "(`ci/gate.sh`, `llmharness.yaml`)" in text
    assert "known failures do not block" in text and "flaky and known" not in text
    assert "2 accepted failures" in text
    assert "`.llmharness/`" in text and "Time, as last measured" not in text
    assert not (folder / ".llmharness").exists()  # it read the settings, it wrote nothing


def test_defaults_outside_git_and_the_time_after_a_run(tmp_path: Path) -> None:
    folder = _project(tmp_path, "store: records\n")
    before = _prompt(folder)
    assert before.returncode == 0, before.stderr
    assert "runs a deterministic 10% sample" in before.stdout
    assert "each test's last known outcome" in before.stdout
    assert "flaky and known failures do not block" in before.stdout
    assert "accepted failure" not in before.stdout
    assert "`records/`" in before.stdout

    run = _run(folder, sys.executable, "-m", "pytest")
    assert run.returncode == 0, run.stdout
    after = _prompt(folder)
    assert after.returncode == 0, after.stderr
    timing = [line for line in after.stdout.splitlines() if "Time, as last measured" in line]
    assert len(timing) == 1, after.stdout
    assert "full about " in timing[0] and "--fast (10%) about " in timing[0]


def test_a_broken_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = _project(tmp_path, "fast_fraction: [5%\n")
    result = _prompt(folder)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("llmharness: ") and "llmharness.yaml" in lines[0], lines
    assert "malformed YAML" in lines[0], lines

    (folder / "llmharness.yaml").write_text("fast_fraction: 5\n")  # a wrong value, named
    result = _prompt(folder)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "fast_fraction" in result.stderr, result.stderr


def test_a_team_size_says_which_ids_to_use(tmp_path: Path) -> None:
    folder = _project(tmp_path, "agents: 3\n")
    result = _prompt(folder)
    assert result.returncode == 0, result.stderr
    assert "`--agent-id K` (K from 0 to 2)" in result.stdout
    assert "The team has 3 agents" in result.stdout
