"""Generate synthetic pytest suites for exercising llmharness at scale.

Usable as a script::

    python suites/generate.py synthetic OUT --files 200 --tests 100 --fail-rate 0.01 --subdirs 10
    python suites/generate.py messy OUT

or loaded by file path (it has no package-relative imports) and called as
``synthetic(root, ...)`` / ``messy(root)``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

PYTEST_INI = "[pytest]\n"

MESSY_COUNTS = {"passed": 250, "failed": 41, "error": 7, "skipped": 1, "xfailed": 1}


def is_failing(seed: int, nodeid: str, fail_rate: float) -> bool:
    """Whether the synthetic test `nodeid` fails for this seed and rate.

    Uses a real hash so the choice is stable across processes (unlike ``hash()``).
    """
    if fail_rate <= 0.0:
        return False
    digest = hashlib.blake2b(f"{seed}:{nodeid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fail_rate


def _width(count: int, minimum: int) -> int:
    return max(minimum, len(str(max(count - 1, 0))))


def synthetic(
    root: Path,
    files: int,
    tests_per_file: int,
    fail_rate: float = 0.0,
    seed: int = 0,
    subdirs: int = 0,
) -> list[str]:
    """Write `files` modules of `tests_per_file` trivial tests under `root`.

    Files are split into `subdirs` contiguous blocks (``pkg_00/``, ``pkg_01/``...) when
    `subdirs` > 0, so the returned node ids are in pytest's own collection order.
    Module basenames are unique, so no ``__init__.py`` files are needed.
    """
    if files < 0 or tests_per_file < 0 or subdirs < 0:
        raise ValueError("files, tests_per_file and subdirs must be non-negative")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(PYTEST_INI)

    fw, tw = _width(files, 4), _width(tests_per_file, 4)
    dw = _width(subdirs, 2)
    nodeids: list[str] = []
    created: set[Path] = set()
    for f in range(files):
        rel = f"test_m{f:0{fw}d}.py"
        if subdirs > 0:
            # Contiguous blocks keep directory order equal to file order.
            rel = f"pkg_{f * subdirs // files:0{dw}d}/{rel}"
        path = root / rel
        if path.parent not in created:
            path.parent.mkdir(parents=True, exist_ok=True)
            created.add(path.parent)
        chunks: list[str] = []
        for t in range(tests_per_file):
            name = f"test_{t:0{tw}d}"
            nodeid = f"{rel}::{name}"
            nodeids.append(nodeid)
            if is_failing(seed, nodeid, fail_rate):
                chunks.append(f'def {name}():\n    assert False, "synthetic failure {name}"\n')
            else:
                chunks.append(f"def {name}():\n    pass\n")
        path.write_text("\n\n".join(chunks))
    return nodeids


_MESSY_CONFTEST = """\
import pytest


@pytest.fixture
def database():
    raise RuntimeError("could not connect to database at localhost:5432 (connection refused)")


@pytest.fixture
def settings():
    env = {"HOME": "/home/ci", "PATH": "/usr/bin"}
    return {"token": env["API_TOKEN"]}


@pytest.fixture
def numbers():
    return list(range(10))
"""

_MESSY_PASSING_MATH = """\
import pytest


@pytest.mark.parametrize("n", range(100))
def test_square_is_nonnegative(n):
    assert n * n >= 0


@pytest.mark.parametrize("n", range(50))
def test_int_str_roundtrip(n):
    assert int(str(n * 7919)) == n * 7919
"""

_MESSY_PASSING_CLASSES = """\
import pytest


class TestStrings:
    @pytest.mark.parametrize("word", ["alpha", "beta", "gamma", "delta", "epsilon"] * 8)
    def test_upper_lower(self, word):
        assert word.upper().lower() == word

    def test_join(self):
        assert "-".join("abc") == "a-b-c"

    def test_split(self):
        assert "a b  c".split() == ["a", "b", "c"]


class TestNumbersFixture:
    @pytest.mark.parametrize("i", range(8))
    def test_contains(self, numbers, i):
        assert i in numbers
"""


def _messy_generated_passing(count: int) -> str:
    return "\n\n".join(
        f"def test_sorted_{i:02d}():\n    assert sorted([{i}, 3, 1]) == sorted([1, 3, {i}])\n"
        for i in range(count)
    )


_MESSY_DIFFS = """\
import pytest

INDEXES = range(10)


@pytest.mark.parametrize("k", INDEXES)
def test_long_list(k):
    expected = list(range(300))
    expected[k * 29 + 5] = -1
    assert list(range(300)) == expected


@pytest.mark.parametrize("k", INDEXES)
def test_large_dict(k):
    actual = {f"key_{i:03d}": {"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(80)}
    expected = {key: dict(value) for key, value in actual.items()}
    expected[f"key_{k * 7:03d}"]["name"] = "renamed"
    del expected[f"key_{79 - k:03d}"]
    assert actual == expected


@pytest.mark.parametrize("k", INDEXES)
def test_multiline_text(k):
    actual = "\\n".join(f"{i:04d}: the quick brown fox jumps over the lazy dog" for i in range(150))
    lines = actual.splitlines()
    lines[k * 13 + 2] = lines[k * 13 + 2].replace("lazy", "sleepy")
    assert actual == "\\n".join(lines)


@pytest.mark.parametrize("k", INDEXES)
def test_records(k):
    actual = [{"row": i, "values": list(range(i, i + 12))} for i in range(40)]
    expected = [{"row": i, "values": list(range(i, i + 12))} for i in range(40)]
    expected[k * 3]["values"][k] += 1
    assert actual == expected
"""

_MESSY_FIXTURE_ERRORS = """\
import pytest


@pytest.mark.parametrize("table", ["users", "orders", "items", "events"])
def test_table_exists(database, table):
    assert table in database.tables()


def test_token_present(settings):
    assert settings["token"]


def test_token_length(settings):
    assert len(settings["token"]) == 40
"""

_MESSY_IMPORT_ERROR = """\
import nonexistent_module_xyz


def test_never_collected():
    assert nonexistent_module_xyz.answer() == 42
"""

_MESSY_NOISY = """\
def test_prints_a_lot():
    print("\\n".join(f"progress line {i:06d}: processing record" for i in range(200_000)))
    assert False, "processing finished with errors (see 200,000 lines of output above)"
"""

_MESSY_MISC = """\
import sys

import pytest


@pytest.mark.skip(reason="requires network access")
def test_download():
    raise AssertionError("should not run")


@pytest.mark.xfail(reason="known bug: rounding of halves", strict=True)
def test_rounding_half():
    assert round(2.5) == 3


def test_python_version():
    assert sys.version_info >= (3, 10)
"""


def messy(root: Path) -> dict[str, int]:
    """Write a deliberately messy suite under `root` and return its expected outcome counts.

    The counts hold when pytest runs with ``--continue-on-collection-errors``; the
    "error" count is 6 fixture-setup errors plus 1 module that fails to import.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "pytest.ini": PYTEST_INI,
        "conftest.py": _MESSY_CONFTEST,
        "test_math.py": _MESSY_PASSING_MATH,  # 150 passed
        "test_classes.py": _MESSY_PASSING_CLASSES,  # 50 passed
        "test_generated.py": _messy_generated_passing(49),  # 49 passed
        "test_diffs.py": _MESSY_DIFFS,  # 40 failed
        "test_fixture_errors.py": _MESSY_FIXTURE_ERRORS,  # 6 errors
        "test_broken_import.py": _MESSY_IMPORT_ERROR,  # 1 collection error
        "test_noisy.py": _MESSY_NOISY,  # 1 failed
        "test_misc.py": _MESSY_MISC,  # 1 skipped, 1 xfailed, 1 passed
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return dict(MESSY_COUNTS)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    syn = sub.add_parser("synthetic", help="many trivial tests, a seeded fraction failing")
    syn.add_argument("out", type=Path)
    syn.add_argument("--files", type=int, default=200)
    syn.add_argument("--tests", type=int, default=100)
    syn.add_argument("--fail-rate", type=float, default=0.0)
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--subdirs", type=int, default=0)
    mes = sub.add_parser("messy", help="failures with long diffs, errors, huge output")
    mes.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    if args.command == "synthetic":
        ids = synthetic(args.out, args.files, args.tests, args.fail_rate, args.seed, args.subdirs)
        failing = sum(is_failing(args.seed, nodeid, args.fail_rate) for nodeid in ids)
        print(f"wrote {args.files} files, {len(ids)} tests ({failing} failing) to {args.out}")
    else:
        counts = messy(args.out)
        summary = ", ".join(f"{n} {k}" for k, n in counts.items())
        print(f"wrote messy suite to {args.out} (expected: {summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
