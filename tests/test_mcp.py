"""`llmharness mcp` as an agent's MCP client meets it: the SDK's own stdio client starts the
installed CLI in a real subprocess in a copy of the demo, and every answer is checked against
what the CLI prints for the same store."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

FAST_HEADLINE = re.compile(r"llmharness: .* \(fast 10%: \d+ of 327, agent 7, seed \w+, run (\S+)\)")
# A run of one file, not sampled, after a --fast run: more tests are known than it ran.
FULL_HEADLINE = re.compile(
    r"llmharness: FAILED .* \(\d+ of \d+ known tests, agent 7, seed \w+, run (\S+)\)"
)
TOOLS = {"run_tests", "summary", "regressions", "show", "history"}


def _text(result: CallToolResult) -> str:
    assert len(result.content) == 1, result.content
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


async def _session(folder: Path) -> dict[str, Any]:
    """Talk to `llmharness mcp` in `folder`; what it answered, by step."""
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "llmharness", "mcp"],
        # The SDK passes on only a few variables by default; the run under test needs the
        # ones this test run set (PYTEST_ADDOPTS without pytest-randomly). No verdict re-runs
        # of the parser's new failure: seconds of pytest processes this test does not read.
        env={**os.environ, "LLMHARNESS_VERDICT_BUDGET": "0"},
        cwd=folder,
    )
    seen: dict[str, Any] = {}
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        seen["tools"] = {tool.name: tool.input_schema for tool in listed.tools}
        seen["summary before"] = await session.call_tool("summary", {})
        seen["bad fraction"] = await session.call_tool("run_tests", {"fraction": "half"})
        seen["run_tests"] = await session.call_tool("run_tests", {"fast": True, "agent_id": "7"})
        # The parser's tests hold one of the demo's planted bugs (suites/README.md).
        arguments = {"agent_id": "7", "paths": ["tests/test_parser.py"]}
        seen["run_tests full"] = await session.call_tool("run_tests", arguments)
        seen["summary"] = await session.call_tool("summary", {})
        seen["history"] = await session.call_tool("history", {"n": 5})
        failing = re.search(r"^ERROR (\S+)", _text(seen["run_tests full"]), re.MULTILINE)
        assert failing is not None, _text(seen["run_tests full"])
        seen["failing"] = failing.group(1)
        seen["show"] = await session.call_tool("show", {"nodeid": seen["failing"]})
        seen["test history"] = await session.call_tool("history", {"nodeid": seen["failing"]})
        seen["show unknown"] = await session.call_tool("show", {"nodeid": "tests/nope.py::test_x"})
    return seen


def _cli(demo: pytest.Pytester, *args: str) -> pytest.RunResult:
    result = run_cli(demo, *args)
    assert result.ret == 0, result.stderr.str()
    return result


def test_an_agent_runs_the_fast_sample_and_reads_the_summary_over_mcp(
    demo: pytest.Pytester,
) -> None:
    seen = asyncio.run(_session(demo.path))

    assert set(seen["tools"]) == TOOLS
    assert set(seen["tools"]["run_tests"]["properties"]) == {
        "fast",
        "fraction",
        "agent_id",
        "budget_s",
        "paths",
    }
    assert seen["tools"]["show"]["required"] == ["nodeid"]

    # Nothing recorded yet: the CLI's one line, as a tool error.
    before = seen["summary before"]
    assert before.is_error
    assert _text(before).startswith("llmharness: no llmharness store at or above "), _text(before)
    assert "\n" not in _text(before)

    bad = seen["bad fraction"]
    assert bad.is_error
    assert "--fast-fraction" in _text(bad) and "'half'" in _text(bad), _text(bad)

    ran = seen["run_tests"]
    assert not ran.is_error, _text(ran)
    lines = _text(ran).splitlines()
    fast = FAST_HEADLINE.fullmatch(lines[0])
    assert fast is not None, lines
    assert len(lines) <= 8, lines
    structured = ran.structured_content
    assert structured["run_id"] == fast.group(1)
    assert structured["exit_code"] == (1 if any(ln.startswith("ERROR ") for ln in lines) else 0)
    fast_json = json.loads(_cli(demo, "summary", fast.group(1), "--json").stdout.str())
    assert structured["summary"] == fast_json
    assert fast_json["agent_id"] == "7" and fast_json["sample"]["mode"] == "fraction"

    full_run = seen["run_tests full"]
    full = FULL_HEADLINE.fullmatch(_text(full_run).splitlines()[0])
    assert full is not None, _text(full_run)
    assert full_run.structured_content["exit_code"] == 1
    assert full_run.structured_content["run_id"] == full.group(1)
    assert seen["failing"].startswith("tests/test_parser.py::"), seen["failing"]

    # The answers are the CLI's own lines and JSON, for the same store.
    summary = seen["summary"]
    assert not summary.is_error
    assert _text(summary) == _cli(demo, "summary").stdout.str().rstrip("\n")
    summary_json = json.loads(_cli(demo, "summary", "--json").stdout.str())
    assert summary.structured_content == summary_json == full_run.structured_content["summary"]
    history = seen["history"]
    assert _text(history) == _cli(demo, "history", "-n", "5").stdout.str().rstrip("\n")
    assert history.structured_content == {
        "runs": json.loads(_cli(demo, "history", "-n", "5", "--json").stdout.str())
    }
    assert [run["run_id"] for run in history.structured_content["runs"]] == [
        fast.group(1),
        full.group(1),
    ]

    test_history = seen["test history"]
    assert not test_history.is_error, _text(test_history)
    assert _text(test_history) == _cli(demo, "history", seen["failing"]).stdout.str().rstrip("\n")
    assert [run["outcome"] for run in test_history.structured_content["runs"]] == ["failed"]

    show = seen["show"]
    assert _text(show) == _cli(demo, "show", seen["failing"]).stdout.str().rstrip("\n")
    assert show.structured_content["run_id"] == full.group(1)
    assert show.structured_content["nodeid"] == seen["failing"]
    assert show.structured_content["text"].rstrip("\n") in _text(show)

    unknown = seen["show unknown"]
    assert unknown.is_error
    cli_error = run_cli(demo, "show", "tests/nope.py::test_x")
    assert cli_error.ret == 2
    assert _text(unknown) == cli_error.stderr.str().strip()


def test_without_the_sdk_mcp_names_the_extra_and_nothing_else_imports_it(
    tmp_path: Path,
) -> None:
    # `None` in sys.modules makes every import of the SDK fail, as where it is not installed.
    script = """
import pkgutil, sys
sys.modules["mcp"] = None
import llmharness
for module in pkgutil.iter_modules(llmharness.__path__):
    if module.name not in ("mcp_server", "__main__"):
        __import__(f"llmharness.{module.name}")
from llmharness.cli import main
raise SystemExit(main(["mcp"]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == "llmharness: mcp needs the MCP SDK: pip install 'llmharness[mcp]'\n"
