"""Crashes and interruptions: a run that dies keeps what it did, is marked unfinished, and
misleads no later run.

Each way of dying is played once per module on a copy of one recorded store (a complete run of
a tiny suite, then a run that dies at `test_b.py::test_b_crash`), by a real pytest process. The
tests then check that copy: what is on disk, the status the CLI gives, the exit code (pytest's
own), the terminal, the next run and the regression diff.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmharness import cli

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="POSIX signals (SIGKILL, SIGSEGV, SIGTERM to a child)"
)

SUITE = {
    "pytest.ini": "[pytest]\n",
    "test_a.py": """
        def test_a1():
            pass
        def test_a2():
            pass
        def test_a3():
            pass
        def test_a4():
            pass
        def test_a_fail():
            assert 1 == 2, "always broken"
        """,
    "test_b.py": """
        import faulthandler, os, time
        MODE = os.environ.get("CRASH_MODE", "")
        def test_b_crash():
            if MODE == "exit":
                os._exit(1)
            if MODE == "segv":
                faulthandler._sigsegv()
            if MODE == "sleep":
                time.sleep(30)
        def test_b1():
            pass
        def test_b2():
            pass
        def test_b3():
            pass
        """,
    "test_c.py": """
        def test_c1():
            pass
        def test_c2():
            pass
        def test_c_fail():
            assert 0, "broken too, and never reached by a run that dies in test_b"
        """,
}
REACHED = {  # what every dying run finished before test_b_crash, in order
    "test_a.py::test_a1": "passed",
    "test_a.py::test_a2": "passed",
    "test_a.py::test_a3": "passed",
    "test_a.py::test_a4": "passed",
    "test_a.py::test_a_fail": "failed",
}
CRASHER = "test_b.py::test_b_crash"
NOT_REACHED = [
    CRASHER,
    "test_b.py::test_b1",
    "test_b.py::test_b2",
    "test_b.py::test_b3",
    "test_c.py::test_c1",
    "test_c.py::test_c2",
    "test_c.py::test_c_fail",
]
ALL = [*REACHED, *NOT_REACHED]
FAILING = ["test_a.py::test_a_fail", "test_c.py::test_c_fail"]
# Plugins the scenarios do not need: no random order, and no 0.5 s of hypothesis per process.
QUIET = ("-p", "no:randomly", "-p", "no:hypothesispytest")
ARGS = ("--agent-id", "1", *QUIET)


@dataclass(frozen=True)
class Expect:
    mode: str  # CRASH_MODE for test_b_crash
    signal: int | None  # sent from outside once the first tests are recorded
    status: str  # what `llmharness summary --json RUN` and `history --json` say
    returncode: int  # pytest's own exit code for this death
    plain: bool  # also run with -p no:llmharness and compare the exit code


KINDS = {
    "os_exit": Expect("exit", None, "incomplete", 1, True),
    "segfault": Expect("segv", None, "incomplete", -signal.SIGSEGV, True),
    # Recorded as interrupted, then ended by the signal, as pytest alone would be.
    "sigterm": Expect("sleep", signal.SIGTERM, "interrupted", -signal.SIGTERM, False),
    "sighup": Expect("sleep", signal.SIGHUP, "interrupted", -signal.SIGHUP, False),
    "sigkill": Expect("sleep", signal.SIGKILL, "incomplete", -signal.SIGKILL, False),
    "sigint": Expect("sleep", signal.SIGINT, "interrupted", pytest.ExitCode.INTERRUPTED, False),
}
UNFINISHED = re.compile(r"did not finish|unfinished|incomplete|interrupted|crashed|killed", re.I)
PREVIOUS = re.compile(r"\b(previous|last|earlier|prior) run\b", re.I)


@dataclass(frozen=True)
class Crash:
    """A store in which a complete run `base_id` was followed by run `run_id`, which died."""

    root: Path
    base_id: str
    run_id: str
    returncode: int
    out: str
    err: str
    plain_returncode: int | None
    base_index: dict[str, Any]


def _env(mode: str = "") -> dict[str, str]:
    """The environment of a fresh pytest: none of the outer run's pytest/llmharness settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "LLMHARNESS_")) and key != "CRASH_MODE"
    }
    env["PY_COLORS"] = "0"
    if mode:
        env["CRASH_MODE"] = mode
    return env


def _default_signals() -> None:
    # A child of a shell's background job may inherit SIGINT ignored; Python then never raises
    # KeyboardInterrupt. Ctrl-C must reach pytest as it does on a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _start(root: Path, *args: str, mode: str = "") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *args],
        cwd=root,
        env=_env(mode),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,  # this process starts no threads of its own
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"pytest did not stop within {timeout}s\n{out}\n{err}")


def _runs(root: Path) -> set[str]:
    runs = root / ".llmharness" / "runs"
    return {p.name for p in runs.iterdir()} if runs.is_dir() else set()


def _result_lines(root: Path, run_id: str) -> list[dict[str, Any]]:
    path = root / ".llmharness" / "runs" / run_id / "results.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _index(root: Path) -> dict[str, Any]:
    data = json.loads((root / ".llmharness" / "index.json").read_text(encoding="utf-8"))
    tests: dict[str, Any] = data["tests"]
    return tests


def _wait_for_results(root: Path, known: set[str], count: int, proc: subprocess.Popen[str]) -> None:
    """Poll until the new run has recorded `count` tests (it is then inside test_b_crash)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"pytest ended before it was signalled ({proc.returncode})\n{out}\n{err}")
        for run_id in _runs(root) - known:
            results = root / ".llmharness" / "runs" / run_id / "results.jsonl"
            if results.exists() and len(results.read_bytes().splitlines()) >= count:
                return
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    pytest.fail("the run never recorded its first tests")


class Crashes:
    """Each way of dying played once, lazily, on its own copy of one recorded store."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self._base: Path | None = None
        self._crashes: dict[str, Crash] = {}

    def base(self) -> Path:
        if self._base is None:
            root = self.factory.mktemp("base")
            for name, text in SUITE.items():
                (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
            out, err = _finish(_start(root, *ARGS), timeout=120)
            assert out.startswith("llmharness: FAILED 2 failed, 10 passed"), (out, err)
            self._base = root
        return self._base

    def get(self, kind: str) -> Crash:
        if kind not in self._crashes:
            self._crashes[kind] = self._crash(kind, KINDS[kind])
        return self._crashes[kind]

    def copy(self, kind: str, target: Path) -> Crash:
        """The store of `kind` copied to `target`, so that a test may change it."""
        crash = self.get(kind)
        shutil.copytree(crash.root, target, symlinks=True, dirs_exist_ok=True)
        return dataclasses.replace(crash, root=target)

    def _crash(self, kind: str, expect: Expect) -> Crash:
        base = self.base()
        root = self.factory.mktemp(kind)
        shutil.copytree(base, root, symlinks=True, dirs_exist_ok=True)
        (base_id,) = _runs(root)
        base_index = _index(root)
        proc = _start(root, *ARGS, mode=expect.mode)
        if expect.signal is not None:
            _wait_for_results(root, {base_id}, len(REACHED), proc)
            time.sleep(0.2)  # let it enter test_b_crash's sleep
            proc.send_signal(expect.signal)
        out, err = _finish(proc)
        (run_id,) = _runs(root) - {base_id}
        plain = None
        if expect.plain:
            without = _start(root, "-p", "no:llmharness", *QUIET, mode=expect.mode)
            _finish(without)
            plain = without.returncode
            assert _runs(root) == {base_id, run_id}, "-p no:llmharness recorded a run"
        return Crash(root, base_id, run_id, proc.returncode, out, err, plain, base_index)


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> Crashes:
    return Crashes(tmp_path_factory)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs see no llmharness settings of the outer run's environment."""
    for key in list(os.environ):
        if key.startswith("LLMHARNESS_") or key == "CRASH_MODE":
            monkeypatch.delenv(key)


def _assert_no_traceback_from_llmharness(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text
    assert "INTERNALERROR" not in text, text
    assert "llmharness: internal error" not in text, text
    # A segfault's faulthandler dump is pytest's own; llmharness must not be on its stack.
    frames = [line for line in text.splitlines() if line.lstrip().startswith("File ")]
    assert not [line for line in frames if "/llmharness/" in line], text


def _mentions_unfinished(lines: list[str], run_id: str) -> bool:
    return any(
        UNFINISHED.search(line) and (run_id in line or PREVIOUS.search(line)) for line in lines
    )


@dataclass(frozen=True)
class Cli:
    """What one `llmharness` command printed, and its exit code."""

    ret: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    def json(self) -> Any:
        assert self.ret == 0, self.err
        return json.loads(self.out)


def _cli(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> Cli:
    """The CLI in this process (a CLI process costs a second on a busy machine)."""
    capsys.readouterr()
    try:
        ret = cli.main(["--dir", str(root / ".llmharness"), *args])
    except SystemExit as exc:  # argparse's own exits
        ret = int(exc.code or 0)
    out, err = capsys.readouterr()
    return Cli(ret, out, err)


@pytest.mark.parametrize("kind", list(KINDS))
def test_run_that_dies_keeps_its_results_and_is_marked_unfinished(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], crashes: Crashes, kind: str
) -> None:
    expect = KINDS[kind]
    crash = crashes.copy(kind, pytester.path)
    # The exit code is pytest's own: the same as without llmharness.
    assert crash.returncode == expect.returncode, (crash.out, crash.err)
    if expect.plain:
        assert crash.plain_returncode == crash.returncode
    _assert_no_traceback_from_llmharness(crash.out + crash.err)

    # What the run did before it died is on disk, written as it went.
    run_dir = crash.root / ".llmharness" / "runs" / crash.run_id
    results = _result_lines(crash.root, crash.run_id)
    assert [(r["nodeid"], r["outcome"]) for r in results] == list(REACHED.items())
    log = (run_dir / "log.txt").read_text(encoding="utf-8").splitlines()
    assert log[0].startswith(f"START run={crash.run_id} ")
    errors = [line for line in log if line.startswith("ERROR ")]
    assert len(errors) == 1
    assert errors[0].startswith("ERROR test_a.py::test_a_fail AssertionError: always broken")
    failure = results[-1]["failure_file"]
    assert "always broken" in (run_dir / failure).read_text(encoding="utf-8")

    # It is marked as not finished, by the CLI's status and by the files.
    summary = _cli(capsys, crash.root, "summary", crash.run_id, "--json").json()
    assert summary["status"] == expect.status
    assert summary["counts"]["passed"] == 4 and summary["counts"]["failed"] == 1
    history = {run["run_id"]: run for run in _cli(capsys, crash.root, "history", "--json").json()}
    assert history[crash.base_id]["status"] == "complete"
    assert history[crash.run_id]["status"] == expect.status
    ends = [line for line in log if line.startswith("END ")]
    if expect.status == "interrupted":
        assert len(ends) == 1, ends
        assert "status=interrupted" in ends[0] and "exitstatus=2" in ends[0]
        assert crash.out.startswith("llmharness: INTERRUPTED 1 failed, 4 passed"), crash.out
    else:
        assert ends == []
        assert not (run_dir / "summary.json").exists()

    # The last-known index learnt only what the run ran, and forgot nothing it did not reach.
    index = _index(crash.root)
    assert sorted(index) == sorted(ALL)
    learnt = {nodeid for nodeid, entry in index.items() if entry[1] == crash.run_id}
    assert learnt <= set(REACHED)
    for nodeid in set(ALL) - learnt:
        assert index[nodeid] == crash.base_index[nodeid]


@pytest.mark.parametrize("kind", list(KINDS))
def test_unfinished_run_is_never_a_baseline_or_a_silent_reference(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], crashes: Crashes, kind: str
) -> None:
    crash = crashes.copy(kind, pytester.path)
    status = KINDS[kind].status
    root = crash.root
    # `llmharness baseline` without a run never pins the unfinished one.
    default = _cli(capsys, root, "baseline", "--json")
    if default.ret == 0:
        assert json.loads(default.out)["run_id"] == crash.base_id
    else:
        assert default.ret == 2 and len(default.err.splitlines()) == 1, default.err
        assert crash.run_id in default.err and status in default.err
    # Named, it is refused in one line that says why, unless forced.
    named = _cli(capsys, root, "baseline", crash.run_id)
    assert named.ret == 2
    assert named.err.splitlines() == [
        f"llmharness: run {crash.run_id} is {status}, not complete: pin a complete run "
        "(or pass --force)"
    ]
    forced = _cli(capsys, root, "baseline", crash.run_id, "--force", "--json").json()
    assert forced == {"run_id": crash.run_id, "tests": len(REACHED)}

    # Diffed against by name, the diff says what it is.
    against = _cli(capsys, root, "regressions", "--against", crash.run_id, "--json").json()
    assert against["against"] == crash.run_id
    assert f"compared against run {crash.run_id}, which is {status}" in against["notes"]

    # `llmharness regressions` right away says the run did not finish, and the tests it did not
    # reach are neither fixed nor removed.
    text = _cli(capsys, root, "regressions")
    assert text.ret == 0, text.err
    assert _mentions_unfinished(text.lines, crash.run_id), text.lines
    diff = _cli(capsys, root, "regressions", "--json").json()
    assert diff["fixed"] == []
    if status == "interrupted":  # its own diff: what it ran, the rest not run
        assert diff["run_id"] == crash.run_id
        assert diff["new_failures"] == [] and diff["new_tests_failing"] == []
        assert [item["nodeid"] for item in diff["still_failing"]] == ["test_a.py::test_a_fail"]
        assert diff["compared"] == len(REACHED)
        assert diff["not_run"] == len(NOT_REACHED)
        assert diff["unfinished"]["status"] == "interrupted"
        # Nothing new failed in what it ran, but the CI gate cannot vouch for the rest.
        assert _cli(capsys, root, "regressions", "--check").ret == 1
    else:  # it has no diff of its own: the latest finished run is still the one before it
        assert diff["run_id"] == crash.base_id
        assert diff["unfinished"] is None
        # Named and diffed against the run before, it is unfinished, with no count it never
        # wrote, and the gate fails on it.
        named = _cli(capsys, root, "regressions", crash.run_id, "--against", crash.base_id)
        assert named.ret == 0, named.err
        args = ("regressions", crash.run_id, "--against", crash.base_id, "--json")
        assert _cli(capsys, root, *args).json()["unfinished"] == {
            "status": status,
            "not_reached": None,
        }
        assert _cli(capsys, root, *args[:-1], "--check").ret == 1


@pytest.mark.parametrize("kind", list(KINDS))
def test_next_run_says_the_previous_run_did_not_finish(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], crashes: Crashes, kind: str
) -> None:
    crash = crashes.copy(kind, pytester.path)
    result = pytester.runpytest(*ARGS)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["llmharness: FAILED 2 failed, 10 passed in *"])
    _assert_no_traceback_from_llmharness(result.stdout.str() + result.stderr.str())

    # The next run is diffed against what was really known: nothing fixed, removed or broken.
    diff = _cli(capsys, crash.root, "regressions", "--json").json()
    assert diff["run_id"] not in {crash.base_id, crash.run_id}
    assert diff["new_failures"] == [] and diff["fixed"] == [] and diff["new_tests_failing"] == []
    assert sorted(item["nodeid"] for item in diff["still_failing"]) == FAILING
    assert diff["known_before"] == len(ALL) and diff["compared"] == len(ALL)
    assert diff["not_run"] == 0 and diff["new_tests"] == 0
    summary = _cli(capsys, crash.root, "summary", crash.run_id, "--json").json()
    assert summary["status"] == KINDS[kind].status

    # The next run's terminal and `llmharness regressions` say the run before did not finish,
    # and neither presents the unfinished run as what the next one was compared with.
    text = _cli(capsys, crash.root, "regressions")
    promises = {
        "pytest output names the unfinished run": _mentions_unfinished(
            result.outlines, crash.run_id
        ),
        "llmharness regressions names it": _mentions_unfinished(text.lines, crash.run_id),
        "the diff is not labelled as against it": diff["against"] != crash.run_id,
    }
    assert promises == dict.fromkeys(promises, True), (result.outlines, text.lines)


def test_xdist_worker_crash_counts_the_test_as_failed(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], crashes: Crashes
) -> None:
    root = pytester.path
    shutil.copytree(crashes.base(), root, symlinks=True, dirs_exist_ok=True)
    (base_id,) = _runs(root)
    # pytest's own output kept (--no-compact), to compare its counts with the record's.
    run = _start(root, *ARGS, "--no-compact", "-n", "2", mode="exit")
    out, err = _finish(run, timeout=120)

    # xdist replaces the dead worker and runs the rest; pytest counts the test as failed.
    assert re.search(rf"worker 'gw\d+' crashed while running '{CRASHER}'", out), out
    counts = re.search(r"^=* (\d+) failed, (\d+) passed in ", out, re.M)
    assert counts is not None, out
    assert (int(counts[1]), int(counts[2])) == (3, len(ALL) - 3)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, (out, err)
    _assert_no_traceback_from_llmharness(out + err)

    (run_id,) = _runs(root) - {base_id}
    outcomes = {r["nodeid"]: r["outcome"] for r in _result_lines(root, run_id)}
    others = {nodeid: outcome for nodeid, outcome in outcomes.items() if nodeid != CRASHER}
    assert others == {n: "failed" if n in FAILING else "passed" for n in ALL if n != CRASHER}
    # So must the record: the test whose worker died is failed, with one ERROR line saying so.
    assert outcomes.get(CRASHER) == "failed", outcomes
    summary = _cli(capsys, root, "summary", run_id, "--json").json()
    assert (summary["counts"]["failed"], summary["counts"]["passed"]) == (3, len(ALL) - 3)
    log = (root / ".llmharness" / "runs" / run_id / "log.txt").read_text(encoding="utf-8")
    crashed = [line for line in log.splitlines() if line.startswith(f"ERROR {CRASHER} ")]
    assert len(crashed) == 1 and "crashed" in crashed[0], log
    # It passed before: a crash is a new failure, which the CI gate must catch.
    diff = _cli(capsys, root, "regressions", "--json").json()
    assert [item["nodeid"] for item in diff["new_failures"]] == [CRASHER]
    assert _cli(capsys, root, "regressions", "--check").ret == 1


@pytest.mark.parametrize("kind", ["segfault", "os_exit", "sigkill"])
def test_the_test_a_dead_run_was_running_is_named(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], crashes: Crashes, kind: str
) -> None:
    crash = crashes.copy(kind, pytester.path)
    run_dir = crash.root / ".llmharness" / "runs" / crash.run_id
    # Compact mode: at most 8 lines, and Python's fault handler dump went to the run folder.
    assert len([line for line in crash.out.splitlines() if line.strip()]) <= 8, crash.out
    assert "Fatal Python error" not in crash.out + crash.err
    if kind == "segfault":
        what = f"crashed while running {CRASHER}: Fatal Python error: Segmentation fault"
        dump = (run_dir / "crash.txt").read_text(encoding="utf-8")
        assert "Fatal Python error: Segmentation fault" in dump
        assert "line 8 in test_b_crash" in dump  # the dump shows the test's own frame
    else:
        what = f"ended while running {CRASHER} (the process exited, was killed or crashed)"
    # `llmharness summary RUN` says it in one line, and so does the latest run's summary.
    summary = _cli(capsys, crash.root, "summary", crash.run_id)
    assert f"note: run {crash.run_id} {what}" in summary.lines, summary.lines
    latest = _cli(capsys, crash.root, "summary")
    assert f"note: run {crash.run_id} {what}" in latest.lines, latest.lines
    # The next run names it among its few lines.
    result = pytester.runpytest(*ARGS)
    result.stdout.fnmatch_lines(
        [f"previous run {crash.run_id} {what} (llmharness summary {crash.run_id})"]
    )
    # A run that finishes keeps no crash record.
    next_id = json.loads((crash.root / ".llmharness/last/summary.json").read_text())["run_id"]
    assert not (crash.root / ".llmharness" / "runs" / next_id / "crash.txt").exists()
