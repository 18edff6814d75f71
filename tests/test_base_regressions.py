"""Regressions against the base commit, in the workflow agents have: fresh clones of a shared
repository, real git, real pytest processes and the installed CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gitenv import agent_env

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "suites" / "demo"
#: One line of the demo's evaluator, and a break of it that fails a few passing tests.
GOOD_LINE = '        "abs": Function(abs, 1, 1),'
BAD_LINE = '        "abs": Function(lambda x: x, 1, 1),'


class Team:
    """A bare upstream holding the demo, and the clones agents make of it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.upstream = tmp_path / "upstream.git"
        self.git(tmp_path, "init", "-q", "--bare", "-b", "main", str(self.upstream))
        seed = tmp_path / "seed"
        shutil.copytree(DEMO, seed, ignore=shutil.ignore_patterns(".llmharness", "__pycache__"))
        (seed / ".gitignore").write_text("__pycache__/\n")
        self.git(seed, "init", "-q", "-b", "main")
        self.git(seed, "add", "-A")
        self.git(seed, "commit", "-q", "-m", "demo")
        self.git(seed, "remote", "add", "origin", str(self.upstream))
        self.git(seed, "push", "-q", "origin", "main")

    def git(self, cwd: Path, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=agent_env(self.home), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def clone(self, name: str, *args: str) -> Path:
        path = self.tmp / name
        self.git(self.tmp, "clone", "-q", *args, self.upstream.as_uri(), str(path))
        return path

    def pytest(self, clone: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        # The console script, as agents type it (`python -m` would put the cwd on sys.path).
        return subprocess.run(
            [str(Path(sys.executable).parent / "pytest"), *args],
            cwd=clone,
            env=agent_env(self.home, **env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def cli(self, clone: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmharness", *args],
            cwd=clone,
            env=agent_env(self.home, **env),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def regressions(self, clone: Path, **env: str) -> tuple[int, dict[str, Any]]:
        done = self.cli(clone, "regressions", "--json", "--check", **env)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json.loads(done.stdout)


def _failing_plain(team: Team, clone: Path) -> set[str]:
    """The tests plain pytest sees failing in this clone as it is (the truth to compare with)."""
    done = team.pytest(clone, "-p", "no:llmharness", "-v", "--tb=no", "-rN", "--no-header")
    return set(re.findall(r"^(.+) (?:FAILED|ERROR) +\[", done.stdout, re.M))


def _break(clone: Path) -> None:
    evaluator = clone / "minicalc" / "evaluator.py"
    text = evaluator.read_text()
    assert GOOD_LINE in text
    evaluator.write_text(text.replace(GOOD_LINE, BAD_LINE))


def _mend(clone: Path) -> None:
    evaluator = clone / "minicalc" / "evaluator.py"
    evaluator.write_text(evaluator.read_text().replace(BAD_LINE, GOOD_LINE))


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["nodeid"] for item in items}


@pytest.fixture
def team(tmp_path: Path) -> Team:
    return Team(tmp_path)


def test_a_fresh_clone_finds_what_a_change_broke_by_checking_at_the_base(team: Team) -> None:
    clone = team.clone("agent7")
    standing = _failing_plain(team, clone)
    assert len(standing) == 7

    # Clean at the base: the run is the base; its failures were failing there; the gate passes.
    run = team.pytest(clone, "--agent-id", "7")
    assert run.returncode == 1
    assert "regressions: none: this clean run at" in run.stdout
    assert "7 failures failing at the base" in run.stdout
    code, diff = team.regressions(clone)
    assert code == 0
    assert diff["base"]["at_base"] is True
    assert _ids(diff["still_failing"]) == standing
    assert diff["new_failures"] == diff["unknown_at_base"] == []

    # One line broken: exactly the tests the change broke are regressions.
    _break(clone)
    broken = _failing_plain(team, clone) - standing
    assert broken
    run = team.pytest(clone, "--agent-id", "7")
    assert run.returncode == 1
    count = f"{len(broken)} new failure" + ("s" if len(broken) > 1 else "")
    assert f"{count} (passed at the base; {len(broken)} confirmed)" in run.stdout, run.stdout
    # The few ERROR lines the terminal shows start with what the change broke.
    shown = [line for line in run.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(shown) > len(broken)
    for line in shown[: len(broken)]:
        assert any(nodeid in line for nodeid in broken), line
    code, diff = team.regressions(clone)
    assert code == 1
    assert _ids(diff["new_failures"]) == broken
    assert {item["known_by"] for item in diff["new_failures"]} == {"recorded"}
    assert _ids(diff["still_failing"]) == standing
    summary = json.loads(team.cli(clone, "summary", "--json").stdout)
    assert summary["git"]["dirty"] is True and summary["git"]["changes"]
    assert summary["git"]["commit"] == summary["base"]["commit"]

    # Mended: nothing is broken any more.
    _mend(clone)
    assert team.pytest(clone, "--agent-id", "7").returncode == 1
    code, diff = team.regressions(clone)
    assert code == 0 and diff["new_failures"] == []


def test_with_nothing_recorded_the_failures_are_checked_at_the_base(team: Team) -> None:
    clone = team.clone("agent7")
    standing = _failing_plain(team, clone)
    _break(clone)
    broken = _failing_plain(team, clone) - standing
    run = team.pytest(clone, "--agent-id", "7")  # nothing recorded at the base yet
    assert run.returncode == 1
    code, diff = team.regressions(clone)
    assert code == 1
    assert _ids(diff["new_failures"]) == broken
    assert {item["known_by"] for item in diff["new_failures"]} == {"checked"}
    assert _ids(diff["still_failing"]) == standing
    assert diff["unknown_at_base"] == []
    # The check ran the base's code, in a worktree inside the store; the clone is untouched.
    assert team.git(clone, "status", "--porcelain") == "M minicalc/evaluator.py"
    # A second run knows the base already: nothing is checked again.
    team.pytest(clone, "--agent-id", "7")
    summary = json.loads(team.cli(clone, "summary", "--json").stdout)
    assert summary["base_check"]["checked"] == 0
    _mend(clone)
    team.pytest(clone, "--agent-id", "7")
    assert team.regressions(clone)[0] == 0


def test_clones_sharing_a_store_tell_one_anothers_changes_from_their_own(team: Team) -> None:
    store = team.tmp / "shared-store"
    one, two = team.clone("one"), team.clone("two")
    assert team.pytest(one, "--agent-id", "1", LLMHARNESS_STORE=str(store)).returncode == 1
    _break(two)
    broken_run = team.pytest(two, "--agent-id", "2", LLMHARNESS_STORE=str(store))
    assert "regression" in broken_run.stdout
    code, diff = team.regressions(two, LLMHARNESS_STORE=str(store))
    assert code == 1 and diff["new_failures"]
    assert {item["known_by"] for item in diff["new_failures"]} == {"recorded"}  # by clone one
    # Clone one, clean at the same base, sees neither a regression nor a fix.
    assert team.pytest(one, "--agent-id", "1", LLMHARNESS_STORE=str(store)).returncode == 1
    code, diff = team.regressions(one, LLMHARNESS_STORE=str(store))
    assert code == 0
    assert diff["new_failures"] == diff["fixed"] == diff["unknown_at_base"] == []
    assert diff["base"]["at_base"] is True


def test_a_base_that_names_no_commit_is_a_usage_error(team: Team) -> None:
    clone = team.clone("agent")
    run = team.pytest(clone, "--agent-id", "1", "--base", "no-such-branch")
    assert run.returncode == 4
    lines = [line for line in run.stderr.splitlines() if "no-such-branch" in line]
    assert len(lines) == 1 and "names no commit" in lines[0]


def test_detached_head_and_a_branch_without_upstream_still_find_a_base(team: Team) -> None:
    clone = team.clone("agent")
    head = team.git(clone, "rev-parse", "HEAD")
    team.git(clone, "checkout", "-q", "--detach")
    run = team.pytest(clone, "--agent-id", "1")
    assert run.returncode == 1 and "is the base" in run.stdout
    summary = json.loads(team.cli(clone, "summary", "--json").stdout)
    assert summary["git"]["branch"] is None
    assert summary["base"] == {"commit": head, "ref": "origin/HEAD", "at_base": True, "note": None}
    team.git(clone, "checkout", "-q", "-b", "topic")  # no upstream: origin/HEAD it is
    (clone / "tests" / "test_new.py").write_text("def test_new():\n    assert False\n")
    team.git(clone, "add", "-A")
    team.git(clone, "commit", "-q", "-m", "a new failing test")
    run = team.pytest(clone, "--agent-id", "1")
    code, diff = team.regressions(clone)
    assert code == 1
    assert _ids(diff["new_tests_failing"]) == {"tests/test_new.py::test_new"}
    assert diff["new_tests_failing"][0]["known_by"] == "checked"  # absent at the base


def test_outside_git_and_without_a_base_everything_works_and_says_why(
    team: Team, tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(DEMO, plain, ignore=shutil.ignore_patterns(".llmharness", "__pycache__"))
    run = team.pytest(plain, "--agent-id", "1")
    assert run.returncode == 1
    assert "regressions: no earlier outcomes recorded; this run is the baseline" in run.stdout
    summary = json.loads(team.cli(plain, "summary", "--json").stdout)
    assert summary["git"] is None and "not in a git work tree" in summary["git_note"]

    # A repository of its own, with no remote and no main: no base, said in the line.
    lonely = tmp_path / "lonely"
    shutil.copytree(plain, lonely, ignore=shutil.ignore_patterns(".llmharness"))
    team.git(lonely, "init", "-q", "-b", "trunk")
    team.git(lonely, "add", "-A")
    team.git(lonely, "commit", "-q", "-m", "x")
    run = team.pytest(lonely, "--agent-id", "1")
    assert run.returncode == 1
    assert "no base: no upstream, origin/HEAD, main or master" in run.stdout


def test_a_shallow_clone_works_and_a_base_it_cannot_check_out_leaves_failures_unknown(
    team: Team,
) -> None:
    clone = team.clone("deep")
    (clone / "NOTES").write_text("1\n")
    team.git(clone, "add", "-A")
    team.git(clone, "commit", "-q", "-m", "one")
    team.git(clone, "push", "-q", "origin", "main")
    shallow = team.clone("shallow", "--depth", "1")
    _break(shallow)
    assert team.pytest(shallow, "--agent-id", "1").returncode == 1
    code, diff = team.regressions(shallow)
    assert code == 1 and diff["new_failures"] and diff["unknown_at_base"] == []

    # A worktree cannot be made (a file where its folder goes): unknown, never new or fixed.
    other = team.clone("other")
    _break(other)
    (other / ".llmharness").mkdir()
    (other / ".llmharness" / "worktrees").write_text("in the way\n")
    run = team.pytest(other, "--agent-id", "1")
    assert run.returncode == 1
    assert "failures unknown at the base" in run.stdout
    code, diff = team.regressions(other)
    assert code == 1
    assert diff["new_failures"] == diff["still_failing"] == diff["fixed"] == []
    assert len(diff["unknown_at_base"]) == len(_failing_plain(team, other))

    # A budget of 0 never checks: the same, said so.
    run = team.pytest(other, "--agent-id", "1", LLMHARNESS_BASE_CHECK_BUDGET="0")
    assert "base_check_budget is 0" in run.stdout
    assert team.regressions(other)[0] == 1


def test_a_fresh_clone_that_syncs_knows_the_base_without_running_anything_there(
    team: Team,
) -> None:
    one = team.clone("one")
    assert team.pytest(one, "--agent-id", "1").returncode == 1  # clean at the base: recorded
    done = team.cli(one, "sync")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("synced with origin: sent outcomes at 1 commit")

    two = team.clone("two")  # a fresh container: no store, no history
    done = team.cli(two, "sync")
    assert done.returncode == 0, done.stderr
    _break(two)
    broken = _failing_plain(team, two) - _failing_plain(team, one)
    assert team.pytest(two, "--agent-id", "2").returncode == 1
    code, diff = team.regressions(two)
    assert code == 1
    assert _ids(diff["new_failures"]) == broken
    assert {item["known_by"] for item in diff["new_failures"] + diff["still_failing"]} == {"synced"}
    summary = json.loads(team.cli(two, "summary", "--json").stdout)
    assert summary["base_check"]["checked"] == 0
    assert not (two / ".llmharness" / "worktrees" / "base").exists()  # nothing ran at the base


def test_code_imported_from_another_clone_is_reported_and_the_base_check_is_not_fooled(
    team: Team,
) -> None:
    # The environment imports the project from another clone (an editable install of it, or
    # PYTHONPATH), and this clone's pytest.ini does not put its own folder first.
    clone, other = team.clone("agent"), team.clone("other")
    ini = clone / "pytest.ini"
    ini.write_text(ini.read_text().replace("pythonpath = .\n", ""))
    team.git(clone, "commit", "-q", "-am", "no pythonpath")
    team.git(clone, "push", "-q", "origin", "main")
    _break(clone)
    run = team.pytest(clone, "--agent-id", "1", PYTHONPATH=str(other))
    lines = [line for line in run.stdout.splitlines() if "code under test" in line]
    assert len(lines) == 1 and str(other / "minicalc") in lines[0], run.stdout
    summary = json.loads(team.cli(clone, "summary", "--json").stdout)
    [recorded] = summary["code_under_test"]  # whole; the terminal line may be cut to width
    assert recorded.startswith(lines[0].rstrip("…"))
    # This clone's break did not run (the other clone's code did), so nothing regressed, and
    # the check at the base ran the base's code: the standing failures were failing there.
    code, diff = team.regressions(clone)
    assert code == 0
    assert diff["new_failures"] == [] and len(diff["still_failing"]) == 7
    assert {item["known_by"] for item in diff["still_failing"]} == {"checked"}
