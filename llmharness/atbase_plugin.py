"""Inside a pytest run at the base commit: run only the wanted tests of the files given, and
write each one's outcome as it finishes, so that a run killed at its budget keeps those.

`llmharness.basecheck` starts that run with this file copied out of the package as the
top-level module `llmharness_atbase` (`-p llmharness_atbase`): at the base, `llmharness` may be
the code under test itself, an older version of it. So this module imports nothing of
llmharness. The plan it follows is a JSON file named by `LLMHARNESS_ATBASE_PLAN`; each process
(an xdist worker too) appends JSON lines to a file of its own in the plan's `out` folder,
flushed line by line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

import pytest

__all__ = ["PLAN_ENV", "pytest_addoption", "pytest_configure", "pytest_unconfigure"]

PLAN_ENV = "LLMHARNESS_ATBASE_PLAN"
_NAME = "llmharness-atbase"
_FAILING = ("failed", "error")


def _plan() -> dict[str, Any] | None:
    path = os.environ.get(PLAN_ENV)
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        plan: dict[str, Any] = json.load(handle)
    return plan


def pytest_addoption(parser: pytest.Parser) -> None:
    plan = _plan()
    if plan is None:
        return
    # llmharness is blocked in this run, but its options may be in PYTEST_ADDOPTS or the base's
    # addopts, and its ini keys in the base's config: accept and ignore them.
    group = parser.getgroup("llmharness-atbase", "llmharness options, ignored at the base")
    for index, (flag, takes_value) in enumerate(plan["options"]):
        group.addoption(
            flag,
            dest=f"llmharness_atbase_ignored_{index}",
            action="store" if takes_value else "store_true",
            default=None,
            help=argparse.SUPPRESS,
        )
    for name in plan["ini"]:
        parser.addini(name, "ignored in a run at the base", default=None)


def pytest_configure(config: pytest.Config) -> None:
    plan = _plan()
    if plan is not None:
        config.pluginmanager.register(AtBase(config, plan), _NAME)


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.pluginmanager.get_plugin(_NAME)
    if isinstance(plugin, AtBase):
        plugin.close()
        config.pluginmanager.unregister(plugin)


def _paths(module: object) -> list[str]:
    """Where a module was loaded from (as `llmharness.codeundertest.module_paths`)."""
    file = getattr(module, "__file__", None)
    search = getattr(module, "__path__", None)
    if search is not None:
        if isinstance(file, str) and os.path.basename(file).startswith("__init__."):
            return [os.path.dirname(file)]
        try:
            return [str(entry) for entry in search]
        except Exception:  # a package's __path__ can be any object
            return []
    return [file] if isinstance(file, str) else []


class AtBase:
    """Deselects every test not wanted and writes what became of the wanted ones."""

    def __init__(self, config: pytest.Config, plan: dict[str, Any]) -> None:
        self._wanted = frozenset(plan["wanted"])
        self._order = (
            {nodeid: index for index, nodeid in enumerate(plan["wanted"])}
            if plan.get("ordered")
            else None
        )
        self._files = frozenset(plan["files"])
        self._modules: Sequence[str] = plan["modules"]
        self._reported: set[str] = set()
        # Under xdist the controller sees every test's reports (and makes one for a test whose
        # worker died), so only it writes outcomes; workers collect, so they write the rest.
        self._worker = hasattr(config, "workerinput")
        self._so_far: dict[str, str | None] = {}
        name = os.path.join(plan["out"], f"{os.getpid()}.jsonl")
        self._out: IO[str] | None = open(name, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _write(self, **record: Any) -> None:
        if self._out is not None:
            self._out.write(json.dumps(record) + "\n")
            self._out.flush()

    def _report_modules(self) -> None:
        """Say where each project module imported so far came from, once: the caller trusts no
        outcome at the base unless that is the base's own code."""
        for name in self._modules:
            if name not in self._reported and name in sys.modules:
                self._reported.add(name)
                self._write(kind="module", name=name, paths=_paths(sys.modules[name]))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(kind="collect_error", nodeid=report.nodeid)
        elif report.skipped:
            self._write(kind="collect_skipped", nodeid=report.nodeid)
        elif report.nodeid in self._files:
            self._write(kind="collected_file", nodeid=report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            (keep if item.nodeid in self._wanted else drop).append(item)
        order = self._order
        if order is not None:  # a replay: the order the tests ran in the user's run
            keep.sort(key=lambda item: order[item.nodeid])
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        self._write(kind="collected", nodeids=[item.nodeid for item in keep])
        self._report_modules()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # tryfirst: a worker writes where modules came from before xdist sends the report on.
        if report.when != "setup":
            self._report_modules()
        if self._worker:
            return
        outcome = self._fold(report)
        if outcome is not None:
            self._write(kind="test", nodeid=report.nodeid, outcome=outcome)

    def _fold(self, report: pytest.TestReport) -> str | None:
        """The test's outcome once its last report is in, by the rules of llmharness's
        recorder: the worst phase counts, a failed setup or teardown is an error."""
        nodeid, when, outcome = report.nodeid, report.when, report.outcome
        wasxfail = hasattr(report, "wasxfail")
        if when == "call" or (when == "setup" and outcome != "passed"):
            if outcome == "failed":
                word = "error" if when == "setup" else "failed"
            elif outcome == "skipped":
                word = "xfailed" if wasxfail else "skipped"
            elif outcome == "passed":
                word = "xpassed" if wasxfail else "passed"
            else:
                return None  # pytest-rerunfailures' "rerun": an attempt that does not count
            self._so_far[nodeid] = _worse(self._so_far.get(nodeid), word)
            return None
        if when == "teardown":
            so_far = self._so_far.pop(nodeid, None)
            if outcome == "failed":
                return so_far if so_far in _FAILING else "error"
            return so_far  # None: an attempt pytest-rerunfailures runs again
        if outcome == "failed" and when != "setup":
            # xdist's report for a test whose worker died in it: no teardown report follows.
            so_far = self._so_far.pop(nodeid, None)
            return so_far if so_far in _FAILING else "failed"
        return None

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._report_modules()
        if not self._worker:
            self._write(kind="finished", exitstatus=int(exitstatus))


_SEVERITY = {"skipped": 0, "xfailed": 1, "passed": 2, "xpassed": 3, "failed": 4, "error": 5}


def _worse(old: str | None, new: str) -> str:
    return new if old is None or _SEVERITY[new] > _SEVERITY[old] else old
