"""A team's samples (issue 19): `--agents N` parts that are disjoint and cover the suite, rotated
when the base moves; `--fast` always running what a change touches; `llmharness coverage`.

Everything runs as agents run it: clones of a bare upstream, the pytest console script and the
installed CLI in subprocesses.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from gitenv import agent_env

import llmharness
from llmharness import cli

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "suites" / "demo"
BIN = Path(sys.executable).parent


class Upstream:
    """A bare repository holding a suite, and the clones agents make of it."""

    def __init__(self, tmp: Path, suite: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.home.mkdir()
        self.bare = tmp / "upstream.git"
        self.git(tmp, "init", "-q", "--bare", "-b", "main", str(self.bare))
        self.git(suite, "init", "-q", "-b", "main")
        (suite / ".gitignore").write_text("__pycache__/\n")
        self.commit(suite, "the suite")
        self.git(suite, "remote", "add", "origin", str(self.bare))
        self.git(suite, "push", "-q", "origin", "main")
        self.seed = suite

    def git(self, cwd: Path, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=agent_env(self.home), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def commit(self, clone: Path, message: str) -> None:
        self.git(clone, "add", "-A")
        self.git(clone, "commit", "-q", "--allow-empty", "-m", message)

    def clone(self, name: str) -> Path:
        path = self.tmp / name
        self.git(self.tmp, "clone", "-q", self.bare.as_uri(), str(path))
        return path

    def pytest(self, clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "pytest"), *args],
            cwd=clone,
            env=agent_env(self.home),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def cli(self, clone: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "llmharness"), *args],
            cwd=clone,
            env=agent_env(self.home),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _ran(clone: Path) -> list[str]:
    """The node ids the latest run ran, from its results.jsonl."""
    lines = (clone / ".llmharness" / "last" / "results.jsonl").read_text().splitlines()
    return [json.loads(line)["nodeid"] for line in lines]


def _summary(clone: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((clone / ".llmharness" / "last" / "summary.json").read_text())
    return data


def _big_suite(folder: Path, files: int = 20, tests: int = 100) -> list[str]:
    (folder / "tests").mkdir(parents=True)
    ids = []
    for f in range(files):
        body = "".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}\n" for i in range(tests))
        (folder / "tests" / f"test_f{f:02}.py").write_text(body)
        ids += [f"tests/test_f{f:02}.py::test_{i}" for i in range(tests)]
    return ids


@pytest.fixture
def team_suite(tmp_path: Path) -> tuple[Upstream, list[str]]:
    seed = tmp_path / "seed"
    ids = _big_suite(seed)
    return Upstream(tmp_path, seed), ids


def test_ten_agents_run_disjoint_parts_that_cover_the_suite_and_rotate_with_the_base(
    team_suite: tuple[Upstream, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    upstream, ids = team_suite
    clone = upstream.clone("agents")
    samples: dict[int, list[str]] = {}
    for agent in range(10):
        if agent == 9:  # before the last agent has run, its part is the one nobody has
            data = json.loads(upstream.cli(clone, "coverage", "--json").stdout)
            assert data["agents"] == 10 and data["tests"] == 2000
            [unrun] = data["unrun_parts"]
            [part] = [p for p in data["parts"] if p["part"] == unrun]
            assert part["agent"] == 9 and part["unknown"] == part["tests"] > 0
            assert data["known"] == 2000 - part["tests"]
        done = upstream.pytest(clone, "--fast", "--agents", "10", "--agent-id", str(agent))
        assert done.returncode == 0, done.stdout + done.stderr
        samples[agent] = _ran(clone)
        sample = _summary(clone)["sample"]
        assert sample["agents"] == 10 and sample["total"] == 2000
        assert f"part {sample['part']} of 10" in done.stdout.splitlines()[0]
        # Any runner gets the same sample from the CLI.
        listed = upstream.cli(
            clone, "sample", "--agents", "10", "--agent-id", str(agent), stdin="\n".join(ids)
        )
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == samples[agent]
    for a, b in combinations(samples.values(), 2):
        assert not set(a) & set(b)
    assert sorted(n for sample in samples.values() for n in sample) == sorted(ids)

    coverage = upstream.cli(clone, "coverage")
    assert coverage.returncode == 0, coverage.stderr
    assert coverage.stdout.startswith("coverage at base ")
    assert "100.0% (2,000 of 2,000 tests" in coverage.stdout
    data = json.loads(upstream.cli(clone, "coverage", "--json").stdout)
    assert data["share"] == 1.0 and data["unrun_parts"] == []
    summary = upstream.cli(clone, "summary")  # the summary says it too, at the run's base
    assert "coverage at base " in summary.stdout and "100.0% (2,000 of 2,000" in summary.stdout
    monkeypatch.chdir(clone)
    assert llmharness.coverage() == data  # and the Python API

    # The same agent on the same base: the same sample, under xdist too.
    again = upstream.pytest(clone, "--fast", "--agents", "10", "--agent-id", "3", "-n", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(_ran(clone)) == sorted(samples[3])

    # The base moves (a commit that changes no test): agent 3 gets another part.
    part_before = _summary(clone)["sample"]["part"]
    (clone / "NOTES.md").write_text("moved\n")
    upstream.commit(clone, "move the base")
    upstream.git(clone, "push", "-q", "origin", "main")
    moved = upstream.pytest(clone, "--fast", "--agents", "10", "--agent-id", "3")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert _summary(clone)["sample"]["part"] == (part_before + 1) % 10
    assert set(_ran(clone)) != set(samples[3])
    assert set(_ran(clone)) == set(samples[4])  # the part agent 4 ran one base earlier

    # Ten successive bases: every agent has run every test. (The CLI's entry point in this
    # process, 100 times: it reads the same git state as the runs above.)
    monkeypatch.chdir(clone)
    seen: dict[int, set[str]] = {agent: set() for agent in range(10)}
    for base in range(10):
        for agent in range(10):
            monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(ids)))
            assert cli.main(["sample", "--agents", "10", "--agent-id", str(agent)]) == 0
            seen[agent] |= set(capsys.readouterr().out.split())
        upstream.commit(clone, f"base {base}")
        upstream.git(clone, "push", "-q", "origin", "main")
    assert all(tests == set(ids) for tests in seen.values())


def _changes_suite(folder: Path) -> None:
    """Two project modules each imported by one test file, and 30 files importing neither."""
    _big_suite(folder, files=30, tests=30)
    (folder / "pkg").mkdir()
    (folder / "pkg" / "__init__.py").write_text("")
    for name in ("alpha", "beta"):
        (folder / "pkg" / f"{name}.py").write_text("def value():\n    return 1\n")
        cases = "".join(f"def test_{i}():\n    assert value() == 1\n" for i in range(20))
        (folder / "tests" / f"test_{name}.py").write_text(f"from pkg.{name} import value\n{cases}")
    (folder / "conftest.py").write_text("")  # rootdir on sys.path, so `pkg` imports


def _tests_of(nodeids: list[str], rel: str) -> set[str]:
    return {nodeid for nodeid in nodeids if nodeid.startswith(rel + "::")}


FAST = ("--fast-fraction", "1%", "--agent-id", "7")


def test_fast_always_runs_the_tests_that_a_change_touches(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    _changes_suite(seed)
    upstream = Upstream(tmp_path, seed)
    clone = upstream.clone("agent")
    assert upstream.pytest(clone, *FAST).returncode == 0  # a clean run: the cache knows all
    plain = _ran(clone)
    assert len(_tests_of(plain, "tests/test_alpha.py")) < 20  # so the test can fail

    alpha = clone / "pkg" / "alpha.py"
    alpha.write_text("def value():\n    return 2 - 1\n")
    done = upstream.pytest(clone, *FAST)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = _ran(clone)
    assert len(_tests_of(ran, "tests/test_alpha.py")) == 20
    assert len(_tests_of(ran, "tests/test_beta.py")) < 20
    added = _summary(clone)["sample"]["added_for_changes"]
    assert added == 20 - len(_tests_of(plain, "tests/test_alpha.py"))
    assert f"+{added} for changes" in done.stdout.splitlines()[0]

    # Committed but not pushed: still a change since the base, though the collection cache now
    # holds the changed module (the plan must not leave its importers out).
    upstream.commit(clone, "change alpha")
    done = upstream.pytest(clone, *FAST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_tests_of(_ran(clone), "tests/test_alpha.py")) == 20
    assert _summary(clone)["sample"]["uncollected_files"] > 0  # the plan still skipped others

    # A new test file, never committed: all of it runs.
    (clone / "tests" / "test_new.py").write_text(
        "def test_a():\n    pass\n\ndef test_b():\n    pass\n"
    )
    assert upstream.pytest(clone, *FAST).returncode == 0
    assert _tests_of(_ran(clone), "tests/test_new.py") == {
        "tests/test_new.py::test_a",
        "tests/test_new.py::test_b",
    }

    # The setting turns it off.
    (clone / "llmharness.yaml").write_text("fast_changes: false\n")
    assert upstream.pytest(clone, *FAST).returncode == 0
    assert _summary(clone)["sample"]["added_for_changes"] == 0
    assert _tests_of(_ran(clone), "tests/test_alpha.py") == _tests_of(plain, "tests/test_alpha.py")

    # A fresh clone with no collection cache: what this run's collection found decides.
    fresh = upstream.clone("fresh")
    (fresh / "pkg" / "beta.py").write_text("def value():\n    return 3 - 2\n")
    done = upstream.pytest(fresh, *FAST, "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(_tests_of(_ran(fresh), "tests/test_beta.py")) == 20


def test_a_change_to_a_demo_module_runs_every_test_file_importing_it(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    shutil.copytree(DEMO, seed, ignore=shutil.ignore_patterns(".llmharness", "__pycache__"))
    upstream = Upstream(tmp_path, seed)
    clone = upstream.clone("agent")
    listed = upstream.pytest(clone, "-p", "no:llmharness", "--co", "-q")
    every = [line for line in listed.stdout.splitlines() if "::" in line]
    assert upstream.pytest(clone, *FAST).returncode in (0, 1)  # the demo has failing tests
    assert len(_ran(clone)) < len(every)
    lexer = clone / "minicalc" / "lexer.py"
    lexer.write_text(lexer.read_text() + "\n# an edit\n")
    # Every demo test file imports the lexer: itself, or through the parser, the evaluator or
    # the `minicalc` package, which import it. All of them run.
    assert upstream.pytest(clone, *FAST).returncode in (0, 1)
    assert sorted(_ran(clone)) == sorted(every)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("--agents", "0", "--agent-id", "0"), "--agents"),
        (("--agents", "three", "--agent-id", "0"), "--agents"),
        (("--agents", "3", "--agent-id", "x"), "--agent-id"),
        (("--agents", "3", "--agent-id", "3"), "--agent-id"),
        (("--agents", "3"), "--agents"),
    ],
)
def test_a_bad_team_size_or_agent_id_is_a_usage_error_naming_the_flag(
    tmp_path: Path, args: tuple[str, ...], flag: str
) -> None:
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    done = subprocess.run(
        [str(BIN / "pytest"), "--fast", *args],
        cwd=tmp_path,
        env=agent_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith(f"ERROR: llmharness: {flag}"), line
    sampled = subprocess.run(
        [str(BIN / "llmharness"), "sample", *args],
        cwd=tmp_path,
        env=agent_env(tmp_path),
        input="test_one.py::test_one\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sampled.returncode == 2 and flag in sampled.stderr and not sampled.stdout


def test_a_team_size_in_the_settings_leaves_a_humans_plain_pytest_alone(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    (tmp_path / "llmharness.yaml").write_text("agents: 4\n")
    done = subprocess.run(
        [str(BIN / "pytest")], cwd=tmp_path, env=agent_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout and "llmharness:" not in done.stdout
