"""Reliability: hostile test output never breaks the record, the terminal or the run.

Every scenario runs real pytest processes twice, with llmharness (compact output) and with
`-p no:llmharness`, and checks the promises: the exit code is pytest's own; the log has exactly
one `ERROR ` line (as `grep -c '^ERROR '` counts them) per failed or errored test, each parsing
back to the exact node id pytest reported; nothing a test prints can forge or split a log line;
failure files stay bounded; the terminal gets a few lines; memory stays bounded.

The true failing node ids come from a tiny plugin (`llmh_truth`) loaded into both runs, which
writes every node id whose setup, call, teardown or collection report failed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llmharness.reporting import parse_error_line

_RUN_NUMBER = itertools.count()
FORGED_PREFIX = "ERROR x::y"  # how every forged line in these suites starts
MAX_REASON = 300  # max_reason_chars default
MAX_OUTPUT = 65536  # max_output_bytes default: captured output kept per failure section
MAX_TRACEBACK = 256 * 1024  # llmharness.recorder._MAX_TRACEBACK (characters)
FAILURE_FILE_LIMIT = 1_000_000
MAX_LINES = 8
# Line breaks and controls that must never appear raw in a log line or on the terminal.
_RAW_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

TRUTH_PLUGIN = """
import json

FAILING = set()


def pytest_collectreport(report):
    if report.failed:
        FAILING.add(report.nodeid)


def pytest_runtest_logreport(report):
    if report.failed:
        FAILING.add(report.nodeid)


def pytest_sessionfinish(session):
    path = session.config.rootpath / "llmh_truth.json"
    path.write_text(json.dumps(sorted(FAILING)), encoding="ascii")
"""


@dataclass
class Run:
    """One pytest process: exit code, terminal (test payload lines dropped), peak memory."""

    ret: int
    terminal: list[str]
    payload_lines: int
    maxrss_mb: float
    truth: set[str]


def _setup(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(llmh_truth=TRUTH_PLUGIN)


def _env(pytester: pytest.Pytester) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMHARNESS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pytester.path), env.get("PYTHONPATH")]))
    return env


def _spawn(pytester: pytest.Pytester, argv: list[str], name: str) -> tuple[int, Path, Path, int]:
    """Run argv in pytester's folder; (exit code, stdout file, stderr file, peak RSS in KiB)."""
    io_dir = pytester.path.parent / f"{pytester.path.name}-io"
    io_dir.mkdir(exist_ok=True)
    out_path, err_path = io_dir / f"{name}.out", io_dir / f"{name}.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=pytester.path,
            env=_env(pytester),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        watchdog = threading.Timer(180, proc.kill)
        watchdog.start()
        try:
            # wait4 gives this child's own peak RSS (KiB on Linux), unlike RUSAGE_CHILDREN,
            # which is the maximum over every child this process ever waited for.
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out_path, err_path, usage.ru_maxrss


def _pytest(pytester: pytest.Pytester, *args: str, plugin: bool = True) -> Run:
    """pytest in a subprocess; lines containing PAYLOAD (the tests' own output) are dropped."""
    name = f"{'harness' if plugin else 'plain'}-{next(_RUN_NUMBER)}"
    extra = ["--agent-id", "faults"] if plugin else ["-p", "no:llmharness"]
    truth_file = pytester.path / "llmh_truth.json"
    truth_file.unlink(missing_ok=True)
    # hypothesis's plugin (a dev dependency, irrelevant here) costs 2 s of CPU per process.
    argv = [sys.executable, "-m", "pytest", "-p", "no:hypothesispytest", "-p", "llmh_truth"]
    ret, out_path, err_path, maxrss = _spawn(pytester, [*argv, *extra, *args], name)
    terminal: list[str] = []
    payload = 0
    for path in (out_path, err_path):
        with path.open("rb") as handle:
            for raw in handle:
                if b"PAYLOAD" in raw:
                    payload += 1
                else:
                    terminal.append(raw.decode("utf-8", "replace").rstrip("\n"))
        path.unlink()
    truth = set(json.loads(truth_file.read_text(encoding="ascii")))
    return Run(ret, terminal, payload, maxrss / 1024, truth)


def _both(pytester: pytest.Pytester, *args: str) -> tuple[Run, Run]:
    """The same run with llmharness and with `-p no:llmharness`: same exit code, same failures."""
    harness = _pytest(pytester, *args)
    plain = _pytest(pytester, *args, plugin=False)
    assert harness.ret == plain.ret, (harness.terminal, plain.terminal[-20:])
    assert harness.truth == plain.truth
    return harness, plain


def _cli_json(pytester: pytest.Pytester, *args: str) -> Any:
    """The installed CLI (`python -m llmharness VERB --json`), its output read as strict UTF-8."""
    argv = [sys.executable, "-m", "llmharness", *args, "--json"]
    proc = subprocess.run(
        argv, cwd=pytester.path, env=_env(pytester), capture_output=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.decode("utf-8"))


def _check_terminal(run: Run) -> None:
    """Compact output: at most 8 short lines, nothing raw, no traceback, no forged line."""
    lines = [line for line in run.terminal if line.strip()]
    assert 1 <= len(lines) <= MAX_LINES, lines
    assert lines[0].startswith("llmharness: "), lines
    assert all(len(line) <= 200 for line in lines), lines
    text = "\n".join(run.terminal)
    assert "Traceback" not in text and "INTERNALERROR" not in text, text
    assert "internal error" not in text, text
    assert not any(line.startswith(FORGED_PREFIX) for line in run.terminal), text
    assert not _RAW_CONTROL.search(text.replace("\n", "")), text


def _log_lines(pytester: pytest.Pytester) -> list[str]:
    """log.txt's lines as grep sees them: split on newline bytes only; strict UTF-8."""
    text = (pytester.path / ".llmharness" / "last" / "log.txt").read_bytes().decode("utf-8")
    lines = text.split("\n")
    assert lines.pop() == "", "log.txt does not end with a newline"
    # No other character that some reader would take for a line break (CR, VT, FF, NEL, LS...).
    assert text.splitlines() == lines
    return lines


def _check_record(pytester: pytest.Pytester, run: Run) -> dict[str, str]:
    """The run record's promises for the run just made; returns {nodeid: reason}."""
    failing = run.truth
    lines = _log_lines(pytester)
    for line in lines:
        assert not _RAW_CONTROL.search(line), line
        assert not line.startswith(FORGED_PREFIX), line
    errors = [line for line in lines if line.startswith("ERROR ")]
    # grep -c '^ERROR ' equals the number of failed or errored tests...
    assert len(errors) == len(failing), (errors, failing)
    # ... and summary --json counts them the same way; the JSON verbs cope with what was recorded.
    summary = _cli_json(pytester, "summary")
    assert summary["counts"]["failed"] + summary["counts"]["error"] == len(failing)
    regressions = _cli_json(pytester, "regressions")
    assert len(regressions["new_tests_failing"]) == len(failing - _collection_errors(summary))
    # Each line parses back to the exact node id pytest reported, once.
    parsed = [parse_error_line(line) for line in errors]
    reasons = dict(parsed)
    assert len(reasons) == len(parsed)
    assert set(reasons) == failing
    for nodeid, reason in reasons.items():
        assert reason, nodeid
        assert len(reason) <= MAX_REASON + len("…[+1000000000 chars]"), (nodeid, len(reason))
    # results.jsonl agrees, and every failure has a bounded, readable failure file.
    run_dir = (pytester.path / ".llmharness" / "last").resolve()
    results = [
        json.loads(line)
        for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    collection = _collection_errors(summary)
    failing_results = [r for r in results if r["outcome"] in {"failed", "error"}]
    assert {r["nodeid"] for r in failing_results} | collection == failing
    assert len(failing_results) + len(collection) == len(failing)
    # Reasons are cut everywhere they are kept, not only on ERROR lines: a 1 MB message must
    # not make results.jsonl or summary.json (which the CLI prints) megabytes long.
    for result in results:
        reason = result.get("reason") or ""
        assert len(reason) <= MAX_REASON + len("…[+1000000000 chars]"), (
            result["nodeid"],
            len(reason),
        )
    assert (run_dir / "summary.json").stat().st_size < 256 * 1024
    for result in failing_results:
        path = (run_dir / result["failure_file"]).resolve()
        assert path.parent == run_dir / "failures", result
        assert path.stat().st_size < FAILURE_FILE_LIMIT, (result["nodeid"], path.stat())
        path.read_bytes().decode("utf-8")  # strict: readable by any tool
    return reasons


def _collection_errors(summary: dict[str, Any]) -> set[str]:
    return {error["nodeid"] for error in summary["collection_errors"]}


def _failure_text(pytester: pytest.Pytester, nodeid: str) -> str:
    run_dir = (pytester.path / ".llmharness" / "last").resolve()
    for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines():
        result = json.loads(line)
        if result["nodeid"] == nodeid:
            return (run_dir / result["failure_file"]).read_text(encoding="utf-8")
    raise AssertionError(f"{nodeid} not in results.jsonl")


def _section(text: str, title: str) -> str:
    head = f"\n=== {title} ===\n"
    assert head in text, (title, text[:2000])
    return text.split(head, 1)[1].split("\n=== ", 1)[0]


# -- 50 MB of captured output ---------------------------------------------------------------

FLOOD = """
import sys


def test_floods_output():
    sys.stdout.write("PAYLOAD HEAD-MARKER\\n")
    chunk = ("PAYLOAD " + "x" * 1015 + "\\n") * 1024  # 1 MiB
    for _ in range(50):
        sys.stdout.write(chunk)
    sys.stdout.write("PAYLOAD TAIL-MARKER\\n")
    sys.stdout.flush()
    sys.stderr.write(("PAYLOAD " + "e" * 1015 + "\\n") * 1024 * 5)
    sys.stderr.flush()
    assert False, "flooded"


def test_quiet():
    pass
"""


@pytest.mark.parametrize("capture", ["fd", "no"], ids=["captured", "dash-s"])
def test_fifty_megabytes_of_output_from_one_failing_test(
    pytester: pytest.Pytester, capture: str
) -> None:
    _setup(pytester)
    pytester.makepyfile(test_flood=FLOOD)
    harness, plain = _both(pytester, f"--capture={capture}")
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_terminal(harness)
    reasons = _check_record(pytester, harness)
    assert list(reasons) == ["test_flood.py::test_floods_output"]
    assert reasons["test_flood.py::test_floods_output"].startswith("AssertionError: flooded")
    text = _failure_text(pytester, "test_flood.py::test_floods_output")
    if capture == "fd":
        # Head and tail of each section are kept, the middle cut with a marker.
        stdout = _section(text, "Captured stdout call")
        assert stdout.startswith("PAYLOAD HEAD-MARKER\n")
        assert stdout.rstrip("\n").endswith("PAYLOAD TAIL-MARKER")
        assert "characters cut here by llmharness" in stdout
        assert len(stdout.encode()) <= MAX_OUTPUT + 200
        stderr = _section(text, "Captured stderr call")
        assert len(stderr.encode()) <= MAX_OUTPUT + 200
        # The measurement is real: pytest itself holds the 50 MB it captured.
        assert plain.maxrss_mb > 50, plain.maxrss_mb
    else:
        # The tests' own output reaches the terminal untouched.
        assert harness.payload_lines == 50 * 1024 + 2 + 5 * 1024
    assert len(text.encode()) <= 2 * (MAX_OUTPUT + 200) + MAX_TRACEBACK + 4096
    # llmharness keeps bounded slices, never another copy of the output.
    assert harness.maxrss_mb - plain.maxrss_mb < 60, (harness.maxrss_mb, plain.maxrss_mb)


# -- huge messages, deep recursion ----------------------------------------------------------

HUGE = """
import pytest


def test_huge_assertion_message():
    assert False, "M" * 1_000_000


def test_huge_single_line_exception():
    raise RuntimeError("R" * 1_000_000)


def test_huge_multiline_message():
    raise ValueError("\\n".join(f"line {i} " + "m" * 100 for i in range(10_000)))


def test_huge_message_then_huge_teardown(boom):
    raise KeyError("K" * 1_000_000)


@pytest.fixture
def boom():
    yield
    raise OSError("T" * 1_000_000)
"""


def test_one_megabyte_failure_messages(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_huge=HUGE)
    harness, _ = _both(pytester)
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_terminal(harness)
    reasons = _check_record(pytester, harness)
    assert len(reasons) == 4
    starts = {
        "test_huge.py::test_huge_assertion_message": "AssertionError: MMMM",
        "test_huge.py::test_huge_single_line_exception": "RuntimeError: RRRR",
        "test_huge.py::test_huge_multiline_message": "ValueError: line 0 mmm",
        "test_huge.py::test_huge_message_then_huge_teardown": "KeyError: 'KKKK",
    }
    for nodeid, start in starts.items():
        assert reasons[nodeid].startswith(start), reasons[nodeid][:80]
    for nodeid in starts.keys() - {"test_huge.py::test_huge_multiline_message"}:
        assert re.search(r"…\[\+\d+ chars\]$", reasons[nodeid]), reasons[nodeid][-80:]
    for line in _log_lines(pytester):
        assert len(line) < 600, line[:100]


RECURSION = """
import pytest


def recurse(n):
    return recurse(n + 1)


def test_deep_recursion():
    recurse(0)


class Loop:
    def __repr__(self):
        return repr(self)


def test_recursive_repr_in_assertion():
    assert Loop() == 1


def test_deeply_nested_value():
    value = []
    for _ in range(100_000):
        value = [value]
    assert value == 1


class StrFails(Exception):
    def __str__(self):
        raise RuntimeError("str() of this exception fails")


def test_exception_whose_str_raises():
    raise StrFails()


@pytest.fixture
def recursing_teardown():
    yield
    recurse(0)


def test_recursion_in_call_and_teardown(recursing_teardown):
    recurse(0)


def test_passes():
    pass
"""


def test_deep_recursion_failures(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_recursion=RECURSION)
    harness, _ = _both(pytester)
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_terminal(harness)
    reasons = _check_record(pytester, harness)
    assert len(reasons) == 5
    assert reasons["test_recursion.py::test_deep_recursion"].startswith("RecursionError")
    both = reasons["test_recursion.py::test_recursion_in_call_and_teardown"]
    assert both.startswith("RecursionError") and "teardown: RecursionError" in both


# -- control characters and forged lines ----------------------------------------------------

FORGERY = """
import sys
import warnings

import pytest

FORGED = "ERROR x::y fake"
PREFIXES = [
    "\\n", "\\r", "\\r\\n", "\\n\\n", "\\x00", "\\x0b", "\\x0c", "\\x1c", "\\x1d", "\\x1e",
    "\\x85", "\\u2028", "\\u2029", "\\x1b[2K\\x1b[1G", "\\x1b]0;title\\x07", "\\x1b[31m",
    "ok\\r\\x1b[A",
]


@pytest.mark.parametrize("prefix", PREFIXES, ids=[f"p{i}" for i in range(len(PREFIXES))])
def test_exception_message(prefix):
    raise ValueError("first" + prefix + FORGED + prefix + FORGED)


@pytest.mark.parametrize("prefix", PREFIXES, ids=[f"p{i}" for i in range(len(PREFIXES))])
def test_assert_message(prefix):
    assert False, prefix + FORGED


def test_message_is_only_forgery():
    raise ValueError("\\n" + FORGED)


def test_exception_type_name_is_forgery():
    raise type("Forge\\n" + FORGED, (Exception,), {})("\\r" + FORGED)


def test_fail_without_traceback():
    pytest.fail("\\n" + FORGED + "\\r\\n" + FORGED, pytrace=False)


@pytest.mark.xfail(strict=True, reason="\\n" + FORGED)
def test_strict_xpass():
    pass


def test_forgery_on_stdout_and_stderr():
    print("\\n" + FORGED + "\\r" + FORGED)
    sys.stderr.write("\\n" + FORGED + "\\n")
    assert 0


@pytest.fixture
def forged_setup():
    raise RuntimeError("\\n" + FORGED)


def test_setup_error(forged_setup):
    pass


@pytest.fixture
def forged_teardown():
    yield
    raise RuntimeError("\\r\\n" + FORGED)


def test_call_and_teardown_fail(forged_teardown):
    raise ValueError("\\n" + FORGED)


def test_only_teardown_fails(forged_teardown):
    pass


def test_skipped_with_forgery():
    pytest.skip("\\n" + FORGED)


@pytest.mark.xfail(reason="\\n" + FORGED)
def test_xfailed_with_forgery():
    raise ValueError("\\n" + FORGED)


def test_passes_with_forged_warning_and_output():
    warnings.warn("\\n" + FORGED)
    print("\\n" + FORGED)
"""


def test_control_characters_and_forged_error_lines(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(
        test_forgery=FORGERY,
        test_forged_import='raise ImportError("\\n" + "ERROR x::y fake" + "\\r\\x1b[2J\\x00")',
    )
    harness, _ = _both(pytester, "--continue-on-collection-errors")
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_terminal(harness)
    reasons = _check_record(pytester, harness)
    # 17 + 17 parametrized, 5 single failures, 3 with fixtures, 1 collection error.
    assert len(reasons) == 17 + 17 + 5 + 3 + 1
    assert "test_forged_import.py" in reasons
    # The reason names the exception type, whatever its message starts with.
    assert reasons["test_forged_import.py"].startswith("ImportError"), reasons[
        "test_forged_import.py"
    ]
    both = reasons["test_forgery.py::test_call_and_teardown_fail"]
    assert both.startswith("ValueError") and "teardown: RuntimeError" in both


# -- bytes that are not UTF-8, lone surrogates ----------------------------------------------

UNDECODABLE = """
import os
import sys

import pytest

BAD = b"PAYLOAD \\xff\\xfe\\x80 raw \\xc3\\x28 \\xed\\xa0\\x80 \\xf8\\x88\\x80\\x80\\x80 end\\n"


def test_bytes_to_stdout_buffer():
    sys.stdout.buffer.write(BAD)
    sys.stdout.flush()
    assert 0, "after bytes"


def test_bytes_to_stderr_buffer():
    sys.stderr.buffer.write(BAD)
    sys.stderr.flush()
    raise ValueError("stderr bytes")


def test_bytes_to_raw_fds():
    os.write(1, BAD)
    os.write(2, BAD)
    assert 0


def test_bytes_then_passes():
    sys.stdout.buffer.write(BAD)
    sys.stdout.flush()


def test_bytes_in_message():
    raise ValueError(BAD)


def test_surrogateescaped_message():
    raise ValueError(BAD.decode("utf-8", "surrogateescape"))


def test_lone_surrogate_in_assert_message():
    assert 0, "bad \\udcff here"


def test_lone_surrogates_in_exception():
    raise RuntimeError("\\ud800 high and low \\udfff")


def test_lone_surrogate_in_exception_type():
    raise type("Sur\\udcffrogate", (Exception,), {})("x")


@pytest.fixture
def undecodable_teardown():
    yield
    sys.stdout.buffer.write(BAD)
    sys.stdout.flush()
    raise OSError("teardown \\udcff")


def test_teardown_with_surrogate(undecodable_teardown):
    pass
"""


@pytest.mark.parametrize("capture", ["fd", "no"], ids=["captured", "dash-s"])
def test_non_utf8_bytes_and_lone_surrogates(pytester: pytest.Pytester, capture: str) -> None:
    _setup(pytester)
    pytester.makepyfile(test_undecodable=UNDECODABLE)
    harness, _ = _both(pytester, f"--capture={capture}")
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_terminal(harness)
    reasons = _check_record(pytester, harness)
    assert len(reasons) == 9
    assert "test_undecodable.py::test_bytes_then_passes" not in reasons
    assert "\\udcff" in reasons["test_undecodable.py::test_lone_surrogate_in_assert_message"]
    surrogates = reasons["test_undecodable.py::test_lone_surrogates_in_exception"]
    assert "\\ud800" in surrogates and "\\udfff" in surrogates
    if capture == "fd":
        text = _failure_text(pytester, "test_undecodable.py::test_bytes_to_stdout_buffer")
        assert "PAYLOAD" in _section(text, "Captured stdout call")


def test_captured_output_bound_is_in_bytes_for_multibyte_text(pytester: pytest.Pytester) -> None:
    """max_output_bytes is a byte bound: 3-byte characters must not triple the kept output."""
    _setup(pytester)
    pytester.makepyfile(
        test_wide="""
        def test_wide_output():
            print("中" * 1_000_000)
            assert 0
        """
    )
    harness = _pytest(pytester)
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_record(pytester, harness)
    text = _failure_text(pytester, "test_wide.py::test_wide_output")
    stdout = _section(text, "Captured stdout call")
    assert "characters cut here by llmharness" in stdout
    assert len(stdout.encode()) <= MAX_OUTPUT + 200, len(stdout.encode())


# -- hostile node ids -----------------------------------------------------------------------

IDS = [
    "with space",
    'dq"uote',
    "sq'uote",
    "hash#1",
    "back\\slash",
    "x::y",
    "a::b::c[d]",
    "中文テスト",
    "L" * 300,
    "[",
    "]]",
    " lead",
    "trail ",
    "tab\t",
    "nl\n",
    "ERROR x::y fake",
]

NODE_IDS = f"""
import pytest

IDS = {IDS!r}


@pytest.mark.parametrize("v", range(len(IDS)), ids=IDS)
def test_param(v):
    assert v < 0


@pytest.mark.parametrize("v", [0, 1], ids=["ok pass", "ok#pass"])
def test_passes(v):
    pass


@pytest.fixture
def broken():
    raise RuntimeError("setup fails")


@pytest.mark.parametrize("v", [0, 1], ids=["err space", "err::colon"])
def test_setup_error(broken, v):
    pass


class TestClass:
    @pytest.mark.parametrize("v", [0], ids=['in class \\\\ q"'])
    def test_method(self, v):
        assert 0


def test_中文名称():
    assert 0
"""

# Characters that pytest only keeps raw in ids with its escaping turned off.
RAW_IDS = [
    "nl\n",
    "cr\r",
    "tab\t",
    "nul\x00",
    "esc\x1b[31mred",
    "del\x7f",
    "nel\x85",
    "ls\u2028",
    "nbsp\xa0",
    "ideographic\u3000space",
    "fs\x1c",
    "zero\u200bwidth",
    "rtl\u202eoverride",
    "bom\ufeff",
    "sur\udcffrogate",
    "中文テスト",
    "ERROR x::y fake\nERROR x::y fake",
]


def _bare_allowed(nodeid: str) -> bool:
    """The README's rule: bare when only printable non-space characters other than `"` and `\\`."""
    return nodeid.isprintable() and not any(char.isspace() or char in '"\\' for char in nodeid)


def _check_quoting(pytester: pytest.Pytester) -> None:
    wrong = {}
    for line in _log_lines(pytester):
        if line.startswith("ERROR "):
            nodeid, _ = parse_error_line(line)
            bare = not line.startswith('ERROR "')
            if bare != _bare_allowed(nodeid):
                wrong[ascii(nodeid)] = ascii(line[:100])
    assert not wrong, "node ids quoted against the rule:\n" + "\n".join(wrong.values())


def test_hostile_node_ids(pytester: pytest.Pytester) -> None:
    _setup(pytester)
    pytester.makepyfile(test_ids=NODE_IDS)
    pytester.path.joinpath("sub dir").mkdir()
    pytester.path.joinpath("sub dir", "test_in #dir.py").write_text(
        "def test_x():\n    assert 0\n", encoding="utf-8"
    )
    pytester.path.joinpath("test_中文.py").write_text(
        "def test_中文():\n    assert 0\n", encoding="utf-8"
    )
    harness, _ = _both(pytester)
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_terminal(harness)
    reasons = _check_record(pytester, harness)
    assert len(reasons) == len(IDS) + 2 + 1 + 1 + 2
    for nodeid in (
        "test_ids.py::test_param[with space]",
        'test_ids.py::test_param[dq"uote]',
        "test_ids.py::test_param[x::y]",
        "test_ids.py::test_param[ERROR x::y fake]",
        "test_ids.py::test_param[" + "L" * 300 + "]",
        "test_ids.py::test_setup_error[err::colon]",
        "test_ids.py::test_中文名称",
        "sub dir/test_in #dir.py::test_x",
        "test_中文.py::test_中文",
    ):
        assert nodeid in reasons, nodeid
    assert reasons["test_ids.py::test_setup_error[err space]"].startswith("RuntimeError")
    _check_quoting(pytester)


def test_raw_node_ids_with_escaping_disabled(pytester: pytest.Pytester) -> None:
    """With pytest's id escaping off, ids hold raw controls, line breaks and lone surrogates."""
    _setup(pytester)
    pytester.makeini(
        "[pytest]\ndisable_test_id_escaping_and_forfeit_all_rights_to_community_support = true\n"
    )
    pytester.makepyfile(
        test_raw=f"""
        import pytest

        IDS = {RAW_IDS!r}


        @pytest.mark.parametrize("v", range(len(IDS)), ids=IDS)
        def test_param(v):
            assert v < 0
        """
    )
    # pytest's own cache plugin cannot write a lone surrogate (UnicodeEncodeError at exit).
    harness, _ = _both(pytester, "-p", "no:cacheprovider")
    assert harness.ret == pytest.ExitCode.TESTS_FAILED
    _check_terminal(harness)
    # Quoting first: it names every id written the wrong way, parse-back or not.
    _check_quoting(pytester)
    reasons = _check_record(pytester, harness)
    assert len(reasons) == len(RAW_IDS)
