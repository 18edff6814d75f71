"""`llmharness prompt`: the Markdown section an agent's instructions file (AGENTS.md, CLAUDE.md)
needs to run and read this project's tests, filled in from its settings.

It reads the project's configuration as a pytest run would (llmharness.yaml, LLMHARNESS_*), and
the store only for the time a run takes, so that it works in a fresh clone with no store yet.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmharness.config import CONFIG_FILENAME, ConfigError, Settings, load_settings
from llmharness.reader import NoRecordError, Records
from llmharness.reporting import next_line

__all__ = ["command", "find_rootdir", "section"]

# Where pytest would take its rootdir from, after llmharness's own file.
_ROOT_MARKERS = (CONFIG_FILENAME, "pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini")


def find_rootdir(start: Path) -> Path:
    """The nearest folder at or above `start` holding llmharness.yaml or a pytest
    configuration file, else `start` itself."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).is_file() for marker in _ROOT_MARKERS):
            return folder
    return start


def _in_git(root: Path) -> bool:
    return any((folder / ".git").exists() for folder in (root, *root.parents))


def _code(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"`{item}`" for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def section(
    settings: Settings, store: str, in_git: bool, hint: Mapping[str, Any] | None = None
) -> str:
    """The Markdown section for `settings` (store shown as `store`); `hint` is the latest
    run's `next` (what a full and a --fast run cost), when there is one."""
    team = getattr(settings, "agents", None)  # a team size, once that setting exists
    if settings.fast_fraction is not None:
        sample = f"a deterministic {settings.fast_fraction * 100:g}% sample"
    elif settings.fast_budget is not None:
        sample = f"a deterministic sample that fits {settings.fast_budget:g} s"
    elif team:
        sample = f"your part of the suite (one of {team})"
    else:
        sample = "a deterministic 10% sample"
    who = f"`--agent-id K` (K from 0 to {team - 1})" if team else "`--agent-id <your name>`"
    lines = [
        "## Tests: run and read them with llmharness",
        "",
        f"pytest runs here are recorded by llmharness in `{store}/`: the terminal shows a few "
        "lines, everything else is on disk.",
        "",
        f"- While you work: `pytest --fast` with {who} runs {sample}, the same each time for "
        "one id and different across ids.",
        "- Before you finish: `pytest` (the whole suite), then `llmharness regressions --check`;"
        " exit 1 means your change broke something.",
        "- Read a run: `llmharness summary` (counts, slowest tests, failures by cause); "
        f"`grep '^ERROR ' {store}/last/log.txt` has one line per failure (node id, reason, "
        "file:line); `llmharness show NODEID` prints its traceback and output.",
    ]
    if not in_git:
        lines.append(
            "- What broke is judged against each test's last known outcome (there is no git "
            "history here)."
        )
    elif settings.base is not None:
        lines.append(
            f"- What broke is judged against the base: the merge-base of HEAD and "
            f"`{settings.base}` (`base` in {CONFIG_FILENAME})."
        )
    else:
        lines.append(
            "- What broke is judged against the base: the merge-base of HEAD with the branch's "
            "upstream (else `origin/HEAD`, `main` or `master`)."
        )
    if in_git:
        blocks = [
            "a test that passed at the base and fails now",
            "a new test failing",
            "a failure whose outcome at the base is unknown",
        ]
    else:
        blocks = ["a test failing whose last known outcome was a pass"]
    if not settings.allow_test_changes:
        blocks.append("a test fixed by changing it, a failing test removed or skipped")
    if settings.protected:
        blocks.append(f"a change to a protected path ({_code(list(settings.protected))})")
    blocks.append("a run whose reports were tampered with")
    spared = (
        "known failures do not block, flaky ones do (`flaky_blocks`)"
        if settings.flaky_blocks
        else "flaky and known failures do not block"
    )
    lines.append(f"- The gate fails on {'; '.join(blocks)}; {spared}.")
    if settings.known_failures:
        count = len(settings.known_failures)
        accepted = (
            "1 accepted failure never blocks"
            if count == 1
            else (f"{count} accepted failures never block")
        )
        lines.append(
            f"- {accepted} (`known_failures` in {CONFIG_FILENAME}); do not add to them to pass."
        )
    if team:
        lines.append(
            f"- The team has {team} agents: agent K's `--fast` runs part K, so together you "
            "cover the suite."
        )
    timing = next_line(hint)
    if timing is not None:
        lines.append(f"- Time, as last measured: {timing.removeprefix('next: ')}.")
    lines.append(
        f"- Do not edit the tests, {CONFIG_FILENAME} or protected paths to get a pass: the "
        "gate sees it."
    )
    return "\n".join(lines) + "\n"


def _latest_hint(store_root: Path) -> Mapping[str, Any] | None:
    """The latest finished run's `next`, if a run is recorded."""
    if not (store_root / "runs").is_dir():
        return None  # a fresh clone: nothing measured yet
    try:
        hint = Records(store_root).summary().data.get("next")
    except NoRecordError:
        return None
    return hint if isinstance(hint, Mapping) else None


def command(directory: str | None) -> int:
    """Print the section for the project at or above `directory` (default: here); 2 and one
    line on stderr when its configuration is broken."""
    root = find_rootdir(Path(directory) if directory else Path.cwd())
    try:
        # The section is for every agent: an id stands in for theirs, as a team needs one.
        settings = load_settings(root, {"agent_id": "0"}, os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"llmharness: {exc}\n")
        return 2
    configured = Path(settings.store).expanduser()  # LLMHARNESS_STORE is read into it
    store_root = configured if configured.is_absolute() else root / configured
    try:
        shown = os.path.relpath(store_root, root)
    except ValueError:  # another drive
        shown = str(store_root)
    sys.stdout.write(section(settings, shown, _in_git(root), _latest_hint(store_root)))
    return 0
