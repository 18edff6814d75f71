"""Which coding agent, if any, the environment says is running this process.

Coding agents set variables in the environment of the commands they run; llmharness turns its
compact output on when it finds one (unless `compact: false` or `detect_agent: false`). Only
variables that a published detector or the agent's own project names are in the table, and
only those that are set for the agent's commands alone: a variable an IDE's terminal sets for
its human too (Cursor's `CURSOR_TRACE_ID`, Replit's `REPL_ID`, VS Code's `TERM_PROGRAM`) or
that a person sets in their shell (`AIDER_API_KEY`) is left out, so that a human's `pytest`
stays pytest's own. Sources: std-env `src/agents.ts` (unjs/std-env), `@vercel/detect-agent`
(vercel/vercel, which proposes `AI_AGENT`), am-i-vibing (ascorbic/am-i-vibing), the .NET SDK's
`LLMEnvironmentDetectorForTelemetry.cs` (dotnet/sdk) and Cline's terminal (cline/cline#7858).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["MARKERS", "SESSION_IDS", "VARIABLES", "Marker", "agent_id", "detect"]


class Marker(NamedTuple):
    """An environment variable that names the agent running the process."""

    variable: str
    agent: str  # the agent's name; "" for AI_AGENT, whose value is the name
    value: str | None = None  # an fnmatch pattern its value must match (lowercased); None: set


#: Checked in this order; the first that is set names the agent.
MARKERS: tuple[Marker, ...] = (
    Marker("AI_AGENT", ""),  # the proposed cross-tool convention: the value is the agent's name
    Marker("CLAUDECODE", "claude-code"),
    Marker("CLAUDE_CODE", "claude-code"),
    Marker("CLAUDE_CODE_ENTRYPOINT", "claude-code"),
    Marker("CODEX_SANDBOX", "codex"),
    Marker("CODEX_THREAD_ID", "codex"),
    Marker("CODEX_CLI", "codex"),
    Marker("GEMINI_CLI", "gemini-cli"),
    Marker("CURSOR_AGENT", "cursor"),
    Marker("COPILOT_CLI", "copilot"),
    Marker("GITHUB_COPILOT_CLI_MODE", "copilot"),
    Marker("CLINE_ACTIVE", "cline"),
    Marker("CLINE_TASK_ID", "cline"),
    Marker("ROO_CODE_TASK_ID", "roo-code"),
    Marker("AMP_CURRENT_THREAD_ID", "amp"),
    Marker("AGENT", "amp", "amp"),
    Marker("OPENCODE", "opencode"),
    Marker("OPENCODE_AI", "opencode"),
    Marker("AUGMENT_AGENT", "auggie"),
    Marker("QWEN_CODE", "qwen-code"),
    Marker("GOOSE_TERMINAL", "goose"),
    Marker("JUNIE_DATA", "junie"),
    Marker("DROID_CLI", "droid"),
    Marker("KIMI_CLI", "kimi"),
    Marker("OR_APP_NAME", "aider", "aider"),  # the OpenRouter app name Aider sets
    Marker("OR_APP_NAME", "openhands", "openhands"),
    Marker("REPLIT_MODE", "replit", "assistant"),  # Replit's agent, not its shell (REPL_ID)
    Marker("EDITOR", "devin", "*devin*"),
)

#: Variables whose value identifies one agent's session (a thread), not just which tool it is:
#: the only ones an agent id is taken from.
SESSION_IDS: tuple[str, ...] = ("CODEX_THREAD_ID", "AMP_CURRENT_THREAD_ID")

#: Every variable the detector reads, e.g. to take them out of a child process's environment.
VARIABLES: tuple[str, ...] = tuple(dict.fromkeys(marker.variable for marker in MARKERS))

_OFF = frozenset({"", "0", "false", "no", "off"})


def _value(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, stripped; None when unset or set to a false-like word."""
    raw = environ.get(name)
    if raw is None or raw.strip().lower() in _OFF:
        return None
    return raw.strip()


def detect(environ: Mapping[str, str]) -> str | None:
    """The name of the coding agent the environment says is running, or None for none."""
    for marker in MARKERS:
        value = _value(environ, marker.variable)
        if value is None:
            continue
        if marker.value is not None and not fnmatch.fnmatchcase(value.lower(), marker.value):
            continue
        if not marker.agent:  # AI_AGENT=claude-code, AI_AGENT=devin@1: the name as given
            name = value.lower().split()[0][:64]
            return name or None
        return marker.agent
    return None


def agent_id(environ: Mapping[str, str]) -> str | None:
    """An agent's own session id, where its agent sets one (e.g. Codex's thread id), else None."""
    for name in SESSION_IDS:
        value = _value(environ, name)
        if value is not None:
            return value
    return None
