"""The collection cache at work in a run: tracking what each test file's collection depended
on, planning what a `--fast` run may leave uncollected, and keeping the cache up to date.

`collectcache` holds the pure parts (fingerprints, the keys, the plan); this module holds the
plugin objects pytest calls during collection, the audit hook that sees what a collection
reads, and the controller's side of the cache.

The cache must never change which tests run. What it cannot see (a file outside the rootdir,
hidden state) is caught, where it can be, by checking every partly built file against its
recorded node ids: on a difference the rest of the run is collected in full and the cache is
dropped, with one warning. Under `-k`/`-m` the tests of every file collected are checked too:
pytest must keep exactly those that `llmharness.selection` says it keeps, by their names and
markers now and, for known tests, by their record; else the cache is dropped, with one warning.
"""

from __future__ import annotations

import importlib.machinery
import inspect
import os
import sys
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import pytest

from llmharness import collectcache, sampling, selection
from llmharness.store import COLLECTION_FILE, SCHEMA, Store, StoreError

__all__ = ["CollectionCache", "CollectionPruner", "CollectionTracker", "register"]

#: What an open window has noted: (kind, absolute path or pattern, the files under the rootdir
#: whose import was running), see `_Audit`.
_Reads = list[tuple[str, str, tuple[str, ...]]]
_AUDIT_ATTRIBUTE = "_llmharness_collection_audit"  # on the sys module: see _audit()


def register(config: pytest.Config, tracker: CollectionTracker | None, may_prune: bool) -> None:
    """Track collection for the cache; prune it only where a plan can leave files out (then
    the per-name hook runs for every function of every test module)."""
    if tracker is None:
        return
    config.pluginmanager.register(tracker, "llmharness-collection")
    if may_prune:
        config.pluginmanager.register(CollectionPruner(tracker), "llmharness-pruner")


class _Audit:
    """What the process's audit hook notes: while a window is open, the files opened, folders
    listed and globs run."""

    def __init__(self) -> None:
        self.reads: _Reads | None = None  # the open window's, None when none is open
        self.root = ""  # the open window's rootdir, with a trailing separator
        # Callers whose listings and reads are not a test's data: the import system's (the
        # cache tracks imports by module; frozen, or from source under -X frozen_modules=off)
        # and pytest's own (a folder's files, a module's source: the collection's structure).
        self._skipped_callers = (
            "<frozen ",
            inspect.getfile(importlib.machinery.FileFinder),
            os.path.dirname(inspect.getfile(pytest.Collector)) + os.sep,
        )

    def note(self, event: str, args: tuple[Any, ...], reads: _Reads) -> None:
        """Note an audited event, called by the hook while a window is open."""
        if event == "open":
            kind = "file"
        elif event in ("os.listdir", "os.scandir"):
            kind = "folder"
        elif event in ("glob.glob", "glob.glob/2"):
            kind = "recursive-glob" if args[1] else "glob"
        else:
            return
        try:
            frame = sys._getframe(2)  # who called open (1 is the hook)
            if frame.f_code.co_filename.startswith(self._skipped_callers):
                return
            target = "." if args[0] is None else args[0]  # os.listdir() lists the cwd
            if isinstance(target, int):
                return  # a file descriptor names no path
            path = os.fsdecode(os.fspath(target))
            if kind == "file" or kind == "folder":
                path = os.path.abspath(path)
            elif event == "glob.glob/2" and args[2] is not None and not os.path.isabs(path):
                if args[3] is not None:
                    return  # relative to a folder descriptor
                path = os.path.join(os.getcwd(), os.fsdecode(os.fspath(args[2])), path)
            else:
                # Joined, not normalized: normpath would change a pattern's meaning at "..".
                path = os.path.join(os.getcwd(), path)
            reads.append((kind, path, self._importing(frame)))
        except Exception:  # a hook must never break the operation it audits
            return

    def _importing(self, frame: FrameType | None) -> tuple[str, ...]:
        """The project files whose import (module body) is on the stack: a helper module that
        reads its data at import does so for every test file that uses it, not only for the
        first one, whose collection imported it."""
        found: list[str] = []
        while frame is not None:
            code = frame.f_code
            if code.co_name == "<module>" and code.co_filename.startswith(self.root):
                found.append(code.co_filename)
            frame = frame.f_back
        return tuple(found)


def _audit() -> _Audit:
    """The process's one audit hook, installed on first use (by a process that collects).

    An audit hook cannot be removed, and pytester's in-process runs import plugin modules
    anew for each run: the hook is kept on the sys module, which outlives them, so that a
    process never has more than one.
    """
    audit = getattr(sys, _AUDIT_ATTRIBUTE, None)
    if audit is None:
        audit = _Audit()
        note = audit.note

        def hook(event: str, args: tuple[Any, ...]) -> None:
            # Called for every audited event of the process, tests included (pytest's own
            # protocol raises eight a test): outside a window, one attribute check. A plain
            # function, as a callable object costs each call a fifth more.
            reads = audit.reads
            if reads is not None:
                note(event, args, reads)

        sys.addaudithook(hook)
        setattr(sys, _AUDIT_ATTRIBUTE, audit)
    return cast(_Audit, audit)


@contextmanager
def _window(audit: _Audit, root: str) -> Iterator[_Reads]:
    """Note what is read until the block ends (a nested window notes into its own list)."""
    outer, outer_root = audit.reads, audit.root
    reads: _Reads = []
    audit.reads, audit.root = reads, os.path.join(root, "")
    try:
        yield reads
    finally:
        audit.reads, audit.root = outer, outer_root


@contextmanager
def _paused() -> Iterator[None]:
    """Note nothing during the block: llmharness's own reads are no test file's."""
    audit: _Audit | None = getattr(sys, _AUDIT_ATTRIBUTE, None)
    if audit is None:  # not installed (yet): nothing to pause
        yield
        return
    outer = audit.reads
    audit.reads = None
    try:
        yield
    finally:
        audit.reads = outer


@dataclass
class _File:
    """What this run's collection of one test file built and read."""

    skipped_before: int  # known files left uncollected when this one's collection began
    module: bool = False  # a pytest.Module was collected for it: only then is it cached
    failed: bool = False
    deps: set[str] = field(default_factory=set)
    items: dict[pytest.Collector, list[str]] = field(default_factory=dict)  # each report's
    children: set[pytest.Collector] = field(default_factory=set)  # collectors reports listed
    decisions: dict[pytest.Collector, dict[str, bool]] = field(default_factory=dict)  # pruner's

    def produced(self) -> list[str]:
        return list(dict.fromkeys(nodeid for items in self.items.values() for nodeid in items))

    def pruned(self) -> list[str]:
        """The objects (`collector::name`) the pruner left unbuilt in the reports kept."""
        found: list[str] = []
        for collector, names in self.decisions.items():
            if collector in self.items:
                prefix = collector.nodeid + "::"
                found.extend(prefix + name for name, kept in names.items() if not kept)
        return found

    def built_in_part(self) -> bool:
        """Whether the pruner left something of it unbuilt, in a report kept."""
        return any(
            collector in self.items and not all(names.values())
            for collector, names in self.decisions.items()
        )


class CollectionTracker:
    """Applies a collection plan; notes what each collected file's collection depended on and
    checks that the files it built in part produced the node ids recorded for them."""

    def __init__(
        self,
        rootdir: Path,
        plan: Callable[[], collectcache.CollectionPlan],
        store: Path | None = None,
        unchanged: Callable[[], Mapping[str, Any] | None] = lambda: None,
    ) -> None:
        self.rootdir = rootdir
        self._make_plan = plan
        self._plan: collectcache.CollectionPlan | None = None
        # The cache's entries when none of them needs recording again (see
        # CollectionCache.unchanged); decided when the first collector is collected.
        self._find_unchanged = unchanged
        self._unchanged: Mapping[str, Any] | None = None
        self._recording: bool | None = None
        self.unrecorded: set[str] = set()  # files collected unaudited that need an entry
        self.failed: set[str] = set()
        self.skipped: set[str] = set()  # known files this process did not import
        self.fingerprints = collectcache.Fingerprints(rootdir)
        self.full = False  # a file built other ids than recorded: the plan is no longer used
        self._files: dict[str, _File] = {}
        self._folders: dict[str, set[str]] = {}  # what a folder's collection (conftest) read
        self._imports: dict[str, set[str]] = {}  # what a project module read at its import
        self._recorded: dict[str, collectcache.Recorded] = {}
        self._stale_file: str | None = None
        self._stale: str | None = None
        self._finished = False
        self._items: list[pytest.Item] = []  # every item collected, for -k/-m's record
        # What -k and -m evaluate on, by node id (None: not to be recorded, e.g. two items of
        # one id that differ), and by file how many tests they kept otherwise than expected.
        self._keywords: dict[str, selection.Keywords | None] = {}
        self._misselected: dict[str, int] = {}
        store_rel = collectcache.relative(self.fingerprints.root, str(store)) if store else None
        self._ignored = (store_rel,) if store_rel else ()

    @property
    def plan(self) -> collectcache.CollectionPlan:
        if self._plan is None:
            with _paused():  # planning reads every known file's dependencies
                self._plan = self._make_plan()
        return self._plan

    @property
    def recording(self) -> bool:
        """Whether this run notes what each file's collection reads (the audit hook).

        Not when every cached entry is still valid and the cache was written whole: recording
        them again would give the same entries, and an audit hook, once installed, costs every
        audited event for the rest of the process (pytest's own protocol raises eight a test).
        """
        if self._recording is None:
            with _paused():
                self._unchanged = self._find_unchanged()
            self._recording = self._unchanged is None
        return self._recording

    def _file(self, rel: str) -> _File:
        state = self._files.get(rel)
        if state is None:
            state = self._files[rel] = _File(skipped_before=len(self.skipped))
        return state

    def decided(self, collector: pytest.Collector, rel: str, name: str, kept: bool) -> None:
        """The pruner built (or left out) the object `name` of a known file's collector."""
        self._file(rel).decisions.setdefault(collector, {})[name] = kept

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        self._items.append(item)

    # trylast: after the hooks that add markers (pytest's documented way to mark tests by
    # name) and after pytest's own -k/-m, but before llmharness's `timeout` markers, which
    # depend on an option no part of the cache's key.
    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """Record what -k and -m evaluate on for the tests of the files to be cached; under a
        plan and -k/-m, check that pytest kept exactly the tests expected."""
        collected, self._items = self._items, []
        plan = self.plan
        select = _selection(config) if plan.skip or plan.wanted else None
        kept = {id(item) for item in items} if select is not None else set()
        reader = _KeywordReader()
        for item in collected:
            nodeid = item.nodeid
            rel = nodeid.partition("::")[0]
            if select is None and not self._cached(rel):
                continue
            keywords = reader.read(item)
            if nodeid in self._keywords and self._keywords[nodeid] != keywords:
                keywords = None
            self._keywords[nodeid] = keywords
            if select is not None and not self._as_expected(
                select, plan, rel, nodeid, keywords, id(item) in kept
            ):
                self._misselected[rel] = self._misselected.get(rel, 0) + 1

    def _cached(self, rel: str) -> bool:
        """Whether the file may get a cache entry this run (see `entries`)."""
        state = self._files.get(rel)
        return (
            state is not None and state.module and not state.failed and rel not in self.plan.wanted
        )

    def _as_expected(
        self,
        select: selection.Selection,
        plan: collectcache.CollectionPlan,
        rel: str,
        nodeid: str,
        keywords: selection.Keywords | None,
        kept: bool,
    ) -> bool:
        """Whether pytest kept a test as its names and markers say, and as its record says."""
        if keywords is not None and select.selects(keywords) not in (kept, None):
            return False
        recorded = self._recorded_ids(rel)
        if recorded is not None and nodeid in recorded.ids:
            return (nodeid not in plan.unselected.get(rel, ())) == kept
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        root = self.fingerprints.root
        path = os.fspath(collector.path)
        rel = "" if path == root else collectcache.relative(root, path)
        if rel is None or isinstance(collector, pytest.Session):
            return (yield)
        folder = isinstance(collector, pytest.Directory)
        if not self.recording:
            report = yield
            return report if folder else self._collected(collector, rel, report, set(), None)
        before = set(sys.modules) if folder or isinstance(collector, pytest.Module) else None
        with _window(_audit(), root) as reads:
            report = yield
        deps = self._dependencies(reads)
        if folder:
            # Its conftest.py is imported here: what that read shapes every file below.
            if before is not None:
                loaded = set(sys.modules).difference(before)
                deps |= collectcache.local_dependencies(self.rootdir, None, "", loaded)
            if deps:
                self._folders.setdefault(rel, set()).update(deps)
            return report
        return self._collected(collector, rel, report, deps, before)

    def _dependencies(self, reads: _Reads) -> set[str]:
        root, ignored = self.fingerprints.root, self._ignored
        found = set()
        for kind, path, importing in reads:
            key = collectcache.dependency_key(root, kind, path, ignored)
            if key is None:
                continue
            found.add(key)
            for filename in importing:
                module = collectcache.relative(root, filename)
                if module is not None:
                    self._imports.setdefault(module, set()).add(key)
        return found

    def _collected(
        self,
        collector: pytest.Collector,
        rel: str,
        report: pytest.CollectReport,
        deps: set[str],
        before: set[str] | None,
    ) -> pytest.CollectReport:
        state = self._file(rel)
        state.deps |= deps
        if isinstance(collector, pytest.Module):
            state.module = True
        if not report.passed:
            state.failed = True
            self.failed.add(rel)
            return report
        if before is not None:
            module = collector.obj if type(collector) is pytest.Module else None
            loaded = set(sys.modules).difference(before)
            source = self.fingerprints.text(rel) if module is not None else ""
            found = collectcache.local_dependencies(self.rootdir, module, source, loaded)
            state.deps |= found
        recorded = self._recorded_ids(rel)
        if recorded is not None and self._differs(state, collector, report, recorded):
            # Its recorded ids are stale, so may be those of what was left out: build it
            # whole, and everything after it (the files skipped before it are past help).
            self.full = True
            self._stale_file = self._stale_file or rel
            rebuilt = self._rebuild(collector)
            if rebuilt is not None:
                return rebuilt
        items = state.items[collector] = []
        for node in report.result:
            if isinstance(node, pytest.Item):
                items.append(node.nodeid)
            else:
                state.children.add(node)
        return report

    def _recorded_ids(self, rel: str) -> collectcache.Recorded | None:
        """The recorded ids of a file the plan builds in part, to check its reports by."""
        if self.full or rel not in self.plan.wanted:
            return None
        recorded = self._recorded.get(rel)
        if recorded is None:
            ids = self.plan.known.get(rel)
            if ids is None:
                return None  # a plan without recorded ids (an older controller's)
            recorded = self._recorded[rel] = collectcache.Recorded(ids)
        return recorded

    @staticmethod
    def _differs(
        state: _File,
        collector: pytest.Collector,
        report: pytest.CollectReport,
        recorded: collectcache.Recorded,
    ) -> bool:
        """Whether a report of a partly built file shows other ids than recorded: an item not
        recorded, or an object the pruner built without all of its recorded items."""
        items = {node.nodeid for node in report.result if isinstance(node, pytest.Item)}
        if not items <= recorded.ids:
            return True
        children = {node.nodeid for node in report.result if not isinstance(node, pytest.Item)}
        for name, kept in state.decisions.get(collector, {}).items():
            if not kept:
                continue
            prefix = f"{collector.nodeid}::{name}"
            expected, deeper = recorded.under(prefix)
            if not expected <= items or (deeper and prefix not in children):
                return True
        return False

    @staticmethod
    def _rebuild(collector: pytest.Collector) -> pytest.CollectReport | None:
        """A whole collection of a module or class the pruner built in part, by a new node
        for it (collecting the same node twice would register its fixtures twice)."""
        parent = collector.parent
        if parent is None:
            return None
        try:
            if isinstance(collector, pytest.Class):
                fresh: pytest.Collector = type(collector).from_parent(parent, name=collector.name)
            elif isinstance(collector, pytest.Module):
                fresh = type(collector).from_parent(parent, path=collector.path)
            else:
                return None  # not one the pruner builds in part
        except Exception:  # a subclass with another constructor: keep the partial build
            return None
        report: pytest.CollectReport = fresh.ihook.pytest_make_collect_report(collector=fresh)
        return report

    def _finish(self) -> None:
        """Collection is over: check each partly built file's whole production, once."""
        if self._finished:
            return
        self._finished = True
        if not self._files:
            return  # an xdist controller's: its workers collect
        plan = self.plan
        differences: dict[str, tuple[int, int]] = {}
        for rel, state in self._files.items():
            ids = plan.known.get(rel)
            if rel not in plan.wanted or ids is None or not state.items:
                continue
            recorded = self._recorded.get(rel) or collectcache.Recorded(ids)
            new, gone = recorded.differences(state.produced(), state.pruned())
            if new or gone:
                differences[rel] = (new, gone)
        stale = self._stale_file or next(iter(differences), None)
        if stale is None:
            self._stale = self._misselection()
            return
        new, gone = differences.get(stale, (0, 0))
        skipped = self._files[stale].skipped_before
        rest = ", the rest of this run collected in full" if self.full else ""
        if skipped == 0:
            before = "no file was skipped before it"
        else:
            files = "file" if skipped == 1 else "files"
            before = f"{skipped} {files} skipped before it may be missing tests"
        self._stale = (
            f"collection cache: {stale} produced other node ids than recorded "
            f"({new} new, {gone} gone); cache dropped{rest}; {before}"
        )

    def _misselection(self) -> str | None:
        """The warning to give when pytest's -k/-m kept other tests than expected."""
        rel = next(iter(self._misselected), None)
        if rel is None:
            return None
        count = self._misselected[rel]
        tests = "test" if count == 1 else "tests"
        skipped = len(self.skipped)
        if skipped == 0:
            after = "no file was skipped"
        else:
            files = "file" if skipped == 1 else "files"
            after = f"{skipped} {files} skipped may have been sampled otherwise"
        return (
            f"collection cache: -k/-m selected otherwise than recorded in {rel} ({count} "
            f"{tests}; or a plugin deselected them); cache dropped; {after}"
        )

    @property
    def stale(self) -> str | None:
        """Once collection is over: the warning to give when a partly built file produced
        other node ids than recorded, or -k/-m kept other tests than expected (the cache is
        then to be dropped), else None."""
        self._finish()
        return self._stale

    def touched(self) -> set[str]:
        """Known files this process skipped or collected only in part."""
        self._finish()
        pruned = {rel for rel, state in self._files.items() if state.built_in_part()}
        return self.skipped | pruned

    def entries(self, nodeids: Collection[str] = ()) -> dict[str, Any]:
        """Cache entries for the files collected cleanly and in full this run.

        The ids come from the collect reports, which hold a whole module's items even when a
        `file::name` argument narrows the run to some (`nodeids`, the items collected, are
        not needed); a file whose classes were not all collected is left out.
        """
        self._finish()
        if self.full:
            return {}
        plan = self.plan
        unchanged = None if self.recording else self._unchanged
        entries = {}
        for rel, state in self._files.items():
            if not state.module or state.failed or rel in plan.wanted:
                continue
            if not state.children.issubset(state.items):
                continue  # narrowed: some of its classes were never collected
            if unchanged is not None:
                kept = self._kept(rel, state, unchanged.get(rel))
                if kept is not None:
                    entries[rel] = kept
                continue
            deps = set(state.deps)
            for module in state.deps:  # what its helpers read when imported, here or before
                deps |= self._imports.get(module, set())
            folder = rel
            while folder:
                folder = folder.rpartition("/")[0]
                deps |= self._folders.get(folder, set())
            ids = state.produced()
            select = collectcache.encode_keywords(ids, self._keywords)
            entry = collectcache.file_entry(self.fingerprints, rel, ids, deps, select)
            if entry is not None:
                entries[rel] = entry
        return entries

    def _kept(self, rel: str, state: _File, cached: Any) -> dict[str, Any] | None:
        """In a run that does not record: the cached entry of a file collected as recorded.
        Any other file (new, or producing other node ids or markers) gets no entry, as what
        its collection read is unknown; it is noted in `unrecorded`, for the next run to
        record."""
        ids = state.produced()
        if (
            isinstance(cached, dict)
            and cached.get("ids") == ids
            and cached.get("select") == collectcache.encode_keywords(ids, self._keywords)
        ):
            return cached
        self.unrecorded.add(rel)
        return None

    def release(self) -> None:
        """The cache has what it needs: the per-file notes need not stay in memory."""
        self._finish()
        self._files = {}
        self._unchanged = None
        self._recorded = {}
        self._items = []
        self._keywords = {}


def still_valid(
    fingerprints: collectcache.Fingerprints, files: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The cache's entries `files` when there are some and nothing any of them depended on has
    changed, else None."""
    if not files:
        return None
    for rel, entry in files.items():
        if collectcache.recorded_ids(fingerprints, rel, entry) is None:
            return None
    return files


def collected_cleanly(config: pytest.Config, report: pytest.CollectReport) -> bool:
    """Whether `report` is of a test file that was collected and says what the file holds: the
    known tests of such a file that it did not yield are gone. Not so under --lf once pytest
    has found a last failure (it registers "lfplugin-collskip" then): it reports the other files
    as collected and empty without importing them, and leaves the tests that passed out of the
    files it collects."""
    if not report.passed or "::" in report.nodeid:
        return False
    return not config.pluginmanager.has_plugin("lfplugin-collskip")


def _selection(config: pytest.Config) -> selection.Selection | None:
    """The run's -k and -m, when given and evaluable."""
    try:
        select = selection.Selection.from_options(
            config.getoption("keyword", None), config.getoption("markexpr", None)
        )
    except selection.ExpressionError:
        return None
    return select if select.active else None


_Share = tuple[frozenset[str], frozenset[selection.Mark]]  # names and markers


class _KeywordReader:
    """Reads what pytest's -k and -m evaluate on for items (its KeywordMatcher's names and its
    MarkMatcher's markers), by the public attributes its `listchain`, `listextrakeywords` and
    `iter_markers` read: the share of each parent (a module, a class) is read once."""

    def __init__(self) -> None:
        # By id(): the nodes outlive the reader, which lives for one hook call.
        self._shares: dict[int, _Share] = {}
        self._marks: dict[int, selection.Mark] = {}

    def read(self, item: pytest.Item) -> selection.Keywords | None:
        """The item's names and markers; None if the item does not allow reading them."""
        try:
            parent = item.parent
            inherited, marks = self._share(parent) if parent is not None else _NOTHING
            own = item.name
            function = getattr(item, "function", None)
            attributes = function.__dict__ if function else {}
            extra, own_markers = item.extra_keyword_matches, item.own_markers
            if not (attributes or extra or own_markers) and own not in inherited:
                return selection.Keywords(own, inherited, frozenset(), marks)  # most tests
            names = set(inherited)
            names.update(extra)
            own_marks = [self._mark(mark) for mark in own_markers]
            names.update(mark.name for mark in own_marks)
            doubtful: set[str] = set()
            for name in attributes:
                (doubtful if selection.doubtful_attribute(name) else names).add(name)
            names.discard(own)
            doubtful.difference_update(names)
            doubtful.discard(own)
            return selection.Keywords(
                own, frozenset(names), frozenset(doubtful), marks.union(own_marks)
            )
        except Exception:  # an unusual item: not recorded, and its file not trusted under -k/-m
            return None

    def _share(self, node: pytest.Item | pytest.Collector) -> _Share:
        share = self._shares.get(id(node))
        if share is None:
            parent = node.parent
            inherited, marks = self._share(parent) if parent is not None else _NOTHING
            names = set(inherited)
            # The session's name and the root folder's match nothing.
            if not isinstance(node, pytest.Session) and not (
                isinstance(node, pytest.Directory) and isinstance(parent, pytest.Session)
            ):
                names.add(node.name)
            names.update(node.extra_keyword_matches)
            own_marks = [self._mark(mark) for mark in node.own_markers]
            names.update(mark.name for mark in own_marks)
            share = self._shares[id(node)] = (frozenset(names), marks.union(own_marks))
        return share

    def _mark(self, mark: pytest.Mark) -> selection.Mark:
        found = self._marks.get(id(mark))
        if found is None:
            kwargs = sorted(mark.kwargs.items(), key=lambda pair: pair[0])
            found = selection.Mark(
                mark.name, tuple((key, selection.plain_value(value)) for key, value in kwargs)
            )
            self._marks[id(mark)] = found
        return found


_NOTHING: _Share = (frozenset(), frozenset())


class CollectionPruner:
    """Leaves out of collection what a tracker's plan says holds no sampled test."""

    def __init__(self, tracker: CollectionTracker) -> None:
        self.tracker = tracker

    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        tracker = self.tracker
        skip = tracker.plan.skip
        if not skip or tracker.full:
            return None
        rel = collectcache.relative(tracker.fingerprints.root, os.fspath(collection_path))
        if rel is not None and rel in skip:
            tracker.skipped.add(rel)
            return True
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(self, collector: pytest.Collector, name: str) -> Any:
        tracker = self.tracker
        plan = tracker.plan
        if not plan.wanted or tracker.full:
            return None
        rel = collector.nodeid.partition("::")[0]
        if rel not in plan.wanted:
            return None  # not a known file: collect as usual
        kept = plan.keeps(collector.nodeid, name)
        tracker.decided(collector, rel, name, kept)
        return None if kept else []  # no sampled test in it: build nothing (deselected)


@dataclass(frozen=True)
class _Update:
    """What to write into the cache once the run is over."""

    env: str
    fresh: dict[str, Any]  # entries changed or new
    failed: set[str]  # files whose collection failed (or was not recorded): their entries go
    drop: bool = False  # a file built other ids than recorded: keep nothing
    complete: bool = True  # every file collected has its entry (see CollectionCache.unchanged)


class CollectionCache:
    """The controller's side of the collection cache: loads it, plans this run's collection
    from it, and writes back what changed once the run is over (the store's lock is then never
    taken before the tests)."""

    def __init__(
        self,
        config: pytest.Config,
        store: Store,
        fraction: float | None,
        sampler: sampling.Sampler,
        on_warning: Callable[[str], None],
        changed: Collection[str] = (),
    ) -> None:
        self.config = config
        self.store = store
        self.fraction = fraction
        self.sampler = sampler
        self.changed = changed
        self.rootdir = config.rootpath
        self._warn = on_warning
        self.tracker = CollectionTracker(self.rootdir, self.plan, store.root, self.unchanged)
        self._collection_cache: dict[str, Any] | None = None
        self._collection_plan: collectcache.CollectionPlan | None = None
        # Taken now, before any test module is imported (one may set variables or extend
        # sys.path): every run then keys the same moment, whether it plans or only records.
        self._variables = collectcache.variable_digests(os.environ)
        self._args = self._command_line()
        self._env_key = collectcache.environment_key(
            config.inipath,
            [
                collectcache.plugin_identity(dist)
                for _, dist in config.pluginmanager.list_plugin_distinfo()
            ],
            collectcache.distributions(sys.path),
            self._args,
            self._variables,
        )
        self._collection_update: _Update | None = None
        #: (files not imported, known tests not built) by this run's plan
        self.uncollected_counts = (0, 0)
        #: Of those known tests, the ones -k/-m deselect: counted as deselected, never sampled.
        self.unselected: list[str] = []
        #: Why a fraction run could not use the cache (e.g. which variables changed), or None.
        self.reason: str | None = None
        #: The warning given when a file built other node ids than recorded (cache dropped).
        self.stale: str | None = None

    def _cache(self) -> dict[str, Any]:
        if self._collection_cache is None:
            self._collection_cache = self.store.load_collection()
        return self._collection_cache

    def _command_line(self) -> list[str]:
        """Where pytest was run (the command line's relative paths start there), then the
        command line as far as it may shape node ids."""
        params = self.config.invocation_params
        try:
            where = os.path.relpath(params.dir, self.rootdir)
        except ValueError:  # another drive
            where = str(params.dir)
        args = collectcache.selection_free([str(arg) for arg in params.args])
        return [where, *collectcache.collection_args(args)]

    def _collection_filtered(self) -> bool:
        """Whether options filter tests by more than node id and what the cache records of
        them for -k and -m (then collect everything), or `file::name` arguments narrow the run
        to part of a file (whose other tests a plan drawn from its recorded ids could
        otherwise want instead)."""
        names = ("deselect", "lf", "stepwise")
        if any(self.config.getoption(name, None) for name in names):
            return True
        return any("::" in str(arg) for arg in self.config.args)

    def plan(self) -> collectcache.CollectionPlan:
        """What this run's collection may leave out (nothing unless sampling by fraction)."""
        if self._collection_plan is None:
            self._collection_plan = collectcache.CollectionPlan()
            if self.fraction is not None and not self._collection_filtered():
                try:
                    select = selection.Selection.from_options(
                        self.config.getoption("keyword", None),
                        self.config.getoption("markexpr", None),
                    )
                except selection.ExpressionError as exc:
                    self.reason = f"cannot evaluate -k/-m on the record: {exc}"
                    return self._collection_plan
                cache = self._cache()
                if cache["env"] == self._env_key:
                    self._collection_plan = collectcache.plan(
                        self.tracker.fingerprints,
                        cache["files"],
                        self.fraction,
                        self.sampler,
                        select,
                        self.touched_by_changes(),
                    )
                else:
                    self.reason = self._unknown_because(cache)
        return self._collection_plan

    def unchanged(self) -> Mapping[str, Any] | None:
        """The cached entries, when this run need not record its collection again: the cache
        is this environment's, was left `complete` by the run that wrote it (every file that
        run collected has its entry), and nothing any entry depended on has changed. None
        when the run records (then it writes every file's entry afresh)."""
        cache = self._cache()
        if cache["env"] != self._env_key or cache.get("complete") is not True:
            return None
        return still_valid(self.tracker.fingerprints, cache["files"])

    def touched_by_changes(self, fresh: Mapping[str, Any] | None = None) -> set[str]:
        """The test files the changes touch, by what the cache (and `fresh`, this run's new
        entries) recorded of each file's collection."""
        if not self.changed:
            return set()
        files = self._cache()["files"]
        changed = collectcache.importers(self.rootdir, self.changed)
        return collectcache.dependents({**files, **(fresh or {})}, changed)

    def _unknown_because(self, cache: Mapping[str, Any]) -> str:
        """Why the cache's environment is not this run's, in a few words."""
        if not cache["env"]:
            return "no collection cache yet"
        variables = cache.get("variables")
        if not isinstance(variables, dict):
            return "the cache was written by an older llmharness"
        names = collectcache.changed_names(variables, self._variables)
        if names:
            return f"environment variables changed: {', '.join(names)}"
        if cache.get("args") != self._args:
            return "command line changed"
        return "Python, pytest, installed packages, plugins or the ini file changed"

    def uncollected(self, touched: Collection[str], collected: Collection[str]) -> list[str]:
        """Known tests of the files collection skipped or pruned: they count in the total
        (those that -k/-m deselect, kept in `unselected`, as deselected)."""
        plan = self.plan()
        present = set(collected)
        missing: list[str] = []
        unselected: list[str] = []
        for rel in sorted(touched):
            out = plan.unselected.get(rel, frozenset())
            for nodeid in plan.known.get(rel, ()):
                if nodeid not in present:
                    missing.append(nodeid)
                    if nodeid in out:
                        unselected.append(nodeid)
        self.uncollected_counts = (sum(rel in plan.skip for rel in touched), len(missing))
        self.unselected = unselected
        return missing

    def collected(
        self,
        collected: list[str],
        touched: Collection[str],
        entries: dict[str, Any],
        failed: Collection[str],
        stale: str | None = None,
        unrecorded: Collection[str] = (),
    ) -> list[str]:
        """Collection is over (here or on a worker, which sends its tracker's `stale` and
        `unrecorded`): keep what changed for the cache and return the known tests the plan
        left uncollected, which count in the run's total."""
        self.stale = stale if stale is not None else self.tracker.stale
        uncollected = self.uncollected(touched, collected)
        if self.stale is not None:
            self._warn(self.stale)
        self.save(entries, failed, self.stale is not None, {*unrecorded, *self.tracker.unrecorded})
        self.release()
        return uncollected

    def release(self) -> None:
        """Collection is over: the cache and the plan's node ids need not stay in memory."""
        self._collection_cache = {"env": "", "files": {}}
        self._collection_plan = collectcache.CollectionPlan()
        self.tracker.release()

    def save(
        self,
        entries: dict[str, Any],
        failed: Collection[str],
        drop: bool = False,
        unrecorded: Collection[str] = (),
    ) -> None:
        """Keep what changed in the collection cache, to be written at the end of the run:
        the store's lock is then never taken before the tests."""
        env = self._env_key
        if drop:
            self._collection_update = _Update(env, {}, set(), drop=True)
            return
        cache = self._cache()
        known = cache["files"] if cache["env"] == env else {}
        fresh = {rel: e for rel, e in entries.items() if not _same_entry(known.get(rel), e)}
        # Files collected without being recorded: an entry they had is dropped, and the cache
        # is left incomplete, so that the next run records them.
        complete = not unrecorded
        dropped = {*failed, *unrecorded}
        if (
            cache["env"] == env
            and not fresh
            and not any(rel in known for rel in dropped)
            and cache.get("complete") is complete
        ):
            return
        self._collection_update = _Update(env, fresh, dropped, complete=complete)

    def write(self) -> None:
        update = self._collection_update
        if update is None:
            return
        self._collection_update = None
        try:
            with self.store.locked():
                current = self.store.load_collection()
                same = current["env"] == update.env
                collected = len(update.fresh) + len(update.failed)
                if not same and not update.drop and collected < len(current["files"]):
                    # A narrower run (a few files named on the command line, say) keys other
                    # node ids than the broader one cached: keep the broader one.
                    return
                files = dict(current["files"]) if same and not update.drop else {}
                files.update(update.fresh)
                for rel in update.failed:
                    files.pop(rel, None)
                root = str(self.rootdir)
                files = {r: e for r, e in files.items() if os.path.isfile(os.path.join(root, r))}
                data = {
                    "schema": SCHEMA,
                    "env": update.env,
                    "variables": self._variables,
                    "args": self._args,
                    "files": files,
                    "complete": update.complete and not update.drop,
                }
                self.store.write_json(self.store.root / COLLECTION_FILE, data)
        except StoreError as exc:
            self._warn(str(exc))


def _same_entry(old: Any, new: Mapping[str, Any]) -> bool:
    if not isinstance(old, dict):
        return False
    return all(old.get(key) == new.get(key) for key in ("hash", "ids", "deps", "select"))
