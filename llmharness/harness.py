"""Wiring: which plugin objects a pytest process registers, and their lifecycle.

The controller (or the only process) registers `controller.Harness`, which samples, records
and prints; an xdist worker registers `worker.WorkerSampler`, which applies the controller's
plan. `llmharness.plugin` declares the options and calls `configure` here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from llmharness import collection, gitinfo, plugin, rootdir
from llmharness.bytecode import BytecodeCache
from llmharness.config import ConfigError, Settings, check_team, load_settings
from llmharness.controller import Harness
from llmharness.timelimit import TimeLimit
from llmharness.worker import WORKER_KEY, Plan, WorkerSampler

__all__ = ["HARNESS_KEY", "configure", "unconfigure"]

HARNESS_KEY = pytest.StashKey[Harness]()
# Invocations that only inform (nothing of llmharness runs) and that collect or set up without
# running tests (sampled as usual, never recorded as a run), by their option's dest.
_INFORMATIONAL = ("help", "version", "markers", "showfixtures", "show_fixtures_per_test")
_NOT_RUNNING = ("collectonly", "setupplan", "setuponly")


def configure(config: pytest.Config, options: Mapping[str, Any]) -> None:
    """Register this process's plugin objects; `options` are llmharness's command-line values
    (None where not given)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        if workerinput.get(WORKER_KEY) is not None:
            _configure_worker(config, Plan(**workerinput[WORKER_KEY]))
        return
    if any(config.getoption(name, None) for name in _INFORMATIONAL):
        return  # --help must work even where llmharness.yaml is broken
    settings = _settings(config, options)  # a value wrong in itself is named first
    # The path flags were checked before the first conftest (pytest_load_initial_conftests).
    rootdir.check(config, set(plugin.value_flags()) - set(plugin.path_flags()))
    record = not any(config.getoption(name, None) for name in _NOT_RUNNING)
    if settings.base is not None and record:
        try:
            gitinfo.resolve_ref(config.rootpath, settings.base)
        except gitinfo.BaseRefError as exc:
            raise pytest.UsageError(f"llmharness: {exc}") from None
    _arm_timeout(config, settings.test_timeout)
    harness = Harness(config, settings, record=record)
    config.stash[HARNESS_KEY] = harness
    manager = config.pluginmanager
    manager.register(harness, "llmharness-harness")
    if harness.terminal is not None:
        # Registered now, before pytest's terminal reporter, which it replaces as it comes.
        manager.register(harness.terminal, "llmharness-terminal")
    if harness.collection is not None:
        collection.register(config, harness.collection.tracker, settings.fast)
    if harness.deadline is not None:
        manager.register(TimeLimit(harness.deadline, harness.stop_at_limit), "llmharness-limit")


def _configure_worker(config: pytest.Config, plan: Plan) -> None:
    worker = WorkerSampler(config, plan)
    config.pluginmanager.register(worker, "llmharness-worker")
    # Before the tracker, as in the controller: the tracker's trylast hook then records the
    # markers -m saw, before the `timeout` ones (trylast hooks run last registered first).
    _arm_timeout(config, plan.test_timeout)
    collection.register(config, worker.tracker, bool(plan.wanted or plan.skip_files))
    if plan.deadline is not None:
        config.pluginmanager.register(TimeLimit(plan.deadline), "llmharness-limit")
    if plan.pycache is not None:
        BytecodeCache(Path(plan.pycache)).start()  # the controller cleans up after the run


def unconfigure(config: pytest.Config) -> None:
    """Close the run's files and unregister what `configure` registered."""
    harness = config.stash.get(HARNESS_KEY, None)
    if harness is None:
        return
    del config.stash[HARNESS_KEY]
    harness.close()
    if harness.terminal is not None:
        config.pluginmanager.unregister(harness.terminal)
    config.pluginmanager.unregister(harness)
    harness.signals.end_process()


def _settings(config: pytest.Config, options: Mapping[str, Any]) -> Settings:
    cli = dict(options)
    if cli.get("fast_fraction") is not None or cli.get("fast_budget") is not None:
        cli["fast"] = True
    ini = config.getini("llmharness_config")
    try:
        settings = load_settings(config.rootpath, cli, os.environ, str(ini) if ini else None)
        check_team(settings)
        return settings
    except ConfigError as exc:
        raise pytest.UsageError(f"llmharness: {exc}") from None


def _arm_timeout(config: pytest.Config, seconds: float | None) -> None:
    """Time each test, unless no timeout is set (then nothing runs per test for it)."""
    if seconds is None:
        return
    from llmharness import timeouts  # imported only by the runs that use it

    if config.pluginmanager.has_plugin("timeout"):
        # pytest-timeout is installed: it owns SIGALRM and the `timeout` markers, so it gets
        # the timeout, as a marker on each test that has none of its own.
        config.pluginmanager.register(timeouts.TimeoutMarks(seconds), "llmharness-timeout")
        return
    config.pluginmanager.register(timeouts.TestTimeout(seconds), "llmharness-timeout")
