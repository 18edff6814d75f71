"""Why a test failed, in one line: the `<reason>` of its ERROR line.

`describe_failure` turns the `longrepr` of one of pytest's reports into the exception type and the
first line of its message; for a failed `assert`, also the compared values and the line of
pytest's explanation that names the first difference; then `(file:line)` of the deepest frame in
the project's own code. The parts come in that order so that `reporting.sanitize`, which makes
the reason one bounded line, cuts the least useful ones first.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["describe_failure"]

# llmharness's own timeout message, or pytest-timeout's when that plugin ran the timer.
_TIMEOUT = re.compile(r"^Failed: Timeout \(>([0-9.e+]+)s\) from (?:llmharness|pytest-timeout)")
_EXC_HEAD = re.compile(r"^[A-Za-z_][\w.]*(:|$)")
_E_LINE = re.compile(r"^E\s+(\S.*)$")
_WHERE_LINE = re.compile(r"^(\S[^:]*:\d+): in ")
# pytest's explanation of a failed `assert`: ` +  where 4 = double(2)` names a call's result.
_WHERE = re.compile(r"^\s*\+\s+(where .*)$")
# pytest names a function it reached through an attribute by its repr; the address in it
# changes from run to run and says less than the name.
_FUNCTION_REPR = re.compile(r"<function ([\w.<>]+) at 0x[0-9a-fA-F]+>")
# Explanation lines that name no difference, only what pytest left out or how to see more.
_NO_DIFFERENCE = re.compile(r"Use -v|Omitting \d+ identical items|Full diff:|\.\.\.Full output")
_SAME_ITEMS = frozenset({"Common items:", "Matching attributes:"})
_SHOW_MORE = re.compile(r", use -v+ to show$")
_INSTALLED = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


def _first_line(message: str) -> str:
    lines = message.strip("\n").splitlines() or [""]
    first = lines[0].rstrip()
    if first.endswith(":") and len(lines) > 1:
        # "AssertionError:" followed by the message on the next line: keep both on one line.
        rest = next((line.strip() for line in lines[1:] if line.strip()), "")
        first = f"{first} {rest}".rstrip()
    return first


def _relative(path: str, rootdir: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(rootdir))
    return path


def _comparison_at(lines: Sequence[str]) -> int | None:
    """Where pytest's `assert ...` line is in a failed assert's message, if it is there."""
    # A custom message's further lines and pytest's explanation are all indented, so the
    # comparison is the last line that starts with "assert" (the message may start so too).
    for at in range(len(lines) - 1, -1, -1):
        line = lines[at].removeprefix("AssertionError: ") if at == 0 else lines[at]
        if line == "assert" or line.startswith("assert "):
            return at
    return None


def _first_difference(explanation: Iterable[str]) -> str:
    """The first line of pytest's explanation that names a differing item or index, with the
    item its header announces; else the first `where` line; else ""."""
    where = ""
    in_same_items = False
    lines = iter(explanation)
    for line in lines:
        called = _WHERE.match(line)
        if called:
            where = where or _FUNCTION_REPR.sub(r"\1", called.group(1))
            continue
        text = line.removeprefix("  ")
        if not text.strip():
            in_same_items = False
            continue
        if text[0].isspace() or text.startswith(("- ", "+ ", "? ")):
            continue  # a diff's body: a line of it alone says little
        if text.endswith(":"):
            in_same_items = text in _SAME_ITEMS
        if in_same_items or _NO_DIFFERENCE.match(text):
            continue
        if text.endswith(":"):
            item = next((rest.strip() for rest in lines if rest.strip()), "")
            return f"{text} {item}".rstrip()
        return _SHOW_MORE.sub("", text)
    return where


def _summary(message: str) -> str:
    """The exception type and first message line; for a failed `assert`, then the compared
    values and the first difference pytest's explanation names."""
    if not message.startswith(("assert", "AssertionError")):
        return _first_line(message)
    lines = message.splitlines()
    at = _comparison_at(lines)
    if at is None:  # raised by hand, or by an `assert` that pytest did not rewrite
        return _first_line(message)
    comparison = lines[at].removeprefix("AssertionError: ")
    custom = _first_line("\n".join(lines[:at])) if at else ""
    if custom.rstrip(":") == "AssertionError":  # an empty custom message
        custom = ""
    # pytest drops the type from the crash message when the exception's text starts with
    # "assert": a plain `assert`'s, or a custom message's that starts so.
    if custom and not custom.startswith("AssertionError"):
        custom = f"AssertionError: {custom}"
    parts = [custom, comparison] if custom else [f"AssertionError: {comparison}"]
    difference = _first_difference(lines[at + 1 :])
    if difference:
        parts.append(difference)
    return "; ".join(parts)


@functools.cache
def _not_the_project() -> tuple[str, ...]:
    """Folders whose frames never locate a failure, though they may be under the rootdir: the
    standard library (unittest's with it), installed packages, and pytest's and pluggy's code."""
    folders = [sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")]
    for package in ("pytest", "_pytest", "pluggy"):
        with contextlib.suppress(ImportError, ValueError):  # a module without a spec
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations is not None:
                folders.extend(spec.submodule_search_locations)
    return tuple(os.path.join(os.path.normcase(os.path.abspath(f)), "") for f in folders if f)


def _project_location(longrepr: Any, rootdir: Path) -> str | None:
    """`file:line` of the deepest traceback entry in the project's own code, if there is one."""
    entries = getattr(getattr(longrepr, "reprtraceback", None), "reprentries", None) or ()
    root = os.path.join(os.path.normcase(os.path.abspath(rootdir)), "")
    try:
        here = os.getcwd()
    except OSError:  # a test removed the working folder
        here = str(rootdir)
    for entry in reversed(entries):
        where = getattr(entry, "reprfileloc", None)  # native tracebacks have none
        # "<string>", "<doctest ...>": code compiled from text, in no file of the project.
        if where is None or str(where.path).startswith("<"):
            continue
        # pytest writes the path from the working folder when that is shorter.
        path = os.path.normpath(os.path.join(here, str(where.path)))
        folded = os.path.normcase(path)
        if (
            folded.startswith(root)
            and not any(part in folded for part in _INSTALLED)
            and not folded.startswith(_not_the_project())
        ):
            return f"{os.path.relpath(path, rootdir)}:{where.lineno}"
    return None


def describe_failure(longrepr: Any, rootdir: Path) -> str:
    """The reason for a failure: exception type, first message line, for a failed `assert` the
    compared values and first difference, and `(file:line)` in the project's code."""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        message = str(getattr(crash, "message", ""))
        timeout = _TIMEOUT.match(message)
        if timeout:
            return f"TIMEOUT after {float(timeout.group(1)):g} s"
        where = _project_location(longrepr, rootdir)
        if where is None:
            where = f"{_relative(str(crash.path), rootdir)}:{crash.lineno}"
        return f"{_summary(message)} ({where})"
    text = str(longrepr) if longrepr is not None else ""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return f"{longrepr[2]} ({_relative(str(longrepr[0]), rootdir)}:{longrepr[1]})"
    lines = text.splitlines()
    e_lines = [m.group(1) for m in map(_E_LINE.match, lines) if m]
    places = [m.group(1) for m in map(_WHERE_LINE.match, lines) if m]
    where = f" ({_relative(places[-1], rootdir)})" if places else ""
    if e_lines:
        # The last exception header, with its message's first line (a message may span lines).
        heads = [i for i, line in enumerate(e_lines) if _EXC_HEAD.match(line)]
        start = heads[-1] if heads else len(e_lines) - 1
        return (_first_line("\n".join(e_lines[start:])) or e_lines[-1]) + where
    return (_first_line(text) or "unknown failure") + where
