"""Shared fixtures: the bundled suite generator and the installed CLI."""

from __future__ import annotations

import compileall
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

# Imported once here so that in-process pytester runs, which drop the modules a run imports,
# do not import these plugins and their dependencies again for every run (about 2 s each).
import hypothesis  # noqa: F401
import pytest
import pytest_timeout  # noqa: F401
import xdist.plugin  # noqa: F401

import llmharness.harness
import llmharness.plugin
from llmharness.agents import VARIABLES as AGENT_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
# Inner runs use no hypothesis; its plugin would import it in every run and xdist worker.
QUIET = ("-p", "no:hypothesispytest")
# anyio (which the mcp extra brings) registers a pytest plugin that imports asyncio in every
# run: about 0.3 s a process, over the hundreds of runs this suite starts; hypothesis's plugin
# imports hypothesis, 0.25 s a process. tests/test_compat_matrix.py runs with both.
NO_RANDOMLY = "-p no:randomly -p no:anyio -p no:hypothesispytest"


def pytest_configure(config: pytest.Config) -> None:
    """Compile llmharness's modules once, in the controller, before any test starts a pytest.

    Under `PYTHONDONTWRITEBYTECODE=1` (this machine, CI, most containers) an editable install
    has no bytecode, so each of the hundreds of pytest processes this suite starts would compile
    the whole package again, about 0.1 s each; pip compiles a regular install as it installs it.
    The files go to the package's own `__pycache__/` (ignored by git), checked by mtime as usual,
    not to this run's own bytecode cache (llmharness's `sys.pycache_prefix`), which the inner
    processes do not read.
    """
    if hasattr(config, "workerinput"):  # an xdist worker: its controller did it
        return
    prefix, sys.pycache_prefix = sys.pycache_prefix, None
    try:
        compileall.compile_dir(Path(llmharness.__file__).parent, quiet=1)
    finally:
        sys.pycache_prefix = prefix


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The outer run's LLMHARNESS_* variables (an agent id, a store) must not reach the runs
    under test, nor the variables of a coding agent running this suite (they turn compact
    output on)."""
    for name in list(os.environ):
        if name.startswith("LLMHARNESS_") or name in AGENT_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _no_randomly_inside(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-randomly, a dev extra, would shuffle the tests of every run under test (whose
    output order tests assert on) and reseed `random`; a run that wants it passes
    `-p randomly`, which un-blocks it, as pytest reads PYTEST_ADDOPTS before the command line."""
    if "pytester" in request.fixturenames:
        # pytester clears PYTEST_ADDOPTS as it is set up: set it after.
        request.getfixturevalue("pytester")
    monkeypatch.setenv("PYTEST_ADDOPTS", NO_RANDOMLY)


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "llmharness_suites", ROOT / "suites" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generate() -> ModuleType:
    """suites/generate.py: `synthetic(root, files, tests_per_file, ...)` and `messy(root)`."""
    return _load_generator()


@pytest.fixture
def demo(pytester: pytest.Pytester) -> pytest.Pytester:
    """A copy of the demo in pytester's folder, which is the rootdir (the demo's pytest.ini),
    without what earlier runs in the source tree left there."""
    shutil.copytree(
        ROOT / "suites" / "demo",
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".llmharness", ".pytest_cache", "__pycache__"),
    )
    return pytester


@pytest.fixture
def messy(pytester: pytest.Pytester, generate: ModuleType) -> dict[str, int]:
    """The messy suite in pytester's folder; its expected counts."""
    counts: dict[str, int] = generate.messy(pytester.path)
    return counts


def run_cli(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The installed CLI, as `python -m llmharness`, in pytester's folder."""
    return pytester.run(sys.executable, "-m", "llmharness", *args)


def cli_json(pytester: pytest.Pytester, *args: str) -> Any:
    result = run_cli(pytester, *args, "--json")
    assert result.ret == 0, result.stderr.str()
    return json.loads(result.stdout.str())


def error_lines(pytester: pytest.Pytester) -> list[str]:
    """The `ERROR ` lines of the latest run's log."""
    log = pytester.path / ".llmharness" / "last" / "log.txt"
    return [
        line for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("ERROR ")
    ]
