"""`llmharness mcp`: the CLI's verbs and a pytest run as MCP tools, served over stdio.

Each tool answers with the few lines the CLI prints as text and the data of the verb's `--json`
as structured content; a verb that finds nothing recorded answers with the CLI's one-line error
as a tool error. The MCP SDK is an optional extra: only this module imports it, and only the
`mcp` verb imports this module.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.types import CallToolResult, ContentBlock, TextContent
from pydantic import Field

from llmharness import __version__, cli
from llmharness.reader import NoRecordError, Records
from llmharness.store import is_run_id

__all__ = ["command"]

_INSTRUCTIONS = """\
Runs this project's tests with llmharness and reads what it recorded. run_tests runs pytest in \
compact mode (fast=true: a sample, the same for the same agent_id) and answers with a few lines: \
a headline, the regressions, one ERROR line per failing test. summary, regressions and history \
read recorded runs; show gives the full failure text of one test named in an ERROR line."""

# A run's compact output is a few lines; this bounds what a misconfigured run (the plugin
# disabled by the project's addopts) can pour into an agent's context.
_MAX_LINES = 60


def _captured(argv: Sequence[str]) -> tuple[int, str, str]:
    """The CLI's exit code, stdout and stderr for `argv`, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:  # argparse rejected an argument
            code = exc.code if isinstance(exc.code, int) else cli.EXIT_USAGE
    return code, out.getvalue(), err.getvalue()


def _bounded(text: str) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= _MAX_LINES:
        return "\n".join(lines)
    hidden = len(lines) - _MAX_LINES
    return "\n".join([*lines[:_MAX_LINES], f"... {hidden} more lines"])


class _Tools:
    """The tools' work, for one project folder (or the CLI's store lookup when None)."""

    def __init__(self, where: str | None) -> None:
        self.where = where
        self.project = Path(where) if where is not None else Path.cwd()

    def _argv(self, *args: str) -> list[str]:
        return ["--dir", self.where, *args] if self.where is not None else list(args)

    def verb(self, verb: str, *args: str) -> CallToolResult:
        """The CLI's lines for the verb, and its `--json` as structured content."""
        code, out, err = _captured(self._argv(verb, *args))
        if code != cli.EXIT_OK:
            return _error(err or out)
        json_code, json_out, json_err = _captured(self._argv(verb, "--json", *args))
        if json_code != cli.EXIT_OK:
            return _error(json_err or json_out)
        data = json.loads(json_out)
        # Structured content is a JSON object in MCP; history's JSON is a list.
        structured = data if isinstance(data, dict) else {"runs": data}
        # Warnings the CLI writes to stderr (an unreadable record skipped) belong to the answer.
        return _result(out + err, structured)

    def show(self, nodeid: str, run: str | None) -> CallToolResult:
        args = ["show", *([f"--run={run}"] if run else []), "--", nodeid]
        code, out, err = _captured(self._argv(*args))
        if code != cli.EXIT_OK:
            return _error(err or out)
        try:
            run_id, text = Records(self.where).failure_text(nodeid, run)
        except NoRecordError as exc:  # the run was pruned between the two reads
            return _error(f"llmharness: {exc}")
        return _result(out + err, {"run_id": run_id, "nodeid": nodeid, "text": text})

    async def run_tests(
        self,
        fast: bool,
        fraction: str | float | None,
        agent_id: str | None,
        budget_s: float | None,
        paths: list[str] | None,
    ) -> CallToolResult:
        for path in paths or ():
            if path.startswith("-"):
                return _error(f"llmharness: paths: {path!r} is an option, not a test path")
        # `-p llmharness` loads the plugin even where plugin autoloading is disabled.
        command = [sys.executable, "-m", "pytest", "-p", "llmharness", "--compact"]
        if fast:
            command.append("--fast")
        # One word each: pytest would take a separate value for a path when it picks its rootdir.
        if fraction is not None:
            command.append(f"--fast-fraction={fraction}")
        if budget_s is not None:
            command.append(f"--fast-budget={budget_s}")
        if agent_id is not None:
            command.append(f"--agent-id={agent_id}")
        command += paths or []
        done = await anyio.run_process(
            command, cwd=self.project, stdin=subprocess.DEVNULL, check=False
        )
        out = done.stdout.decode("utf-8", "replace")
        err = done.stderr.decode("utf-8", "replace")
        # Internal error or usage error: pytest wrote why on stderr, and no run was recorded.
        if done.returncode in (3, 4):
            return _error(_bounded("\n".join(part for part in (out, err) if part.strip())))
        run_id = _run_id(out)
        summary: Any = None
        if run_id is not None:
            code, json_out, _ = _captured(self._argv("summary", "--json", "--", run_id))
            summary = json.loads(json_out) if code == cli.EXIT_OK else None
        structured = {"exit_code": done.returncode, "run_id": run_id, "summary": summary}
        return _result(_bounded(out or err), structured)


def _run_id(output: str) -> str | None:
    """The run id the compact headline names, e.g. `(fast 10%: ..., run 20261202T...)`."""
    for line in output.splitlines():
        if line.startswith("llmharness: "):
            for token in line.replace(")", " ").replace(",", " ").split():
                if is_run_id(token):
                    return token
    return None


def _result(text: str, structured: dict[str, Any] | None) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=text.rstrip("\n"))]
    return CallToolResult(content=content, structured_content=structured)


def _error(text: str) -> CallToolResult:
    content: list[ContentBlock] = [
        TextContent(type="text", text=text.strip() or "llmharness: failed")
    ]
    return CallToolResult(content=content, is_error=True)


# The SDK reads the tools' signatures for their input schemas, resolving the annotations in
# this module's globals: the types they name live here.
_RunRef = Annotated[
    str | None, Field(description="run id or prefix (default: the latest finished run)")
]


def _server(tools: _Tools) -> MCPServer:
    server: MCPServer = MCPServer(
        "llmharness", version=__version__, instructions=_INSTRUCTIONS, log_level="WARNING"
    )

    @server.tool()
    async def run_tests(
        fast: Annotated[
            bool, Field(description="run the agent's deterministic sample (default 10%)")
        ] = False,
        fraction: Annotated[
            str | float | None, Field(description="fraction to sample, 0.01 or '1%' (implies fast)")
        ] = None,
        agent_id: Annotated[
            str | None, Field(description="who is running; seeds the sample and is recorded")
        ] = None,
        budget_s: Annotated[
            float | None,
            Field(description="sample what fits this many seconds of recorded durations"),
        ] = None,
        paths: Annotated[
            list[str] | None,
            Field(description="test files, folders or node ids (default: the configured ones)"),
        ] = None,
    ) -> CallToolResult:
        """Run the project's tests under pytest and answer with llmharness's compact lines."""
        return await tools.run_tests(fast, fraction, agent_id, budget_s, paths)

    @server.tool()
    async def summary(run: _RunRef = None) -> CallToolResult:
        """A recorded run's aggregates in a few lines: counts, pass rate, slowest, causes."""
        return tools.verb("summary", "--", *_given(run))

    @server.tool()
    async def regressions(run: _RunRef = None) -> CallToolResult:
        """What a run broke and fixed, against the outcomes at the base commit (or last known)."""
        return tools.verb("regressions", "--", *_given(run))

    @server.tool()
    async def show(
        nodeid: Annotated[str, Field(description="the test's node id, as in an ERROR line")],
        run: _RunRef = None,
    ) -> CallToolResult:
        """The full failure text of one test, from the latest run that ran it."""
        return tools.show(nodeid, run)

    @server.tool()
    async def history(
        n: Annotated[int, Field(description="how many of the latest runs", ge=1)] = 20,
        nodeid: Annotated[
            str | None, Field(description="a test's node id: its outcome in each run")
        ] = None,
    ) -> CallToolResult:
        """One line per recorded run: id, status, agent, sample mode, counts; with `nodeid`,
        that test's outcome, duration and reason in each run that ran it."""
        return tools.verb("history", "-n", str(n), *(["--", nodeid] if nodeid else []))

    return server


def _given(run: str | None) -> list[str]:
    return [run] if run else []


def command(where: str | None) -> int:
    """Serve the tools over stdio until the client closes the connection."""
    _server(_Tools(where)).run("stdio")
    return cli.EXIT_OK
