"""`llmharness sync`: exchange the outcomes known at commits with a git remote, as git notes.

The notes live in `refs/notes/llmharness`: one note per commit, in the line format of
`llmharness.knowledge`, so that notes from many clones merge by a union of lines. A sync fetches
the remote's notes into a private ref, writes the union of the remote's, the local ref's and the
store's lines as a commit with both notes commits as parents, and pushes it; when another clone
pushed first, it does all that again. Only once the push is taken are the local notes ref moved
and the notes added to the store as `synced` knowledge, so a failed sync changes nothing here.
The notes are written with plumbing, which needs no commit they annotate to be present: shallow
clones and a store shared with other clones work too. Branches, HEAD, the index and the work
tree are never touched.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from llmharness.knowledge import SHA, SOURCES, Knowledge, format_lines, parse_lines
from llmharness.reporting import counted
from llmharness.store import Store, StoreError, find_store

__all__ = ["NOTES_REF", "SyncError", "Synced", "command", "sync"]

NOTES_REF = "refs/notes/llmharness"
ATTEMPTS = 30
_LOCAL_TIMEOUT_S = 60.0
_REMOTE_TIMEOUT_S = 120.0
# The notes commits are the tool's own, and sync must work where no identity is configured.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "llmharness sync",
    "GIT_AUTHOR_EMAIL": "llmharness@localhost",
    "GIT_COMMITTER_NAME": "llmharness sync",
    "GIT_COMMITTER_EMAIL": "llmharness@localhost",
}
# A push the remote refused on purpose (a hook, permissions) is never retried; checked first.
_REFUSED = re.compile(r"hook declined|denied|read-only|unpack(er)? (error|failed)", re.IGNORECASE)
# What git says when another push moved or held the ref between our fetch and our push.
_RACE = re.compile(
    r"non-fast-forward|fetch first|failed to lock|cannot lock ref|failed to update ref"
    r"|incorrect old value|stale info|but expected|already exists",
    re.IGNORECASE,
)


class SyncError(Exception):
    """Sync cannot go on; the message says what failed and, in parentheses, how to fix it."""


@dataclass(frozen=True)
class Synced:
    """What one sync exchanged with the remote."""

    remote: str
    sent_commits: int  # commits whose note on the remote gained lines from here
    received_commits: int
    received_outcomes: int  # lines new to the store, added as `synced`
    attempts: int

    def line(self) -> str:
        """The line `llmharness sync` prints."""
        return (
            f"synced with {self.remote}: sent outcomes at "
            f"{counted(self.sent_commits, 'commit', 'commits')}, received "
            f"{counted(self.received_outcomes, 'outcome', 'outcomes')} at "
            f"{counted(self.received_commits, 'commit', 'commits')}"
        )


def command(where: str | None, remote: str | None, as_json: bool) -> int:
    """Sync the store found from `where` (or the current folder) and print one line or JSON;
    return the exit code."""
    try:
        done = sync(where, remote, Path.cwd())
    except SyncError as exc:
        sys.stderr.write(f"llmharness: sync: {exc}\n")
        return 2
    if as_json:
        sys.stdout.write(json.dumps(asdict(done), indent=2) + "\n")
    else:
        print(done.line())
    return 0


class _Git:
    def __init__(self, top: Path) -> None:
        self.top = top
        self.env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
        # A hook's environment must not point us at another repository.
        self.env.pop("GIT_DIR", None)
        self.env.pop("GIT_WORK_TREE", None)
        self.env.pop("GIT_INDEX_FILE", None)

    def run(
        self, *args: str, stdin: bytes = b"", remote: bool = False, identity: bool = False
    ) -> subprocess.CompletedProcess[bytes]:
        timeout = _REMOTE_TIMEOUT_S if remote else _LOCAL_TIMEOUT_S
        env = {**self.env, **_IDENTITY} if identity else self.env
        try:
            return subprocess.run(
                ["git", *args],
                cwd=self.top,
                input=stdin,
                capture_output=True,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SyncError(
                f"`git {args[0]}` took over {timeout:.0f}s (check the remote)"
            ) from None
        except OSError as exc:
            raise SyncError(f"cannot run git: {exc.strerror or exc} (install git)") from None

    def out(self, *args: str, stdin: bytes = b"", identity: bool = False) -> str | None:
        done = self.run(*args, stdin=stdin, identity=identity)
        return done.stdout.decode().strip() if done.returncode == 0 else None

    def tip(self, ref: str) -> str | None:
        return self.out("rev-parse", "-q", "--verify", f"{ref}^{{commit}}")


def _said(done: subprocess.CompletedProcess[bytes]) -> str:
    """Git's own reason for a failure, in one line."""
    lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line.partition(":")[2].strip()
    return lines[-1] if lines else f"git exited with {done.returncode}"


def _locate(where: str | None, cwd: Path) -> tuple[Store, _Git]:
    """The store (made on import if missing) and the repository around `cwd`."""
    root: Path | None
    shared = os.environ.get("LLMHARNESS_STORE")
    if where is not None:
        start = Path(where)
        root = start if (start / "runs").is_dir() else find_store(start)
        if root is None:
            raise SyncError(f"no llmharness store at or above {start} (check --dir)")
    elif shared:
        root = Path(shared)  # the store several clones share, as pytest runs were told
    else:
        root = find_store(cwd)
    for folder in (cwd, None if root is None else root.parent):
        if folder is None or not folder.is_dir():
            continue
        top = _Git(folder).out("rev-parse", "--show-toplevel")
        if top:
            return Store(root or Path(top) / ".llmharness"), _Git(Path(top))
    raise SyncError(f"not in a git work tree: {cwd} (run it inside a clone of the project)")


def _remote(git: _Git, name: str | None) -> str:
    if name is not None:
        return name  # a configured remote or a URL: fetching says which is unreachable
    branch = git.out("symbolic-ref", "-q", "--short", "HEAD")
    upstream = git.out("config", f"branch.{branch}.remote") if branch else None
    name = upstream if upstream and upstream != "." else "origin"
    if name not in (git.out("remote") or "").split():
        raise SyncError(
            f"no git remote {name!r} (add one with `git remote add {name} URL`, or pass --remote)"
        )
    return name


def _read_notes(git: _Git, tip: str | None, blobs: dict[bytes, str]) -> dict[str, bytes]:
    """The note of each commit under the notes commit `tip`; remembers each blob in `blobs`."""
    if tip is None:
        return {}
    listing = git.run("ls-tree", "-r", "-z", tip)
    entries = []
    for entry in listing.stdout.decode(errors="replace").split("\0"):
        meta, _, path = entry.partition("\t")
        kind, sha = meta.split(" ")[1:] if meta.count(" ") == 2 else ("", "")
        commit = path.replace("/", "")  # notes trees may be fanned out as ab/cdef...
        if kind == "blob" and SHA.fullmatch(commit):
            entries.append((commit, sha))
    batch = git.run("cat-file", "--batch", stdin="".join(f"{s}\n" for _, s in entries).encode())
    notes: dict[str, bytes] = {}
    data, at = batch.stdout, 0
    for commit, sha in entries:
        header_end = data.index(b"\n", at)
        header = data[at:header_end].split()  # `<sha> blob <size>`, or `<sha> missing`
        at = header_end + 1
        if len(header) != 3:
            continue
        text = data[at : at + int(header[2])]
        at += len(text) + 1
        blobs[text] = sha
        # A note both fanned out and flat (written by different tools): keep both.
        notes[commit] = notes[commit] + b"\n" + text if commit in notes else text
    return notes


def _union(*texts: bytes) -> bytes:
    lines = {line for text in texts for line in text.splitlines() if line.strip()}
    return b"".join(line + b"\n" for line in sorted(lines))


def _write_tree(git: _Git, notes: dict[str, bytes], blobs: dict[bytes, str]) -> str:
    """A flat notes tree of `notes`, reusing the blobs already in the repository."""
    new = sorted({text for text in notes.values() if text not in blobs})
    if new:
        with tempfile.TemporaryDirectory(prefix="llmharness-sync-") as folder:
            # hash-object takes many blobs in one call only as files.
            paths = [Path(folder) / str(number) for number in range(len(new))]
            for path, text in zip(paths, new, strict=True):
                path.write_bytes(text)
            listed = "".join(f"{path}\n" for path in paths).encode()
            made = git.out("hash-object", "-w", "--no-filters", "--stdin-paths", stdin=listed)
        if made is None or len(made.split()) != len(new):
            raise SyncError("cannot write notes into the repository (check `git fsck`)")
        blobs.update(zip(new, made.split(), strict=True))
    listing = "".join(f"100644 blob {blobs[text]}\t{commit}\n" for commit, text in notes.items())
    tree = git.out("mktree", stdin=listing.encode())
    if tree is None:
        raise SyncError("cannot write the notes tree (check `git fsck`)")
    return tree


def _store_notes(store: Store) -> dict[str, bytes]:
    knowledge = Knowledge(store)
    notes = {}
    for commit in knowledge.commits():
        text = format_lines(knowledge.pairs(commit, SOURCES)).encode("utf-8", "surrogatepass")
        if text:
            notes[commit] = text
    return notes


@dataclass(frozen=True)
class _Round:
    sent: int  # commits whose note on the remote gained lines
    notes: dict[str, bytes]  # the notes on the remote now
    tip: str | None  # the notes commit on the remote now
    local_tip: str | None  # the local notes ref when the round began


def _round(git: _Git, remote: str, scratch: str, ours: dict[str, bytes]) -> _Round | None:
    """Fetch, merge and push the notes once; None when another push came first."""
    fetch_args = (
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        remote,
        f"+{NOTES_REF}:{scratch}",
    )
    fetch = git.run("fetch", *fetch_args, remote=True)
    if fetch.returncode == 0:
        remote_tip = git.tip(scratch)
    elif "couldn't find remote ref" in fetch.stderr.decode(errors="replace"):
        remote_tip = None  # nobody synced with this remote yet
    else:
        raise SyncError(
            f"cannot fetch from {remote!r}: {_said(fetch)} "
            f"(check `git remote get-url {remote}` and that it is reachable, or pass --remote)"
        )
    local_tip = git.tip(NOTES_REF)
    blobs: dict[bytes, str] = {}
    theirs = _read_notes(git, remote_tip, blobs)
    local = _read_notes(git, local_tip, blobs)
    merged = {
        commit: _union(theirs.get(commit, b""), local.get(commit, b""), ours.get(commit, b""))
        for commit in sorted({*theirs, *local, *ours})
    }
    sent = sum(1 for commit, text in merged.items() if text != _union(theirs.get(commit, b"")))
    if not sent:
        return _Round(0, merged, remote_tip, local_tip)
    parents = [remote_tip] if remote_tip else []
    if local_tip is not None and local_tip != remote_tip:
        behind = (
            remote_tip is not None
            and not git.run("merge-base", "--is-ancestor", local_tip, remote_tip).returncode
        )
        if not behind:
            parents.append(local_tip)
    tree = _write_tree(git, merged, blobs)
    message = f"llmharness sync: outcomes at {counted(len(merged), 'commit', 'commits')}"
    args = [arg for parent in parents for arg in ("-p", parent)]
    new_tip = git.out("commit-tree", tree, *args, "-m", message, identity=True)
    if new_tip is None:
        raise SyncError("cannot write the notes commit (check `git fsck`)")
    push = git.run("push", "--porcelain", remote, f"{new_tip}:{NOTES_REF}", remote=True)
    if push.returncode == 0:
        return _Round(sent, merged, new_tip, local_tip)
    said = (push.stdout + push.stderr).decode(errors="replace")
    if _RACE.search(said) and not _REFUSED.search(said):
        return None
    rejected = [line.split("\t")[-1] for line in said.splitlines() if line.startswith("!\t")]
    reason = rejected[0] if rejected else _said(push)
    # A hook's own words say why, e.g. which branch protection rule refused.
    words = [line[7:].strip() for line in said.splitlines() if line.startswith("remote: ")]
    words = [word for word in words if word]
    raise SyncError(
        f"{remote!r} refused the notes: {reason}{': ' + words[0] if words else ''} "
        f"(let {NOTES_REF} be pushed there, or pass --remote)"
    )


def _import(store: Store, notes: dict[str, bytes]) -> tuple[int, int]:
    """(commits, outcomes) of the notes new to the store, added to it as `synced`."""
    knowledge = Knowledge(store)
    wanted = {}
    for commit, text in notes.items():
        pairs = parse_lines(text.decode("utf-8", "replace")) - knowledge.pairs(commit)
        if pairs:
            wanted[commit] = pairs
    if not wanted:
        return 0, 0
    added = {}
    try:
        store.ensure()
        with store.locked():
            for commit, pairs in wanted.items():
                added[commit] = knowledge.add(commit, "synced", pairs)
    except StoreError as exc:
        raise SyncError(f"{exc} (run llmharness sync again)") from None
    except OSError as exc:
        raise SyncError(
            f"{store.root}: cannot write ({exc.strerror or exc}) (check that it is writable)"
        ) from None
    return sum(1 for count in added.values() if count), sum(added.values())


def sync(where: str | None, remote: str | None, cwd: Path) -> Synced:
    """Exchange the store's knowledge with the remote's notes; raise SyncError, having changed
    nothing here, when the repository, the remote or the push fails."""
    store, git = _locate(where, cwd)
    remote = _remote(git, remote)
    ours = _store_notes(store)
    # A ref of this process's own: two syncs in one clone must not clobber each other's fetch.
    scratch = f"refs/llmharness/remote-notes-{secrets.token_hex(4)}"
    try:
        for attempt in range(1, ATTEMPTS + 1):
            done = _round(git, remote, scratch, ours)
            if done is None:
                # Jittered and growing, so that many clones racing for the ref spread out.
                time.sleep(random.uniform(0.0, min(1.0, 0.02 * 2**attempt)))
                continue
            commits, outcomes = _import(store, done.notes)
            if done.tip is not None and done.tip != done.local_tip:
                # Compare-and-swap: a note added here meanwhile keeps the ref, and the next
                # sync merges it; what this round merged is on the remote already.
                old = done.local_tip or ""
                git.run("update-ref", "-m", "llmharness sync", NOTES_REF, done.tip, old)
            return Synced(remote, done.sent, commits, outcomes, attempt)
    finally:
        git.run("update-ref", "-d", scratch)
    raise SyncError(
        f"the notes on {remote!r} kept moving: gave up after {ATTEMPTS} attempts "
        "(run llmharness sync again)"
    )
