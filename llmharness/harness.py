"""The plugin objects llmharness registers with pytest, one set per process.

The controller (or the only process) registers `Harness`, which samples, records and prints,
and its `RunRecorder`. An xdist worker registers `WorkerSampler`, which only applies the
controller's sample plan and sends back what it collected: under xdist only the controller
writes to the store. `llmharness.plugin` declares the options and calls `configure` here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import operator
import os
import sys
import time
from collections.abc import Callable, Collection, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmharness import collectcache, collection, reporting, sampling
from llmharness.config import ConfigError, Settings, load_settings
from llmharness.recorder import RunRecorder
from llmharness.store import Store, StoreError, new_run_id

__all__ = ["Harness", "WorkerSampler", "configure", "unconfigure"]

HARNESS_KEY = pytest.StashKey["Harness"]()
_WORKER_KEY = "llmharness"
# pytest's ExitCode values, as ints so this module needs no private import.
_EXIT_INTERRUPTED = 2
_EXIT_INTERNAL = 3
_EXIT_NO_TESTS = 5


def configure(config: pytest.Config, options: Mapping[str, Any]) -> None:
    """Register this process's plugin objects; `options` are llmharness's command-line values
    (None where not given)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        plan = workerinput.get(_WORKER_KEY)
        if plan is not None:
            worker = WorkerSampler(config, Plan(**plan))
            config.pluginmanager.register(worker, "llmharness-worker")
            collection.register(
                config, worker.tracker, bool(worker.plan.wanted or worker.plan.skip_files)
            )
            if worker.plan.deadline is not None:
                config.pluginmanager.register(TimeLimit(worker.plan.deadline), "llmharness-limit")
            _arm_timeout(config, worker.plan.test_timeout)
        return
    settings = _settings(config, options)
    _arm_timeout(config, settings.test_timeout)
    harness = Harness(config, settings)
    config.stash[HARNESS_KEY] = harness
    config.pluginmanager.register(harness, "llmharness-harness")
    # Its pytest_runtest_logreport folds each report (three a test) with no call in between.
    config.pluginmanager.register(harness.recorder, "llmharness-recorder")
    if harness.collection is not None:
        collection.register(config, harness.collection.tracker, settings.fast)
    if harness.deadline is not None:
        limit = TimeLimit(harness.deadline, harness.stop_at_limit)
        config.pluginmanager.register(limit, "llmharness-limit")


def unconfigure(config: pytest.Config) -> None:
    """Close the run's files and unregister what `configure` registered."""
    harness = config.stash.get(HARNESS_KEY, None)
    if harness is not None:
        harness.recorder.close()
        del config.stash[HARNESS_KEY]
        config.pluginmanager.unregister(harness.recorder)
        config.pluginmanager.unregister(harness)


def _settings(config: pytest.Config, options: Mapping[str, Any]) -> Settings:
    cli = dict(options)
    if cli.get("fast_fraction") is not None or cli.get("fast_budget") is not None:
        cli["fast"] = True
    ini = config.getini("llmharness_config")
    try:
        return load_settings(config.rootpath, cli, os.environ, str(ini) if ini else None)
    except ConfigError as exc:
        raise pytest.UsageError(f"llmharness: {exc}") from None


def _arm_timeout(config: pytest.Config, seconds: float | None) -> None:
    """Time each test, unless no timeout is set (then nothing runs per test for it)."""
    if seconds is None:
        return
    if config.pluginmanager.has_plugin("timeout"):
        # pytest-timeout is installed: it owns SIGALRM and the `timeout` markers, so it gets
        # the timeout (it reads the option in its own pytest_configure, which runs after ours).
        if config.getoption("timeout", None) is None:
            config.option.timeout = seconds
        return
    from llmharness.timeouts import TestTimeout  # imported only by the runs that use it

    config.pluginmanager.register(TestTimeout(seconds), "llmharness-timeout")


@dataclass(frozen=True)
class Plan:
    """How to sample, as sent from the controller to xdist workers."""

    fraction: float | None
    budget_s: float | None
    seed: str
    store_root: str
    deadline: float | None = None  # time.time() after which no test may start
    track_collection: bool = False  # note what each file's collection depends on
    skip_files: tuple[str, ...] = ()  # known files without a sampled test: not collected
    wanted: dict[str, list[str]] | None = None  # known files' sampled tests: the rest not built
    test_timeout: float | None = None


def _sample(
    config: pytest.Config, items: list[pytest.Item], plan: Plan, uncollected: Collection[str] = ()
) -> sampling.Sample:
    """Sample the collected items in place; `uncollected` are known tests not collected."""
    nodeids = list(map(_nodeid, items))
    nodeids.extend(uncollected)
    if plan.budget_s is not None:
        durations = {
            nodeid: known.duration
            for nodeid, known in Store(Path(plan.store_root), readonly=True).load_index().items()
        }
        sample = sampling.select_budget(nodeids, plan.budget_s, plan.seed, durations, plan.fraction)
    else:
        sample = sampling.select(nodeids, plan.fraction or 0.1, plan.seed)
    keep = sample.selected_set
    deselected = [item for item in items if item.nodeid not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.nodeid in keep]
    return sample


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_nodeid: Callable[[pytest.Item], str] = operator.attrgetter("nodeid")


class TimeLimit:
    """Starts no test past the deadline: registered only when a time limit is set."""

    def __init__(self, deadline: float, on_reached: Callable[[], None] | None = None) -> None:
        self.deadline = deadline
        self.on_reached = on_reached

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self) -> bool | None:
        if time.time() < self.deadline:
            return None
        if self.on_reached is not None:
            self.on_reached()
        return True  # past the limit: the test is not run and reports nothing


class WorkerSampler:
    """On an xdist worker: apply the controller's plan, report the full collection back."""

    def __init__(self, config: pytest.Config, plan: Plan) -> None:
        self.config = config
        self.plan = plan
        self.collected: list[str] = []
        self.files: set[str] = set()
        self.tracker = (
            collection.CollectionTracker(
                config.rootpath,
                lambda: collectcache.CollectionPlan(
                    skip=frozenset(plan.skip_files),
                    wanted={rel: frozenset(ids) for rel, ids in (plan.wanted or {}).items()},
                ),
            )
            if plan.track_collection
            else None
        )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.passed and "::" not in report.nodeid:
            self.files.add(report.nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        self.collected = list(map(_nodeid, items))
        cache = None
        if self.tracker is not None:
            entries = self.tracker.entries(self.collected)
            cache = {"entries": entries, "failed": sorted(self.tracker.failed)}
        yield
        sample = None
        if self.plan.fraction is not None or self.plan.budget_s is not None:
            sample = dataclasses.asdict(_sample(config, items, self.plan))
        self.config.workeroutput[_WORKER_KEY] = {  # type: ignore[attr-defined]
            "collected": self.collected,
            "files": sorted(self.files),
            "sample": sample,
            "cache": cache,
            "touched": sorted(self.tracker.touched()) if self.tracker is not None else [],
        }


class Progress:
    """Rare one-line progress: none in the first interval, then at most one per interval."""

    def __init__(self, interval: float, started: float) -> None:
        self.interval = interval
        self.started = started
        self.due = started + interval  # time.monotonic() from which a line is due

    def line(self, done: int, failed: int, left: Callable[[], tuple[int, float | None]]) -> str:
        now = time.monotonic()
        self.due = now + self.interval
        remaining, seconds = left()
        eta = f", ~{seconds:.0f}s left by recorded durations" if seconds is not None else ""
        return (
            f"llmharness: progress {done:,}/{done + remaining:,} done, {failed:,} failed, "
            f"{now - self.started:.0f}s elapsed{eta}"
        )


class _Discard(io.TextIOBase):
    """A text stream that drops everything: where pytest's own reporter writes in compact mode."""

    # len(text), what a write returns: a builtin, so the write of each test's progress letter
    # is no Python call.
    write = len  # type: ignore[assignment]

    def isatty(self) -> bool:
        return False


class Harness:
    """The controller's plugin object: sampling, the run record and the compact output."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.rootdir = config.rootpath
        root = Path(settings.store).expanduser()
        self.store_root = root if root.is_absolute() else self.rootdir / root
        self.store = Store(self.store_root, on_warning=self._store_warning)
        self.seed = settings.seed or (
            sampling.agent_seed(settings.agent_id)
            if settings.agent_id is not None
            else sampling.machine_seed()
        )
        self.compact = settings.compact_output and not config.getoption("collectonly")
        self.started = time.monotonic()
        limit = settings.time_limit
        self.deadline = None if limit is None else time.time() + limit
        self.session: pytest.Session | None = None
        self.progress = Progress(settings.progress_interval, self.started)
        self.invocation_dir = config.invocation_params.dir
        self._writer: Any = None
        self._pending_warnings: list[str] = []
        self.recorder = RunRecorder(
            self.store,
            new_run_id(),
            rootdir=self.rootdir,
            agent_id=settings.agent_id,
            seed=self.seed,
            max_reason_chars=settings.max_reason_chars,
            max_output_bytes=settings.max_output_bytes,
            argv=config.invocation_params.args,
        )
        for message in self._pending_warnings:
            self.recorder.warn(message)
        self._pending_warnings = []
        self.summary: dict[str, Any] | None = None
        self.stopped_at_limit = False
        self.internal_errors: list[str] = []
        self.recorder.on_due = self._due
        self._set_due()
        self.distributed = False
        self._selected: list[str] | None = None
        self._selected_items: list[pytest.Item] | None = None  # node ids taken when needed
        self._durations: dict[str, float] | None = None
        self.collection = (
            collection.CollectionCache(
                config, self.store, self.plan.fraction, self.seed, self.recorder.warn
            )
            if settings.fast_collect
            else None
        )

    # -- helpers ---------------------------------------------------------------------
    def _store_warning(self, message: str) -> None:
        recorder = getattr(self, "recorder", None)
        if recorder is None:
            self._pending_warnings.append(message)
        else:
            recorder.warn(message)

    @property
    def plan(self) -> Plan:
        settings = self.settings
        fraction = settings.fast_fraction
        if fraction is None and settings.fast_budget is None:
            fraction = 0.10
        return Plan(
            fraction=fraction if settings.fast else None,
            budget_s=settings.fast_budget if settings.fast else None,
            seed=self.seed,
            store_root=str(self.store_root),
            deadline=self.deadline,
            test_timeout=settings.test_timeout,
        )

    def _print(self, line: str) -> None:
        # A test may have closed or replaced the terminal's stream: the record on disk stands.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            writer = self._writer
            if writer is not None:
                writer.line(line)
            else:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()

    # -- session ---------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        self.distributed = self.config.pluginmanager.has_plugin("dsession")
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.compact and reporter is not None:
            # No public API swaps a reporter's output; this keeps every plugin that holds the
            # reporter (xdist does) writing into the void, while our lines go to the terminal.
            self._writer = reporter._tw
            reporter._tw = type(self._writer)(file=_Discard())

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        plan = self.plan
        if self.collection is not None:
            planned = self.collection.plan()
            plan = dataclasses.replace(
                plan,
                track_collection=True,
                skip_files=tuple(sorted(planned.skip)),
                wanted={rel: sorted(ids) for rel, ids in planned.wanted.items()},
            )
        node.workerinput[_WORKER_KEY] = dataclasses.asdict(plan)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        recorder = self.recorder
        if output and recorder.collected is None:
            uncollected: list[str] = []
            cache = output.get("cache")
            if self.collection is not None and cache is not None:
                uncollected = self.collection.collected(
                    output["collected"], output["touched"], cache["entries"], cache["failed"]
                )
                recorder.uncollected = self.collection.uncollected_counts
            recorder.collected = list(output["collected"]) + uncollected
            recorder.collected_files = set(output["files"])
            if output.get("sample") is not None:
                sample = sampling.Sample(**output["sample"])
                total = sample.total + len(uncollected)
                recorder.sample = dataclasses.replace(sample, total=total)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.recorder.collection_error(report.nodeid, report.longrepr)
        elif report.skipped:
            self.recorder.collection_skip(report.nodeid, report.longrepr)
        elif "::" not in report.nodeid:
            if self.recorder.collected_files is None:
                self.recorder.collected_files = set()
            self.recorder.collected_files.add(report.nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        collected = list(map(_nodeid, items))
        uncollected: list[str] = []
        if self.collection is not None:
            tracker = self.collection.tracker
            uncollected = self.collection.collected(
                collected, tracker.touched(), tracker.entries(collected), tracker.failed
            )
            self.recorder.uncollected = self.collection.uncollected_counts
        self.recorder.collected = collected + uncollected
        yield
        plan = self.plan
        if plan.fraction is not None or plan.budget_s is not None:
            self.recorder.sample = _sample(config, items, plan, uncollected)

    def pytest_report_collectionfinish(self) -> str | None:
        if self.recorder.sample is None:
            return None
        return f"llmharness sample: {reporting.sample_text(self.recorder.sample_json())}"

    def stop_at_limit(self) -> None:
        """The time limit is reached: stop the session (and xdist's) before the next test."""
        if self.stopped_at_limit:
            return
        self.stopped_at_limit = True
        reason = f"llmharness: time limit of {self.settings.time_limit:g}s reached"
        dsession = self.config.pluginmanager.get_plugin("dsession")
        if dsession is not None:
            dsession.shouldstop = reason  # xdist's own stop flag (as for --maxfail)
        if self.session is not None:
            self.session.shouldstop = reason

    def _due(self) -> None:
        """A test finished at or after recorder.due: the time limit, or a progress line."""
        if self.deadline is not None and time.time() >= self.deadline:
            self.stop_at_limit()
        if self.compact and time.monotonic() >= self.progress.due:
            recorder = self.recorder
            self._print(
                self.progress.line(len(recorder.results), recorder.failing, self._expected_left)
            )
        self._set_due()

    def _set_due(self) -> None:
        """When a finished test is next to call _due (time.monotonic(), infinite if never)."""
        due = self.progress.due if self.compact else math.inf
        if self.deadline is not None and not self.stopped_at_limit:
            due = min(due, time.monotonic() + self.deadline - time.time())
        self.recorder.due = due

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self._selected is None:
            self._selected = list(ids)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._selected_items = session.items

    @property
    def selected(self) -> list[str] | None:
        """The node ids of the tests this run is to run, once collection is over."""
        if self._selected is None and self._selected_items is not None:
            self._selected = [item.nodeid for item in self._selected_items]
        return self._selected

    def _expected_left(self) -> tuple[int, float | None]:
        """(tests not yet done, their expected seconds by recorded durations, if known)."""
        selected = self.selected or []
        done = self.recorder.results
        left = [nodeid for nodeid in selected if nodeid not in done]
        if self._durations is None:
            self._durations = {
                nodeid: known.duration
                for nodeid, known in Store(self.store_root, readonly=True).load_index().items()
            }
        if not self._durations:
            return len(left), None
        unknown = sampling.estimate_unknown(self._durations)
        seconds = sum(self._durations.get(nodeid, unknown) for nodeid in left)
        workers = max(int(getattr(self.config.option, "numprocesses", 0) or 1), 1)
        return len(left), seconds / workers

    def pytest_warning_recorded(self) -> None:
        self.recorder.warning_count += 1

    def pytest_internalerror(self, excrepr: Any) -> None:
        lines = str(excrepr).strip().splitlines()
        last = lines[-1] if lines else "internal error"
        self.internal_errors.append(last)
        self.recorder.log.error("INTERNALERROR", message=reporting.sanitize(last, 300))

    def _status(self, exitstatus: int) -> str:
        if self.stopped_at_limit:
            return "time-limit"
        if exitstatus == _EXIT_INTERRUPTED:
            return "interrupted"
        if exitstatus == _EXIT_INTERNAL:
            return "internal-error"
        return "complete"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        status = self._status(int(exitstatus))
        recorder = self.recorder
        if (
            recorder.collection_errors
            and int(exitstatus) == _EXIT_INTERRUPTED
            and not self.config.getoption("continue_on_collection_errors")
        ):
            recorder.notes.append(
                "collection errors stopped the run: fix them, or pass "
                "--continue-on-collection-errors to run the rest"
            )
        if self.stopped_at_limit:
            ran = len(recorder.results)
            total = len(self.selected) if self.selected is not None else ran
            text = (
                f"time limit of {self.settings.time_limit:g}s reached after {ran} of {total} "
                f"tests; {max(total - ran, 0)} not run"
            )
            recorder.log.warning("TIMEOUT", message=text)
            recorder.not_reached = [n for n in self.selected or () if n not in recorder.results]
            recorder.notes.append(f"TIMEOUT {text}")
        for line in self.internal_errors:
            recorder.notes.append(f"INTERNALERROR {reporting.sanitize(line, 180)}")
        if self.collection is not None:
            self.collection.write()
        complete = status == "complete" and int(exitstatus) != _EXIT_NO_TESTS
        # Read before finish(): a warning about it must reach log.txt and summary.json.
        baseline = self.store.load_baseline() if complete else None
        try:
            self.summary = recorder.finish(int(exitstatus), status, update_history=True)
            if complete:
                self._prune(baseline)
        except Exception as exc:  # the record must never change the tests' outcome
            self._print(f"llmharness: internal error while recording the run: {exc!r}")
        if int(exitstatus) == _EXIT_INTERNAL:
            self.pytest_terminal_summary()  # pytest skips that hook after an INTERNALERROR

    def _prune(self, baseline: Mapping[str, Any] | None) -> None:
        protect = {self.recorder.run_id}
        if baseline is not None:
            protect.add(str(baseline["run_id"]))
        try:
            with self.store.locked():
                self.store.prune(self.settings.keep_runs, protect)
        except StoreError as exc:
            self.recorder.warn(str(exc))

    def pytest_terminal_summary(self) -> None:
        if not self.compact or self.summary is None:
            return
        summary = dict(self.summary)
        notes = list(summary.get("notes", ()))
        store_warnings = list(summary.get("store_warnings", ()))
        if store_warnings:
            more = len(store_warnings) - 1
            extra = f" (+{more} more: grep '^WARNING' in the run's log.txt)" if more else ""
            notes.append(f"llmharness warning: {store_warnings[0]}{extra}")
        summary["notes"] = notes
        for line in reporting.compact_lines(
            summary,
            self.recorder.error_lines,
            self.settings.max_lines,
            log_hint=self._log_hint(),
        ):
            self._print(line)

    def _log_hint(self) -> str:
        log = self.store_root / "last" / "log.txt"
        try:
            return os.path.relpath(log, self.invocation_dir)
        except ValueError:
            return str(log)
