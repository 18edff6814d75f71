"""The code version a run tests: commit, tree, uncommitted changes, branch and base, from git.

Read in a background thread while the tests run, so a run pays for the git calls only when
they take longer than its tests. Without git, outside a work tree, or when git fails, the
version is None and `note` says why; nothing else changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BaseRefError",
    "CodeVersion",
    "VersionProbe",
    "changed_paths",
    "generation",
    "read_version",
    "resolve_ref",
]

_TIMEOUT_S = 20.0
#: Untracked paths that do not make a tree dirty: bytecode and caches tools write as they run.
_NOT_CHANGES = ("__pycache__/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/")


class BaseRefError(ValueError):
    """A configured base names no commit."""


@dataclass(frozen=True)
class CodeVersion:
    """What git says of the work tree a run tested."""

    top: str  # the work tree's top folder
    commit: str
    tree: str
    dirty: bool
    changes: str | None  # a fingerprint of the uncommitted changes, None when clean
    branch: str | None  # None on a detached HEAD
    base: str | None  # the base commit, None when none could be found
    base_ref: str | None  # how the base was chosen, e.g. "@{upstream}" or "--base main"
    note: str | None = None  # what could not be known, e.g. why there is no base

    @property
    def at_base(self) -> bool:
        """A clean tree at the base commit: this run's outcomes are the base's."""
        return not self.dirty and self.base == self.commit

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "tree": self.tree,
            "dirty": self.dirty,
            "changes": self.changes,
            "branch": self.branch,
            "base": self.base,
        }

    def base_json(self) -> dict[str, Any]:
        return {
            "commit": self.base,
            "ref": self.base_ref,
            "at_base": self.at_base,
            "note": self.note,
        }


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    env.pop("GIT_DIR", None)  # a hook's environment must not point us at another repository
    env.pop("GIT_WORK_TREE", None)
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=_TIMEOUT_S, env=env, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _out(cwd: Path, *args: str) -> str | None:
    done = _git(cwd, *args)
    if done is None or done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", "surrogateescape").strip()


def resolve_ref(cwd: Path, ref: str) -> str:
    """The commit `ref` names; raise BaseRefError if it names none (or git cannot say)."""
    sha = _out(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if not sha:
        raise BaseRefError(
            f"--base {ref!r} names no commit here: give a branch, tag or sha that "
            "`git rev-parse` knows (fetch it first in a shallow clone)"
        )
    return sha


def _changes(top: Path, status: bytes) -> tuple[bool, str | None]:
    """Whether the tree is dirty, and a fingerprint of its uncommitted state."""
    untracked: list[str] = []
    tracked = False
    for entry in status.split(b"\0"):
        if len(entry) < 4:
            continue  # the empty tail, or the second path of a rename
        path = entry[3:].decode("utf-8", "surrogateescape")
        if entry[:2] == b"??":
            if not any(part in f"/{path}" for part in (f"/{p}" for p in _NOT_CHANGES)):
                untracked.append(path)
        else:
            tracked = True
    if not tracked and not untracked:
        return False, None
    digest = hashlib.sha256()
    if tracked:
        done = _git(top, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff")
        digest.update(done.stdout if done is not None else b"?")
    for path in sorted(untracked):
        digest.update(b"\0untracked\0" + path.encode("utf-8", "surrogateescape") + b"\0")
        try:
            digest.update(hashlib.sha256((top / path).read_bytes()).digest())
        except OSError:
            digest.update(b"unreadable")
    return True, digest.hexdigest()[:16]


def _default_base(top: Path) -> tuple[str | None, str | None, str | None]:
    """(base commit, how it was chosen, why there is none) by the default rule."""
    candidates = []
    upstream = _out(top, "rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
    if upstream:
        candidates.append((upstream, "@{upstream}"))
    if _out(top, "rev-parse", "--verify", "--quiet", "refs/remotes/origin/HEAD"):
        candidates.append(("refs/remotes/origin/HEAD", "origin/HEAD"))
    for name in ("main", "master"):
        if _out(top, "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"):
            candidates.append((f"refs/heads/{name}", name))
    if not candidates:
        return None, None, "no upstream, origin/HEAD, main or master to take as the base"
    for ref, how in candidates:
        base = _out(top, "merge-base", "HEAD", ref)
        if base:
            return base, how, None
    ref, how = candidates[0]
    return None, how, f"HEAD and {how} have no common commit here (a shallow clone? fetch more)"


def read_version(rootdir: Path, base_ref: str | None = None) -> tuple[CodeVersion | None, str]:
    """The code version of the work tree holding `rootdir`, or None and why there is none."""
    top_text = _out(rootdir, "rev-parse", "--show-toplevel")
    if top_text is None:
        done = _git(rootdir, "--version")
        if done is None or done.returncode != 0:
            return None, "git is not available: outcomes are not tied to a code version"
        return None, "not in a git work tree: outcomes are not tied to a code version"
    top = Path(top_text)
    heads = _out(top, "rev-parse", "HEAD", "HEAD^{tree}")
    if not heads or len(heads.split()) != 2:
        return None, "the repository has no commit yet: outcomes are not tied to a code version"
    commit, tree = heads.split()
    branch = _out(top, "symbolic-ref", "--quiet", "--short", "HEAD")
    status = _git(top, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    if status is None or status.returncode != 0:
        return None, "git status failed: outcomes are not tied to a code version"
    dirty, changes = _changes(top, status.stdout)
    note = None
    base: str | None
    how: str | None
    if base_ref is not None:
        target = _out(top, "rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}")
        base = _out(top, "merge-base", "HEAD", target) if target else None
        how = f"--base {base_ref}"
        if base is None:
            note = f"HEAD and {base_ref} have no common commit here (a shallow clone? fetch more)"
    else:
        base, how, note = _default_base(top)
    version = CodeVersion(str(top), commit, tree, dirty, changes, branch, base, how, note)
    return version, note or ""


def generation(top: Path, commit: str) -> int | None:
    """How many commits lead to `commit` along first parents (itself included), the same in
    every full clone; None in a shallow clone, whose history is cut, or when git fails."""
    if _out(top, "rev-parse", "--is-shallow-repository") != "false":
        return None
    count = _out(top, "rev-list", "--first-parent", "--count", commit)
    return int(count) if count and count.isdecimal() else None


def changed_paths(top: Path, since: str) -> set[str] | None:
    """The work tree's files (relative to `top`) that differ from commit `since`: edited,
    added, deleted or untracked (caches aside); None when git cannot say."""
    diff = _git(top, "diff", "--name-only", "-z", "--no-renames", since, "--")
    others = _git(top, "ls-files", "--others", "--exclude-standard", "-z")
    if diff is None or others is None or diff.returncode or others.returncode:
        return None
    paths = set()
    for raw in (diff.stdout + b"\0" + others.stdout).split(b"\0"):
        path = raw.decode("utf-8", "surrogateescape")
        if path and not any(part in f"/{path}" for part in (f"/{p}" for p in _NOT_CHANGES)):
            paths.add(path)
    return paths


class VersionProbe:
    """`read_version` in a thread of its own, started when the run starts."""

    def __init__(self, rootdir: Path, base_ref: str | None) -> None:
        self._result: tuple[CodeVersion | None, str] = (None, "the code version was not read")
        self._thread = threading.Thread(
            target=self._read, args=(rootdir, base_ref), name="llmharness-git", daemon=True
        )
        self._thread.start()

    def _read(self, rootdir: Path, base_ref: str | None) -> None:
        try:
            self._result = read_version(rootdir, base_ref)
        except Exception as exc:  # never let a git oddity take the run down
            self._result = (None, f"reading the code version failed: {exc!r}")

    def result(self) -> tuple[CodeVersion | None, str]:
        self._thread.join(_TIMEOUT_S * 4)
        return self._result
