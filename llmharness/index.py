"""index.json: every test's last known outcome, the memory the regression diff compares with.

The file is one JSON object, laid out one test a line so that a run can stream it (read an
entry, merge it with its own result, write it) without holding a large suite's index whole::

    {"schema":1,"tests":{
    "tests/test_a.py::test_x":["passed","20261123T091251.821-616f2b","7",1763889171.821,0.000412],
    ...
    }}

Each entry is `[outcome, run id, agent id or null, when (epoch s), duration (s)]`. Any other
layout that is the same JSON (an older or hand-edited file) is read whole instead. An entry read
from the file and written back unchanged is copied as it was read, so a run of a few tests
encodes only its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["INDEX_FILE", "Entry", "IndexBroken", "Known", "encode", "read_entries", "read_whole"]

INDEX_FILE = "index.json"
SCHEMA = 1
_HEAD = f'{{"schema":{SCHEMA},"tests":{{\n'
_TAIL = "}}\n"


class IndexBroken(Exception):
    """The file turned out not to be in the one-entry-a-line layout partway through."""


class Known(NamedTuple):
    """A test's last known outcome: what it was, in which run, by which agent, when."""

    outcome: str
    run_id: str
    agent_id: str | None
    when: float
    duration: float


class Entry(NamedTuple):
    """One test's line of the file: its node id, its Known and, when read from a file, the line
    as it was there (without its separator), which is written back as is."""

    nodeid: str
    known: Known
    text: str | None = None


def _known(entry: Any) -> Known | None:
    """An entry `[outcome, run id, agent, when, duration]` as a Known, if it is well formed."""
    if not isinstance(entry, list) or len(entry) != 5:
        return None
    outcome, run_id, agent, when, duration = entry
    if not isinstance(outcome, str) or not isinstance(run_id, str):
        return None
    if agent is not None and not isinstance(agent, str):
        return None
    try:
        return Known(outcome, run_id, agent, float(when), float(duration))
    except (TypeError, ValueError):
        return None


def read_entries(path: Path, dropped: list[str]) -> Iterator[Entry]:
    """The entries of a file in the one-entry-a-line layout, streamed; each malformed entry's
    node id is appended to `dropped`. Raises IndexBroken (after yielding some entries) when
    the file is not in that layout, OSError when it cannot be read."""
    with open(path, encoding="utf-8", errors="surrogatepass") as handle:
        if handle.readline() != _HEAD:
            raise IndexBroken(f"{path}: not laid out one entry a line")
        for line in handle:
            if line == _TAIL:
                if handle.read():
                    raise IndexBroken(f"{path}: text after the closing line")
                return
            if line == "\n":
                continue
            text = line.rstrip("\n").removesuffix(",")
            try:
                pair = json.loads("{" + text + "}")
            except ValueError:
                raise IndexBroken(f"{path}: a line that is not one entry") from None
            if not isinstance(pair, dict) or len(pair) != 1:
                raise IndexBroken(f"{path}: a line that is not one entry")
            ((nodeid, entry),) = pair.items()
            known = _known(entry)
            if known is None:
                dropped.append(nodeid)
            else:
                yield Entry(nodeid, known, text)
    raise IndexBroken(f"{path}: no closing line")


def read_whole(data: Any, dropped: list[str]) -> dict[str, Known] | None:
    """The entries of the parsed file `data`, or None when it is not an index at all."""
    if not isinstance(data, dict) or not isinstance(data.get("tests"), dict):
        return None
    index = {}
    for nodeid, entry in data["tests"].items():
        known = _known(entry)
        if known is None:
            dropped.append(nodeid)
        else:
            index[nodeid] = known
    return index


# One encoder for every entry: json.dumps with separators given builds a new one each call.
_encode_entry = json.JSONEncoder(separators=(",", ":")).encode


def encode(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The file's bytes for `entries`, a chunk at a time."""
    yield _HEAD.encode()
    separator = ""
    for nodeid, known, text in entries:
        if text is None:
            entry = [known.outcome, known.run_id, known.agent_id, round(known.when, 3)]
            entry.append(round(known.duration, 6))
            text = f"{json.dumps(nodeid)}:{_encode_entry(entry)}"
        yield f"{separator}{text}".encode("utf-8", "surrogatepass")
        separator = ",\n"
    yield ("\n" + _TAIL).encode()
