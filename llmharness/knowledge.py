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
import re
import zlib
from collections.abc import Container, Iterable
from dataclasses import dataclass
from pathlib import Path

from llmharness.store import Store, _atomic_write_bytes

__all__ = ["ABSENT", "SHA", "SOURCES", "AtCommit", "Knowledge", "format_lines", "parse_lines"]

SOURCES = ("recorded", "checked", "synced")
SUITE = "suite.gz"  # the node ids a whole collection at the commit found
ABSENT = "absent"
OUTCOMES = frozenset({"passed", "failed", "error", "skipped", "xfailed", "xpassed", ABSENT})
_FAILING = frozenset({"failed", "error"})
SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # a full commit id (SHA-1 or SHA-256)
# A line of a test that existed at the commit: the lines parse_lines takes, `absent` left out.
_EXISTED = re.compile("^(?:" + "|".join(sorted(OUTCOMES - {ABSENT})) + ") ([^\n]+)$", re.MULTILINE)


def parse_lines(text: str) -> set[tuple[str, str]]:
    """The (outcome, nodeid) pairs of a knowledge file or note; other lines are ignored."""
    pairs = set()
    for line in text.splitlines():
        outcome, _, nodeid = line.partition(" ")
        if outcome in OUTCOMES and nodeid:
            pairs.add((outcome, nodeid))
    return pairs


def format_lines(pairs: Iterable[tuple[str, str]]) -> str:
    """Sorted, unique lines (node ids with a line break cannot be kept and are left out)."""
    lines = {f"{outcome} {nodeid}\n" for outcome, nodeid in pairs if "\n" not in nodeid}
    return "".join(sorted(lines))


@dataclass(frozen=True)
class AtCommit:
    """One test's outcome at a commit, and how it is known."""

    outcome: str  # a failing outcome if it ever failed there, else the one seen
    known_by: str  # recorded, checked or synced: the first of SOURCES that knows it
    flaky: bool = False  # seen both passing and failing there


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
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            # Kept, not overwritten by the next write: what it held may still be read.
            self.store.set_aside(gzipped, f"cannot read ({exc})")
        return data.decode("utf-8", "replace")

    def pairs(self, commit: str, sources: Iterable[str] = SOURCES) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for source in sources:
            found |= parse_lines(self._text(commit, source))
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
        there have a known outcome, in one read."""
        seen: dict[str, tuple[set[str], str]] = {}
        existed: set[str] = set()
        for source in SOURCES:
            for outcome, nodeid in self.pairs(commit, (source,)):
                if outcome != ABSENT:
                    existed.add(nodeid)
                if only is None or nodeid in only:
                    seen.setdefault(nodeid, (set(), source))[0].add(outcome)
        known = {}
        for nodeid, (outcomes, source) in seen.items():
            failing = sorted(outcomes & _FAILING)
            passing = sorted(outcomes - _FAILING)
            outcome = failing[0] if failing else passing[0]
            known[nodeid] = AtCommit(outcome, source, bool(failing) and "passed" in outcomes)
        return known, len(existed)

    def add(self, commit: str, source: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Merge (outcome, nodeid) pairs into what `source` knows at `commit`; return how many
        lines were new. The caller holds the store's lock."""
        gzipped, plain = self._files(commit, source)
        have = self.pairs(commit, (source,))
        new = {(outcome, nodeid) for outcome, nodeid in pairs if outcome in OUTCOMES} - have
        if not new:
            return 0
        gzipped.parent.mkdir(parents=True, exist_ok=True)
        text = format_lines(have | new).encode("utf-8", "surrogatepass")
        _atomic_write_bytes(gzipped, gzip.compress(text, 6, mtime=0))
        with contextlib.suppress(FileNotFoundError):
            plain.unlink()  # an older store's file: its lines are in the new one
        return len(new)

    def suite(self, commit: str) -> list[str] | None:
        """Every test of the suite at `commit`, as a whole collection there last found it."""
        try:
            data = gzip.decompress((self.root / commit / SUITE).read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile):
            return None
        return data.decode("utf-8", "surrogatepass").splitlines()

    def set_suite(self, commit: str, nodeids: Iterable[str]) -> None:
        """Keep the suite a whole collection found at `commit` (gzipped: a large suite's ids
        compress about tenfold). The caller holds the store's lock."""
        if not SHA.fullmatch(commit):
            raise ValueError(f"not a commit: {commit!r}")
        ids = sorted({nodeid for nodeid in nodeids if "\n" not in nodeid})
        if self.suite(commit) == ids:
            return
        path = self.root / commit / SUITE
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{nodeid}\n" for nodeid in ids)
        _atomic_write_bytes(path, gzip.compress(text.encode("utf-8", "surrogatepass"), 6, mtime=0))

    def commits(self) -> list[str]:
        """The commits anything is known at."""
        try:
            return sorted(p.name for p in self.root.iterdir() if SHA.fullmatch(p.name))
        except OSError:
            return []
