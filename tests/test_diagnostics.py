"""The debug log: llmharness's own decisions, as key=value lines, only when asked for."""

from __future__ import annotations

import pytest
from conftest import QUIET


def _events(pytester: pytest.Pytester) -> list[str]:
    lines = (pytester.path / ".llmharness" / "last" / "debug.log").read_text().splitlines()
    return [line.split(" event=", 1)[1].split(" ", 1)[0] for line in lines]


def test_debug_log_records_the_runs_decisions(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_a="import pytest\n@pytest.mark.parametrize('i', range(20))\ndef test_a(i):\n    pass\n"
    )
    monkeypatch.setenv("LLMHARNESS_DEBUG_LOG", "1")
    result = pytester.runpytest_subprocess(*QUIET, "--agent-id", "1", "--fast-fraction", "50%")
    assert result.ret == 0
    events = _events(pytester)
    assert events[0] == "'start'" and "'sample'" in events and "'finish'" in events
    text = (pytester.path / ".llmharness" / "last" / "debug.log").read_text()
    sample = next(line for line in text.splitlines() if "event='sample'" in line)
    assert "fraction=0.5" in sample and "population=20" in sample


def test_no_debug_log_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    assert pytester.runpytest_subprocess(*QUIET, "--agent-id", "1").ret == 0
    assert not (pytester.path / ".llmharness" / "last" / "debug.log").exists()
