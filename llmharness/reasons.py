"""Why a test failed, in one line: the `<reason>` of its ERROR line.

`describe_failure` turns the `longrepr` of one of pytest's reports into the exception type, the
first line of its message and `(file:line)`; `reporting.sanitize` then makes it one bounded line.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

__all__ = ["describe_failure"]

# llmharness's own timeout message, or pytest-timeout's when that plugin ran the timer.
_TIMEOUT = re.compile(r"^Failed: Timeout \(>([0-9.e+]+)s\) from (?:llmharness|pytest-timeout)")
_EXC_HEAD = re.compile(r"^[A-Za-z_][\w.]*(:|$)")
_E_LINE = re.compile(r"^E\s+(\S.*)$")
_WHERE_LINE = re.compile(r"^(\S[^:]*:\d+): in ")


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


def describe_failure(longrepr: Any, rootdir: Path) -> str:
    """The reason for a failure: exception type, first message line, `(file:line)`."""
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        message = str(getattr(crash, "message", ""))
        timeout = _TIMEOUT.match(message)
        if timeout:
            return f"TIMEOUT after {float(timeout.group(1)):g} s"
        where = f" ({_relative(str(crash.path), rootdir)}:{crash.lineno})"
        first = _first_line(message)
        if first.startswith("assert ") or first == "assert":
            # pytest drops the type of a failed plain `assert` from the crash message.
            first = f"AssertionError: {first}"
        return first + where
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
