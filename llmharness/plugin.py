"""pytest hooks: declare the options, then hand the run to `llmharness.harness`.

This is the module pytest's `pytest11` entry point names, so it is loaded by every pytest
process where llmharness is installed (`-p no:llmharness` blocks it). It is kept small: the
plugin objects live in `llmharness.harness`, which `pytest_configure` imports.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pytest

__all__ = [
    "path_flags",
    "pytest_addoption",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "pytest_unconfigure",
    "value_flags",
]

_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--fast", "fast", {"action": "store_true", "help": "run a deterministic sample of the tests"}),
    (
        "--fast-fraction",
        "fast_fraction",
        {"metavar": "F", "help": "fraction to sample, 0.01 or 1%% (implies --fast; default 10%%)"},
    ),
    (
        "--fast-budget",
        "fast_budget",
        {
            "metavar": "SECONDS",
            "help": "sample that fits SECONDS by recorded durations (implies --fast)",
        },
    ),
    (
        "--agent-id",
        "agent_id",
        {"metavar": "ID", "help": "who is running (env LLMHARNESS_AGENT_ID); seeds the sample"},
    ),
    (
        "--seed",
        "seed",
        {"metavar": "S", "help": "explicit sample seed, to reproduce another agent's sample"},
    ),
    (
        "--agents",
        "agents",
        {
            "metavar": "N",
            "help": "team size: agent ids 0..N-1 run disjoint parts of the suite that together "
            "cover it (rotated when the base commit moves)",
        },
    ),
    (
        "--time-limit",
        "time_limit",
        {
            "metavar": "SECONDS",
            "help": "start no new test after SECONDS; record the run as stopped",
        },
    ),
    (
        "--test-timeout",
        "test_timeout",
        {"metavar": "SECONDS", "help": "fail a single test that runs longer; the run goes on"},
    ),
    (
        "--compact",
        "compact",
        {"action": "store_true", "help": "force the few-line terminal output"},
    ),
    (
        "--no-compact",
        "compact",
        {"action": "store_false", "help": "keep pytest's normal terminal output"},
    ),
    (
        "--base",
        "base",
        {
            "metavar": "REF",
            "help": "compare failures with outcomes at the merge-base with REF "
            "(default: the branch's upstream, origin/HEAD, main or master)",
        },
    ),
    (
        "--llmharness-config",
        "config_file",
        {"metavar": "FILE", "help": "YAML settings file (default llmharness.yaml at the rootdir)"},
    ),
    (
        "--llmharness-store",
        "store",
        {"metavar": "DIR", "help": "store folder (default .llmharness at the rootdir)"},
    ),
)


def value_flags() -> tuple[str, ...]:
    """The options whose value may be given as the next word of the command line."""
    return tuple(flag for flag, _, kwargs in _OPTIONS if "action" not in kwargs)


def path_flags() -> tuple[str, ...]:
    """The options whose value names a file or a folder."""
    return ("--llmharness-config", "--llmharness-store")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmharness", "llmharness (sampling, compact output, run records)")
    for flag, key, kwargs in _OPTIONS:
        group.addoption(flag, dest=f"llmharness_{key}", default=None, **kwargs)
    parser.addini("llmharness_config", "llmharness YAML settings file", default=None)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # A store or settings file outside the project, given as a separate word, can move the
    # rootdir; pytest then imports the conftests of the wrong one, whose import error would hide
    # why. The other values are checked at pytest_configure, once they are known to be good in
    # themselves (`--agent-id /` is named for being a bad id).
    _own("llmharness.rootdir").check_early(early_config, path_flags())


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    options = {key: config.getoption(f"llmharness_{key}") for _, key, _ in _OPTIONS}
    _harness().configure(config, options)


def pytest_unconfigure(config: pytest.Config) -> None:
    harness = sys.modules.get(_HARNESS)
    if harness is not None:
        harness.unconfigure(config)


_HARNESS = "llmharness.harness"


class _OwnModulesFinder:
    """Finds llmharness's own modules with Python's path finder (so from their `.pyc`)."""

    @staticmethod
    def find_spec(
        name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not name.startswith("llmharness."):
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)


def _harness() -> ModuleType:
    return _own(_HARNESS)


def _own(name: str) -> ModuleType:
    """One of llmharness's modules (and the ones it imports), loaded by Python's import system
    rather than by pytest's assertion rewriter.

    pytest rewrites every module of an installed plugin's distribution, for the assertions of
    fixtures and helpers a plugin may ship. llmharness ships none, and without a bytecode cache
    for the rewritten modules (`PYTHONDONTWRITEBYTECODE=1`, a read-only site-packages) pytest
    parses, rewrites and compiles its 3,500 lines again in every run: about 0.1 s, where
    Python reads the `.pyc` files pip wrote at install in about 1 ms.
    """
    module = sys.modules.get(name)
    if module is not None:
        return module
    finder = _OwnModulesFinder()
    sys.meta_path.insert(0, finder)  # before pytest's rewriting hook, for this import only
    try:
        return importlib.import_module(name)
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
