"""index.json: written an entry a line, read back line by line, still one valid JSON object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmharness.index import Entry
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


def _assert_set_aside_once(folder: Path, warnings: list[str], words: str) -> None:
    """One warning, saying `words`, and the index moved aside once (kept for a look)."""
    assert len(warnings) == 1 and words in warnings[0]
    assert len(list(folder.glob("index.json.corrupt-*"))) == 1


def test_index_cut_at_a_line_boundary_is_set_aside(tmp_path: Path) -> None:
    warnings: list[str] = []
    store, lines = _saved_lines(tmp_path, warnings)
    path = tmp_path / "index.json"
    path.write_bytes(b"".join(lines[:50]))  # whole lines, but no closing line
    assert store.load_index() == {}
    _assert_set_aside_once(tmp_path, warnings, "index.json")


def test_entries_stream_back_what_was_saved_from_a_stream(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure()
    index = _index(4_999)
    assert store.save_index(Entry(*pair) for pair in index.items())  # a generator, not a mapping
    streamed = {entry.nodeid: entry.known for entry in store.index_entries()}
    assert streamed == index == store.load_index()


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
    _assert_set_aside_once(tmp_path, warnings, "index.json")


def test_malformed_entries_are_dropped_and_the_file_set_aside(tmp_path: Path) -> None:
    """Entries that are valid JSON but not [outcome, run, agent, when, duration]: each is
    dropped, the well-formed ones around them (in the same batch) are kept."""
    warnings: list[str] = []
    store, lines = _saved_lines(tmp_path, warnings)
    malformed = [
        b'"t.py::short":["passed","r1"],\n',
        b'"t.py::when":["passed","r1","7","soon",0.1],\n',
        b'"t.py::text":"passed",\n',
        b'"t.py::unhashable":[["passed"],"r1","7",1.0,0.1],\n',
    ]
    (tmp_path / "index.json").write_bytes(b"".join(lines[:20] + malformed + lines[20:]))
    assert store.load_index() == _index(100)
    _assert_set_aside_once(tmp_path, warnings, "4 malformed entries")


def test_non_finite_durations_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.ensure()
    index = _index(3)
    index["t.py::forever"] = Known("failed", "r3", "7", 4.0, float("inf"))
    assert store.save_index(index)
    assert "Infinity" in (tmp_path / "index.json").read_text(errors="surrogatepass")
    assert store.load_index() == index


def test_a_run_of_one_file_rewrites_only_its_own_entries(pytester: pytest.Pytester) -> None:
    """Entries of tests the run did not run are written back exactly as they were read (even in
    a spelling of their own); the run's own tests get its outcomes."""
    pytester.makepyfile(
        test_a="import pytest\n@pytest.mark.parametrize('i', range(30))\ndef test_a(i): pass\n",
        test_b="def test_b(): assert False\n",
    )
    assert pytester.runpytest_subprocess().ret == 1
    path = pytester.path / ".llmharness" / "index.json"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # A hand-edited line: the same entry spelled with spaces, still one entry a line.
    first = next(i for i, line in enumerate(lines) if "test_a.py::test_a[0]" in line)
    lines[first] = lines[first].removesuffix(",\n").replace(",", ", ") + ",\n"
    path.write_text("".join(lines), encoding="utf-8")
    before = [line for line in lines if "test_a.py" in line]

    pytester.makepyfile(test_b="def test_b(): pass\n")
    assert pytester.runpytest_subprocess("test_b.py").ret == 0
    after = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert [line for line in after if "test_a.py" in line] == before
    data = json.loads(path.read_text(encoding="utf-8"))["tests"]
    run_id = json.loads((pytester.path / ".llmharness/last/summary.json").read_text())["run_id"]
    assert data["test_b.py::test_b"][:2] == ["passed", run_id]
    assert len(data) == 31 and data["test_a.py::test_a[0]"][0] == "passed"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "n2"])
def test_a_last_failed_run_keeps_what_is_known_of_the_files_it_skipped(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """--lf reports the files without a last failure as collected and empty, without importing
    them: their tests are not gone from the suite, and the index keeps them."""
    pytester.makepyfile(
        test_a="import pytest\n@pytest.mark.parametrize('i', range(5))\ndef test_a(i): pass\n",
        test_b="def test_b(): assert False\ndef test_c(): pass\n",
    )
    assert pytester.runpytest_subprocess(*workers).ret == 1
    path = pytester.path / ".llmharness" / "index.json"
    assert len(json.loads(path.read_text())["tests"]) == 7
    result = pytester.runpytest_subprocess("--lf", *workers)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*1 failed*"])
    known = json.loads(path.read_text())["tests"]
    tests = [
        *(f"test_a.py::test_a[{i}]" for i in range(5)),
        "test_b.py::test_b",
        "test_b.py::test_c",
    ]
    assert sorted(known) == tests  # test_c, which passed, is left out of test_b.py's collection
    assert known["test_a.py::test_a[3]"][0] == known["test_b.py::test_c"][0] == "passed"
    # A file emptied of its tests, in a run that collects it, still loses them.
    pytester.makepyfile(test_a="", test_b="def test_b(): pass\n")
    assert pytester.runpytest_subprocess(*workers).ret == 0
    assert sorted(json.loads(path.read_text())["tests"]) == ["test_b.py::test_b"]
