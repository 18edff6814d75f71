"""`llmharness sync` end to end: the installed CLI against real clones of a bare remote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmharness.knowledge import Knowledge
from llmharness.store import Store

NOTES = "refs/notes/llmharness"
ELSEWHERE = "1" * 40  # a commit no repository here has: known through a shared store


@pytest.fixture(autouse=True)
def _own_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's and the user's git configuration must not reach the repositories here."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "Tess Ter")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "tess@example.com")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def sync(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmharness", "sync", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def synced(cwd: Path, *args: str) -> str:
    done = sync(cwd, *args)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    return done.stdout


def know(store_root: Path, commit: str, source: str, lines: str) -> None:
    store = Store(store_root)
    store.ensure()
    pairs = [line.partition(" ")[::2] for line in lines.splitlines()]
    with store.locked():
        Knowledge(store).add(commit, source, pairs)


def known(store_root: Path, commit: str, source: str) -> str:
    pairs = Knowledge(Store(store_root)).pairs(commit, (source,))
    return "".join(f"{outcome} {nodeid}\n" for outcome, nodeid in sorted(pairs))


def remote_note(bare: Path, commit: str) -> str:
    return git(bare, "notes", "--ref=llmharness", "show", commit) + "\n"


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def repo_state(clone: Path) -> tuple[str, ...]:
    """Everything a sync must leave as it was: refs, HEAD, the index and the work tree."""
    return (
        git(clone, "for-each-ref"),
        git(clone, "symbolic-ref", "HEAD"),
        git(clone, "rev-parse", "HEAD"),
        git(clone, "status", "--porcelain"),
        (clone / ".git" / "index").read_bytes().hex(),
    )


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str]:
    """A bare remote holding one commit on `main`, and that commit."""
    bare = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    (seed / "t.py").write_text("def test_a(): pass\n")
    git(seed, "add", "t.py")
    git(seed, "commit", "-q", "-m", "first")
    git(seed, "push", "-q", "origin", "HEAD:main")
    return bare, git(seed, "rev-parse", "HEAD")


def clone(upstream: tuple[Path, str], name: str, *flags: str) -> Path:
    bare = upstream[0]
    target = bare.parent / name
    git(bare.parent, "clone", "-q", *flags, f"file://{bare}", str(target))
    return target


def test_first_sync_sends_and_a_fresh_clone_receives(upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    one = clone(upstream, "one")
    know(one / ".llmharness", commit, "recorded", "passed t.py::test_a\nfailed t.py::test_b")
    know(one / ".llmharness", ELSEWHERE, "checked", "passed t.py::test_z")
    before = repo_state(one)

    out = synced(one)

    assert (
        out == "synced with origin: sent outcomes at 2 commits, received 0 outcomes at 0 commits\n"
    )
    assert remote_note(bare, commit) == "failed t.py::test_b\npassed t.py::test_a\n"
    assert remote_note(bare, ELSEWHERE) == "passed t.py::test_z\n"
    assert repo_state(one)[1:] == before[1:]  # only the notes ref is new
    assert git(one, "rev-parse", NOTES) == git(bare, "rev-parse", NOTES)

    two = clone(upstream, "two")
    out = synced(two)

    assert (
        out == "synced with origin: sent outcomes at 0 commits, received 3 outcomes at 2 commits\n"
    )
    assert known(two / ".llmharness", commit, "synced") == (
        "failed t.py::test_b\npassed t.py::test_a\n"
    )
    assert known(two / ".llmharness", ELSEWHERE, "synced") == "passed t.py::test_z\n"
    assert git(two, "status", "--porcelain") == ""
    again = json.loads(synced(two, "--json"))
    assert again == {
        "remote": "origin",
        "sent_commits": 0,
        "received_commits": 0,
        "received_outcomes": 0,
        "attempts": 1,
    }


def test_concurrent_edits_to_one_note_merge_as_their_union(upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    one, two = clone(upstream, "one"), clone(upstream, "two")
    know(one / ".llmharness", commit, "recorded", "passed t.py::test_a")
    synced(one)
    # Two has not fetched one's note: its own note and knowledge start from nothing.
    git(two, "notes", "--ref=llmharness", "add", "-m", "reviewed by two", commit)
    local_notes = git(two, "rev-parse", NOTES)
    know(two / ".llmharness", commit, "recorded", "failed t.py::test_b")

    assert synced(two) == (
        "synced with origin: sent outcomes at 1 commit, received 1 outcome at 1 commit\n"
    )

    union = "failed t.py::test_b\npassed t.py::test_a\nreviewed by two\n"
    assert remote_note(bare, commit) == union
    parents = git(bare, "rev-list", "--parents", "-n1", NOTES).split()[1:]
    assert sorted(parents) == sorted([git(one, "rev-parse", NOTES), local_notes])
    assert synced(one).endswith("received 1 outcome at 1 commit\n")
    assert git(one, "notes", "--ref=llmharness", "show", commit) + "\n" == union
    assert known(one / ".llmharness", commit, "synced") == "failed t.py::test_b\n"


def test_sixteen_clones_syncing_at_once_lose_no_outcome(upstream: tuple[Path, str]) -> None:
    bare, commit = upstream
    clones = [clone(upstream, f"c{number:02d}") for number in range(16)]
    for number, folder in enumerate(clones):
        know(folder / ".llmharness", commit, "recorded", f"passed t.py::test_{number:02d}")
    everything = "".join(f"passed t.py::test_{number:02d}\n" for number in range(16))

    for round_ in ("all send", "all receive"):
        running = [
            subprocess.Popen(
                [sys.executable, "-m", "llmharness", "sync", "--json"],
                cwd=folder,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for folder in clones
        ]
        results = [(process.communicate(), process.returncode) for process in running]
        assert [(code, err) for (_, err), code in results] == [(0, "")] * 16, round_
        assert remote_note(bare, commit) == everything, round_
        if round_ == "all send":
            sent = [json.loads(out)["sent_commits"] for (out, _), _ in results]
            assert sent == [1] * 16

    for number, folder in enumerate(clones):
        others = everything.replace(f"passed t.py::test_{number:02d}\n", "")
        assert known(folder / ".llmharness", commit, "synced") == others
        assert git(folder, "notes", "--ref=llmharness", "show", commit) + "\n" == everything


def test_a_shallow_clone_syncs_notes_on_commits_it_does_not_have(
    upstream: tuple[Path, str],
) -> None:
    bare, first = upstream
    full = clone(upstream, "full")
    git(full, "commit", "-q", "--allow-empty", "-m", "second")
    git(full, "push", "-q", "origin", "HEAD:main")
    second = git(full, "rev-parse", "HEAD")
    know(full / ".llmharness", first, "recorded", "passed t.py::test_a")
    know(full / ".llmharness", second, "recorded", "failed t.py::test_a")
    synced(full)
    shallow = clone(upstream, "shallow", "--depth", "1")
    assert subprocess.run(["git", "cat-file", "-e", first], cwd=shallow).returncode != 0
    know(shallow / ".llmharness", first, "checked", "passed t.py::test_old")

    out = synced(shallow)

    assert (
        out == "synced with origin: sent outcomes at 1 commit, received 2 outcomes at 2 commits\n"
    )
    assert known(shallow / ".llmharness", first, "synced") == "passed t.py::test_a\n"
    assert known(shallow / ".llmharness", second, "synced") == "failed t.py::test_a\n"
    assert remote_note(bare, first) == "passed t.py::test_a\npassed t.py::test_old\n"
    assert git(shallow, "rev-parse", "--is-shallow-repository") == "true"
    assert git(shallow, "status", "--porcelain") == ""


def test_the_upstream_remote_is_the_default_and_remote_picks_another(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    bare, commit = upstream
    team = tmp_path / "team.git"
    git(tmp_path, "clone", "-q", "--bare", str(bare), str(team))
    one = clone(upstream, "one")
    git(one, "remote", "add", "team", str(team))
    git(one, "fetch", "-q", "team")
    git(one, "branch", "-q", "--set-upstream-to=team/main")
    know(one / ".llmharness", commit, "recorded", "passed t.py::test_a")

    assert synced(one).startswith("synced with team: sent outcomes at 1 commit,")
    assert remote_note(team, commit) == "passed t.py::test_a\n"
    assert git(bare, "for-each-ref", NOTES) == ""
    assert synced(one, "--remote", "origin").startswith("synced with origin: sent outcomes at 1")
    assert remote_note(bare, commit) == "passed t.py::test_a\n"


def test_a_shared_store_named_by_the_environment_is_the_one_synced(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, commit = upstream
    one, two = clone(upstream, "one"), clone(upstream, "two")
    know(one / ".llmharness", commit, "recorded", "passed t.py::test_a")
    synced(one)
    shared = tmp_path / "shared-store"
    know(shared, ELSEWHERE, "recorded", "passed t.py::test_shared")
    monkeypatch.setenv("LLMHARNESS_STORE", str(shared))

    out = synced(two)

    assert out == "synced with origin: sent outcomes at 1 commit, received 1 outcome at 1 commit\n"
    assert remote_note(bare, ELSEWHERE) == "passed t.py::test_shared\n"
    assert known(shared, commit, "synced") == "passed t.py::test_a\n"
    assert not (two / ".llmharness").exists()


def _no_remote(repo: Path) -> str:
    return (
        "llmharness: sync: no git remote 'origin' "
        "(add one with `git remote add origin URL`, or pass --remote)\n"
    )


def _unreachable_remote(repo: Path) -> str:
    git(repo, "remote", "add", "origin", str(repo.parent / "gone.git"))
    return (
        f"llmharness: sync: cannot fetch from 'origin': '{repo.parent / 'gone.git'}' does not "
        "appear to be a git repository (check `git remote get-url origin` and that it is "
        "reachable, or pass --remote)\n"
    )


@pytest.mark.parametrize("remote", [_no_remote, _unreachable_remote])
def test_without_a_usable_remote_it_exits_2_and_changes_nothing(
    tmp_path: Path, remote: object
) -> None:
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    git(repo, "commit", "-q", "--allow-empty", "-m", "first")
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "notes", "--ref=llmharness", "add", "-m", "passed t.py::test_note", commit)
    know(repo / ".llmharness", commit, "recorded", "passed t.py::test_a")
    message = remote(repo)  # type: ignore[operator]
    store, state = files(repo / ".llmharness"), repo_state(repo)

    done = sync(repo)

    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)
    assert files(repo / ".llmharness") == store
    assert repo_state(repo) == state


def test_outside_a_git_work_tree_it_exits_2(tmp_path: Path) -> None:
    done = sync(tmp_path)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"llmharness: sync: not in a git work tree: {tmp_path} "
        "(run it inside a clone of the project)\n"
    )


def test_a_remote_refusing_the_push_exits_2_and_changes_nothing(
    upstream: tuple[Path, str],
) -> None:
    bare, commit = upstream
    one, two = clone(upstream, "one"), clone(upstream, "two")
    know(one / ".llmharness", commit, "recorded", "passed t.py::test_a")
    synced(one)
    synced(two)  # two now has a notes ref and synced knowledge of its own to keep
    know(one / ".llmharness", commit, "recorded", "failed t.py::test_b")
    synced(one)
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'notes are not welcome here' >&2\nexit 1\n")
    hook.chmod(0o755)
    know(two / ".llmharness", commit, "recorded", "passed t.py::test_c")
    store, state = files(two / ".llmharness"), repo_state(two)

    done = sync(two)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "llmharness: sync: 'origin' refused the notes: [remote rejected] (pre-receive hook "
        "declined): notes are not welcome here (let refs/notes/llmharness be pushed there, "
        "or pass --remote)\n"
    )
    assert files(two / ".llmharness") == store  # test_b, on the remote, was not taken in
    assert repo_state(two) == state
    assert "passed t.py::test_c" not in remote_note(bare, commit)


def test_sync_leaves_branches_head_index_and_work_tree_alone(upstream: tuple[Path, str]) -> None:
    _, commit = upstream
    one = clone(upstream, "one")
    git(one, "switch", "-q", "-c", "feature")
    (one / "t.py").write_text("def test_a(): assert 0\n")
    (one / "new.py").write_text("x = 1\n")
    git(one, "add", "new.py")
    know(one / ".llmharness", commit, "recorded", "passed t.py::test_a")
    state = repo_state(one)
    assert state[3] == "A  new.py\n M t.py"

    assert synced(one).startswith("synced with origin: sent outcomes at 1 commit,")

    assert repo_state(one)[1:] == state[1:]
    assert git(one, "for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes") == (
        "refs/heads/feature\nrefs/heads/main\nrefs/remotes/origin/HEAD\nrefs/remotes/origin/main"
    )
    assert git(one, "for-each-ref", "--format=%(refname)", "refs/llmharness") == ""
