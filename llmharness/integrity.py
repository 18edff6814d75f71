"""The integrity of what "fixed" means: tests made to pass by changing them, failing tests
removed or skipped, reporting hooks and protected paths changed since the base.

Everything here runs once, at the end of a run, from git and the run's results: nothing is
done per test while the tests run. Only the files that differ from the base are read and
parsed, so a run that changed no test costs two git calls. It never imports pytest (the CLI's
read path uses `blocking`).

A test's fingerprint is what decides its outcome in the test code: its function (decorators
included), the decorators and bases of its enclosing classes, the module- and class-level
names it refers to (helpers, constants, fixtures, imports; one level deep), `pytestmark`, and
the conftest.py files from the rootdir down to its folder, each compared as `ast.unparse`
prints it, so reformatting and comments do not count as a change.
"""

from __future__ import annotations

import ast
import os
import subprocess
import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from llmharness.gitinfo import _NOT_CHANGES, _TIMEOUT_S
from llmharness.reporting import counted

if TYPE_CHECKING:
    from llmharness.gitinfo import CodeVersion
    from llmharness.knowledge import AtCommit
    from llmharness.reporting import TestResult

__all__ = [
    "HOOKS",
    "KEYS",
    "blocking",
    "check",
    "lines",
    "newly_skipped",
]

#: The hooks through which a conftest can change what a run reports or collects.
HOOKS = frozenset(
    {
        "pytest_runtest_makereport",
        "pytest_runtest_logreport",
        "pytest_report_teststatus",
        "pytest_collection_modifyitems",
        "pytest_runtest_protocol",
        "pytest_runtest_call",
        "pytest_terminal_summary",
        "pytest_sessionfinish",
        "pytest_collectreport",
        "pytest_deselected",
        "pytest_runtest_setup",
        "pytest_pyfunc_call",
        "pytest_ignore_collect",
        "pytest_collect_file",
    }
)
#: The keys `check` adds to a regression diff (`newly_skipped` it extends).
KEYS = (
    "fixed_by_test_change",
    "removed",
    "newly_skipped",
    "hooks_changed",
    "protected_changed",
    "tampered",
    "tamper_reason",
    "allow_test_changes",
    "protected",
    "integrity_note",  # what could not be checked, and why
    "integrity_s",  # the seconds the check took
)
_FAILING = frozenset({"failed", "error"})
_SKIPPED = frozenset({"skipped", "xfailed"})
_BROAD = frozenset({"Exception", "BaseException", "object"})
#: pytest's checking calls, by the name they are called by (`pytest.raises` or `raises`).
_PYTEST_CHECKS = frozenset({"raises", "approx", "warns", "deprecated_call"})
_MAX_DROPPED = 5
_CONFTEST = "conftest.py"


# -- git -------------------------------------------------------------------------------------
def _git(
    top: Path, *args: str, feed: bytes | None = None
) -> subprocess.CompletedProcess[bytes] | None:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    env.pop("GIT_DIR", None)  # a hook's environment must not point us at another repository
    env.pop("GIT_WORK_TREE", None)
    try:
        return subprocess.run(
            ["git", *args],
            cwd=top,
            input=feed,
            capture_output=True,
            timeout=_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _paths_out(top: Path, *args: str) -> set[str] | None:
    """The NUL-separated paths a git command prints, or None when git fails."""
    done = _git(top, *args)
    if done is None or done.returncode != 0:
        return None
    paths = set()
    for raw in done.stdout.split(b"\0"):
        if raw:
            paths.add(raw.decode("utf-8", "surrogateescape"))
    return paths


def _is_noise(path: str) -> bool:
    """Bytecode and tool caches: untracked files a run writes that no one changed."""
    return path.endswith((".pyc", ".pyo")) or any(f"/{part}" in f"/{path}" for part in _NOT_CHANGES)


def _changed(top: Path, base: str, under: str) -> set[str] | None:
    """Paths (relative to the top) below `under` that differ from the base: changed or deleted
    since it (committed or not) and untracked files; None when git cannot say."""
    spec = ["--", under] if under else []
    found: dict[str, set[str] | None] = {}

    def list_untracked() -> None:
        found["untracked"] = _paths_out(
            top, "ls-files", "--others", "--exclude-standard", "-z", *spec
        )

    # The two calls at once: each is mostly git starting up, and the run waits for both.
    thread = threading.Thread(target=list_untracked, name="llmharness-untracked", daemon=True)
    thread.start()
    tracked = _paths_out(top, "diff", "--name-only", "--no-renames", "-z", base, *spec)
    thread.join(_TIMEOUT_S * 2)
    untracked = found.get("untracked")
    if tracked is None or untracked is None:
        return None
    return tracked | {path for path in untracked if not _is_noise(path)}


def _at_base(top: Path, base: str, paths: Iterable[str]) -> dict[str, str | None]:
    """The text of each path (relative to the top) at the base, None where it did not exist;
    one `git cat-file --batch` for them all."""
    wanted = sorted({path for path in paths if "\n" not in path})
    found: dict[str, str | None] = dict.fromkeys(wanted)
    if not wanted:
        return found
    feed = "".join(f"{base}:{path}\n" for path in wanted).encode("utf-8", "surrogateescape")
    done = _git(top, "cat-file", "--batch", feed=feed)
    if done is None or done.returncode != 0:
        return found
    out, at = done.stdout, 0
    for path in wanted:
        end = out.find(b"\n", at)
        if end < 0:
            break
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3 or header[1] != b"blob":
            continue  # "<name> missing" (absent at the base) or a folder
        size = int(header[2])
        found[path] = out[at : at + size].decode("utf-8", "replace")
        at += size + 1
    return found


def _now(top: Path, path: str) -> str | None:
    try:
        return (top / path).read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


# -- a test's code ---------------------------------------------------------------------------
def _parse(text: str | None) -> ast.Module | None:
    if text is None:
        return None
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        return None


def _bound(stmt: ast.stmt) -> set[str]:
    """The names a module- or class-level statement binds."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(alias.asname or alias.name).split(".")[0] for alias in stmt.names}
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AnnAssign, ast.AugAssign)):
        targets = [stmt.target]
    elif isinstance(stmt, (ast.If, ast.Try, ast.With)):
        names: set[str] = set()
        for inner in ast.iter_child_nodes(stmt):
            if isinstance(inner, ast.stmt):
                names |= _bound(inner)
            elif isinstance(inner, ast.ExceptHandler):
                for nested in inner.body:
                    names |= _bound(nested)
        return names
    return {
        node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)
    }


_Func = ast.FunctionDef | ast.AsyncFunctionDef


def _last_class(body: Sequence[ast.stmt], name: str) -> ast.ClassDef | None:
    """The last class named `name` in a body (the one Python keeps)."""
    found = None
    for stmt in body:
        if isinstance(stmt, ast.ClassDef) and stmt.name == name:
            found = stmt
    return found


def _last_func(body: Sequence[ast.stmt], name: str) -> _Func | None:
    """The last function named `name` in a body (the one Python keeps)."""
    found = None
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            found = stmt
    return found


def _locate(module: ast.Module, names: Sequence[str]) -> tuple[list[ast.ClassDef], _Func] | None:
    """The classes enclosing a test and its function, by the names in its node id; a method
    inherited from a class of the same module is found there."""
    classes: list[ast.ClassDef] = []
    body: Sequence[ast.stmt] = module.body
    for name in names[:-1]:
        cls = _last_class(body, name)
        if cls is None:
            return None
        classes.append(cls)
        body = cls.body
    func = _last_func(body, names[-1])
    if func is None and classes:
        func = _inherited(module, classes[-1], names[-1], depth=5)
    return (classes, func) if func is not None else None


def _inherited(module: ast.Module, cls: ast.ClassDef, name: str, depth: int) -> _Func | None:
    for base in cls.bases:
        if depth <= 0 or not isinstance(base, ast.Name):
            continue
        parent = _last_class(module.body, base.id)
        if parent is None:
            continue
        func = _last_func(parent.body, name)
        if func is None:
            func = _inherited(module, parent, name, depth - 1)
        if func is not None:
            return func
    return None


def _referenced(func: _Func) -> set[str]:
    """Names a test's function uses: globals, `self.` attributes, its fixtures' names."""
    names = {arg.arg for arg in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)}
    for node in ast.walk(func):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
    return names


def _fingerprint(module: ast.Module, names: Sequence[str]) -> tuple[str, _Func | None]:
    """The test's own code as one text, and its function (None when it is not in the file:
    then the whole file is its code)."""
    located = _locate(module, names)
    if located is None:
        return ast.unparse(module), None
    classes, func = located
    used = _referenced(func) | {"pytestmark"}
    parts = [ast.unparse(func)]
    for cls in classes:
        decorators = [f"@{ast.unparse(d)}" for d in cls.decorator_list]
        bases = ", ".join(ast.unparse(b) for b in (*cls.bases, *cls.keywords))
        parts.append("\n".join([*decorators, f"class {cls.name}({bases})"]))
        parts += [ast.unparse(s) for s in cls.body if s is not func and _bound(s) & used]
    parts += [ast.unparse(s) for s in module.body if _bound(s) & used]
    return "\n".join(parts), func


# -- the checks in a test --------------------------------------------------------------------
@dataclass(frozen=True)
class _Check:
    kind: str  # "assert", "raises", "approx", "warns", "deprecated_call" or "self.assertX"
    text: str  # the assert's condition, or the call's first argument
    keywords: dict[str, str] = field(default_factory=dict)


def _call_kind(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        if isinstance(func.value, ast.Name) and func.value.id == "pytest":
            return func.attr if func.attr in _PYTEST_CHECKS else None
        if isinstance(func.value, ast.Name) and func.value.id == "self":
            attr = func.attr
            return f"self.{attr}" if attr.startswith("assert") or attr == "fail" else None
        return None
    if isinstance(func, ast.Name) and func.id in _PYTEST_CHECKS:
        return func.id
    return None


def _checks(func: _Func) -> list[_Check]:
    """The assert statements and checking calls of a test function, in source order."""
    found: list[tuple[int, int, _Check]] = []
    for node in ast.walk(func):
        if isinstance(node, ast.Assert):
            check = _Check("assert", ast.unparse(node.test))
        elif isinstance(node, ast.Call) and (kind := _call_kind(node)) is not None:
            first = ast.unparse(node.args[0]) if node.args else ""
            keywords = {kw.arg: ast.unparse(kw.value) for kw in node.keywords if kw.arg}
            check = _Check(kind, first, keywords)
        else:
            continue
        found.append((node.lineno, node.col_offset, check))
    found.sort(key=lambda entry: (entry[0], entry[1]))
    return [check for _, _, check in found]


def _broad_handlers(func: _Func) -> int:
    """`except:`, `except Exception` and `except BaseException` clauses in a test."""
    count = 0
    for node in ast.walk(func):
        if isinstance(node, ast.ExceptHandler):
            kind = node.type
            names = kind.elts if isinstance(kind, ast.Tuple) else [kind]
            if kind is None or any(isinstance(n, ast.Name) and n.id in _BROAD for n in names):
                count += 1
    return count


def _early_return(func: _Func) -> bool:
    """A `return` in the function's own body with asserts or calls after it."""
    for index, stmt in enumerate(func.body):
        if isinstance(stmt, ast.Return):
            rest = ast.Module(body=list(func.body[index + 1 :]), type_ignores=[])
            return any(isinstance(n, (ast.Assert, ast.Call)) for n in ast.walk(rest))
    return False


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_broad(text: str) -> bool:
    names = [part.strip() for part in text.strip("()").split(",") if part.strip()]
    return any(name.rsplit(".", 1)[-1] in _BROAD for name in names)


def _dropped(before: _Func, after: _Func) -> list[str]:
    """What a change did to a test's checks, where it is cheap to tell: checks removed,
    exceptions widened, `match=` and other keywords dropped or changed."""
    old, new = _checks(before), _checks(after)
    notes: list[str] = []
    old_asserts = [c.text for c in old if c.kind == "assert"]
    new_asserts = [c.text for c in new if c.kind == "assert"]
    for text in old_asserts:
        if text in new_asserts:
            new_asserts.remove(text)
        else:
            notes.append(f"assert dropped: {_short(text)}")
    for text in new_asserts:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if value:
            notes.append(f"assert of a constant: assert {_short(text)}")
    kinds = sorted({c.kind for c in (*old, *new) if c.kind != "assert"})
    for kind in kinds:
        was = [c for c in old if c.kind == kind]
        now = [c for c in new if c.kind == kind]
        label = kind if kind.startswith("self.") else f"pytest.{kind}"
        for one, two in zip(was, now, strict=False):
            if one.text != two.text:
                if kind in ("raises", "warns") and _is_broad(two.text) and not _is_broad(one.text):
                    notes.append(f"{label}({_short(one.text)}) widened to {_short(two.text)}")
                else:
                    notes.append(f"{label}({_short(one.text)}) now {_short(two.text)}")
            for key, value in one.keywords.items():
                if key not in two.keywords:
                    notes.append(f"{key}= dropped from {label}({_short(one.text)})")
                elif two.keywords[key] != value:
                    notes.append(
                        f"{key}= of {label}({_short(one.text)}) changed: "
                        f"{_short(value, 40)} -> {_short(two.keywords[key], 40)}"
                    )
            for key in two.keywords.keys() - one.keywords.keys():
                if kind == "approx":
                    notes.append(f"{key}={_short(two.keywords[key], 40)} added to {label}")
        if len(now) < len(was):
            notes.append(f"{len(was) - len(now)} {label} removed ({len(was)} -> {len(now)})")
    if _broad_handlers(after) > _broad_handlers(before):
        notes.append("a broad except clause added (except Exception, BaseException or bare)")
    if _early_return(after) and not _early_return(before):
        notes.append("a return added before the checks")
    return notes[:_MAX_DROPPED]


# -- the parts of the integrity report -------------------------------------------------------
class _Sources:
    """Files read from the base (one git call for them all) and the work tree, parsed once."""

    def __init__(self, top: Path, base: str, paths: Iterable[str]) -> None:
        self.top = top
        self.before = _at_base(top, base, paths)
        self._trees: dict[tuple[str, bool], ast.Module | None] = {}

    def tree(self, path: str, now: bool) -> ast.Module | None:
        key = (path, now)
        if key not in self._trees:
            text = _now(self.top, path) if now else self.before.get(path)
            self._trees[key] = _parse(text)
        return self._trees[key]

    def normal(self, path: str, now: bool) -> str | None:
        """A file's code as `ast.unparse` prints it (its text when it does not parse)."""
        module = self.tree(path, now)
        if module is not None:
            return ast.unparse(module)
        return _now(self.top, path) if now else self.before.get(path)


def _split(nodeid: str) -> tuple[str, list[str]]:
    """(file, [class..., function]) of a node id, parameters stripped."""
    head = nodeid.split("[", 1)[0]
    path, *names = head.split("::")
    return path, names


def _conftests(test_file: str) -> list[str]:
    """The conftest.py paths (relative to the rootdir) from the rootdir down to a test's folder."""
    folder = PurePosixPath(test_file).parent
    chain = [*reversed(folder.parents), folder] if str(folder) != "." else [folder]
    return [str(part / _CONFTEST) if str(part) != "." else _CONFTEST for part in chain]


def _fixed_by_test_change(
    sources: _Sources, prefix: str, changed: set[str], fixed: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    items = []
    for entry in fixed:
        nodeid = str(entry["nodeid"])
        path, names = _split(nodeid)
        if not names:
            continue
        conftests = [c for c in _conftests(path) if prefix + c in changed]
        test_changed = prefix + path in changed
        if not test_changed and not conftests:
            continue  # nothing of its code differs from the base: no file to read
        what: list[str] = []
        func_before = func_after = None
        if test_changed:
            module_before = sources.tree(prefix + path, now=False)
            module_after = sources.tree(prefix + path, now=True)
            if module_before is None or module_after is None:
                if sources.normal(prefix + path, False) != sources.normal(prefix + path, True):
                    what.append(path)
            else:
                print_before, func_before = _fingerprint(module_before, names)
                print_after, func_after = _fingerprint(module_after, names)
                if print_before != print_after:
                    what.append(path)
        for conftest in conftests:
            if sources.normal(prefix + conftest, False) != sources.normal(prefix + conftest, True):
                what.append(conftest)
        if not what:
            continue
        if not test_changed:  # the same file on both sides: its checks, counted once
            module = sources.tree(prefix + path, now=True)
            located = _locate(module, names) if module is not None else None
            func_before = func_after = located[1] if located is not None else None
        item: dict[str, Any] = {
            "nodeid": nodeid,
            "before": entry.get("before"),
            "after": entry.get("after"),
            "asserts_before": len(_checks(func_before)) if func_before is not None else None,
            "asserts_after": len(_checks(func_after)) if func_after is not None else None,
            "checks_dropped": (
                _dropped(func_before, func_after)
                if func_before is not None and func_after is not None
                else []
            ),
            "changed": what,
        }
        if entry.get("known_by") is not None:
            item["known_by"] = entry["known_by"]
        items.append(item)
    return items


#: Settings files whose change can change what is collected anywhere below the rootdir.
_SETTINGS = frozenset({"pytest.ini", ".pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini"})


class _Wanted:
    """The tests whose outcome at the base the check reads: this run's, and those it did not
    run that are gone. A test is gone when its file is gone, or was collected cleanly this
    run without it; only files that changed since the base (or lie below a changed conftest,
    or under changed settings) can lose tests, so a parametrized test whose ids are not
    stable from run to run is not "removed" from a file no one touched."""

    def __init__(
        self,
        rootdir: Path,
        results: Mapping[str, TestResult],
        collected: Sequence[str] | None,
        collected_files: set[str] | None,
        failed_files: Iterable[str],
        changed: Iterable[str],  # paths relative to the rootdir
    ) -> None:
        self.rootdir = rootdir
        self.results = results
        self.collected = collected is not None
        self.present = set(collected) if collected is not None else set()
        self.clean = (collected_files or set()) - set(failed_files)
        changed = set(changed)
        self.everywhere = bool(changed & _SETTINGS)
        self.files = {path for path in changed if path.endswith(".py")}
        self.folders = tuple(  # "./" and "./tests/", as "./" + a test's path starts
            "./" if str(PurePosixPath(path).parent) == "." else f"./{PurePosixPath(path).parent}/"
            for path in changed
            if PurePosixPath(path).name == _CONFTEST
        )
        self._exists: dict[str, bool] = {}

    def gone(self, nodeid: str) -> str | None:
        """Why a test this run did not run is gone from the suite, or None if it is not known
        to be gone."""
        if nodeid in self.results or nodeid in self.present:
            return None
        path = nodeid.split("::", 1)[0]
        if not (self.everywhere or path in self.files or f"./{path}".startswith(self.folders)):
            return None
        exists = self._exists.get(path)
        if exists is None:
            exists = self._exists[path] = (self.rootdir / path).exists()
        if not exists:
            return "its file is gone"
        if self.collected and path in self.clean:
            return "not collected from its file"
        return None  # its file was not collected this run: not known to be gone

    def __contains__(self, nodeid: object) -> bool:
        # Called for every test known at the base: the common answers first, without a call.
        if nodeid in self.results:
            return True
        if nodeid in self.present:
            return False
        return isinstance(nodeid, str) and self.gone(nodeid) is not None

    def container(self) -> Container[str]:
        """Itself, or this run's results when no test can be gone (a faster lookup)."""
        if self.everywhere or self.files or self.folders:
            return self
        return self.results


def _removed(wanted: _Wanted, at_base: Mapping[str, AtCommit]) -> list[dict[str, Any]]:
    """Tests known at the base that are gone: their file no longer exists, or it was collected
    cleanly this run without them."""
    items = []
    for nodeid, known in at_base.items():
        if known.outcome == "absent":
            continue
        why = wanted.gone(nodeid)
        if why is not None:
            items.append(
                {"nodeid": nodeid, "before": known.outcome, "known_by": known.known_by, "why": why}
            )
    items.sort(key=lambda item: item["nodeid"])
    return items


def newly_skipped(
    listed: Sequence[Mapping[str, Any]],
    results: Iterable[TestResult],
    at_base: Mapping[str, AtCommit],
) -> list[dict[str, Any]]:
    """The diff's newly skipped tests (passing at the base) and those now skipped or xfailed
    that were failing at the base."""
    items = [dict(item) for item in listed]
    have = {item["nodeid"] for item in items}
    for result in results:
        known = at_base.get(result.nodeid)
        if result.outcome not in _SKIPPED or known is None or known.outcome not in _FAILING:
            continue
        if result.nodeid in have:
            continue
        item: dict[str, Any] = {
            "nodeid": result.nodeid,
            "before": known.outcome,
            "after": result.outcome,
            "known_by": known.known_by,
        }
        if result.reason:
            item["reason"] = result.reason
        items.append(item)
    items.sort(key=lambda item: item["nodeid"])
    return items


def _hooks(module: ast.Module | None) -> dict[str, str]:
    """A conftest's hook functions (by hook name; `specname=` counts), and `pytest_plugins`."""
    if module is None:
        return {}
    found: dict[str, str] = {}
    for stmt in module.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = stmt.name
            for decorator in stmt.decorator_list:
                if isinstance(decorator, ast.Call):
                    for kw in decorator.keywords:
                        if kw.arg == "specname" and isinstance(kw.value, ast.Constant):
                            name = str(kw.value.value)
            if name in HOOKS:
                found[name] = found.get(name, "") + ast.unparse(stmt)
        elif "pytest_plugins" in _bound(stmt):
            found["pytest_plugins"] = found.get("pytest_plugins", "") + ast.unparse(stmt)
    return found


def _hooks_changed(sources: _Sources, prefix: str, changed: set[str]) -> list[dict[str, Any]]:
    items = []
    for path in sorted(changed):
        if PurePosixPath(path).name != _CONFTEST:
            continue
        before = _hooks(sources.tree(path, now=False))
        after = _hooks(sources.tree(path, now=True))
        names = sorted(
            name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
        )
        if names:
            items.append({"path": path[len(prefix) :], "hooks": names})
    return items


def _protected(prefix: str, changed: set[str], protected: Sequence[str]) -> list[str]:
    wanted = [p.strip("/") for p in protected if p.strip("/") not in ("", ".")]
    everything = any(p.strip("/") in ("", ".") for p in protected)
    found = []
    for path in sorted(changed):
        rel = path[len(prefix) :]
        if everything or any(rel == p or rel.startswith(p + "/") for p in wanted):
            found.append(rel)
    return found


def check(
    version: CodeVersion | None,
    rootdir: Path,
    results: Mapping[str, TestResult],
    at_base: Mapping[str, AtCommit] | Callable[[str, Container[str]], Mapping[str, AtCommit]],
    diff: dict[str, Any],
    collected: list[str] | None,
    collected_files: set[str] | None,
    protected: Sequence[str],
    *,
    failed_files: Iterable[str] = (),
    tamper_reason: str | None = None,
    allow_test_changes: bool = False,
) -> dict[str, Any]:
    """The integrity keys of a regression diff, found from git and the run's results.

    `at_base` is what is known at the base, or how to read it (`Knowledge(store).at`): then
    only the tests the check needs are read (this run's, and those that may be gone)."""
    started = time.perf_counter()
    data: dict[str, Any] = {
        "fixed_by_test_change": [],
        "removed": [],
        "newly_skipped": list(diff.get("newly_skipped", ())),
        "hooks_changed": [],
        "protected_changed": [],
        "tampered": tamper_reason is not None,
        "tamper_reason": tamper_reason,
        "allow_test_changes": allow_test_changes,
        "protected": list(protected),
        "integrity_note": None,
    }
    base = version.base if version is not None else None
    if version is None or base is None or "base" not in diff:
        why = "not in a git work tree" if version is None else "no base to compare with"
        data["integrity_note"] = f"{why}: only the tripwire was checked"
    elif version.at_base:
        data["integrity_note"] = "a clean run at the base: nothing changed to check"
    else:
        top = Path(version.top)
        try:
            rel = rootdir.resolve().relative_to(Path(top).resolve()).as_posix()
        except ValueError:
            rel = "."
        prefix = "" if rel == "." else rel + "/"
        changed = _changed(top, base, prefix.rstrip("/"))
        if changed is None:
            data["integrity_note"] = "git could not list the changes since the base"
        else:
            fixed = list(diff.get("fixed", ()))
            sources = _Sources(top, base, _wanted(prefix, changed, fixed))
            below = [path[len(prefix) :] for path in changed]
            wanted = _Wanted(rootdir, results, collected, collected_files, failed_files, below)
            known = at_base(base, wanted.container()) if callable(at_base) else at_base
            data.update(
                fixed_by_test_change=_fixed_by_test_change(sources, prefix, changed, fixed),
                removed=_removed(wanted, known),
                newly_skipped=newly_skipped(data["newly_skipped"], results.values(), known),
                hooks_changed=_hooks_changed(sources, prefix, changed),
                protected_changed=_protected(prefix, changed, protected),
            )
    data["integrity_s"] = round(time.perf_counter() - started, 4)
    return data


def _wanted(prefix: str, changed: set[str], fixed: Sequence[Mapping[str, Any]]) -> set[str]:
    """The changed files to read at the base: conftests, and the test files of fixed tests."""
    wanted = {path for path in changed if PurePosixPath(path).name == _CONFTEST}
    for entry in fixed:
        path, _ = _split(str(entry["nodeid"]))
        wanted |= {prefix + p for p in (path, *_conftests(path)) if prefix + p in changed}
    return wanted


# -- the gate and the lines ------------------------------------------------------------------
def blocking(diff: Mapping[str, Any]) -> list[str]:
    """Why a run's integrity fails `regressions --check`, one line each (empty when it does not).

    Tampering always blocks; changed protected paths block; a test fixed by changing it, a
    failing test removed and a failing test now skipped block unless `allow_test_changes`."""
    reasons = []
    if diff.get("tampered"):
        reasons.append(f"tampered: {diff.get('tamper_reason')}")
    protected = diff.get("protected_changed") or ()
    if protected:
        paths = counted(len(protected), "protected path", "protected paths")
        reasons.append(f"{paths} changed: {', '.join(protected[:3])}")
    if diff.get("allow_test_changes"):
        return reasons
    fixed = diff.get("fixed_by_test_change") or ()
    if fixed:
        reasons.append(counted(len(fixed), "test", "tests") + " fixed by changing the test")
    removed = [i for i in diff.get("removed") or () if i.get("before") in _FAILING]
    if removed:
        reasons.append(counted(len(removed), "failing test", "failing tests") + " removed")
    skipped = [i for i in diff.get("newly_skipped") or () if i.get("before") in _FAILING]
    if skipped:
        reasons.append(counted(len(skipped), "failing test", "failing tests") + " now skipped")
    return reasons


def lines(diff: Mapping[str, Any], limit: int = 10) -> list[str]:
    """One line per integrity finding, for `llmharness regressions` (at most `limit`); the
    failing tests now skipped are among its NOW SKIPPED lines."""
    out = []
    if diff.get("tampered"):
        out.append(f"TAMPERED {diff.get('tamper_reason')}")
    for item in diff.get("fixed_by_test_change") or ():
        counts = f"checks {item.get('asserts_before')} -> {item.get('asserts_after')}"
        dropped = "; ".join(item.get("checks_dropped") or ())
        changed = ", ".join(item.get("changed") or ())
        tail = f"; {dropped}" if dropped else ""
        out.append(f"FIXED BY TEST CHANGE {item['nodeid']} ({changed}): {counts}{tail}")
    for item in diff.get("removed") or ():
        if item.get("before") in _FAILING:
            out.append(f"REMOVED {item['nodeid']} {item.get('before')} at the base: {item['why']}")
    for path in diff.get("protected_changed") or ():
        out.append(f"PROTECTED CHANGED {path}")
    for item in diff.get("hooks_changed") or ():
        out.append(f"HOOKS CHANGED {item['path']}: {', '.join(item['hooks'])}")
    if len(out) > limit:
        out = [*out[:limit], f"... {len(out) - limit} more: llmharness regressions --json"]
    return out
