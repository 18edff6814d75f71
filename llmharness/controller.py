"""The controller's plugin object: samples, records and prints, one per pytest run.

Under xdist it runs in the controller process (the workers run `worker.WorkerSampler`), else in
the only one. What it learns during the run it keeps itself and hands to the recorder once the
run is over (`recorder.RunFacts`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import time
from array import array
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

from llmharness import (
    bytecode,
    collection,
    environ,
    gitinfo,
    reporting,
    sampling,
    team,
    tripwire,
)
from llmharness.bytecode import BytecodeCache
from llmharness.config import Settings
from llmharness.crashes import CrashRecord, Signals
from llmharness.diagnostics import DEBUG_FILE, Diagnostics
from llmharness.recorder import RunFacts, RunRecorder
from llmharness.store import IndexBroken, Store, StoreError, new_run_id
from llmharness.terminal import TERMINAL_FILE, CompactTerminal
from llmharness.timelimit import Progress
from llmharness.worker import WORKER_KEY, Plan, sample_items

__all__ = ["Harness"]

# pytest's ExitCode values, as ints so this module needs no private import.
_EXIT_INTERRUPTED = 2
_EXIT_INTERNAL = 3
_EXIT_NO_TESTS = 5


class Harness:
    """Sampling, the run record and the compact output of one pytest run."""

    def __init__(self, config: pytest.Config, settings: Settings, record: bool = True) -> None:
        self.config = config
        self.settings = settings
        self.record = record
        self.rootdir = config.rootpath
        self.invocation_dir = config.invocation_params.dir
        root = Path(settings.store).expanduser()
        self.store_root = root if root.is_absolute() else self.rootdir / root
        self._early_warnings: list[str] = []
        self.store = Store(self.store_root, on_warning=self._store_warning)
        self.seed = team.seed(settings)
        self.compact = settings.compact_output and record
        self.started = time.monotonic()
        limit = settings.time_limit
        self.deadline = None if limit is None else time.time() + limit
        run_id = new_run_id()
        debug = settings.debug_log and record
        self.diagnostics = Diagnostics(self.store.run_dir(run_id) / DEBUG_FILE if debug else None)
        self.recorder = RunRecorder(
            self.store,
            run_id,
            rootdir=self.rootdir,
            agent_id=settings.agent_id,
            seed=self.seed,
            max_reason_chars=settings.max_reason_chars,
            max_output_bytes=settings.max_output_bytes,
            argv=config.invocation_params.args,
            record=record,
            diagnostics=self.diagnostics,
        )
        self.diagnostics.event(
            "start", run=run_id, seed=self.seed, compact=self.compact, pid=os.getpid()
        )
        for message in self._early_warnings:
            self.recorder.warn(message)
        self.terminal: CompactTerminal | None = None
        if self.compact:
            folder = self.recorder.dir if self.recorder.writable else None
            self.terminal = CompactTerminal(config, folder)
            if self.terminal.open() is None:
                self.recorder.warn("cannot write a file for pytest's output: shown instead")
        self.bytecode: BytecodeCache | None = None
        if bytecode.wanted(settings.bytecode_cache) and self._store_ready():
            # Before collection imports the first test module.
            self.bytecode = BytecodeCache(self.store_root / bytecode.PYCACHE)
            self.bytecode.start()
            self.diagnostics.event("bytecode_cache", folder=str(self.bytecode.root))
        environ.keep()  # for the processes started after the tests, which may change it
        # Read while the tests run: the git calls cost the run nothing it waits for.
        self.version = gitinfo.VersionProbe(self.rootdir, settings.base) if record else None
        self.rotation: int | None = None
        self.team_note: str | None = None
        self.plan = self._plan()
        self.collection = (
            collection.CollectionCache(
                config,
                self.store,
                self.plan.fraction,
                self.plan.sampler,
                self.recorder.warn,
                self.plan.changed,
            )
            if settings.fast_collect
            else None
        )
        self.crash: CrashRecord | None = None
        self.signals = Signals()
        self.progress = Progress(settings.progress_interval, self.started)
        self.stopped_at_limit = False
        self.user_interrupt = False  # Ctrl-C or a termination signal, not a stop by pytest
        self._due = self._next_due()
        self.session: pytest.Session | None = None
        self.summary: dict[str, Any] | None = None
        self.internal_errors: list[str] = []
        # What the run learns of its tests, for its summary.
        self.collected: list[str] | None = None
        self.collected_files: set[str] | None = None
        self.sample: sampling.Sample | None = None
        self.deselected = 0
        self.uncollected = (0, 0)
        self.warnings = 0
        self._sampling = False
        self._selected: list[str] | None = None
        self._selected_items: Sequence[pytest.Item] | None = None  # node ids taken when needed
        self._durations: array[float] | None = None  # for progress lines, as they are due

    def _plan(self) -> Plan:
        settings = self.settings
        fraction = settings.fast_fraction
        if fraction is None and settings.fast_budget is None:
            # A team's agent runs its whole part unless told otherwise.
            fraction = 1.0 / settings.agents if settings.agents is not None else 0.10
        plan = Plan(
            fraction=fraction if settings.fast else None,
            budget_s=settings.fast_budget if settings.fast else None,
            seed=self.seed,
            store_root=str(self.store_root),
            deadline=self.deadline,
            test_timeout=settings.test_timeout,
            pycache=str(self.bytecode.root) if self.bytecode is not None else None,
        )
        if not settings.fast or (settings.agents is None and not settings.fast_changes):
            return plan
        # Both need the code version before collection: wait for git (tens of ms).
        version = self._version_now()
        if settings.agents is not None:
            assignment = team.assign(settings, version)
            self.rotation, self.team_note = assignment.rotation, assignment.note
            part = assignment.part(int(settings.agent_id or 0), settings.agents)
            plan = dataclasses.replace(plan, agents=settings.agents, part=part)
        if settings.fast_changes:
            plan = dataclasses.replace(plan, changed=self._changed(version))
        return plan

    def _version_now(self) -> gitinfo.CodeVersion | None:
        if self.version is not None:
            return self.version.result()[0]
        return gitinfo.read_version(self.rootdir, self.settings.base)[0]

    def _changed(self, version: gitinfo.CodeVersion | None) -> tuple[str, ...]:
        """The rootdir-relative files the work tree changed since the base (or HEAD)."""
        if version is None:
            return ()
        top = Path(version.top)
        paths = gitinfo.changed_paths(top, version.base or version.commit)
        if paths is None:
            return ()
        changed = []
        for path in paths:
            rel = os.path.relpath(top / path, self.rootdir).replace(os.sep, "/")
            if not rel.startswith("../"):
                changed.append(rel)
        return tuple(sorted(changed))

    def _store_ready(self) -> bool:
        """Whether the store folder exists (with the .gitignore that keeps it out of git)."""
        try:
            self.store.ensure()
        except OSError:
            return False
        return True

    def _store_warning(self, message: str) -> None:
        recorder = getattr(self, "recorder", None)  # the store may warn before it exists
        if recorder is None:
            self._early_warnings.append(message)
        else:
            recorder.warn(message)

    def _print(self, line: str) -> None:
        if self.terminal is not None:
            self.terminal.write(line)
            return
        # A test may have closed or replaced the terminal's stream: the record on disk stands.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    # -- session and collection --------------------------------------------------------
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
                always=tuple(sorted(self.collection.touched_by_changes())),
                track_collection=True,
                record_collection=self.collection.tracker.recording,
                skip_files=tuple(sorted(planned.skip)),
                wanted={rel: sorted(ids) for rel, ids in planned.wanted.items()},
                known={rel: planned.known[rel] for rel in planned.wanted},
                unselected={rel: sorted(planned.unselected.get(rel, ())) for rel in planned.wanted},
            )
        node.workerinput[WORKER_KEY] = dataclasses.asdict(plan)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if not output or self.collected is not None:
            return  # every worker collected the same: the first one's account serves
        uncollected: list[str] = []
        cache = output.get("cache")
        if self.collection is not None and cache is not None:
            uncollected = self.collection.collected(
                output["collected"],
                output["touched"],
                cache["entries"],
                cache["failed"],
                cache.get("stale"),
                cache.get("unrecorded", ()),
            )
            self.diagnostics.event(
                "collection_recorded",
                recorded=cache.get("recorded", True),
                unrecorded=sorted(cache.get("unrecorded", ())),
            )
            self.uncollected = self.collection.uncollected_counts
        self.collected = list(output["collected"]) + uncollected
        self.collected_files = set(output["files"])
        self.deselected = int(output.get("deselected", 0))
        if self.collection is not None:
            self.deselected += len(self.collection.unselected)
        if output.get("sample") is not None:
            self.sample = sampling.Sample(**output["sample"])

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.recorder.collection_error(report.nodeid, report.longrepr)
        elif report.skipped:
            self.recorder.collection_skip(report.nodeid, report.longrepr)
        elif collection.collected_cleanly(self.config, report):
            if self.collected_files is None:
                self.collected_files = set()
            self.collected_files.add(report.nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> Generator[None, None, None]:
        collected = [item.nodeid for item in items]
        yield
        # After the other hooks: the tracker has recorded what -k/-m evaluated on.
        uncollected: list[str] = []
        population: list[str] = []  # the uncollected that -k/-m keep
        touched: set[str] = set()
        if self.collection is not None:
            tracker = self.collection.tracker
            entries = tracker.entries(collected)
            if self.plan.samples:
                touched = self.collection.touched_by_changes(entries)
            uncollected = self.collection.collected(
                collected, tracker.touched(), entries, tracker.failed
            )
            self.diagnostics.event(
                "collection_recorded",
                recorded=tracker.recording,
                unrecorded=sorted(tracker.unrecorded),
            )
            self.uncollected = self.collection.uncollected_counts
            unselected = set(self.collection.unselected)
            self.deselected += len(unselected)
            population = [nodeid for nodeid in uncollected if nodeid not in unselected]
        self.collected = collected + uncollected
        if self.plan.samples:
            self._sampling = True
            plan = dataclasses.replace(self.plan, always=tuple(touched))
            self.sample = sample_items(config, items, plan, population)
            self._sampling = False
            self.diagnostics.event(
                "sample",
                fraction=self.sample.fraction,
                budget_s=self.sample.budget_s,
                seed=self.sample.seed,
                selected=len(self.sample.selected),
                population=self.sample.total,
                uncollected_files=self.uncollected[0],
                uncollected_tests=self.uncollected[1],
            )

    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if not self._sampling:  # the sample's own deselection is counted apart
            self.deselected += len(items)

    def pytest_report_collectionfinish(self, items: Sequence[pytest.Item]) -> str | None:
        self._selected_items = items
        if self.sample is None:
            return None
        return f"llmharness sample: {reporting.sample_text(self._sample_json())}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self._selected is None:
            self._selected = list(ids)

    @property
    def selected(self) -> list[str] | None:
        """The node ids of the tests this run is to run, once collection is over."""
        if self._selected is None and self._selected_items is not None:
            self._selected = [item.nodeid for item in self._selected_items]
        return self._selected

    def _not_reached(self) -> list[str]:
        """The tests this run selected to run that it did not finish."""
        selected = self.selected
        if selected is None:
            return []
        self.recorder.flush_pending()  # a test with an outcome but no teardown report ran
        done = self.recorder.results
        return [nodeid for nodeid in selected if nodeid not in done]

    def _facts(
        self, exitstatus: int, status: str, notes: list[str], not_reached: list[str] | None = None
    ) -> RunFacts:
        selected = self.selected
        bytecode_cache = None
        if self.bytecode is not None:
            bytecode_cache = {"folder": str(self.bytecode.root)}
        version, version_note = None, ""
        code_under_test: list[str] = []
        if self.version is not None and status != "running":
            version, version_note = self.version.result()
            code_under_test = self._code_under_test(version)
        return RunFacts(
            exitstatus=exitstatus,
            status=status,
            settings=self.settings,
            collected=self.collected,
            collected_files=self.collected_files,
            sample=self.sample,
            deselected=self.deselected,
            selected=len(selected) if selected is not None else None,
            uncollected=self.uncollected,
            not_reached=not_reached or [],
            notes=notes,
            warnings=self.warnings,
            bytecode=bytecode_cache,
            version=version,
            version_note=version_note,
            base_check_budget=self.settings.base_check_budget,
            code_under_test=code_under_test,
            verdict_budget=self.settings.verdict_budget,
            known_failures=self.settings.known_failures,
            flaky_blocks=self.settings.flaky_blocks,
            protected=self.settings.protected,
            allow_test_changes=self.settings.allow_test_changes,
            rotation=self.rotation,
            team_note=self.team_note,
            whole_suite=self._whole_suite(),
        )

    def _whole_suite(self) -> bool:
        """Whether pytest collected the whole suite: no paths given, run from the rootdir or
        with the ini file's testpaths."""
        source = self.config.args_source
        if source == pytest.Config.ArgsSource.TESTPATHS:
            return True
        return source == pytest.Config.ArgsSource.INVOCATION_DIR and (
            self.invocation_dir == self.rootdir
        )

    def _code_under_test(self, version: gitinfo.CodeVersion | None) -> list[str]:
        """A line for each project package this run imported from outside its work tree."""
        from llmharness.codeundertest import foreign_imports

        top = Path(version.top) if version is not None else self.rootdir
        try:
            return foreign_imports(self.rootdir, top)
        except Exception as exc:  # a diagnosis only: never let it cost the run its record
            self.recorder.warn(f"cannot tell where the code under test came from: {exc!r}")
            return []

    def _sample_json(self) -> dict[str, Any]:
        return self.recorder.sample_json(self._facts(0, "running", []))

    # -- tests -------------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Progress lines and the time limit cost one clock reading a finished test.
        if self.recorder.fold(report) and time.monotonic() >= self._due:
            if self.deadline is not None and time.time() >= self.deadline:
                self.stop_at_limit()
            if self.compact and time.monotonic() >= self.progress.due:
                recorder = self.recorder
                left = self._expected_left()
                self._print(self.progress.line(len(recorder.results), recorder.failing, left))
            self._due = self._next_due()

    def _next_due(self) -> float:
        """When a finished test next has something to do (time.monotonic(); inf if never)."""
        due = self.progress.due if self.compact else math.inf
        if self.deadline is not None and not self.stopped_at_limit:
            due = min(due, time.monotonic() + self.deadline - time.time())
        return due

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

    def _expected_left(self) -> tuple[int, float | None]:
        """(tests not yet done, their expected seconds by recorded durations, if known)."""
        selected = self.selected or []
        done = self.recorder.results
        if self._durations is None:
            self._durations = self._recorded_durations(selected)
        if not self._durations:
            return sum(nodeid not in done for nodeid in selected), None
        pending = [
            seconds
            for nodeid, seconds in zip(selected, self._durations, strict=False)
            if nodeid not in done
        ]
        workers = max(int(getattr(self.config.option, "numprocesses", 0) or 1), 1)
        return len(pending), sum(pending) / workers

    def _recorded_durations(self, selected: list[str]) -> array[float]:
        """Each selected test's recorded duration, in `selected`'s order (the median recorded
        for a test never timed); empty when nothing is recorded.

        An array, not a mapping of node ids: it lasts the whole run, and the index's own ids
        for every test would cost a large suite's run megabytes of its peak memory."""
        store = Store(self.store_root, readonly=True)
        try:
            recorded = [(entry.nodeid, entry.known.duration) for entry in store.index_entries()]
        except IndexBroken:  # load_index reports the file and sets it aside
            recorded = [(nodeid, known.duration) for nodeid, known in store.load_index().items()]
        if not recorded:
            return array("d")
        unknown = sampling.estimate_unknown(dict(recorded))
        durations = array("d", [unknown]) * len(selected)
        position = {nodeid: i for i, nodeid in enumerate(selected)}
        for nodeid, seconds in recorded:
            if (i := position.get(nodeid)) is not None:
                durations[i] = seconds
        return durations

    def pytest_warning_recorded(self) -> None:
        self.warnings += 1

    def pytest_internalerror(self, excrepr: Any) -> None:
        lines = str(excrepr).strip().splitlines()
        last = lines[-1] if lines else "internal error"
        self.internal_errors.append(last)
        self.recorder.log.event("INTERNALERROR", message=reporting.sanitize(last, 300))

    # -- the end -----------------------------------------------------------------------
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # pytest calls this for its own stops too (`session.shouldstop` raises a subclass).
        if type(excinfo.value) is KeyboardInterrupt:
            self.user_interrupt = True

    def _stop_reason(self, session: pytest.Session) -> str | None:
        """Why pytest or a plugin ended the session early (-x, --maxfail, --stepwise, xdist's
        own stop), if one did; None for a user's interrupt and for llmharness's time limit."""
        if self.stopped_at_limit or self.user_interrupt or self.signals.received is not None:
            return None
        dsession = self.config.pluginmanager.get_plugin("dsession")
        for reason in (session.shouldfail, session.shouldstop, getattr(dsession, "shouldstop", 0)):
            # xdist stops this way too when a worker got Ctrl-C: that is an interrupt.
            if isinstance(reason, str) and "keyboard-interrupt" in reason:
                return None
            if reason:
                return reason if isinstance(reason, str) else "a plugin stopped the session"
        return None

    def _status(self, exitstatus: int, stop_reason: str | None, not_reached: list[str]) -> str:
        if self.stopped_at_limit:
            return "time-limit"
        if exitstatus == _EXIT_INTERNAL:
            return "internal-error"
        if not_reached and (stop_reason is not None or exitstatus != _EXIT_INTERRUPTED):
            # Stopped on purpose, or a plugin left tests unrun: either way not complete.
            return "stopped"
        if exitstatus == _EXIT_INTERRUPTED:
            return "interrupted"
        return "complete"

    def _notes(
        self, exitstatus: int, status: str, stop_reason: str | None, not_reached: list[str]
    ) -> list[str]:
        notes = []
        recorder = self.recorder
        if self.signals.received is not None:
            name = signal.Signals(self.signals.received).name
            notes.append(f"{name} received: the run was interrupted")
        if (
            recorder.collection_errors
            and exitstatus == _EXIT_INTERRUPTED
            and not self.config.getoption("continue_on_collection_errors")
        ):
            notes.append(
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
            recorder.log.event("TIMEOUT", message=text)
            notes.append(f"TIMEOUT {text}")
        if status == "stopped":
            total = len(recorder.results) + len(not_reached)
            why = stop_reason or "a plugin left them unrun"
            text = f"{len(not_reached):,} of {total:,} tests not run: {why}"
            text = reporting.sanitize(text, 180)
            recorder.log.event("STOPPED", message=text)
            notes.append(f"STOPPED {text}")
        flaky = sorted(
            nodeid
            for nodeid, result in recorder.results.items()
            if result.reruns and result.outcome not in reporting.FAILING
        )
        if flaky:
            # pytest-rerunfailures hides these in a passing run: they failed at this code.
            more = f" (+{len(flaky) - 1:,} more: grep '^RERUN' in the run's log.txt)"
            text = f"{len(flaky):,} flaky: passed only when run again: {flaky[0]}"
            notes.append(reporting.sanitize(f"RERUN {text}{more if len(flaky) > 1 else ''}", 200))
        for line in self.internal_errors:
            notes.append(f"INTERNALERROR {reporting.sanitize(line, 180)}")
        return notes

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(
        self, session: pytest.Session, exitstatus: int
    ) -> Generator[None, None, None]:
        if self.crash is not None:
            self.config.pluginmanager.unregister(self.crash)
            self.crash.mark("finishing the session")
        if self.collection is not None:
            self.collection.write()
        try:
            return (yield)
        finally:
            # After the other plugins' and the conftests' sessionfinish: the exit status is
            # the one pytest will exit with (a hook may have set it over failures).
            if self.record:
                self._finish_session(session, int(session.exitstatus))

    def _tampered(self, session: pytest.Session, code: int) -> str | None:
        """Why the run's reports or exit status cannot be trusted, if they cannot."""
        reason, note = tripwire.probe(session)
        if note is not None:
            self.recorder.warn(note)
        failing = self.recorder.failing
        return (
            reason
            or tripwire.count_mismatch(
                self.config, session.testsfailed, failing, len(self.recorder.collection_errors)
            )
            or tripwire.exit_mismatch(code, failing)
        )

    def _finish_session(self, session: pytest.Session, code: int) -> None:
        stop_reason = self._stop_reason(session)
        not_reached = self._not_reached()
        status = self._status(code, stop_reason, not_reached)
        complete = status == "complete" and code != _EXIT_NO_TESTS
        # Read before finish(): a warning about it must reach log.txt and summary.json.
        baseline = self.store.load_baseline() if complete else None
        protect = {self.recorder.run_id}  # never pruned: this run and the pinned baseline
        if baseline is not None:
            protect.add(str(baseline["run_id"]))
        try:
            notes = self._notes(code, status, stop_reason, not_reached)
            facts = self._facts(code, status, notes, not_reached)
            tamper_reason = self._tampered(session, code)
            self.summary = self.recorder.finish(
                dataclasses.replace(facts, tamper_reason=tamper_reason)
            )
            if complete:
                self._prune(protect)
        except Exception as exc:  # the record must never change the tests' outcome
            self._print(f"llmharness: internal error while recording the run: {exc!r}")
        if code == _EXIT_INTERNAL:
            self._print_compact()  # pytest skips the terminal summary after an INTERNALERROR

    def _prune(self, protect: set[str]) -> None:
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
        if self.terminal is not None and self.terminal.path is not None:
            where = self.terminal.path
            hint = self._hint(TERMINAL_FILE) if self.terminal.in_run_folder else str(where)
            notes[:0] = self.terminal.notes(hint)
        store_warnings = list(summary.get("store_warnings", ()))
        if store_warnings:
            more = len(store_warnings) - 1
            extra = f" (+{more} more: grep '^WARNING' in the run's log.txt)" if more else ""
            notes.append(f"llmharness warning: {store_warnings[0]}{extra}")
        summary["notes"] = notes
        for line in reporting.compact_lines(
            summary,
            self._broken_first(summary),
            self.settings.max_lines,
            log_hint=self._hint("log.txt"),
        ):
            self._print(line)

    def _broken_first(self, summary: dict[str, Any]) -> list[str]:
        """The ERROR lines, those of tests this change broke (or may have) first: the few the
        terminal has room for are then the ones to look at."""
        diff = summary.get("regressions") or {}
        # Outside git every failure of a first run is a "new test": no order to learn there.
        keys = ["new_failures", "unknown_at_base"] + (
            ["new_tests_failing"] if "base" in diff else []
        )
        first = {item["nodeid"] for key in keys for item in diff.get(key, ())}

        def later(pair: tuple[str, str]) -> bool:
            nodeid = pair[0]
            return nodeid not in first and "::" in nodeid  # collection errors stay first

        pairs = zip(self.recorder.error_ids, self.recorder.error_lines, strict=True)
        return [line for _, line in sorted(pairs, key=later)]

    def _hint(self, name: str) -> str:
        """Where the latest run's file `name` is, as the user would type it from here."""
        path = self.store_root / "last" / name
        try:
            return os.path.relpath(path, self.invocation_dir)
        except ValueError:
            return str(path)

    def close(self) -> None:
        """The run is over: close its files and give the process back its own settings."""
        self.recorder.close()
        if self.crash is not None:
            self.crash.close(finished=self.summary is not None)
        if self.terminal is not None:
            self.terminal.close()
        if self.bytecode is not None:
            dropped = self.bytecode.stop()
            self.diagnostics.event("bytecode_cache_end", dropped_untrusted=dropped)
        self.diagnostics.close()
