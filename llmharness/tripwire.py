"""The tripwire: a check of llmharness's own that must fail, to catch a run whose reports are
rewritten (a conftest turning failures into passes) or whose exit status says OK over failures.

Once per recorded run, as the session finishes, llmharness builds an item of its own, runs it
(it raises AssertionError, as no honest test does on purpose) and asks
`pytest_runtest_makereport` for its report, the way pytest's runner does for every test. The
report is never given to `pytest_runtest_logreport`, so no reporter, counter, JUnit XML or
exit status ever sees it. If it comes back anything but failed, a makereport hook rewrites
failures. Public pytest API only.

Nothing runs per test: the rewrites made after makereport, in `pytest_runtest_logreport`, are
told at the end by pytest's own count of failed reports against the record's (`count_mismatch`),
and an exit status set to OK over failures by `exit_mismatch`.
"""

from __future__ import annotations

import os
import site
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

__all__ = ["NODEID", "count_mismatch", "exit_mismatch", "probe"]

#: The tripwire's node id, as its ERROR line names it.
NODEID = "llmharness::tripwire"
_MESSAGE = "llmharness tripwire: this check fails by design"


class _Tripwire(pytest.Item):
    """An item that always fails; llmharness's own, never collected or counted."""

    def runtest(self) -> None:
        raise AssertionError(_MESSAGE)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        del excinfo, style  # no traceback to format: nobody reads this report
        return _MESSAGE

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        return self.path, None, NODEID


def _module_of(plugin: object) -> tuple[str, str | None]:
    """(module name, source file) of a plugin: a module, or an object of a class."""
    name = getattr(plugin, "__name__", None)
    if not isinstance(name, str) or not hasattr(plugin, "__file__"):
        name = type(plugin).__module__
    module = sys.modules.get(name)
    source = getattr(plugin, "__file__", None) or getattr(module, "__file__", None)
    return name, source if isinstance(source, str) else None


def _installed(source: str) -> bool:
    """Whether a file is part of the Python installation or an environment's packages."""
    path = os.path.realpath(source)
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    user = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if user:
        prefixes.add(user)
    return any(path.startswith(os.path.realpath(prefix) + os.sep) for prefix in prefixes)


def _untrusted(config: pytest.Config, hook: str) -> tuple[list[object], list[object]]:
    """(the plugins whose `hook` the tripwire asks, the installed ones it leaves out).

    pytest's own plugins and the project's code (conftest files, plugin modules in the work
    tree) are asked; installed third-party plugins are trusted and left out, as some of them
    expect attributes that only the items they saw collected have."""
    asked, trusted = [], []
    for impl in getattr(config.hook, hook).get_hookimpls():
        name, source = _module_of(impl.plugin)
        if name.startswith("llmharness"):
            trusted.append(impl.plugin)
        elif name == "_pytest" or name.startswith("_pytest.") or source is None:
            asked.append(impl.plugin)
        elif _installed(source):
            trusted.append(impl.plugin)
        else:
            asked.append(impl.plugin)
    return asked, trusted


def _where(config: pytest.Config, plugins: list[object]) -> str:
    """The conftest files among `plugins` (relative to the rootdir), else the other modules."""
    conftests, others = [], []
    for plugin in plugins:
        name, source = _module_of(plugin)
        if source is not None and Path(source).name == "conftest.py":
            try:
                conftests.append(Path(source).relative_to(config.rootpath).as_posix())
            except ValueError:
                conftests.append(source)
        elif not name.startswith("_pytest"):
            others.append(name)
    return ", ".join(conftests or others) or "a plugin"


def probe(session: pytest.Session) -> tuple[str | None, str | None]:
    """(why the run is tampered, or None; a note when the tripwire could not run)."""
    config = session.config
    hook = "pytest_runtest_makereport"
    try:
        asked, trusted = _untrusted(config, hook)
        caller = config.pluginmanager.subset_hook_caller(hook, trusted)
        item = _Tripwire.from_parent(session, name="tripwire", nodeid=NODEID)
        call = pytest.CallInfo.from_call(item.runtest, when="call")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a hook that fails on it must not warn the run
            report = caller(item=item, call=call)
    except Exception as exc:  # a hook that cannot handle an item it did not collect
        return None, f"the tripwire could not run: {type(exc).__name__}: {exc}"
    outcome = getattr(report, "outcome", None)
    if outcome == "failed":
        return None, None
    turned = f"into {outcome}" if outcome is not None else "into no report"
    return (
        f"a {hook} hook turned llmharness's failing tripwire {turned} ({_where(config, asked)})",
        None,
    )


def count_mismatch(
    config: pytest.Config, testsfailed: int, failing_count: int, collection_errors: int
) -> str | None:
    """Why pytest's count of failed reports and the record disagree, when pytest counted
    failures and the record saw no failing test and no collection error: a hook rewrote the
    reports after pytest counted them (in pytest_runtest_logreport); None when they agree."""
    if testsfailed <= 0 or failing_count > 0 or collection_errors > 0:
        return None
    hook = "pytest_runtest_logreport"
    where = _where(config, _untrusted(config, hook)[0])
    return (
        f"pytest counted {testsfailed} failed reports but every test reached llmharness passed "
        f"or skipped: a {hook} hook rewrote them ({where})"
    )


def exit_mismatch(exitstatus: int, failing_count: int) -> str | None:
    """Why an exit status that says OK is a lie, when tests failed; None when it is not."""
    if int(exitstatus) != 0 or failing_count <= 0:
        return None
    tests = "test" if failing_count == 1 else "tests"
    return (
        f"pytest's exit status is 0 (OK) but {failing_count} {tests} failed: a hook changed the "
        "exit status"
    )
