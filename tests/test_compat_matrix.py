"""llmharness leaves every ordinary pytest invocation as it is without it (issue 13 item 7).

Each case runs one invocation of a small realistic suite in a fresh interpreter three ways:
llmharness disabled (`-p no:llmharness`), on in default mode, and on in compact mode
(`--agent-id 7`). The three must give the same exit code and the same JUnit XML counts, which
must be the ones the invocation gives (so a case cannot pass by failing the same way three
times). Where the invocation runs tests, llmharness's record must agree with pytest's counts;
where it only informs, collects or plans, llmharness must leave the store as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_json

STORE = ".llmharness"
# The three ways of running each invocation: their option sets, in the order they run.
MODES = {
    "off": ("-p", "no:llmharness"),
    "default": (),
    "compact": ("--agent-id", "7"),
}
FLAKY = "test_flaky.py::test_flaky"

SUITE = {
    # rootdir is pytester's folder; `pythonpath` so `import calc` works under
    # --import-mode=importlib too, which puts no test folder on sys.path.
    "pytest.ini": """
        [pytest]
        pythonpath = .
        markers =
            slow: a test that takes its time
    """,
    "calc.py": '''
        """The module under test (measured by --cov=calc, its doctest run by --doctest-modules)."""


        def add(a, b):
            """The sum of a and b.

            >>> add(2, 3)
            5
            """
            return a + b


        def div(a, b):
            return a / b
    ''',
    "conftest.py": '''
        import pytest


        @pytest.fixture
        def numbers():
            """Three small numbers (listed by --fixtures)."""
            return [1, 2, 3]
    ''',
    "test_calc.py": """
        import warnings

        import pytest

        import calc


        def test_add():
            assert calc.add(1, 2) == 3


        def test_fails():
            assert calc.add(1, 1) == 3


        @pytest.mark.skip(reason="not on this platform")
        def test_skipped():
            pass


        @pytest.mark.xfail(raises=ZeroDivisionError, reason="division by zero is not handled")
        def test_div_by_zero():
            assert calc.div(1, 0) == 0


        @pytest.mark.parametrize(
            ("a", "b", "total"), [(1, 2, 3), (2, 2, 4), (0, 0, 1)], ids=["small", "equal", "wrong"]
        )
        def test_param(a, b, total):
            assert calc.add(a, b) == total


        @pytest.mark.slow
        def test_slow_sum():
            assert sum(range(1000)) == 499500


        def test_warns():
            # Passes, with a warning in pytest's summary; fails under -W error.
            warnings.warn("add() of floats is deprecated", DeprecationWarning)
            assert calc.add(0.5, 0.5) == 1
    """,
    "test_flaky.py": """
        def test_flaky(tmp_path_factory):
            # Fails on its first attempt in a session (each run has its own base temp folder,
            # each xdist worker too), passes when pytest-rerunfailures runs it again.
            marker = tmp_path_factory.getbasetemp() / "flaky-attempted"
            if not marker.exists():
                marker.touch()
                raise AssertionError("fails on its first attempt")
    """,
    "test_ops.py": """
        import calc


        class TestOps:
            def test_div(self):
                assert calc.div(6, 3) == 2

            def test_neg(self):
                print("some output of a passing test")
                assert calc.add(-1, 1) == 0


        def test_sum_numbers(numbers):
            assert sum(numbers) == 6
    """,
    "test_props.py": """
        from hypothesis import given, settings, strategies as st

        import calc


        # No deadline: a loaded CI machine must not turn this into a flaky failure.
        @settings(max_examples=25, deadline=None)
        @given(st.integers(), st.integers())
        def test_add_commutes(a, b):
            assert calc.add(a, b) == calc.add(b, a)
    """,
}


@dataclass(frozen=True)
class Junit:
    """The counts of a JUnit XML file's test suite."""

    tests: int
    failures: int
    errors: int
    skipped: int


@dataclass(frozen=True)
class Case:
    """One invocation and what pytest, without llmharness, gives for it."""

    args: tuple[str, ...]
    exit: int
    junit: Junit | None  # None: pytest writes no JUnit file for this invocation
    cache: bool = False  # needs pytest's cache (--lf, --sw); otherwise `-p no:cacheprovider`
    first: tuple[str, ...] | None = None  # a run before it, in the same mode, that it builds on
    first_exit: int = 1


# The whole suite: 14 tests, 3 failing (test_fails, test_param[wrong], test_flaky), 1 skipped,
# 1 xfailed; JUnit counts the xfail as skipped.
ALL = Junit(tests=14, failures=3, errors=0, skipped=2)
NONE = Junit(tests=0, failures=0, errors=0, skipped=0)

INFORMATIONAL = {
    "help": Case(("--help",), 0, None),
    "version": Case(("--version",), 0, None),
    "markers": Case(("--markers",), 0, None),
    "fixtures": Case(("--fixtures",), 0, NONE),
    "co": Case(("--co",), 0, NONE),
    "co-q": Case(("--co", "-q"), 0, NONE),
    # Only the skip mark acts in setup; with no call phase nothing passes or fails.
    "setup-plan": Case(("--setup-plan",), 0, Junit(1, 0, 0, 1)),
    "setup-only": Case(("--setup-only",), 0, Junit(1, 0, 0, 1)),
}
RUNNING = {
    "plain": Case((), 1, ALL),
    "x": Case(("-x",), 1, Junit(2, 1, 0, 0)),  # test_add, then test_fails stops it
    "maxfail-2": Case(("--maxfail=2",), 1, Junit(7, 2, 0, 2)),  # up to test_param[wrong]
    # -k matches case-insensitively: "TestOps" and not the module test_ops.py.
    "k": Case(("-k", "param or TestOps"), 1, Junit(5, 1, 0, 0)),
    "m": Case(("-m", "slow"), 0, Junit(1, 0, 0, 0)),
    "deselect": Case(("--deselect", "test_calc.py::test_fails"), 1, Junit(13, 2, 0, 2)),
    # The three failures again (test_flaky fails on its first attempt in every session).
    "lf": Case(("--lf",), 1, Junit(3, 3, 0, 0), cache=True, first=()),
    # The first --sw run stops at test_fails; the second starts there and stops there (a
    # stepwise stop is pytest's "interrupted").
    "sw": Case(("--sw",), 2, Junit(1, 1, 0, 0), cache=True, first=("--sw",), first_exit=2),
    "s": Case(("-s",), 1, ALL),
    "runxfail": Case(("--runxfail",), 1, Junit(14, 4, 0, 1)),
    "W-error": Case(("-W", "error"), 1, Junit(14, 4, 0, 2)),  # test_warns fails
    "import-mode-importlib": Case(("--import-mode=importlib",), 1, ALL),
    "doctest-modules": Case(("--doctest-modules",), 1, Junit(15, 3, 0, 2)),  # + calc.add
    "n-2": Case(("-n", "2"), 1, ALL),
    "cov": Case(("--cov=calc", "--cov-report=term"), 1, ALL),
    # The autouse fixture in conftest.py blocks randomly through PYTEST_ADDOPTS; `-p randomly`
    # on the command line comes after it and un-blocks it.
    "randomly": Case(("-p", "randomly", "--randomly-seed=1"), 1, ALL),
    "reruns": Case(("--reruns", "2"), 1, Junit(14, 2, 0, 2)),  # test_flaky passes on rerun
    # Each test three times; test_flaky fails only on the first of its three.
    "repeat": Case(("--count", "3"), 1, Junit(42, 7, 0, 6)),
    "hypothesis": Case(("--hypothesis-seed=0",), 1, ALL),
}


@dataclass(frozen=True)
class Outcome:
    """One pytest process: its exit code, output and the JUnit counts it wrote (if any)."""

    result: pytest.RunResult
    junit: Junit | None


@dataclass(frozen=True)
class Record:
    """What llmharness recorded of one run."""

    run_id: str
    counts: dict[str, int]
    results: list[dict[str, Any]]


@dataclass(frozen=True)
class StoreState:
    """What a run of llmharness changes in the store: `last`, the index, the run folders."""

    last: str
    index: bytes
    runs: frozenset[str]


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # With PYTHONDONTWRITEBYTECODE pytest cannot keep its assertion-rewritten copy of the
    # hypothesis plugin's package, and rewrites all of it again in every one of the ~100
    # processes here (1 s each). The inner runs write their bytecode as most setups do.
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    # The popular plugins next to llmharness, hypothesis's included (the suite has a test of
    # its own), as a user has them; only the random order is kept out (see "randomly" below).
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly -p no:anyio")
    # --help wraps at the terminal's width; the lines it is matched against are 80 wide.
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    for name, text in SUITE.items():
        (pytester.path / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return pytester


def _junit(path: Path) -> Junit | None:
    if not path.exists():
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None, path.read_text(encoding="utf-8")
    counts = {key: int(suite.attrib[key]) for key in ("tests", "failures", "errors", "skipped")}
    return Junit(**counts)


def _run(pytester: pytest.Pytester, mode: str, args: tuple[str, ...], label: str) -> Outcome:
    junit = pytester.path / f"junit-{label}-{mode}.xml"
    result = pytester.runpytest_subprocess(*MODES[mode], *args, f"--junitxml={junit}", timeout=120)
    return Outcome(result, _junit(junit))


def _store_state(root: Path) -> StoreState:
    store = root / STORE
    return StoreState(
        last=(store / "last").resolve().name,
        index=(store / "index.json").read_bytes(),
        runs=frozenset(path.name for path in (store / "runs").iterdir()),
    )


def _normalized(result: pytest.RunResult) -> list[str]:
    """pytest's output less what differs from run to run or names llmharness: the plugin
    list, the JUnit file's name (one per mode), durations."""
    return [
        re.sub(r" in \d+\.\d+s\b", " in Ns", line)
        for line in result.outlines
        if not line.startswith("plugins: ") and "generated xml file: " not in line
    ]


def _changes(before: StoreState, after: StoreState) -> list[str]:
    """What a run changed in the store, in words for the assertion message."""
    changes = [f"new run folder {name}" for name in sorted(after.runs - before.runs)]
    if after.last != before.last:
        changes.append(f"last moved to {after.last}")
    if after.index != before.index:
        changes.append("index.json rewritten")
    return changes


def _show(outcomes: dict[str, Outcome]) -> str:
    """Each mode's exit code and JUnit counts, then its output, for the assertion message."""
    headline = "; ".join(f"{mode}: exit {o.result.ret}, {o.junit}" for mode, o in outcomes.items())
    return "\n".join(
        [headline]
        + [
            f"--- {mode}\n{o.result.stdout.str()[-3000:]}\n{o.result.stderr.str()[-3000:]}"
            for mode, o in outcomes.items()
        ]
    )


def _assert_same_as_pytest(case: Case, outcomes: dict[str, Outcome]) -> None:
    exits = {mode: o.result.ret for mode, o in outcomes.items()}
    junits = {mode: o.junit for mode, o in outcomes.items()}
    assert exits == dict.fromkeys(MODES, case.exit), _show(outcomes)
    assert junits == dict.fromkeys(MODES, case.junit), _show(outcomes)


def _record_counts(counts: dict[str, int]) -> dict[str, int]:
    """llmharness's counts in JUnit's terms (JUnit counts an xfail as skipped, an xpass as
    passed)."""
    return {
        "failed+error": counts.get("failed", 0) + counts.get("error", 0),
        "passed": counts.get("passed", 0) + counts.get("xpassed", 0),
        "skipped": counts.get("skipped", 0) + counts.get("xfailed", 0),
    }


def _junit_counts(junit: Junit) -> dict[str, int]:
    return {
        "failed+error": junit.failures + junit.errors,
        "passed": junit.tests - junit.failures - junit.errors - junit.skipped,
        "skipped": junit.skipped,
    }


def _record(root: Path) -> Record | None:
    """The latest run's record, if there is one."""
    run_dir = root / STORE / "last"
    if not (run_dir / "summary.json").is_file():
        return None
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    text = (run_dir / "results.jsonl").read_text(encoding="utf-8")
    results = [json.loads(line) for line in text.splitlines() if line.strip()]
    return Record(summary["run_id"], summary["counts"], results)


def _modes(pytester: pytest.Pytester, case: Case, label: str) -> Iterator[tuple[str, Outcome]]:
    """Run the case in each mode, from the same state of pytest's cache."""
    cache_args = () if case.cache else ("-p", "no:cacheprovider")
    for mode in MODES:
        shutil.rmtree(pytester.path / ".pytest_cache", ignore_errors=True)
        if case.first is not None:
            first = _run(pytester, mode, (*cache_args, *case.first), f"{label}-first")
            assert first.result.ret == case.first_exit, first.result.stdout.str()
        yield mode, _run(pytester, mode, (*cache_args, *case.args), label)


@pytest.mark.parametrize("name", list(RUNNING))
def test_a_run_is_the_same_with_and_without_llmharness(suite: pytest.Pytester, name: str) -> None:
    case = RUNNING[name]
    outcomes: dict[str, Outcome] = {}
    records: dict[str, Record | None] = {}
    for mode, outcome in _modes(suite, case, name):
        outcomes[mode] = outcome
        if mode != "off":
            # Read while `last` names it: the store compresses the results of older runs.
            records[mode] = _record(suite.path)
    _assert_same_as_pytest(case, outcomes)
    assert case.junit is not None
    # Two recorded runs, one each (the first of a --lf or --sw pair is one more).
    runs = sorted(path.name for path in (suite.path / STORE / "runs").iterdir())
    assert len(runs) == 2 * (2 if case.first is not None else 1)
    # Each llmharness mode left a record of its own.
    run_ids = {record.run_id for record in records.values() if record is not None}
    assert len(run_ids) == 2, records
    for mode, record in records.items():
        assert record is not None
        assert _record_counts(record.counts) == _junit_counts(case.junit), mode
        if name == "reruns":
            # Failed on its first attempt, passed on the rerun: one test, passed, that needed
            # one rerun; the two failing tests failed their two reruns too.
            flaky = [
                (r["outcome"], r.get("reruns")) for r in record.results if r["nodeid"] == FLAKY
            ]
            assert flaky == [("passed", 1)], mode
            failed = [r.get("reruns") for r in record.results if r["outcome"] == "failed"]
            assert failed == [2, 2], mode
        # One row a test (pytest-repeat's copies are tests of their own).
        nodeids = [row["nodeid"] for row in record.results]
        assert len(nodeids) == len(set(nodeids)) == case.junit.tests, mode
    # The plugins' own lines show they ran (compact mode keeps the terminal to a few lines).
    for mode in ("off", "default"):
        stdout = outcomes[mode].result.stdout
        if name == "cov":
            stdout.fnmatch_lines(["*coverage: platform*", "calc.py * 4 * 0 * 100%", "TOTAL *"])
        elif name == "randomly":
            stdout.fnmatch_lines(["Using --randomly-seed=1"])
        elif name == "reruns":
            # 2 reruns of each of the 2 failing tests, 1 of test_flaky.
            stdout.fnmatch_lines(["*= 2 failed, 10 passed, 1 skipped, 1 xfailed, * 5 rerun in *"])
    if name == "reruns":
        # Compact mode says what pytest's summary says, and names the test that only passed
        # when run again.
        outcomes["compact"].result.stdout.fnmatch_lines(
            [
                "llmharness: FAILED 2 failed, 10 passed, 1 skipped, 1 xfailed, 5 rerun in *",
                f"RERUN 1 flaky: passed only when run again: {FLAKY}",
            ]
        )


@pytest.mark.parametrize("name", list(INFORMATIONAL))
def test_an_informational_invocation_is_the_same_and_records_nothing(
    suite: pytest.Pytester, name: str
) -> None:
    case = INFORMATIONAL[name]
    first = suite.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    assert first.ret == 1, first.stdout.str()
    before = _store_state(suite.path)
    outcomes: dict[str, Outcome] = {}
    changes: dict[str, list[str]] = {}
    state = before
    for mode, outcome in _modes(suite, case, name):
        outcomes[mode] = outcome
        now = _store_state(suite.path)
        changes[mode] = _changes(state, now)
        state = now
    _assert_same_as_pytest(case, outcomes)
    assert changes == {mode: [] for mode in MODES}, changes
    assert cli_json(suite, "summary")["run_id"] == before.last
    if name != "help":
        # Listing, planning and informing are pytest's own, line for line, in either mode.
        for mode in ("default", "compact"):
            assert _normalized(outcomes[mode].result) == _normalized(outcomes["off"].result), mode
    else:
        for mode in ("default", "compact"):
            outcomes[mode].result.stdout.fnmatch_lines(
                [
                    "llmharness (sampling, compact output, run records):",
                    "  --fast *run a deterministic sample of the tests",
                    "  --fast-fraction=F *fraction to sample, 0.01 or 1% (implies --fast;*",
                    "  --agent-id=ID *who is running (env LLMHARNESS_AGENT_ID);*",
                ]
            )
        outcomes["off"].result.stdout.no_fnmatch_line("*--agent-id*")
        for outcome in outcomes.values():
            outcome.result.stdout.no_fnmatch_line("*Traceback (most recent call last)*")
            outcome.result.stderr.no_fnmatch_line("*Traceback (most recent call last)*")
