"""index.json: written an entry a line, read back line by line, still one valid JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmharness.store import IndexBroken, Known, Store


def _index(count: int) -> dict[str, Known]:
    index = {f"t.py::test_{i}": Known("passed", "r1", "7", 1.0, 0.01) for i in range(count)}
    # Characters that could break a line-by-line reader if they were not escaped.
    index['t.py::test_odd[a"b\\c\nd,}}\udcff]'] = Known("failed", "r2", None, 2.0, 0.5)
    return index


def test_round_trip_and_plain_json(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure()
    index = _index(4_999)
    assert store.save_index(index)
    assert store.load_index() == index
    data = json.loads((tmp_path / "index.json").read_text(encoding="utf-8", errors="surrogatepass"))
    assert data["schema"] == 1 and len(data["tests"]) == 5_000


def test_index_in_another_layout_is_still_read(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure()
    tests = {"a.py::t": ["failed", "r9", "x", 3.0, 0.2]}
    (tmp_path / "index.json").write_text(json.dumps({"schema": 1, "tests": tests}, indent=4))
    assert store.load_index() == {"a.py::t": Known("failed", "r9", "x", 3.0, 0.2)}


def _saved_lines(tmp_path: Path, warnings: list[str]) -> tuple[Store, list[bytes]]:
    """A store holding a saved 101-entry index, and that file's lines."""
    store = Store(tmp_path, on_warning=warnings.append)
    store.ensure()
    assert store.save_index(_index(100))
    return store, (tmp_path / "index.json").read_bytes().splitlines(keepends=True)


def test_index_cut_at_a_line_boundary_is_set_aside(tmp_path: Path) -> None:
    warnings: list[str] = []
    store, lines = _saved_lines(tmp_path, warnings)
    path = tmp_path / "index.json"
    path.write_bytes(b"".join(lines[:50]))  # whole lines, but no closing line
    assert store.load_index() == {}
    assert len(warnings) == 1 and "index.json" in warnings[0]
    assert len(list(tmp_path.glob("index.json.corrupt-*"))) == 1


def test_entries_stream_back_what_was_saved_from_a_stream(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure()
    index = _index(4_999)
    assert store.save_index(pair for pair in index.items())  # a generator, not a mapping
    assert dict(store.index_entries()) == index == store.load_index()


def test_a_line_broken_partway_stops_the_stream(tmp_path: Path) -> None:
    warnings: list[str] = []
    store, lines = _saved_lines(tmp_path, warnings)
    path = tmp_path / "index.json"
    lines[50] = b"torn,\n"
    path.write_bytes(b"".join(lines))
    entries = store.index_entries()
    with pytest.raises(IndexBroken):
        for _ in entries:
            pass
    assert path.exists() and not warnings  # the stream leaves reporting to load_index
    assert store.load_index() == {}
    assert len(warnings) == 1 and len(list(tmp_path.glob("index.json.corrupt-*"))) == 1
