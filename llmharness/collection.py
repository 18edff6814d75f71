"""The collection cache at work in a run: tracking what each test file's collection depended
on, planning what a `--fast` run may leave uncollected, and keeping the cache up to date.

`collectcache` holds the pure parts (fingerprints, the plan); this module holds the plugin
objects pytest calls during collection and the controller's side of the cache.
"""

from __future__ import annotations

import itertools
import operator
import os
import sys
from collections.abc import Callable, Collection, Generator, Mapping
from pathlib import Path
from typing import Any

import pytest

from llmharness import collectcache
from llmharness.store import Store, StoreError

__all__ = ["CollectionCache", "CollectionPruner", "CollectionTracker", "register"]

_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def register(config: pytest.Config, tracker: CollectionTracker | None, may_prune: bool) -> None:
    """Track collection for the cache; prune it only where a plan can leave files out (then
    the per-name hook runs for every function of every test module)."""
    if tracker is None:
        return
    config.pluginmanager.register(tracker, "llmharness-collection")
    if may_prune:
        config.pluginmanager.register(CollectionPruner(tracker), "llmharness-pruner")


class CollectionTracker:
    """Applies a collection plan; notes what each collected file's collection depended on."""

    def __init__(self, rootdir: Path, plan: Callable[[], collectcache.CollectionPlan]) -> None:
        self.rootdir = rootdir
        self._make_plan = plan
        self._plan: collectcache.CollectionPlan | None = None
        self.deps: dict[str, set[str]] = {}  # files whose module collected cleanly
        self.failed: set[str] = set()
        self.skipped: set[str] = set()  # known files this process did not import
        self.fingerprints = collectcache.Fingerprints(rootdir)

    @property
    def plan(self) -> collectcache.CollectionPlan:
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        if not isinstance(collector, pytest.Module):
            return (yield)
        before = set(sys.modules)
        report = yield
        rel = collectcache.relative(self.fingerprints.root, os.fspath(collector.path))
        if rel is None or collector.nodeid != rel:
            return report
        if report.passed:
            module = collector.obj if type(collector) is pytest.Module else None
            loaded = set(sys.modules).difference(before)
            source = self.fingerprints.text(rel) if module is not None else ""
            found = collectcache.local_dependencies(self.rootdir, module, source, loaded)
            self.deps.setdefault(rel, set()).update(found)
        else:
            self.failed.add(rel)
        return report

    def touched(self) -> set[str]:
        """Known files this process skipped or collected only in part."""
        return self.skipped | (set(self.deps) & set(self.plan.wanted))

    def entries(self, nodeids: list[str]) -> dict[str, Any]:
        """Cache entries for the files collected cleanly and in full this run, given the node
        ids of all the items collected."""
        # A tracked file's node id is its path from the rootdir (see pytest_make_collect_report):
        # its items' ids start with it. Grouped by maps and per run of one file's items.
        paths = map(_first, map(str.partition, nodeids, itertools.repeat("::")))
        ids: dict[str, list[str]] = {}
        for rel, run in itertools.groupby(zip(paths, nodeids, strict=True), key=_first):
            ids.setdefault(rel, []).extend(map(_second, run))
        entries = {}
        for rel, deps in self.deps.items():
            if rel in self.failed or rel in self.plan.wanted:
                continue
            entry = collectcache.file_entry(self.fingerprints, rel, ids.get(rel, []), deps)
            if entry is not None:
                entries[rel] = entry
        return entries


class CollectionPruner:
    """Leaves out of collection what a tracker's plan says holds no sampled test."""

    def __init__(self, tracker: CollectionTracker) -> None:
        self.tracker = tracker

    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        tracker = self.tracker
        skip = tracker.plan.skip
        if not skip:
            return None
        rel = collectcache.relative(tracker.fingerprints.root, os.fspath(collection_path))
        if rel is not None and rel in skip:
            tracker.skipped.add(rel)
            return True
        return None

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(self, collector: pytest.Collector, name: str) -> Any:
        plan = self.tracker.plan
        if not plan.wanted or plan.keeps(collector.nodeid, name):
            return None
        return []  # no sampled test in it: build nothing (the tests count as deselected)


class CollectionCache:
    """The controller's side of the collection cache: loads it, plans this run's collection
    from it, and writes back what changed once the run is over (the store's lock is then never
    taken before the tests)."""

    def __init__(
        self,
        config: pytest.Config,
        store: Store,
        fraction: float | None,
        seed: str,
        on_warning: Callable[[str], None],
    ) -> None:
        self.config = config
        self.store = store
        self.fraction = fraction
        self.seed = seed
        self.rootdir = config.rootpath
        self._warn = on_warning
        self.tracker = CollectionTracker(self.rootdir, self.plan)
        self._collection_cache: dict[str, Any] | None = None
        self._collection_plan: collectcache.CollectionPlan | None = None
        self._env_key: str | None = None
        # (environment, changed entries, files that failed) for the cache, once collected
        self._collection_update: tuple[str, dict[str, Any], set[str]] | None = None
        #: (files not imported, known tests not built) by this run's plan
        self.uncollected_counts = (0, 0)

    def _cache(self) -> dict[str, Any]:
        if self._collection_cache is None:
            self._collection_cache = self.store.load_collection()
        return self._collection_cache

    def _environment(self) -> str:
        if self._env_key is None:
            plugins = [
                collectcache.plugin_identity(dist)
                for _, dist in self.config.pluginmanager.list_plugin_distinfo()
            ]
            args = [str(arg) for arg in self.config.invocation_params.args]
            # Plugins named with -p shape collection as installed ones do.
            named = [
                arg
                for before, arg in zip(["", *args], args, strict=False)
                if arg.startswith("-p") or before == "-p"
            ]
            self._env_key = collectcache.environment_key(self.config.inipath, plugins, named)
        return self._env_key

    def _collection_filtered(self) -> bool:
        """Whether options filter tests by more than node id (then collect everything)."""
        names = ("keyword", "markexpr", "deselect", "lf", "stepwise")
        return any(self.config.getoption(name, None) for name in names)

    def plan(self) -> collectcache.CollectionPlan:
        """What this run's collection may leave out (nothing unless sampling by fraction)."""
        if self._collection_plan is None:
            self._collection_plan = collectcache.CollectionPlan()
            if self.fraction is not None and not self._collection_filtered():
                cache = self._cache()
                if cache["env"] == self._environment():
                    self._collection_plan = collectcache.plan(
                        self.tracker.fingerprints, cache["files"], self.fraction, self.seed
                    )
        return self._collection_plan

    def uncollected(self, touched: Collection[str], collected: Collection[str]) -> list[str]:
        """Known tests of the files collection skipped or pruned: they count in the total."""
        plan = self.plan()
        present = set(collected)
        missing = [
            nodeid
            for rel in sorted(touched)
            for nodeid in plan.known.get(rel, ())
            if nodeid not in present
        ]
        self.uncollected_counts = (sum(rel in plan.skip for rel in touched), len(missing))
        return missing

    def collected(
        self,
        collected: list[str],
        touched: Collection[str],
        entries: dict[str, Any],
        failed: Collection[str],
    ) -> list[str]:
        """Collection is over (here or on a worker): keep what changed for the cache and return
        the known tests the plan left uncollected, which count in the run's total."""
        uncollected = self.uncollected(touched, collected)
        self.save(entries, failed)
        self.release()
        return uncollected

    def release(self) -> None:
        """Collection is over: the cache and the plan's node ids need not stay in memory."""
        self._collection_cache = {"env": "", "files": {}}
        self._collection_plan = collectcache.CollectionPlan()

    def save(self, entries: dict[str, Any], failed: Collection[str]) -> None:
        """Keep what changed in the collection cache, to be written at the end of the run:
        the store's lock is then never taken before the tests."""
        env = self._environment()
        cache = self._cache()
        known = cache["files"] if cache["env"] == env else {}
        fresh = {rel: e for rel, e in entries.items() if not _same_entry(known.get(rel), e)}
        if cache["env"] == env and not fresh and not any(rel in known for rel in failed):
            return
        self._collection_update = (env, fresh, set(failed))

    def write(self) -> None:
        if self._collection_update is None:
            return
        env, fresh, failed = self._collection_update
        self._collection_update = None
        try:
            with self.store.locked():
                current = self.store.load_collection()
                files = dict(current["files"]) if current["env"] == env else {}
                files.update(fresh)
                for rel in failed:
                    files.pop(rel, None)
                root = str(self.rootdir)
                files = {r: e for r, e in files.items() if os.path.isfile(os.path.join(root, r))}
                self.store.save_collection(env, files)
        except StoreError as exc:
            self._warn(str(exc))


def _same_entry(old: Any, new: Mapping[str, Any]) -> bool:
    if not isinstance(old, dict):
        return False
    return all(old.get(key) == new[key] for key in ("hash", "ids", "deps"))
