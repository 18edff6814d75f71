"""What is known of each test at a commit: outcomes seen on a clean tree at that commit.

Kept in the store as `commits/<sha>/<source>.gz`, a gzipped text file of `<outcome> <nodeid>`
lines, sorted and without repeats, where the source says how it is known:

- `recorded`: a run of this store, on a clean work tree whose HEAD was the commit;
- `checked`: llmharness ran the test at the commit itself (in a worktree of its own);
- `synced`: another clone recorded or checked it, and `llmharness sync` brought it here.

A test may have several lines (it passed in one run and failed in another). The line format is
also the git note `llmharness sync` exchanges, so notes from many clones merge by union.
Outcomes are pytest's words, plus `absent`: the test did not exist at the commit.

The files are gzipped because a clean run at each new commit adds one for the whole suite and
none is ever dropped: uncompressed, a real suite's long parametrized ids cost about 100 bytes
a test at every commit (6.4 MB for packaging's 64,650 tests), 228 KB gzipped.
Earlier versions kept them uncompressed, as `commits/<sha>/<source>`: such a file is still
read, and the next write at that commit and source folds its lines into the `.gz` and removes it.

`commits/<sha>/suite.gz` holds the node ids of the whole suite at the commit, as the last clean
run there that collected the whole suite found them: what the team's coverage is a share of.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import re
import zlib
from collections.abc import Collection, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llmharness.store import Store, _atomic_write_chunks, gzip_chunks

__all__ = ["ABSENT", "SHA", "SOURCES", "AtCommit", "Knowledge", "format_lines", "parse_lines"]

SOURCES = ("recorded", "checked", "synced")
SUITE = "suite.gz"  # the node ids a whole collection at the commit found
ABSENT = "absent"
OUTCOMES = frozenset({"passed", "failed", "error", "skipped", "xfailed", "xpassed", ABSENT})
_FAILING = frozenset({"failed", "error"})
_UNREADABLE = (OSError, EOFError, gzip.BadGzipFile, zlib.error)  # a damaged or cut .gz
SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # a full commit id (SHA-1 or SHA-256)
# A line of a test that existed at the commit: a line parse_lines takes, `absent` left out.
_EXISTED = re.compile(
    "^(?:" + "|".join(sorted(OUTCOMES - {ABSENT})) + ") ([^\n]*[^\r\n])\r*$", re.MULTILINE
)


def parse_lines(text: str) -> set[tuple[str, str]]:
    """The (outcome, nodeid) pairs of a knowledge file or note; other lines are ignored."""
    return set(_pairs_of(text.split("\n")))


def _pairs_of(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Lines end at "\n" alone (with any "\r" before it), as format_lines writes them: a node
    id may hold any other character."""
    for line in lines:
        outcome, _, nodeid = line.rstrip("\r\n").partition(" ")
        if outcome in OUTCOMES and nodeid:
            yield outcome, nodeid


def format_lines(pairs: Iterable[tuple[str, str]]) -> str:
    """Sorted, unique lines (node ids with a line break cannot be kept and are left out)."""
    lines = {f"{outcome} {nodeid}\n" for outcome, nodeid in pairs if "\n" not in nodeid}
    return "".join(sorted(lines))


@dataclass(frozen=True, slots=True)
class AtCommit:
    """One test's outcome at a commit, and how it is known."""

    outcome: str  # a failing outcome if it ever failed there, else the one seen
    known_by: str  # recorded, checked or synced: the first of SOURCES that knows it
    flaky: bool = False  # seen both passing and failing there


# A test seen once at a commit, as most are: one shared AtCommit for each outcome and source.
_SEEN_ONCE = {(o, source): AtCommit(o, source) for o in OUTCOMES for source in SOURCES}


def _combined(outcomes: set[str], known_by: str) -> AtCommit:
    """A test seen with several outcomes at one commit: a failing one if it ever failed there
    (the first by name), else the first of the others by name."""
    failing = sorted(outcomes & _FAILING)
    outcome = failing[0] if failing else min(outcomes)
    return AtCommit(outcome, known_by, bool(failing) and "passed" in outcomes)


def _lines(path: Path) -> io.BufferedReader:
    """A gzipped file to read a line at a time: gzip's own file object takes a few Python calls
    a line, this buffer over it none (2.5 times as fast; these files hold a line a test)."""
    return io.BufferedReader(gzip.open(path, "rb"))


class Knowledge:
    """The `commits/` folder of a store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / "commits"

    def _files(self, commit: str, source: str) -> tuple[Path, Path]:
        """The file `source` keeps at `commit`, and the uncompressed one older stores kept."""
        if not SHA.fullmatch(commit) or source not in SOURCES:
            raise ValueError(f"not a commit and source: {commit!r} {source!r}")
        plain = self.root / commit / source
        return plain.with_name(source + ".gz"), plain

    def _text(self, commit: str, source: str) -> str:
        """What `source` knows at `commit`, as lines ("" if nothing)."""
        return self._data(commit, source).decode("utf-8", "replace")

    def _data(self, commit: str, source: str) -> bytes:
        gzipped, plain = self._files(commit, source)
        # The older file first: a writer writes the .gz before it removes that one, so a
        # reader racing a write still sees every line.
        data = b""
        with contextlib.suppress(OSError):
            data = plain.read_bytes() + b"\n"  # its last line may have no line break
        try:
            data += gzip.decompress(gzipped.read_bytes())
        except FileNotFoundError:
            pass
        except _UNREADABLE as exc:
            # Kept, not overwritten by the next write: what it held may still be read.
            self.store.set_aside(gzipped, f"cannot read ({exc})")
        return data

    def _read(self, commit: str, source: str) -> Iterator[tuple[str, str]]:
        """The pairs `source` knows at `commit`, a line at a time: a whole suite's lines are
        never held, not even as bytes."""
        gzipped, plain = self._files(commit, source)
        # The older file first, as in _data.
        with contextlib.suppress(OSError), open(plain, "rb") as handle:
            yield from _pairs_of(raw.decode("utf-8", "replace") for raw in handle)
        # Read through once before any line is taken: gzip's check comes at the end, and a
        # damaged file gives no lines at all, as _data does.
        try:
            with gzip.open(gzipped, "rb") as handle:
                while handle.read(1 << 16):
                    pass
        except FileNotFoundError:
            return
        except _UNREADABLE as exc:
            self.store.set_aside(gzipped, f"cannot read ({exc})")
            return
        with contextlib.suppress(OSError), _lines(gzipped) as handle:
            yield from _pairs_of(raw.decode("utf-8", "replace") for raw in handle)

    def pairs(self, commit: str, sources: Iterable[str] = SOURCES) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for source in sources:
            found.update(self._read(commit, source))
        return found

    def existed(self, commit: str) -> set[str]:
        """The tests with a known outcome at `commit` (one other than `absent`).

        Read with one regular expression, not line by line: `llmharness summary` asks it of
        the whole suite (0.3 s line by line for 100,000 tests)."""
        found: set[str] = set()
        for source in SOURCES:
            found.update(_EXISTED.findall(self._text(commit, source)))
        return found

    def at(self, commit: str, only: Container[str] | None = None) -> dict[str, AtCommit]:
        """Every test known at `commit` (or those of them in `only`)."""
        return self.at_counted(commit, only)[0]

    def at_counted(
        self, commit: str, only: Container[str] | None = None
    ) -> tuple[dict[str, AtCommit], int]:
        """The tests known at `commit` (those in `only`), and how many tests that existed
        there have a known outcome, in one read.

        This runs at the end of every run, over the whole suite, and was that run's peak of
        memory (12.5 MB on 20,000 tests, with a set of outcomes for each test): the files are
        read a line at a time, a test seen once shares its AtCommit with the others, and only
        a test with several lines gets a set."""
        known: dict[str, AtCommit] = {}
        several: dict[str, set[str]] = {}  # every outcome of a test with more than one line
        outside: set[str] = set()  # tests not in `only` that existed
        for source in SOURCES:
            for outcome, nodeid in self._read(commit, source):
                if only is not None and nodeid not in only:
                    if outcome != ABSENT:
                        outside.add(nodeid)
                    continue
                before = known.get(nodeid)
                if before is None:
                    known[nodeid] = _SEEN_ONCE[outcome, source]
                elif outcome != before.outcome or nodeid in several:
                    outcomes = several.setdefault(nodeid, {before.outcome})
                    outcomes.add(outcome)
                    known[nodeid] = _combined(outcomes, before.known_by)
        # `absent` is first by name: a test is known to have existed unless it is all it has.
        inside = sum(
            at.outcome != ABSENT or len(several.get(nodeid, ())) > 1 for nodeid, at in known.items()
        )
        return known, inside + len(outside)

    def add(self, commit: str, source: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Merge (outcome, nodeid) pairs into what `source` knows at `commit`; return how many
        lines were new. The caller holds the store's lock."""
        gzipped, plain = self._files(commit, source)
        new = {pair for pair in pairs if pair[0] in OUTCOMES and "\n" not in pair[1]}
        new.difference_update(self._read(commit, source))
        if not new:
            return 0
        known = self.pairs(commit, (source,))
        known |= new
        gzipped.parent.mkdir(parents=True, exist_ok=True)
        encoded = (
            f"{outcome} {nodeid}\n".encode("utf-8", "surrogatepass")
            for outcome, nodeid in sorted(known)  # as format_lines sorts them, but line by line
            if "\n" not in nodeid
        )
        _atomic_write_chunks(gzipped, gzip_chunks(encoded))
        with contextlib.suppress(FileNotFoundError):
            plain.unlink()  # an older store's file: its lines are in the new one
        return len(new)

    def holds(self, commit: str, source: str, pairs: Collection[tuple[str, str]]) -> bool:
        """Whether `source` already knows every one of `pairs` at `commit`, found without a copy
        of either: the end of a clean run asks it of the whole suite, and most such runs learn
        nothing new. The lines that are among `pairs` are counted, which is exact for a file
        whose lines are sorted and unique, as `add` writes them (checked on the way); any other
        file (or an older store's plain one beside it) gives False."""
        if self._files(commit, source)[1].exists():
            return False
        count, previous = 0, None
        for pair in self._read(commit, source):
            if previous is not None and pair <= previous:
                return False
            previous = pair
            count += pair in pairs
        return count == len(pairs)

    def suite(self, commit: str) -> list[str] | None:
        """Every test of the suite at `commit`, as a whole collection there last found it."""
        try:
            text = gzip.decompress((self.root / commit / SUITE).read_bytes()).decode(
                "utf-8", "surrogatepass"
            )
        except (*_UNREADABLE, UnicodeDecodeError):
            return None
        return [nodeid for nodeid in text.split("\n") if nodeid]  # lines end at "\n" alone

    def set_suite(self, commit: str, nodeids: Iterable[str]) -> None:
        """Keep the suite a whole collection found at `commit` (gzipped: a large suite's ids
        compress about tenfold). The caller holds the store's lock."""
        if not SHA.fullmatch(commit):
            raise ValueError(f"not a commit: {commit!r}")
        # Sorted and compared a line at a time, with no set or second copy of the ids: this
        # runs at the end of each clean run that collected the whole suite.
        ids = [nodeid for nodeid, _ in itertools.groupby(sorted(nodeids)) if "\n" not in nodeid]
        path = self.root / commit / SUITE

        def encoded() -> Iterator[bytes]:
            return (f"{nodeid}\n".encode("utf-8", "surrogatepass") for nodeid in ids)

        with contextlib.suppress(*_UNREADABLE), _lines(path) as handle:
            if all(a == b for a, b in itertools.zip_longest(handle, encoded())):
                return
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_chunks(path, gzip_chunks(encoded()))

    def commits(self) -> list[str]:
        """The commits anything is known at."""
        try:
            return sorted(p.name for p in self.root.iterdir() if SHA.fullmatch(p.name))
        except OSError:
            return []
