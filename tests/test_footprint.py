"""What the plugin costs every pytest process that loads it: the modules it imports and the
hooks it runs per test when an option that needs them is off."""

from __future__ import annotations

import pytest

# Checked in a fresh interpreter: pytester's in-process runs share this one's sys.modules.
_MODULES = """
import sys

def test_modules():
    loaded = set(sys.modules)
    assert "llmharness.recorder" in loaded  # the plugin is on
    # Not needed to record a run: the records API, the CLI, the timer without --test-timeout,
    # YAML without a config file, and no logging library (structlog brought asyncio and ssl).
    # filelock, whose logger pytest's log capture would visit in every phase of every test,
    # comes only with the store's lock, which is taken after the tests.
    unused = {"llmharness.reader", "llmharness.cli", "llmharness.timeouts", "yaml", "filelock"}
    assert not loaded & (unused | {"structlog", "asyncio"})
"""


def test_a_recorded_run_imports_only_what_it_needs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_modules=_MODULES)
    # anyio's pytest plugin (installed with the mcp extra's SDK) imports asyncio in every pytest
    # process where it is installed: its cost, not llmharness's.
    result = pytester.runpytest_subprocess(
        "--agent-id", "1", "-p", "no:hypothesispytest", "-p", "no:anyio"
    )
    assert result.ret == 0, result.stdout.str()


_LOADERS = """
import sys

from _pytest.assertion.rewrite import AssertionRewritingHook

def test_loaders():
    ours = {name: m for name, m in sys.modules.items() if name.startswith("llmharness")}
    assert "llmharness.recorder" in ours  # the plugin is on
    rewritten = {n for n, m in ours.items() if isinstance(m.__loader__, AssertionRewritingHook)}
    assert "llmharness.plugin" in rewritten  # marked for rewriting, as for a wheel install
    assert rewritten <= {"llmharness", "llmharness.plugin"}
"""


def test_pytest_does_not_rewrite_the_plugins_modules(pytester: pytest.Pytester) -> None:
    """Only the package and the entry-point module pass through pytest's assertion rewriter:
    without a bytecode cache it would parse and compile all of llmharness in every run."""
    # pytest marks an installed plugin's whole package for rewriting; an editable install,
    # which this project's tests run from, escapes that, so the test marks it as a wheel is.
    pytester.makepyfile(
        mark_llmharness="import pytest\n\npytest.register_assert_rewrite('llmharness')\n",
        test_loaders=_LOADERS,
    )
    result = pytester.runpytest_subprocess(
        "-p", "mark_llmharness", "--agent-id", "1", "-p", "no:hypothesispytest"
    )
    assert result.ret == 0, result.stdout.str()


@pytest.mark.parametrize(
    ("options", "extra"),
    [
        ([], set()),
        (["--time-limit", "600"], {"llmharness-limit"}),
        (["--test-timeout", "600"], {"llmharness-timeout"}),
        (["--fast-fraction", "100%"], {"llmharness-pruner"}),
    ],
    ids=["plain", "time-limit", "test-timeout", "fast"],
)
def test_per_test_hooks_only_for_the_options_that_need_them(
    pytester: pytest.Pytester, options: list[str], extra: set[str]
) -> None:
    # The crash record's hook names each test as it starts: a run that segfaults says where.
    ours = {"llmharness-harness", "llmharness-collection", "llmharness-crash"}
    expected = sorted(ours | extra)
    pytester.makepyfile(
        test_hooks=f"""
        def test_hooks(pytestconfig):
            names = pytestconfig.pluginmanager.list_name_plugin()
            ours = sorted(name for name, _ in names if name.startswith("llmharness-"))
            assert ours == {expected!r}, ours
        """
    )
    result = pytester.runpytest("--no-compact", "-p", "no:timeout", *options)
    result.assert_outcomes(passed=1)
