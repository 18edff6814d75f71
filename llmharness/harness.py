"""The plugin objects llmharness registers with pytest, one set per process.

The controller (or the only process) registers `Harness`, which samples, records and prints,
and its `RunRecorder`. An xdist worker registers `WorkerSampler`, which only applies the
controller's sample plan and sends back what it collected: under xdist only the controller
writes to the store. `llmharness.plugin` declares the options and calls `configure` here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import operator
import os
import signal
import sys
import time
from collections.abc import Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmharness import bytecode, collectcache, collection, reporting, sampling
from llmharness.bytecode import BytecodeCache
from llmharness.config import ConfigError, Settings, load_settings
from llmharness.crashes import CrashRecord, Signals
from llmharness.recorder import RunRecorder
from llmharness.store import Store, StoreError, new_run_id
from llmharness.terminal import TERMINAL_FILE, CompactTerminal

__all__ = ["Harness", "WorkerSampler", "configure", "unconfigure"]

HARNESS_KEY = pytest.StashKey["Harness"]()
_WORKER_KEY = "llmharness"
# pytest's ExitCode values, as ints so this module needs no private import.
_EXIT_INTERRUPTED = 2
_EXIT_INTERNAL = 3
_EXIT_NO_TESTS = 5
# Invocations that only inform (nothing of llmharness runs) and that collect or set up without
# running tests (sampled as usual, never recorded as a run), by their option's dest.
_INFORMATIONAL = ("help", "version", "markers", "showfixtures", "show_fixtures_per_test")
_NOT_RUNNING = ("collectonly", "setupplan", "setuponly")


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
            if worker.plan.pycache is not None:
                BytecodeCache(Path(worker.plan.pycache)).start()  # the controller cleans up
        return
    if any(config.getoption(name, None) for name in _INFORMATIONAL):
        return  # --help must work even where llmharness.yaml is broken
    settings = _settings(config, options)
    _arm_timeout(config, settings.test_timeout)
    record = not any(config.getoption(name, None) for name in _NOT_RUNNING)
    harness = Harness(config, settings, record=record)
    config.stash[HARNESS_KEY] = harness
    config.pluginmanager.register(harness, "llmharness-harness")
    if harness.terminal is not None:
        # Registered now, before pytest's terminal reporter, which it replaces as it comes.
        config.pluginmanager.register(harness.terminal, "llmharness-terminal")
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
    if harness is None:
        return
    harness.recorder.close()
    if harness.crash is not None:
        harness.crash.close(finished=harness.summary is not None)
    if harness.terminal is not None:
        harness.terminal.close()
        config.pluginmanager.unregister(harness.terminal)
    del config.stash[HARNESS_KEY]
    config.pluginmanager.unregister(harness.recorder)
    config.pluginmanager.unregister(harness)
    if harness.bytecode is not None:
        harness.bytecode.stop()
    harness.signals.end_process()


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
    pycache: str | None = None  # the store's bytecode cache, when the run uses it


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
        self.deselected = 0  # by -k, -m, --deselect and other plugins, not by the sample
        self._sampling = False
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

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if not self._sampling:
            self.deselected += len(items)

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
            self._sampling = True
            sample = dataclasses.asdict(_sample(config, items, self.plan))
            self._sampling = False
        self.config.workeroutput[_WORKER_KEY] = {  # type: ignore[attr-defined]
            "collected": self.collected,
            "deselected": self.deselected,
            "files": sorted(self.files),
            "sample": sample,
            "cache": cache,
            "touched": sorted(self.tracker.touched()) if self.tracker is not None else [],
        }


class Progress:
    """Rare one-line progress, a bounded number however long the run: none in the first
    interval, then one each time the interval, doubled after each line, has passed again."""

    MAX_LINES = 4

    def __init__(self, interval: float, started: float) -> None:
        self.interval = interval
        self.started = started
        self.printed = 0
        self.due = started + interval  # time.monotonic() from which a line is due

    def line(self, done: int, failed: int, left: Callable[[], tuple[int, float | None]]) -> str:
        now = time.monotonic()
        self.printed += 1
        self.interval *= 2
        self.due = now + self.interval if self.printed < self.MAX_LINES else math.inf
        remaining, seconds = left()
        eta = f", ~{seconds:.0f}s left by recorded durations" if seconds is not None else ""
        return (
            f"llmharness: progress {done:,}/{done + remaining:,} done, {failed:,} failed, "
            f"{now - self.started:.0f}s elapsed{eta}"
        )


class Harness:
    """The controller's plugin object: sampling, the run record and the compact output."""

    def __init__(self, config: pytest.Config, settings: Settings, record: bool = True) -> None:
        self.config = config
        self.settings = settings
        self.record = record
        self.rootdir = config.rootpath
        root = Path(settings.store).expanduser()
        self.store_root = root if root.is_absolute() else self.rootdir / root
        self.store = Store(self.store_root, on_warning=self._store_warning)
        self.seed = settings.seed or (
            sampling.agent_seed(settings.agent_id)
            if settings.agent_id is not None
            else sampling.machine_seed()
        )
        self.compact = settings.compact_output and record
        self.started = time.monotonic()
        limit = settings.time_limit
        self.deadline = None if limit is None else time.time() + limit
        self.session: pytest.Session | None = None
        self.progress = Progress(settings.progress_interval, self.started)
        self.invocation_dir = config.invocation_params.dir
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
            record=record,
        )
        self.terminal: CompactTerminal | None = None
        if self.compact:
            self.terminal = CompactTerminal(
                config, self.recorder.dir if self.recorder.writable else None
            )
            if self.terminal.open() is None:
                self.recorder.warn("cannot write a file for pytest's output: shown instead")
        self.crash: CrashRecord | None = None
        self.signals = Signals()
        self.bytecode: BytecodeCache | None = None
        if bytecode.wanted(settings.bytecode_cache) and self._store_ready():
            # Before collection imports the first test module.
            self.bytecode = BytecodeCache(self.store_root / bytecode.PYCACHE)
            self.bytecode.start()
        for message in self._pending_warnings:
            self.recorder.warn(message)
        self._pending_warnings = []
        self.summary: dict[str, Any] | None = None
        self.stopped_at_limit = False
        self.internal_errors: list[str] = []
        self.recorder.on_due = self._due
        self._set_due()
        self._sampling = False
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
    def _store_ready(self) -> bool:
        """Whether the store folder exists (with the .gitignore that keeps it out of git)."""
        try:
            self.store.ensure()
        except OSError:
            return False
        return True

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
            pycache=str(self.bytecode.root) if self.bytecode is not None else None,
        )

    def _print(self, line: str) -> None:
        if self.terminal is not None:
            self.terminal.write(line)
            return
        # A test may have closed or replaced the terminal's stream: the record on disk stands.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    # -- session ---------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session
        if not self.record or not self.recorder.writable:
            return
        self.signals.install()
        # Under xdist the workers run the tests (xdist names the test a crashed worker ran).
        if not self.config.pluginmanager.has_plugin("dsession"):
            try:
                self.crash = CrashRecord(self.recorder.dir)
            except OSError as exc:
                self.recorder.warn(f"cannot write the crash record: {exc.strerror or exc}")
                return
            if self.terminal is not None and self.terminal.in_run_folder:
                self.crash.take_dumps()
            self.config.pluginmanager.register(self.crash, "llmharness-crash")

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
            recorder.deselected = int(output.get("deselected", 0))
            if output.get("sample") is not None:
                recorder.sample = sampling.Sample(**output["sample"])

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
            self._sampling = True
            self.recorder.sample = _sample(config, items, plan, uncollected)
            self._sampling = False

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if not self._sampling:  # the sample's own deselection is counted apart
            self.recorder.deselected += len(items)

    def pytest_report_collectionfinish(self, items: Sequence[pytest.Item]) -> str | None:
        self.recorder.selected_count = len(items)
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
            self.recorder.selected_count = len(ids)

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
        if self.crash is not None:
            self.config.pluginmanager.unregister(self.crash)
            self.crash.mark("finishing the session")
        if not self.record:
            if self.collection is not None:
                self.collection.write()
            return
        status = self._status(int(exitstatus))
        recorder = self.recorder
        if self.signals.received is not None:
            name = signal.Signals(self.signals.received).name
            recorder.notes.append(f"{name} received: the run was interrupted")
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
            self._print_compact()  # pytest skips the terminal summary after an INTERNALERROR

    def _prune(self, baseline: Mapping[str, Any] | None) -> None:
        protect = {self.recorder.run_id}
        if baseline is not None:
            protect.add(str(baseline["run_id"]))
        try:
            with self.store.locked():
                self.store.prune(self.settings.keep_runs, protect)
        except StoreError as exc:
            self.recorder.warn(str(exc))
        self.store.compress_results(protect)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_terminal_summary(self) -> Generator[None, None, None]:
        # The innermost wrapper: what runs inside it is other plugins' summaries (a coverage
        # table), after pytest's own sections and before its short summary.
        start = self.terminal.position() if self.terminal is not None else None
        try:
            return (yield)
        finally:
            if self.terminal is not None and start is not None:
                self.terminal.count_plugin_lines(start)
            self._print_compact()

    def _print_compact(self) -> None:
        if not self.compact or self.summary is None:
            return
        summary = dict(self.summary)
        notes = list(summary.get("notes", ()))
        if self.terminal is not None:
            where = self.terminal.path
            if self.terminal.in_run_folder:
                notes[:0] = self.terminal.notes(self._hint(TERMINAL_FILE))
            elif where is not None:
                notes[:0] = self.terminal.notes(str(where))
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
            log_hint=self._hint("log.txt"),
        ):
            self._print(line)

    def _hint(self, name: str) -> str:
        """Where the latest run's file `name` is, as the user would type it from here."""
        path = self.store_root / "last" / name
        try:
            return os.path.relpath(path, self.invocation_dir)
        except ValueError:
            return str(path)
