"""Tests that disturb the process running them: the record still lands, the exit code stands.

Each scenario is a real pytest run of a small suite in which one test disturbs its process (moves
the working directory, deletes the store or the run folder, replaces or closes the standard
streams, changes the time zone) and the others fail or pass as usual. The promises checked:

* the record lands in the right place (`.llmharness/last/summary.json` at the rootdir, with the
  right counts, and `log.txt` with the right ERROR lines), or one warning line says why not;
* the exit code is the tests' own, the same as with `-p no:llmharness`;
* no traceback comes out of llmharness.

Runs that would disturb this very process (chdir, closing streams, TZ) run in a subprocess.
"""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import cli_json, error_lines, run_cli

import llmharness
from llmharness.reporting import OUTCOMES, parse_error_line

PACKAGE_DIR = str(Path(llmharness.__file__).resolve().parent)
_RUN_ID = re.compile(r"\brun (\d{8}T\d{6}\.\d{3}-[0-9a-f]{6})\)")

# Two tests fail, two pass, whatever the disturbing test (`test_b_*`) does.
_SUITE = """
import io
import os
import shutil
import sys
import time
from pathlib import Path

def test_a_fails():
    assert 1 == 2, "failed before the disturbance"

def test_b_disturbs():
{body}

def test_c_fails():
    assert 1 == 3, "failed after the disturbance"

def test_d_passes():
    pass
"""
_FAILING = ["test_faulty.py::test_a_fails", "test_faulty.py::test_c_fails"]
# Plugins these scenarios do not involve; importing hypothesis alone costs over a second a run.
_UNRELATED = ("-p", "no:hypothesispytest", "-p", "no:xdist", "-p", "no:xdist.looponfail")


def _suite(pytester: pytest.Pytester, body: str) -> None:
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    pytester.makepyfile(test_faulty=_SUITE.format(body=indented))


def _subprocess(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A pytest run in its own process, so what its tests disturb stays there."""
    return pytester.runpytest_subprocess(*_UNRELATED, *args)


def _counts(**nonzero: int) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    counts.update(nonzero)
    return counts


def _no_llmharness_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + "\n" + result.stderr.str()
    assert PACKAGE_DIR not in text, f"a traceback through llmharness:\n{result.stderr.str()}"
    assert "llmharness: internal error" not in text


def _run_id(result: pytest.RunResult) -> str:
    """The run id printed on the compact headline."""
    found = _RUN_ID.search(result.stdout.str())
    assert found, result.outlines
    return found.group(1)


def _assert_recorded(pytester: pytest.Pytester, run_id: str | None = None) -> dict[str, Any]:
    """The latest record at the rootdir holds this suite's outcomes: 2 failed, 2 passed."""
    summary = cli_json(pytester, "summary")
    if run_id is not None:
        assert summary["run_id"] == run_id
    assert summary["counts"] == _counts(failed=2, passed=2)
    assert summary["exitstatus"] == 1
    assert (pytester.path / ".llmharness" / "last" / "summary.json").is_file()
    assert [parse_error_line(line)[0] for line in error_lines(pytester)] == _FAILING
    reasons = [parse_error_line(line)[1] for line in error_lines(pytester)]
    assert "failed before the disturbance" in reasons[0]
    assert "failed after the disturbance" in reasons[1]
    return dict(summary)


def _recorded_or_one_warning(
    pytester: pytest.Pytester, result: pytest.RunResult, run_id: str
) -> None:
    """Either the run's record is complete where it belongs, or one line says why it is not."""
    warnings = [line for line in result.outlines if line.startswith("llmharness warning")]
    if (pytester.path / ".llmharness" / "last" / "summary.json").is_file():
        summary = cli_json(pytester, "summary")
        if summary["run_id"] == run_id:
            _assert_recorded(pytester, run_id)
            assert len(warnings) <= 1, result.outlines
            return
    # No record of this run: exactly one line must say so (not one per file that failed).
    assert len(warnings) == 1, (
        f"run {run_id} left no record at {pytester.path / '.llmharness' / 'last'} "
        f"and the terminal said: {result.outlines}"
    )


# -- the working directory -----------------------------------------------------------------


def test_chdir_without_restoring_it(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _suite(pytester, f"os.chdir({str(elsewhere)!r})")
    plain = _subprocess(pytester, "-p", "no:llmharness")
    result = _subprocess(pytester, "--agent-id", "1")
    assert result.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    _no_llmharness_traceback(result)
    _assert_recorded(pytester, _run_id(result))
    assert list(elsewhere.iterdir()) == [], "llmharness wrote into the new working directory"
    result.stdout.fnmatch_lines(
        [
            "llmharness: FAILED 2 failed, 2 passed in *",
            "details: llmharness show NODEID; log: .llmharness/last/log.txt",
        ]
    )


# -- the store deleted under the run -------------------------------------------------------


def test_store_deleted_mid_run(pytester: pytest.Pytester) -> None:
    _suite(pytester, "shutil.rmtree('.llmharness')")
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    _no_llmharness_traceback(result)
    _recorded_or_one_warning(pytester, result, _run_id(result))
    # Whatever happened, the CLI answers in one line or with the record, never a traceback.
    summary = run_cli(pytester, "summary")
    assert summary.ret in (0, 2)
    assert summary.ret == 0 or len(summary.stderr.lines) == 1


def test_run_folder_deleted_mid_run(pytester: pytest.Pytester) -> None:
    _suite(
        pytester,
        """
runs = Path(".llmharness/runs")
newest = max(runs.iterdir(), key=lambda path: path.name)  # run ids sort by start time
Path("deleted.txt").write_text(newest.name)
shutil.rmtree(newest)
""",
    )
    # An earlier run, so that a stale `last` would show and be mistaken for this one.
    assert pytester.runpytest("-k", "test_d").ret == pytest.ExitCode.OK
    earlier = cli_json(pytester, "summary")["run_id"]
    result = pytester.runpytest("--agent-id", "1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    _no_llmharness_traceback(result)
    run_id = _run_id(result)
    assert (pytester.path / "deleted.txt").read_text() == run_id != earlier
    _recorded_or_one_warning(pytester, result, run_id)


# -- the standard streams ------------------------------------------------------------------


def test_stdout_and_stderr_replaced(pytester: pytest.Pytester) -> None:
    _suite(pytester, "sys.stdout = io.StringIO()\nsys.stderr = None")
    # -s: pytest does not put the streams back after the test.
    plain = _subprocess(pytester, "-s", "-p", "no:llmharness")
    result = _subprocess(pytester, "-s", "--agent-id", "1")
    assert result.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    _no_llmharness_traceback(result)
    _assert_recorded(pytester, _run_id(result))
    result.stdout.fnmatch_lines(["llmharness: FAILED 2 failed, 2 passed in *"])


_FLUSH_FAILED_AT_EXIT = 120  # Python's exit status when it cannot flush stdout at exit


@pytest.mark.parametrize(
    ("body", "capture"),
    [
        ("sys.stdout.close()", "-s"),
        ("sys.stderr.close()", "-s"),
        ("os.close(1)", "-s"),
        ("os.close(1)", "--capture=fd"),
    ],
    ids=["sys.stdout.close", "sys.stderr.close", "os.close(1)-s", "os.close(1)-capture"],
)
def test_standard_stream_closed(pytester: pytest.Pytester, body: str, capture: str) -> None:
    _suite(pytester, body)
    plain = _subprocess(pytester, capture, "-p", "no:llmharness")
    result = _subprocess(pytester, capture, "--agent-id", "1")
    assert result.ret == plain.ret
    # Some Pythons (3.11.2, Debian 12's) exit 120 when flushing the closed stdout fails again
    # at exit, whatever pytest returned; later releases keep pytest's 1.
    assert plain.ret in (pytest.ExitCode.TESTS_FAILED, _FLUSH_FAILED_AT_EXIT)
    _no_llmharness_traceback(result)
    # The terminal may be gone; the record on disk is not.
    summary = _assert_recorded(pytester)
    assert summary["status"] == "complete"


# -- the time zone -------------------------------------------------------------------------


def _utc_stamp(run_id: str) -> float:
    return calendar.timegm(time.strptime(run_id[:15], "%Y%m%dT%H%M%S"))


def test_time_zone_changed_mid_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # POSIX TZ strings (no tz database needed): "EAST-14" is UTC+14, "WEST+12" is UTC-12, so a
    # local-time stamp of the second run would sort 26 hours before the first.
    _suite(pytester, "os.environ['TZ'] = 'WEST+12'\ntime.tzset()")
    monkeypatch.setenv("TZ", "EAST-14")
    first = _subprocess(pytester, "--agent-id", "1")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    _no_llmharness_traceback(first)
    first_id = _run_id(first)
    summary = _assert_recorded(pytester, first_id)
    assert abs(_utc_stamp(first_id) - float(summary["started"])) < 2

    _suite(pytester, "os.environ['TZ'] = 'EAST-14'\ntime.tzset()\nassert 0, 'now broken'")
    monkeypatch.setenv("TZ", "WEST+12")
    second = _subprocess(pytester, "--agent-id", "1")
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    _no_llmharness_traceback(second)
    second_id = _run_id(second)
    assert second_id > first_id
    summary = cli_json(pytester, "summary")
    assert summary["run_id"] == second_id
    assert summary["counts"] == _counts(failed=3, passed=1)
    assert abs(_utc_stamp(second_id) - float(summary["started"])) < 2
    diff = cli_json(pytester, "regressions")
    assert diff["against"] == first_id
    assert [item["nodeid"] for item in diff["new_failures"]] == ["test_faulty.py::test_b_disturbs"]
    assert [run["run_id"] for run in cli_json(pytester, "history")] == [first_id, second_id]
