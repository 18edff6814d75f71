"""Verdicts on new failures, through real git repositories, real pytest processes (serial and
under xdist) and the installed CLI: a regression, a flaky test and an order-dependent one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gitenv import agent_env

LIBRARY = "def double(x):\n    return 2 * x\n"
BROKEN = "def double(x):\n    return 2 * x + 1\n"
TESTS = {
    "tests/test_lib.py": (
        "from lib import double\n\n"
        "def test_double():\n    assert double(2) == 4\n\n"
        "def test_zero():\n    assert double(0) in (0, 1)\n"
    ),
    # A flake like a timing one: fails in the agent's loaded runs, passes when run again (the
    # variable stands for the load: re-runs drop LLMHARNESS_* variables).
    "tests/test_flake.py": (
        "import os\n\n"
        "def test_flip():\n"
        "    assert os.environ.get('LLMHARNESS_TEST_FLAKE') != '1', 'flaked'\n"
    ),
}
#: The victim fails when the polluter leaks its variable; at first the polluter cleans up.
CLEAN_POLLUTER = (
    "def test_a_polluter(monkeypatch):\n    monkeypatch.setenv('POLLUTED', '1')\n\n"
    "def test_b_middle():\n    pass\n\n"
    "def test_c_victim():\n    import os\n    assert 'POLLUTED' not in os.environ\n"
)
LEAKING_POLLUTER = CLEAN_POLLUTER.replace(
    "def test_a_polluter(monkeypatch):\n    monkeypatch.setenv('POLLUTED', '1')",
    "def test_a_polluter():\n    import os\n    os.environ['POLLUTED'] = '1'",
)


class Project:
    """A small project in its own git repository, as an agent's clone of it."""

    def __init__(self, root: Path) -> None:
        self.root = root / "project"
        self.home = root / "home"
        self.home.mkdir()
        self.write("lib.py", LIBRARY)
        for name, text in TESTS.items():
            self.write(name, text)
        self.write("tests/test_order.py", CLEAN_POLLUTER)
        self.write("pytest.ini", "[pytest]\npythonpath = .\n")
        self.write(".gitignore", "__pycache__/\n")
        self.git("init", "-q", "-b", "main")
        self.git("add", "-A")
        self.git("commit", "-q", "-m", "base")

    def write(self, name: str, text: str) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def env(self) -> dict[str, str]:
        return agent_env(self.home)

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, env=self.env(), check=True)

    def pytest(self, *args: str, flake: bool = True) -> subprocess.CompletedProcess[str]:
        env = self.env()
        if flake:
            env["LLMHARNESS_TEST_FLAKE"] = "1"
        return subprocess.run(
            [str(Path(sys.executable).parent / "pytest"), "--agent-id", "1", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmharness", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def regressions(self) -> tuple[int, dict[str, Any]]:
        done = self.cli("regressions", "--json", "--check")
        return done.returncode, json.loads(done.stdout)


def _verdicts(diff: dict[str, Any]) -> dict[str, str]:
    return {item["nodeid"]: item.get("verdict") for item in diff["new_failures"]}


@pytest.mark.parametrize("xdist", [(), ("-n", "2", "--dist", "loadfile")], ids=["serial", "n2"])
def test_a_regression_a_flake_and_an_order_dependent_test_each_get_their_verdict(
    tmp_path: Path, xdist: tuple[str, ...]
) -> None:
    project = Project(tmp_path)
    # The base, recorded clean; a run with no new failure starts no verdict process.
    assert project.pytest(*xdist, flake=False).returncode == 0
    summary = json.loads(project.cli("summary", "--json").stdout)
    assert summary["verdicts"]["processes"] == 0

    # A change breaks double() and makes the polluter leak; the flake flakes this run.
    project.write("lib.py", BROKEN)
    project.write("tests/test_order.py", LEAKING_POLLUTER)
    run = project.pytest(*xdist)
    assert run.returncode == 1
    code, diff = project.regressions()
    assert code == 1
    assert _verdicts(diff) == {
        "tests/test_lib.py::test_double": "regression",
        "tests/test_flake.py::test_flip": "flaky",
        "tests/test_order.py::test_c_victim": "order-dependent",
    }
    assert "3 new failures (passed at the base; 1 confirmed, 1 order-dependent, 1 flaky)" in (
        run.stdout
    ), run.stdout
    victim = next(i for i in diff["new_failures"] if i["verdict"] == "order-dependent")
    # After the tests that ran before it in its process: all 5 others in a serial run.
    assert victim["after"] == 5 if not xdist else victim["after"] >= 2
    log = (project.root / ".llmharness" / "last" / "log.txt").read_text()
    assert "VERDICT tests/test_flake.py::test_flip flaky" in log

    # Mended (not back to the base: a clean tree at the base would be the base itself): only
    # the flake fails, and it is flaky, so the gate lets it through.
    project.write("lib.py", LIBRARY.replace("2 * x", "x + x"))
    project.write("tests/test_order.py", CLEAN_POLLUTER + "\n")
    run = project.pytest(*xdist)
    assert run.returncode == 1
    code, diff = project.regressions()
    assert _verdicts(diff) == {"tests/test_flake.py::test_flip": "flaky"}
    assert code == 0, diff


def test_known_failures_are_apart_and_an_entry_that_passes_is_reported(tmp_path: Path) -> None:
    project = Project(tmp_path)
    assert project.pytest(flake=False).returncode == 0
    project.write("lib.py", BROKEN)
    project.write(
        "llmharness.yaml",
        "known_failures:\n"
        "  - nodeid: 'tests/test_lib.py::test_d*'\n    reason: needs a fix upstream\n"
        "  - nodeid: tests/test_lib.py::test_zero\n    reason: was broken\n"
        "  - nodeid: tests/test_flake.py::*\n    reason: old\n    until: 2020-01-01\n",
    )
    run = project.pytest()
    assert run.returncode == 1  # the outcome stays pytest's own
    code, diff = project.regressions()
    assert code == 0
    assert _verdicts(diff) == {
        "tests/test_lib.py::test_double": "known",
        "tests/test_flake.py::test_flip": "flaky",  # the expired entry no longer applies
    }
    summary = json.loads(project.cli("summary", "--json").stdout)
    assert summary["known_failures"]["failing"] == ["tests/test_lib.py::test_double"]
    assert [e["nodeid"] for e in summary["known_failures"]["passing"]] == [
        "tests/test_lib.py::test_zero"
    ]
    assert any(
        "test_zero passes now: remove its known_failures entry" in n
        for n in run.stdout.splitlines()
    )


def test_a_bad_known_failures_entry_is_a_usage_error(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("llmharness.yaml", "known_failures:\n  - nodeid: x\n")
    run = project.pytest()
    assert run.returncode == 4
    assert "known_failures: entry 1: reason must say why" in run.stderr


def test_a_budget_of_zero_leaves_new_failures_unchecked_and_blocking(tmp_path: Path) -> None:
    project = Project(tmp_path)
    assert project.pytest(flake=False).returncode == 0
    project.write("lib.py", BROKEN)
    project.write("llmharness.yaml", "verdict_budget: 0\n")
    project.pytest()
    code, diff = project.regressions()
    assert code == 1
    assert set(_verdicts(diff).values()) == {"unchecked"}


def test_a_test_that_passed_only_on_a_rerun_at_the_base_is_not_a_regression_later(
    tmp_path: Path,
) -> None:
    # Fails on the first attempt of each pytest process, as a flake that needs a warm cache.
    flake = (
        "def test_cold(tmp_path_factory):\n"
        "    marker = tmp_path_factory.getbasetemp() / 'warm'\n"
        "    if not marker.exists():\n"
        "        marker.touch()\n"
        "        raise AssertionError('cold start')\n"
    )
    project = Project(tmp_path)
    project.write("tests/test_cold.py", flake)
    project.git("add", "-A")
    project.git("commit", "-q", "-m", "a flaky test")
    # At the base, pytest-rerunfailures runs it again and it passes: the run is green.
    run = project.pytest("--reruns", "1", flake=False)
    assert run.returncode == 0, run.stdout
    assert "RERUN 1 flaky: passed only when run again: tests/test_cold.py::test_cold" in run.stdout

    # A change elsewhere; this time nothing runs it again and it fails (and would fail in a
    # verdict's re-run too, a fresh process): it failed at the base as well, so it is no
    # regression of the change, and the gate lets it through.
    project.write("lib.py", LIBRARY.replace("2 * x", "x + x"))
    run = project.pytest(flake=False)
    assert run.returncode == 1
    code, diff = project.regressions()
    assert diff["new_failures"] == [], diff["new_failures"]
    assert [item["nodeid"] for item in diff["still_failing"]] == ["tests/test_cold.py::test_cold"]
    assert code == 0, diff
