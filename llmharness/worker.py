"""Sampling that every process applies alike, and an xdist worker's part of it.

The controller (or the only process) decides a `Plan`; under xdist it sends the plan to each
worker, which collects, applies it and sends back what it collected. Only the controller writes
to the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmharness import collectcache, collection, sampling
from llmharness.store import Store

__all__ = ["WORKER_KEY", "Plan", "WorkerSampler", "sample_items"]

#: The key of llmharness's part of xdist's workerinput and workeroutput.
WORKER_KEY = "llmharness"


@dataclass(frozen=True)
class Plan:
    """How to sample, as sent from the controller to xdist workers."""

    fraction: float | None
    budget_s: float | None
    seed: str
    store_root: str
    deadline: float | None = None  # time.time() after which no test may start
    track_collection: bool = False  # note what each file's collection depends on
    record_collection: bool = True  # False: the cache is unchanged, keep its entries
    skip_files: tuple[str, ...] = ()  # known files without a sampled test: not collected
    wanted: dict[str, list[str]] | None = None  # known files' sampled tests: the rest not built
    known: dict[str, list[str]] | None = None  # the recorded ids of the files built in part
    unselected: dict[str, list[str]] | None = None  # of those, the ones -k/-m deselect
    test_timeout: float | None = None
    pycache: str | None = None  # the store's bytecode cache, when the run uses it
    agents: int | None = None  # the team size: the sample starts at the agent's part
    part: int = 0
    changed: tuple[str, ...] = ()  # rootdir-relative files changed since the base
    always: tuple[str, ...] = ()  # test files the changes touch, by the collection cache

    @property
    def sampler(self) -> sampling.Sampler:
        return sampling.Sampler(self.seed, self.agents, self.part)

    @property
    def samples(self) -> bool:
        return self.fraction is not None or self.budget_s is not None


def sample_items(
    config: pytest.Config,
    items: list[pytest.Item],
    plan: Plan,
    uncollected: Collection[str] = (),
    fresh: Mapping[str, Any] | None = None,
) -> sampling.Sample:
    """Sample the collected items in place; `uncollected` are known tests not collected,
    `fresh` this run's collection cache entries (what each file's collection depended on)."""
    nodeids = [item.nodeid for item in items]
    nodeids.extend(uncollected)
    sampler = plan.sampler
    if plan.budget_s is not None:
        index = Store(Path(plan.store_root), readonly=True).load_index()
        durations = {nodeid: known.duration for nodeid, known in index.items()}
        sample = sampling.select_budget(nodeids, plan.budget_s, sampler, durations, plan.fraction)
    else:
        sample = sampling.select(nodeids, plan.fraction or 0.1, sampler)
    if plan.changed:
        changed = collectcache.importers(config.rootpath, plan.changed)
        touched = set(plan.always) | changed | collectcache.dependents(fresh or {}, changed)
        sample = sampling.with_files(sample, nodeids, touched)
    keep = sample.selected_set
    deselected = [item for item in items if item.nodeid not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.nodeid in keep]
    return sample


class WorkerSampler:
    """On an xdist worker: apply the controller's plan, report the full collection back."""

    def __init__(self, config: pytest.Config, plan: Plan) -> None:
        self.config = config
        self.plan = plan
        self.files: set[str] = set()
        self.deselected = 0  # by -k, -m, --deselect and other plugins, not by the sample
        self._sampling = False
        self.tracker = None
        if plan.track_collection:
            known = collectcache.CollectionPlan(
                skip=frozenset(plan.skip_files),
                wanted={rel: frozenset(ids) for rel, ids in (plan.wanted or {}).items()},
                known=plan.known or {},
                unselected={rel: frozenset(ids) for rel, ids in (plan.unselected or {}).items()},
            )
            self.tracker = collection.CollectionTracker(
                config.rootpath, lambda: known, Path(plan.store_root), self._unchanged
            )

    def _unchanged(self) -> Mapping[str, Any] | None:
        """The cache's entries, when the controller found them unchanged and they still are."""
        if self.plan.record_collection or self.tracker is None:
            return None
        files = Store(Path(self.plan.store_root), readonly=True).load_collection()["files"]
        return collection.still_valid(self.tracker.fingerprints, files)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if collection.collected_cleanly(self.config, report):
            self.files.add(report.nodeid)

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if not self._sampling:
            self.deselected += len(items)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        collected = [item.nodeid for item in items]
        yield
        cache = None
        entries: dict[str, Any] = {}
        if self.tracker is not None:  # after the other hooks, as the controller does
            entries = self.tracker.entries(collected)
            cache = {
                "entries": entries,
                "failed": sorted(self.tracker.failed),
                "stale": self.tracker.stale,
                "recorded": self.tracker.recording,
                "unrecorded": sorted(self.tracker.unrecorded),
            }
        sample = None
        if self.plan.samples:
            self._sampling = True
            sample = dataclasses.asdict(sample_items(config, items, self.plan, fresh=entries))
            self._sampling = False
        config.workeroutput[WORKER_KEY] = {  # type: ignore[attr-defined]
            "collected": collected,
            "deselected": self.deselected,
            "files": sorted(self.files),
            "sample": sample,
            "cache": cache,
            "touched": sorted(self.tracker.touched()) if self.tracker is not None else [],
        }
