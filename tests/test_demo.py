"""The bundled demo (suites/demo, see suites/README.md) end to end, as the README's quick start
runs it: `pytest --agent-id 7` in the demo's folder, then `llmharness summary`, then `--fast`."""

from __future__ import annotations

import re
import sys

import pytest
from conftest import run_cli

# The five planted bugs fail 7 of the 327 tests (suites/README.md).
HEADLINE = "llmharness: FAILED 7 failed, 318 passed, 1 skipped, 1 xfailed in *"
# The counts of a sample's headline, e.g. "FAILED 1 failed, 36 passed, 1 skipped in 0.3s (fast".
COUNT = re.compile(r"(\d+) (failed|passed|skipped|xfailed|xpassed|errors?)\b")


def _nonempty(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.strip()]


def _pytest(demo: pytest.Pytester, *args: str) -> pytest.RunResult:
    # `python -m pytest` as a user runs it: no pytester options, no --basetemp.
    return demo.run(sys.executable, "-m", "pytest", *args, timeout=300)


def test_the_demo_fails_seven_tests_in_a_few_lines_and_the_summary_explains(
    demo: pytest.Pytester,
) -> None:
    result = _pytest(demo, "--agent-id", "7")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    lines = _nonempty(result)
    assert len(lines) <= 8, lines
    result.stdout.fnmatch_lines([HEADLINE, "ERROR tests/*"])
    assert lines[0].startswith("llmharness: "), lines
    summary = run_cli(demo, "summary")
    assert summary.ret == 0, summary.stderr.str()
    summary.stdout.fnmatch_lines([HEADLINE, "pass rate *"])


def test_a_fast_run_of_the_demo_samples_a_tenth(demo: pytest.Pytester) -> None:
    assert _pytest(demo, "--agent-id", "7").ret == pytest.ExitCode.TESTS_FAILED
    result = _pytest(demo, "--fast", "--agent-id", "7")
    result.stdout.fnmatch_lines(["llmharness: * in *(fast 10%: * of 327, agent 7, *"])
    headline = next(line for line in result.outlines if line.startswith("llmharness: "))
    match = re.search(r"\(fast 10%: (\d+) of 327", headline)
    assert match is not None, headline
    selected = int(match.group(1))
    counts = {word: int(n) for n, word in COUNT.findall(headline.split(" in ", 1)[0])}
    # The sample is not empty, and the tests the headline counts are the tests it selected.
    assert 0 < selected == sum(counts.values()), headline
    failing = {"failed", "error", "errors"} & set(counts)
    expected = pytest.ExitCode.TESTS_FAILED if failing else pytest.ExitCode.OK
    assert result.ret == expected, result.stdout.str()
