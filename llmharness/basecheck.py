"""Outcomes at the base commit of tests whose outcome there nobody knows, found by running them
there.

The base is checked out in a git worktree of the store's own, `<store>/worktrees/base`, made
once, kept while the base stays and moved when it changes; the user's branch, HEAD, index and
work tree are never touched. The tests run in a pytest process of their own, in the worktree's
counterpart of the rootdir and under the base's pytest configuration, with the base's code first
on the import path; where the project was imported from elsewhere all is discarded. Past the
budget that process (with all it started) is killed: what finished stands. Git or pytest
failures leave tests unchecked with a note; nothing here raises.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from llmharness import environ
from llmharness.atbase_plugin import PLAN_ENV
from llmharness.codeundertest import is_inside, project_modules, source_roots
from llmharness.knowledge import ABSENT
from llmharness.store import _atomic_write_bytes

__all__ = [
    "BaseCheck",
    "check_at_base",
    "child_options",
    "kill_group",
    "llmharness_options",
    "plugin_folder",
    "read_records",
    "remove_worktree",
    "run_child",
    "worktree_path",
]

_PLUGIN_MODULE = "llmharness_atbase"
#: Variables a git hook runs with: they would point git, here or in the tests at the base, at
#: the user's repository and index.
_GIT_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_PREFIX",
    "GIT_OBJECT_DIRECTORY",
)
#: What a run at the base leaves behind that does not call for cleaning the worktree.
_LEFT_BY_RUNS = ("__pycache__", ".pytest_cache")
_GIT_MIN_TIMEOUT_S = 10.0
_GIT_MAX_TIMEOUT_S = 120.0
#: The base's own config file is found first; where it has none, pytest's upward search stops
#: here instead of finding the user's work tree's config (the worktree lies inside it).
_SENTINEL_INI = (
    b"# Written by llmharness: a run at the base finds the base's config or this.\n[pytest]\n"
)


@dataclass(frozen=True)
class BaseCheck:
    """What running tests at the base found."""

    outcomes: dict[str, str]  # nodeid -> pytest's outcome word at the base, or "absent"
    unchecked: list[str]  # nodeids the budget (or a failure) left without an outcome
    note: str | None  # one line saying what could not be known and why, else None
    seconds: float
    imported_from: dict[str, str] = field(default_factory=dict)  # project module -> its path


class _CannotCheck(Exception):
    """Nothing can be checked at the base; the message says why, in a few words."""


def worktree_path(store_root: Path) -> Path:
    """The folder of the store's worktree at the base."""
    return store_root / "worktrees" / "base"


def _count(number: int, total: int) -> str:
    tests = "test" if total == 1 else "tests"
    return f"{number} {tests}" if number == total else f"{number} of {total} {tests}"


def _note(unchecked: int, total: int, base: str, why: str) -> str:
    return f"{_count(unchecked, total)} not checked at base {base[:12]}: {why}"


def check_at_base(
    repo: Path,
    rootdir: Path,
    store_root: Path,
    base: str,
    nodeids: Sequence[str],
    budget_s: float,
    python: str = sys.executable,
) -> BaseCheck:
    """Run `nodeids` at commit `base` in the store's worktree within `budget_s` seconds and say
    what became of each."""
    started = time.monotonic()
    wanted = list(dict.fromkeys(nodeids))
    if not wanted:
        return BaseCheck({}, [], None, 0.0)
    if budget_s <= 0:
        return BaseCheck(
            {},
            wanted,
            _note(len(wanted), len(wanted), base, "the budget is 0 (setting base_check_budget)"),
            0.0,
        )
    try:
        check = _Check(repo, rootdir, store_root, base, wanted, started + budget_s, budget_s)
        outcomes, reasons, imported = check.run(python)
    except _CannotCheck as exc:
        outcomes, reasons, imported = {}, dict.fromkeys(wanted, str(exc)), {}
    except Exception as exc:  # a check at the base must never take the run's record down
        outcomes, reasons, imported = {}, dict.fromkeys(wanted, f"the check failed: {exc!r}"), {}
    unchecked = [nodeid for nodeid in wanted if nodeid not in outcomes]
    outcomes = {nodeid: outcomes[nodeid] for nodeid in wanted if nodeid in outcomes}
    note = None
    if unchecked:
        why = "; ".join(dict.fromkeys(reasons[nodeid] for nodeid in unchecked))
        note = _note(len(unchecked), len(wanted), base, why)
    return BaseCheck(outcomes, unchecked, note, time.monotonic() - started, imported)


def remove_worktree(repo: Path, store_root: Path) -> bool:
    """Remove the store's worktree at the base and git's record of it; False if it is in use
    or cannot be removed."""
    folder = worktree_path(store_root)
    lock = filelock.FileLock(str(folder.parent / "base.lock"))
    try:
        with lock.acquire(timeout=0):
            if folder.exists() or folder.is_symlink():
                shutil.rmtree(folder)
            _git(repo, "worktree", "prune", timeout=_GIT_MIN_TIMEOUT_S)
            shutil.rmtree(folder.parent / "plugin", ignore_errors=True)
            (folder.parent / "pytest.ini").unlink(missing_ok=True)
    except (filelock.Timeout, OSError):
        return False
    return True


def _git_env() -> dict[str, str]:
    env = {**environ.at_start(), "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    for name in _GIT_VARS:
        env.pop(name, None)
    return env


def _git(cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[bytes] | None:
    # No hooks: a user's post-checkout hook has no business with llmharness's worktree.
    command = ["git", "-c", f"core.hooksPath={os.devnull}", "-c", "advice.detachedHead=false"]
    try:
        return subprocess.run(
            [*command, *args],
            cwd=cwd,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            env=_git_env(),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _last_line(data: bytes) -> str:
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:200] if lines else "no output"


@dataclass(frozen=True)
class _Child:
    """What the pytest process at the base left."""

    records: list[dict[str, Any]]
    killed: bool
    returncode: int | None
    last_line: str


class _Check:
    """One check at the base: the worktree, the pytest process, and what it reported."""

    def __init__(
        self,
        repo: Path,
        rootdir: Path,
        store_root: Path,
        base: str,
        wanted: list[str],
        deadline: float,
        budget_s: float,
    ) -> None:
        self.repo = repo.resolve()
        self.base = base
        self.wanted = wanted
        self.deadline = deadline
        self.budget_s = budget_s
        self.folder = store_root.resolve() / "worktrees"
        self.worktree = self.folder / "base"
        try:
            self.relative = rootdir.resolve().relative_to(self.repo)
        except ValueError:
            raise _CannotCheck(f"the rootdir {rootdir} is not inside {repo}") from None
        self.user_rootdir = rootdir.resolve()
        self.rootdir = self.worktree / self.relative

    def _timeout(self) -> float:
        left = self.deadline - time.monotonic()
        return min(max(left, _GIT_MIN_TIMEOUT_S), _GIT_MAX_TIMEOUT_S)

    def _git(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
        return _git(cwd, *args, timeout=self._timeout())

    def run(self, python: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """(outcomes, why each test left out has no outcome, where project modules came from)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _CannotCheck(f"cannot make {self.folder}: {exc.strerror or exc}") from None
        lock = filelock.FileLock(str(self.folder / "base.lock"))
        try:
            lock.acquire(timeout=max(0.0, self.deadline - time.monotonic()))
        except filelock.Timeout:
            raise _CannotCheck("another run was using the base worktree all the budget") from None
        try:
            self._checkout()
            return self._run_tests(python)
        finally:
            lock.release()

    # -- the worktree ----------------------------------------------------------------------
    def _checkout(self) -> None:
        """Make the worktree a clean checkout of the base, reusing it where it can."""
        found = self._git(self.repo, "cat-file", "-e", f"{self.base}^{{commit}}")
        if found is None:
            raise _CannotCheck("git is not available or did not answer")
        if found.returncode != 0:
            raise _CannotCheck(
                "the commit is not in this clone (a shallow clone? git fetch --unshallow)"
            )
        if (self.worktree / ".git").is_file() and self._ours():
            head = self._git(self.worktree, "rev-parse", "--verify", "--quiet", "HEAD")
            if head is not None and head.stdout.decode().strip() == self.base:
                if not self._clean():
                    self._must(self.worktree, "reset", "--hard", "--quiet")
                    self._must(self.worktree, "clean", "-ffdxq")
                return
            moved = self._git(self.worktree, "checkout", "--detach", "--force", self.base)
            if moved is not None and moved.returncode == 0:
                self._must(self.worktree, "clean", "-ffdxq")
                return
        # Missing, half made, broken, or another repository's (the store was copied): anew.
        if self.worktree.exists() or self.worktree.is_symlink():
            try:
                shutil.rmtree(self.worktree)
            except OSError as exc:
                raise _CannotCheck(f"cannot remove {self.worktree}: {exc.strerror}") from None
        self._git(self.repo, "worktree", "prune")
        self._must(self.repo, "worktree", "add", "--detach", str(self.worktree), self.base)

    def _must(self, cwd: Path, *args: str) -> None:
        done = self._git(cwd, *args)
        if done is None:
            raise _CannotCheck(f"git {args[0]} did not finish in time")
        if done.returncode != 0:
            raise _CannotCheck(f"git {' '.join(args[:2])} failed: {_last_line(done.stderr)}")

    def _ours(self) -> bool:
        """Whether the worktree belongs to this repository."""
        dirs = []
        for cwd in (self.repo, self.worktree):
            done = self._git(cwd, "rev-parse", "--git-common-dir")
            if done is None or done.returncode != 0:
                return False
            dirs.append(os.path.realpath(cwd / done.stdout.decode().strip()))
        return dirs[0] == dirs[1]

    def _clean(self) -> bool:
        """Whether the worktree holds nothing but the base and what test runs leave."""
        done = self._git(
            self.worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored"
        )
        if done is None or done.returncode != 0:
            return False
        for entry in done.stdout.split(b"\0"):
            if len(entry) < 4:
                continue
            parts = entry[3:].decode("utf-8", "surrogateescape").split("/")
            if entry[:2] not in (b"??", b"!!") or not any(p in _LEFT_BY_RUNS for p in parts):
                return False
        return True

    # -- the run -----------------------------------------------------------------------------
    def _run_tests(self, python: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        outcomes: dict[str, str] = {}
        files: list[str] = []
        for nodeid in self.wanted:
            file = nodeid.split("::", 1)[0]
            if (self.rootdir / file).is_file():
                if file not in files:
                    files.append(file)
            else:
                outcomes[nodeid] = ABSENT
        if not files:
            return outcomes, {}, {}
        roots = source_roots(self.worktree, self.rootdir)
        # The user's clone's packages too: one the base lacks must not come from there either.
        modules = sorted(project_modules([*roots, *source_roots(self.repo, self.user_rootdir)]))
        with tempfile.TemporaryDirectory(prefix="check-", dir=self.folder) as scratch:
            child = self._start(python, Path(scratch), files, modules, roots)
        imported = {}
        for record in child.records:
            if record.get("kind") == "module" and record.get("paths"):
                path = str(record["paths"][0])
                imported[str(record["name"])] = path
                if not is_inside(path, self.worktree):
                    raise _CannotCheck(
                        f"at the base {record['name']} was imported from {path}, outside "
                        "its worktree (an import hook or a sys.path change that wins over "
                        "PYTHONPATH?), so the outcomes were not the base's"
                    )
        reasons = self._read(child, outcomes)
        return outcomes, reasons, imported

    def _start(
        self, python: str, scratch: Path, files: list[str], modules: list[str], roots: list[Path]
    ) -> _Child:
        plugin_dir = self._plugin_dir()
        out = scratch / "out"
        out.mkdir()
        plan = {
            "wanted": self.wanted,
            "files": files,
            "modules": modules,
            "out": str(out),
            "options": llmharness_options(),
            "ini": ["llmharness_config"],
        }
        (scratch / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        env = self._env(roots, plugin_dir)
        env[PLAN_ENV] = str(scratch / "plan.json")
        # The cache of an earlier run at the base must not choose tests (--lf, --sw in addopts).
        shutil.rmtree(self.rootdir / ".pytest_cache", ignore_errors=True)
        log = scratch / "output.txt"
        try:
            returncode, killed = run_child(
                [python, "-m", "pytest", *child_options(self.rootdir), *files],
                cwd=self.rootdir,
                env=env,
                deadline=self.deadline,
                log=log,
            )
        except OSError as exc:
            raise _CannotCheck(f"cannot start {python}: {exc.strerror or exc}") from None
        return _Child(read_records(out), killed, returncode, _last_line(log.read_bytes()))

    def _plugin_dir(self) -> Path:
        """The child's plugin folder, and the ini that stops pytest's config search here."""
        _write_if_changed(self.folder / "pytest.ini", _SENTINEL_INI)
        return plugin_folder(self.folder)

    def _env(self, roots: list[Path], plugin_dir: Path) -> dict[str, str]:
        """The user's environment, with the base's code first on the import path and the
        user's clone off it."""
        # PYTHONDONTWRITEBYTECODE and PYTEST_ADDOPTS stay as the user has them: bytecode lands in
        # the worktree, inside the store, and `git clean` drops it with the base it came from.
        env = {
            name: value
            for name, value in environ.at_start().items()
            if not name.startswith("LLMHARNESS_") and name not in _GIT_VARS
        }
        entries = [str(root) for root in roots]
        for entry in environ.at_start().get("PYTHONPATH", "").split(os.pathsep):
            if not entry:
                continue  # the current folder: the child's is the worktree's rootdir
            path = os.path.abspath(entry)
            if is_inside(path, self.repo) and not is_inside(path, self.worktree):
                # The user's clone: its counterpart at the base instead, where there is one.
                inner = os.path.relpath(os.path.realpath(path), os.path.realpath(self.repo))
                counterpart = self.worktree / inner
                if counterpart.exists():
                    entries.append(str(counterpart))
                continue
            entries.append(path)  # made absolute: the child starts in another folder
        entries.append(str(plugin_dir))
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries))
        return env

    def _read(self, child: _Child, outcomes: dict[str, str]) -> dict[str, str]:
        """Fill `outcomes` from the child's records; return why each test left has none."""
        tested: dict[str, str] = {}
        collected: set[str] = set()
        clean_files: set[str] = set()
        errors: list[str] = []
        skips: list[str] = []
        finished = False
        for record in child.records:
            kind = record.get("kind")
            if kind == "test":
                tested[str(record["nodeid"])] = str(record["outcome"])
            elif kind == "collected":
                collected.update(str(nodeid) for nodeid in record["nodeids"])
            elif kind == "collected_file":
                clean_files.add(str(record["nodeid"]))
            elif kind == "collect_error":
                errors.append(str(record["nodeid"]))
            elif kind == "collect_skipped":
                skips.append(str(record["nodeid"]))
            elif kind == "finished":
                finished = True
        reasons: dict[str, str] = {}
        for nodeid in self.wanted:
            if nodeid in outcomes:
                continue
            file = nodeid.split("::", 1)[0]
            if nodeid in tested:
                outcomes[nodeid] = tested[nodeid]
            elif any(_covers(error, nodeid) for error in errors):
                outcomes[nodeid] = "error"  # it could not pass there
            elif any(_covers(skip, nodeid) for skip in skips):
                outcomes[nodeid] = "skipped"
            elif nodeid == file and file in clean_files:
                outcomes[nodeid] = "passed"  # a file's own id: it collects at the base
            elif file in clean_files and nodeid not in collected:
                outcomes[nodeid] = ABSENT
            elif child.killed:
                reasons[nodeid] = (
                    f"the {self.budget_s:g}s budget ran out (setting base_check_budget)"
                )
            elif not finished:
                reasons[nodeid] = f"pytest at the base exited {child.returncode}: {child.last_line}"
            elif nodeid in collected:
                reasons[nodeid] = "the base's pytest configuration deselected or stopped them"
            else:
                reasons[nodeid] = "pytest at the base did not collect their files"
        return reasons


def child_options(rootdir: Path) -> list[str]:
    """The options of a child run, last on its command line so they win over PYTEST_ADDOPTS
    and the ini's addopts; the files to run follow."""
    return [
        "-p",
        "no:llmharness",
        "-p",
        "no:llmharness.plugin",
        "-p",
        _PLUGIN_MODULE,
        "-q",
        "-rN",
        "--color=no",
        "--maxfail=0",  # -x in addopts would leave the rest unknown
        "--continue-on-collection-errors",  # one broken file must not stop the others
        f"--rootdir={rootdir}",  # node ids as in the user's run
        "--",
    ]


def run_child(
    command: list[str], *, cwd: Path, env: dict[str, str], deadline: float, log: Path
) -> tuple[int | None, bool]:
    """Run `command`, its output to `log`, killing it and all it started at `deadline`
    (time.monotonic()); return its exit status and whether it was killed. OSError if it
    cannot start."""
    killed = False
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=os.name == "posix",  # to kill all it starts, at once
        )
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed = True
        finally:
            if process.poll() is None:
                kill_group(process)
                process.wait()
    return process.returncode, killed


def _write_if_changed(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    _atomic_write_bytes(path, data)


def plugin_folder(folder: Path) -> Path:
    """`folder`/plugin, holding only the child runs' plugin under a module name of its own."""
    plugin = folder / "plugin"
    plugin.mkdir(parents=True, exist_ok=True)
    source = importlib.resources.files("llmharness").joinpath("atbase_plugin.py").read_bytes()
    _write_if_changed(plugin / f"{_PLUGIN_MODULE}.py", source)
    return plugin


def _covers(collector: str, nodeid: str) -> bool:
    """Whether the collector with node id `collector` holds the test `nodeid`."""
    return (
        collector in ("", ".")
        or nodeid == collector
        or nodeid.startswith(collector + "::")
        or nodeid.startswith(collector.rstrip("/") + "/")
    )


def read_records(out: Path) -> list[dict[str, Any]]:
    """The JSON lines the child's processes wrote; a line cut short by a kill is skipped."""
    records = []
    for path in sorted(out.glob("*.jsonl")):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def kill_group(process: subprocess.Popen[bytes]) -> None:
    if os.name == "posix":
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        process.kill()


def llmharness_options() -> list[tuple[str, bool]]:
    """llmharness's command-line flags, and whether each takes a value."""
    from llmharness.plugin import _OPTIONS

    return [
        (flag, kwargs.get("action") not in ("store_true", "store_false"))
        for flag, _, kwargs in _OPTIONS
    ]
