"""Which test files a `--fast` run may leave uncollected, by what they produced last time.

A fraction sample's membership depends on the seed and each node id alone, so a test file none
of whose node ids is sampled contributes nothing to the run: importing it is wasted time. The
store's ``collection.json`` remembers, for each test file (relative to the rootdir), the node ids
its last clean collection produced and everything that collection depended on:

- the file's own size, mtime and content hash;
- the ``conftest.py`` of each of its folders up to the rootdir (their content, or their absence);
- the local modules (under the rootdir, outside any installed package) that its import loaded
  or whose objects it holds, e.g. a helper module its parametrization reads;
- the environment, for all files at once: Python and pytest versions, the installed pytest
  plugins and the ini file.

A file is *known* when all of these are unchanged; its node ids are then the recorded ones. A
known file with no sampled test is not imported at all; in a known file that has some, only the
functions and classes that hold a sampled test are turned into test items. Any new, changed or
unknown file is collected in full, so the selected set is exactly the one a full collection
would give.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import posixpath
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from types import ModuleType
from typing import Any

from llmharness import sampling

__all__ = [
    "CollectionPlan",
    "Fingerprints",
    "environment_key",
    "file_entry",
    "local_dependencies",
    "plan",
    "plugin_identity",
    "relative",
]

_PACKAGE_DIRS = frozenset({"site-packages", "dist-packages"})


class Fingerprints:
    """Content hashes of files under the rootdir, each read at most once per run."""

    def __init__(self, rootdir: Path) -> None:
        self.root = str(rootdir)  # paths are joined as strings: pathlib costs each file more
        self._seen: dict[str, str | None] = {}

    def digest(self, rel: str) -> str | None:
        """The file's content hash, or None when it does not exist or cannot be read."""
        if rel not in self._seen:
            self.text(rel)
        return self._seen[rel]

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


def environment_key(inipath: Path | None, plugins: Iterable[str], extra: Iterable[str] = ()) -> str:
    """One hash of what shapes every file's collection: versions, plugins (by
    `plugin_identity`), the ini file."""
    import pytest

    parts = [sys.version, pytest.__version__, *sorted(plugins)]
    if inipath is not None:
        try:
            parts.append(hashlib.blake2b(inipath.read_bytes(), digest_size=16).hexdigest())
        except OSError:
            parts.append("ini-unreadable")
    parts.extend(extra)
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


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


def file_entry(
    fingerprints: Fingerprints, rel: str, ids: list[str], deps: Iterable[str]
) -> dict[str, Any] | None:
    """The cache entry for a file collected cleanly this run, or None if it cannot be read."""
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
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "hash": digest,
        "ids": ids,
        "deps": depends,
    }


def _known(fingerprints: Fingerprints, rel: str, entry: Any) -> list[str] | None:
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


@dataclass(frozen=True)
class CollectionPlan:
    """What a `--fast` run need not collect, decided from the cache before collection."""

    skip: frozenset[str] = frozenset()  # known files without a wanted test: not imported
    wanted: Mapping[str, frozenset[str]] = field(default_factory=dict)  # other known files
    known: Mapping[str, list[str]] = field(default_factory=dict)  # every known file's ids

    def keeps(self, parent_nodeid: str, name: str) -> bool:
        """Whether the object `name` in a collector may hold a wanted test."""
        wanted = self.wanted.get(parent_nodeid.split("::", 1)[0])
        if wanted is None:
            return True  # not a known file: collect as usual
        prefix = f"{parent_nodeid}::{name}"
        return any(
            nodeid == prefix or nodeid.startswith((prefix + "::", prefix + "["))
            for nodeid in wanted
        )


def plan(
    fingerprints: Fingerprints, files: Mapping[str, Any], fraction: float, seed: str
) -> CollectionPlan:
    """Plan a `fraction` sample's collection from the cache's `files`.

    A known file is skipped when none of its tests is sampled; in a known file that is
    collected, only the sampled tests are wanted (the rest are not even built). When no known
    file has a sampled test, the lowest-scored known test is wanted too: the never-empty rule
    may pick it.
    """
    known: dict[str, list[str]] = {}
    wanted: dict[str, set[str]] = {}
    lowest: tuple[float, str, str] | None = None
    for rel, entry in files.items():
        ids = _known(fingerprints, rel, entry)
        if ids is None:
            continue
        known[rel] = ids
        for nodeid in ids:
            value = sampling.score(seed, nodeid)
            if value < fraction:
                wanted.setdefault(rel, set()).add(nodeid)
            elif lowest is None or (value, nodeid) < lowest[:2]:
                lowest = (value, nodeid, rel)
    if not wanted and lowest is not None:
        wanted[lowest[2]] = {lowest[1]}
    return CollectionPlan(
        skip=frozenset(rel for rel in known if rel not in wanted),
        wanted={rel: frozenset(ids) for rel, ids in wanted.items()},
        known=known,
    )
