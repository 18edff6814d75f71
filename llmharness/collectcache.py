"""Which test files a `--fast` run may leave uncollected, by what they produced last time.

A fraction sample's membership depends on the seed and each node id alone, so a test file none
of whose node ids is sampled contributes nothing to the run: importing it is wasted time. The
store's ``collection.json`` remembers, for each test file (relative to the rootdir), the node ids
its last clean and complete collection produced and everything that collection depended on:

- the file's own size, mtime and content hash;
- the ``conftest.py`` of each of its folders up to the rootdir (their content, or their absence);
- the local modules (under the rootdir, outside any installed package) that its import loaded
  or whose objects it holds, e.g. a helper module its parametrization reads;
- the other files under the rootdir that its collection (or its folders' conftests' import)
  opened, the folders it listed and the globs it ran, by content or by the names they held;
- the environment, for all files at once (`environment_key`): Python and pytest versions, the
  installed distributions and pytest plugins, the ini file, the environment variables (less
  `IGNORED_VARIABLES`) and the command line (less `collection_args`'s options).

With the node ids it keeps what `-k` and `-m` evaluate on for each of them (names and markers,
see `llmharness.selection`), so that a run under `-k`/`-m` knows which known tests they deselect
(the expressions themselves are no part of the key).

A file is *known* when all of these are unchanged; its node ids are then the recorded ones. A
known file with no sampled test is not imported at all; in a known file that has some, only the
functions and classes that hold a sampled test are turned into test items. Any new, changed or
unknown file is collected in full, so the selected set is exactly the one a full collection
would give, as far as these inputs decide a file's node ids (a collection that reads something
else, e.g. a file outside the rootdir, is caught by `llmharness.collection`'s check of the files
it does build).
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import json
import os
import posixpath
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from types import ModuleType
from typing import Any

from llmharness import sampling
from llmharness.selection import OPAQUE, Keywords, Mark, Selection, Value

__all__ = [
    "IGNORED_VARIABLES",
    "CollectionPlan",
    "Fingerprints",
    "Recorded",
    "changed_names",
    "collection_args",
    "decode_keywords",
    "dependency_key",
    "dependents",
    "distributions",
    "encode_keywords",
    "environment_key",
    "file_entry",
    "importers",
    "local_dependencies",
    "plan",
    "plugin_identity",
    "recorded_ids",
    "relative",
    "selection_free",
    "variable_digests",
]

_PACKAGE_DIRS = frozenset({"site-packages", "dist-packages"})

#: Environment variables left out of the key: they change from one shell or terminal to the
#: next, or are set by pytest, xdist or llmharness itself (whose own only choose the sample),
#: and no test's node id should depend on them. Any other variable's change makes every file
#: unknown.
IGNORED_VARIABLES = frozenset(
    {
        "_",
        "OLDPWD",
        "PWD",
        "SHLVL",
        "COLUMNS",
        "LINES",
        "TERM_SESSION_ID",
        "WINDOWID",
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
        "PYTEST_CURRENT_TEST",
        "PYTEST_VERSION",
    }
)
_IGNORED_PREFIXES = ("PYTEST_XDIST_", "LLMHARNESS_")

# Options that cannot change any file's node ids: llmharness's own (they choose the sample,
# not the tests) and pytest's and xdist's output and run control. Everything else on the
# command line (paths, -p, -k, --count, --import-mode, -c, --rootdir...) is in the key.
_FREE_FLAGS = frozenset(
    {
        "--fast",
        "--compact",
        "--no-compact",
        "-q",
        "--quiet",
        "-v",
        "--verbose",
        "-x",
        "--exitfirst",
        "-s",
        "-l",
        "--showlocals",
        "--no-showlocals",
        "--no-header",
        "--no-summary",
        "--co",
        "--collect-only",
        "--collectonly",
    }
)
_FREE_WITH_VALUE = frozenset(
    {
        "--fast-fraction",
        "--fast-budget",
        "--agent-id",
        "--seed",
        "--time-limit",
        "--test-timeout",
        "--llmharness-config",
        "--llmharness-store",
        "--maxfail",
        "--tb",
        "-r",
        "--capture",
        "-n",
        "--numprocesses",
        "--maxprocesses",
        "--dist",
        "--color",
        "--code-highlight",
        "--durations",
        "--durations-min",
        "--verbosity",
        "--junitxml",
        "--junit-xml",
        "--junit-prefix",
        "--basetemp",
    }
)
_FREE_SHORT_FLAGS = frozenset("qvxsl")  # may be stacked: -vvx
_FREE_SHORT_WITH_VALUE = frozenset("rn")  # the rest of the token, or the next one: -rA, -n 2

# Keys of dependencies that are not files: a folder's names end in "/" (the rootdir is "./"),
# a glob starts with "/" (a path relative to the rootdir never does).
_GLOB = "/glob:"
_RECURSIVE_GLOB = "/glob-recursive:"


class Fingerprints:
    """Content hashes of files under the rootdir, each read at most once per run."""

    def __init__(self, rootdir: Path) -> None:
        self.root = str(rootdir)  # paths are joined as strings: pathlib costs each file more
        self._seen: dict[str, str | None] = {}

    def digest(self, rel: str) -> str | None:
        """The file's content hash, or None when it does not exist or cannot be read; for a
        folder's key (see `dependency_key`) the hash of its names, for a glob's its matches."""
        if rel not in self._seen:
            if rel.startswith("/"):
                self._seen[rel] = self._glob(rel)
            elif rel.endswith("/"):
                self._seen[rel] = self._listing(rel)
            else:
                self.text(rel)
        return self._seen[rel]

    def _listing(self, key: str) -> str | None:
        try:
            names = sorted(os.listdir(os.path.join(self.root, key)))
        except OSError:
            return None
        return _hash("\0".join(names))

    def _glob(self, key: str) -> str | None:
        recursive = key.startswith(_RECURSIVE_GLOB)
        pattern = key[len(_RECURSIVE_GLOB if recursive else _GLOB) :]
        try:
            found = glob.glob(os.path.join(glob.escape(self.root), pattern), recursive=recursive)
        except (OSError, ValueError):
            return None
        return _hash("\0".join(sorted(relative(self.root, path) or path for path in found)))

    def text(self, rel: str) -> str:
        """The file's source (empty if unreadable), hashed on the way: one read serves both."""
        try:
            with open(os.path.join(self.root, rel), "rb") as handle:
                data = handle.read()
        except OSError:
            self._seen[rel] = None
            return ""
        self._seen[rel] = hashlib.blake2b(data, digest_size=16).hexdigest()
        return data.decode("utf-8", "replace")

    def conftest_chain(self, rel: str) -> dict[str, str | None]:
        """The conftest.py of every folder from the file's own up to the rootdir."""
        chain: dict[str, str | None] = {}
        parent = posixpath.dirname(rel)
        while True:
            name = f"{parent}/conftest.py" if parent else "conftest.py"
            chain[name] = self.digest(name)
            if not parent:
                return chain
            parent = posixpath.dirname(parent)


def relative(root: str, path: str) -> str | None:
    """The absolute `path` relative to the folder `root`, with `/` separators; None outside it.

    (What `Path.relative_to(...).as_posix()` gives, by string operations.)
    """
    prefix = os.path.join(root, "")
    if not os.path.normcase(path).startswith(os.path.normcase(prefix)):
        return None
    rel = path[len(prefix) :]
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def dependency_key(root: str, kind: str, path: str, ignored: Sequence[str] = ()) -> str | None:
    """The cache's key for something a collection read: `kind` "file" (opened), "folder"
    (listed) or "glob" / "recursive-glob" (a pattern), at the absolute `path`. None when it is
    not a dependency to keep: outside the rootdir, under an `ignored` folder (relative to it),
    in an installed package, or Python source and bytecode (left to the module tracking)."""
    rel = "." if path == root else relative(root, path)
    if rel is None:
        return None
    parts = rel.split("/")
    if "__pycache__" in parts or _PACKAGE_DIRS.intersection(parts):
        return None
    if any(rel == folder or rel.startswith(folder + "/") for folder in ignored):
        return None
    if kind == "glob":
        return _GLOB + rel
    if kind == "recursive-glob":
        return _RECURSIVE_GLOB + rel
    if kind == "file":
        if rel.endswith((".py", ".pyc", ".pyo")):
            return None
        if not os.path.isdir(path):  # os.open of a folder, as os.fwalk does, is a listing
            return rel
    return rel + "/"


def variable_digests(environ: Mapping[str, str]) -> dict[str, str]:
    """A hash of each environment variable that may shape collection (not the values: they
    may be secrets, and collection.json is a plain file)."""
    return {
        name: _hash(f"{name}={value}")
        for name, value in sorted(environ.items())
        if name not in IGNORED_VARIABLES and not name.startswith(_IGNORED_PREFIXES)
    }


def changed_names(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The names set, unset or changed between two mappings."""
    return sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))


def collection_args(args: Sequence[str]) -> list[str]:
    """The command line less the options that cannot change any file's node ids (with their
    values, as `--opt V` or `--opt=V`, and short flags however stacked)."""
    kept: list[str] = []
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            kept.append(token)
            kept.extend(tokens)
            break
        if token.startswith("--"):
            name, equals, _ = token.partition("=")
            if name in _FREE_FLAGS and not equals:
                continue
            if name in _FREE_WITH_VALUE:
                if not equals:
                    next(tokens, None)
                continue
            if equals:  # `--opt=V` means `--opt V`: one key for both
                kept.extend((name, token[len(name) + 1 :]))
                continue
        elif token.startswith("-") and len(token) > 1:
            if token in _FREE_WITH_VALUE:
                next(tokens, None)
                continue
            free = _free_short_options(token[1:])
            if free is not None:
                if free:  # a value-taking option ends the token: its value is the next one
                    next(tokens, None)
                continue
        kept.append(token)
    return kept


def selection_free(args: Sequence[str]) -> list[str]:
    """The command line less `-k` and `-m` and their values (`-k V`, `-kV`, `-k=V`): they choose
    among the tests collected, by what the cache records of each, and change no node id. (A
    stack such as `-xk V` is left whole, for `collection_args` to keep.)"""
    kept: list[str] = []
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            kept.append(token)
            kept.extend(tokens)
            break
        if token in ("-k", "-m"):
            next(tokens, None)
            continue
        if token.startswith(("-k", "-m")):  # pytest's short options are one letter: -kslow
            continue
        kept.append(token)
    return kept


def _free_short_options(letters: str) -> bool | None:
    """For stacked short options (`vvx`, `rA`, `xn2`): None if one of them may change node
    ids; else whether the last takes its value from the next token."""
    for index, letter in enumerate(letters):
        if letter in _FREE_SHORT_WITH_VALUE:
            return index == len(letters) - 1
        if letter not in _FREE_SHORT_FLAGS:
            return None
    return False


def distributions(paths: Iterable[str]) -> list[str]:
    """The installed distributions (their metadata folders' names hold name and version) on
    the import path: a package's upgrade may change node ids a test builds from it."""
    names: set[str] = set()
    for entry in paths:
        try:
            listing = os.listdir(entry or ".")
        except OSError:  # a zip file, a missing folder
            continue
        names.update(name for name in listing if name.endswith((".dist-info", ".egg-info")))
    return sorted(names)


def plugin_identity(dist: Any) -> str:
    """An installed distribution (pluggy's DistFacade or importlib's Distribution) as the hash
    of its metadata file, which holds its name and version: reading the file costs every run a
    fraction of what parsing its headers (and long description) would."""
    for name in ("METADATA", "PKG-INFO"):
        try:
            text = dist.read_text(name)
        except Exception:  # an unusual distribution: fall back to its parsed name and version
            text = None
        if text:
            data = text.encode("utf-8", "surrogatepass")
            return hashlib.blake2b(data, digest_size=16).hexdigest()
    return f"{getattr(dist, 'project_name', '?')}=={getattr(dist, 'version', '?')}"


def environment_key(
    inipath: Path | None,
    plugins: Iterable[str],
    packages: Iterable[str] = (),
    args: Iterable[str] = (),
    variables: Mapping[str, str] | None = None,
) -> str:
    """One hash of what shapes every file's collection: versions, plugins (by
    `plugin_identity`), installed `distributions`, the ini file, the command line (as
    `collection_args` gives it, with where it was run) and the `variable_digests`."""
    import pytest

    parts = [sys.version, pytest.__version__, *sorted(plugins), "packages", *packages]
    if inipath is not None:
        try:
            parts.append(hashlib.blake2b(inipath.read_bytes(), digest_size=16).hexdigest())
        except OSError:
            parts.append("ini-unreadable")
    parts.append("args")
    parts.extend(args)
    parts.append("variables")
    parts.extend(f"{name}={digest}" for name, digest in sorted((variables or {}).items()))
    return _hash("\0".join(parts))


@functools.lru_cache(maxsize=4096)
def _local(root: str, filename: str | None) -> str | None:
    """`filename` relative to the folder `root` when it is project code, else None.

    Remembered: every test module asks about the same few modules.
    """
    if not filename or not filename.endswith(".py"):
        return None
    rel = relative(root, os.path.abspath(filename))
    if rel is None or _PACKAGE_DIRS.intersection(rel.split("/")):
        return None
    return rel


_IMPORT = re.compile(
    r"[ \t]*(?:from[ \t]+(?P<source>\.*[\w.]*)[ \t]+import[ \t]+(?P<names>[\w., \t()]+)"
    r"|import[ \t]+(?P<modules>[\w., \t]+))"
)


def _import_lines(source: str) -> list[str]:
    """The lines of a source (as Python splits them: at \\n, \\r\\n or \\r) that contain
    `import`, found with str.find: a test module's few import lines, not a step for each line."""
    if "\r" in source:
        source = source.replace("\r\n", "\n").replace("\r", "\n")
    lines = []
    found = source.find("import")
    while found != -1:
        end = source.find("\n", found)
        if end == -1:
            end = len(source)
        lines.append(source[source.rfind("\n", 0, found) + 1 : end])
        found = source.find("import", end)
    return lines


def _imported_names(source: str, package: str | None) -> set[str]:
    """Absolute names of the modules a source's import statements may refer to."""
    names: set[str] = set()
    matches = map(_IMPORT.match, _import_lines(source))
    for match in matches:
        if match is None:
            continue
        if match["modules"]:
            for part in match["modules"].split(","):
                words = part.split()
                if words:
                    names.add(words[0])
            continue
        base = match["source"]
        if base.startswith("."):
            try:
                base = importlib.util.resolve_name(base, package) if package else ""
            except (ImportError, ValueError):
                base = ""
        if not base:
            continue
        names.add(base)
        for part in match["names"].replace("(", " ").replace(")", " ").split(","):
            words = part.split()
            if words:
                names.add(f"{base}.{words[0]}")  # `from pkg import submodule`
    found = set()
    for name in names:
        while name:  # importing a.b.c runs a/__init__.py and a/b/__init__.py too
            found.add(name)
            name = name.rpartition(".")[0]
    return found


def local_dependencies(
    rootdir: Path, module: ModuleType | None, source: str, loaded: Iterable[str]
) -> set[str]:
    """Project modules a test module (whose text is `source`) depends on for its collection.

    `loaded` names the modules its import loaded first; its import statements and its globals
    add the modules another file imported earlier (``from helpers import CASES``).
    """
    modules = sys.modules
    names = set(loaded)
    if module is not None:
        names |= _imported_names(source, getattr(module, "__package__", None))
        # By maps, not a step per global: a test module's globals are mostly its tests.
        values = list(vars(module).values())
        names.update(map(str, map(getattr, values, repeat("__module__"), repeat(""))))
        names.update(value.__name__ for value in filter(ModuleType.__instancecheck__, values))
    root = str(rootdir)
    found: set[str] = set()
    for name in names:
        rel = _local(root, getattr(modules.get(name), "__file__", None))
        if rel is not None:
            found.add(rel)
    if module is not None:
        found.discard(_local(root, getattr(module, "__file__", None)) or "")
    return found


def importers(rootdir: Path, changed: Collection[str]) -> set[str]:
    """The changed files and every loaded project module (test modules included) that imports
    one of them, directly or through other project modules, as far as this process's
    `sys.modules` shows: a module no collected file or conftest has loaded is not seen."""
    touched = set(changed)
    if not touched:
        return touched
    root = str(rootdir)
    graph: dict[str, set[str]] = {}
    for module in list(sys.modules.values()):
        rel = _local(root, getattr(module, "__file__", None))
        if rel is None or rel in graph or rel in touched:
            continue
        try:
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as file:
                source = file.read()
        except OSError:
            continue
        if hasattr(module, "__path__"):
            # A package: its submodules are its attributes once anything imports them, so
            # only its own import statements tell what it depends on.
            names = _imported_names(source, module.__name__)
            files = (getattr(sys.modules.get(name), "__file__", None) for name in names)
            graph[rel] = {dep for dep in (_local(root, f) for f in files) if dep and dep != rel}
        else:
            graph[rel] = local_dependencies(rootdir, module, source, ())
    grown = True
    while grown:
        found = {rel for rel, deps in graph.items() if rel not in touched and deps & touched}
        touched |= found
        grown = bool(found)
    return touched


def dependents(files: Mapping[str, Any], changed: Collection[str]) -> set[str]:
    """The files among cache entries `files` that are changed or whose collection depended on
    a changed file (a module they imported, a conftest.py, a data file they read)."""
    found = set()
    for rel, entry in files.items():
        deps = entry.get("deps") if isinstance(entry, dict) else None
        if rel in changed or (isinstance(deps, dict) and any(dep in changed for dep in deps)):
            found.add(rel)
    return found


def file_entry(
    fingerprints: Fingerprints,
    rel: str,
    ids: list[str],
    deps: Iterable[str],
    select: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The cache entry for a file collected cleanly this run, or None if it cannot be read;
    `select` is `encode_keywords`'s record of its tests, when every one of them has one."""
    try:
        stat = os.stat(os.path.join(fingerprints.root, rel))
    except OSError:
        return None
    digest = fingerprints.digest(rel)
    if digest is None:
        return None
    depends = fingerprints.conftest_chain(rel)
    for dep in sorted(deps):
        depends[dep] = fingerprints.digest(dep)
    entry: dict[str, Any] = {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "hash": digest,
        "ids": ids,
        "deps": depends,
    }
    if select is not None:
        entry["select"] = select
    return entry


def _own_name(nodeid: str) -> str:
    """A test's name as its node id usually ends with it (a parameter may hold `::`)."""
    return nodeid.rpartition("::")[2]


def encode_keywords(
    ids: Sequence[str], tests: Mapping[str, Keywords | None]
) -> dict[str, Any] | None:
    """The record of what `-k` and `-m` evaluate on for each of a file's `ids`, or None when
    one has none. The tests of a class or module mostly share all but their own name: each
    distinct rest is written once, in `sets`, and `of` gives each id (in order) its set's
    index, or [index, own name] where the id does not end with the name."""
    # By the sets themselves: the tests of one parent share them, and their hashes.
    sets: dict[tuple[frozenset[str], frozenset[str], frozenset[Mark]], int] = {}
    table: list[Any] = []
    of: list[Any] = []
    for nodeid in ids:
        keywords = tests.get(nodeid)
        if keywords is None:
            return None
        key = (keywords.names, keywords.doubtful, keywords.marks)
        index = sets.get(key)
        if index is None:
            index = sets[key] = len(table)
            marks = sorted(
                (
                    [mark.name, {name: _encode_value(value) for name, value in mark.kwargs}]
                    for mark in keywords.marks
                ),
                key=json.dumps,
            )
            mark_names = {mark.name for mark in keywords.marks}
            table.append([sorted(keywords.names - mark_names), sorted(keywords.doubtful), marks])
        of.append(index if keywords.name == _own_name(nodeid) else [index, keywords.name])
    return {"sets": table, "of": of}


def _encode_value(value: Value) -> Any:
    return {} if value is OPAQUE else value  # JSON has no other use for an object here


def _decode_value(value: Any) -> Value:
    if isinstance(value, dict):
        return OPAQUE
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise ValueError(value)


def decode_keywords(ids: Sequence[str], record: Any) -> list[Keywords] | None:
    """`encode_keywords`'s record back, one for each of `ids`; None if it is not one for them."""
    try:
        sets, of = record["sets"], record["of"]
        if len(of) != len(ids):
            return None
        rows = []
        for names, doubtful, marks in sets:
            decoded = frozenset(
                Mark(str(name), tuple((str(k), _decode_value(v)) for k, v in kwargs.items()))
                for name, kwargs in marks
            )
            all_names = frozenset(map(str, names)) | {mark.name for mark in decoded}
            rows.append((all_names, frozenset(map(str, doubtful)), decoded))
        tests = []
        for nodeid, place in zip(ids, of, strict=True):
            if isinstance(place, int):
                index, own = place, _own_name(nodeid)
            else:
                index, own = place
            if not isinstance(index, int) or not isinstance(own, str) or index < 0:
                return None
            names, doubtful, marks = rows[index]
            tests.append(Keywords(own, names, doubtful, marks))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None
    return tests


def recorded_ids(fingerprints: Fingerprints, rel: str, entry: Any) -> list[str] | None:
    """The recorded node ids of `rel` if nothing its collection depended on has changed."""
    if not isinstance(entry, dict):
        return None
    ids, deps = entry.get("ids"), entry.get("deps")
    if not isinstance(ids, list) or not isinstance(deps, dict):
        return None
    if not all(isinstance(nodeid, str) for nodeid in ids):
        return None
    if fingerprints.digest(rel) != entry.get("hash"):
        return None
    if any(fingerprints.digest(str(dep)) != digest for dep, digest in deps.items()):
        return None
    return ids


class Recorded:
    """A known file's recorded node ids: what a partial build of the file must produce."""

    def __init__(self, ids: Iterable[str]) -> None:
        self.ids = frozenset(ids)

    def under(self, prefix: str) -> tuple[set[str], bool]:
        """The recorded items the object `prefix` (`collector::name`) built itself, and
        whether it holds deeper ones (a class's). A scan: it is asked only about the few
        objects a plan builds."""
        items: set[str] = set()
        deeper = False
        bracket, colons = prefix + "[", prefix + "::"
        for nodeid in self.ids:
            if nodeid == prefix or nodeid.startswith(bracket):
                items.add(nodeid)
            elif nodeid.startswith(colons):
                deeper = True
        return items, deeper

    def differences(self, produced: Iterable[str], pruned: Iterable[str]) -> tuple[int, int]:
        """(new, gone): ids produced but not recorded, and recorded ids neither produced nor
        under one of the `pruned` objects (`collector::name`), which were not built."""
        produced = set(produced)
        excused = set(pruned)
        gone = 0
        for nodeid in self.ids - produced:
            # Its objects from the outermost: `f.py::C::t[x::y]` is under f.py::C, f.py::C::t
            # (parameters may hold `::`, a name never does).
            head = nodeid.partition("[")[0]
            cut = head.find("::")
            while True:
                cut = head.find("::", cut + 2)
                if (head if cut == -1 else head[:cut]) in excused:
                    break
                if cut == -1:
                    gone += 1
                    break
        return len(produced - self.ids), gone


@dataclass(frozen=True)
class CollectionPlan:
    """What a `--fast` run need not collect, decided from the cache before collection."""

    skip: frozenset[str] = frozenset()  # known files without a wanted test: not imported
    wanted: Mapping[str, frozenset[str]] = field(default_factory=dict)  # other known files
    known: Mapping[str, list[str]] = field(default_factory=dict)  # every known file's ids
    # Known ids that the run's -k/-m deselect, by file: never wanted, counted as deselected.
    unselected: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def keeps(self, parent_nodeid: str, name: str) -> bool:
        """Whether the object `name` in a collector may hold a wanted test."""
        wanted = self.wanted.get(parent_nodeid.partition("::")[0])
        if wanted is None:
            return True  # not a known file: collect as usual
        prefix = f"{parent_nodeid}::{name}"
        return any(
            nodeid == prefix or nodeid.startswith((prefix + "::", prefix + "["))
            for nodeid in wanted
        )


def plan(
    fingerprints: Fingerprints,
    files: Mapping[str, Any],
    fraction: float,
    sampler: sampling.Sampler,
    select: Selection | None = None,
    always: Collection[str] = (),
) -> CollectionPlan:
    """Plan a `fraction` sample's collection from the cache's `files`.

    A known file is skipped when none of its tests is sampled; in a known file that is
    collected, only the sampled tests are wanted (the rest are not even built). When no known
    file has a sampled test, the lowest-scored known test is wanted too: the never-empty rule
    may pick it. Under `-k`/`-m` (`select`) the tests they deselect are in no sample, and a
    file whose record cannot tell for some test is not known (it is collected in full).
    The files in `always` (a change touched them) have all their tests wanted.
    """
    if select is not None and not select.active:
        select = None
    known: dict[str, list[str]] = {}
    wanted: dict[str, set[str]] = {}
    unselected: dict[str, frozenset[str]] = {}
    lowest: tuple[int, str, str] | None = None
    cut = sampler.cut(fraction)
    for rel, entry in files.items():
        ids = recorded_ids(fingerprints, rel, entry)
        if ids is None:
            continue
        out: frozenset[str] = frozenset()
        if select is not None:
            tests = decode_keywords(ids, entry.get("select"))
            if tests is None:
                continue
            choices = [select.selects(keywords) for keywords in tests]
            if None in choices:
                continue
            out = frozenset(nodeid for nodeid, kept in zip(ids, choices, strict=True) if not kept)
            if out:
                unselected[rel] = out
        known[rel] = ids
        for nodeid in ids:
            if nodeid in out:
                continue
            value = sampler.rank(nodeid)
            if value < cut or rel in always:
                wanted.setdefault(rel, set()).add(nodeid)
            elif lowest is None or (value, nodeid) < lowest[:2]:
                lowest = (value, nodeid, rel)
    if not wanted and lowest is not None:
        wanted[lowest[2]] = {lowest[1]}
    return CollectionPlan(
        skip=frozenset(rel for rel in known if rel not in wanted),
        wanted={rel: frozenset(ids) for rel, ids in wanted.items()},
        known=known,
        unselected=unselected,
    )
