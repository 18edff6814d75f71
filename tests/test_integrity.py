"""The integrity of what "fixed" means, in the workflow agents have: a clone of the demo with
its outcomes recorded at the base, a change, real pytest processes and the installed CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gitenv import agent_env

from llmharness import integrity

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "suites" / "demo"
EVALUATOR_TESTS = "tests/test_evaluator.py"
MODULO = f"{EVALUATOR_TESTS}::TestArithmetic::test_modulo_by_zero_raises_eval_error"
UNKNOWN_FUNCTION = f"{EVALUATOR_TESTS}::TestFunctions::test_unknown_function"
RIGHT_ASSOCIATIVE = "tests/test_parser.py::test_power_is_right_associative"
HEX = "tests/test_lexer.py::test_hex_literals[0X1F-31]"
HONEST_FIX = ('if op in ("/", "//") and b == 0:', 'if op in ("/", "//", "%") and b == 0:')
STRICT_CHECK = (
    '        with pytest.raises(EvalError, match="division by zero"):\n            calc("7 % 0")'
)
WIDE_CHECK = '        with pytest.raises(Exception):\n            calc("7 % 0")'
REWRITING_CONFTEST = """

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.outcome = "passed"
"""


class Clone:
    """The demo in a repository of its own on `main` (at its top, or in a folder `sub` of it)."""

    def __init__(self, tmp_path: Path, git: bool = True, sub: str | None = None) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.top = top = tmp_path / "demo"
        self.path = top / sub if sub else top  # pytest's rootdir, where it runs
        shutil.copytree(
            DEMO, self.path, ignore=shutil.ignore_patterns(".llmharness", "__pycache__")
        )
        if git:
            (top / ".gitignore").write_text("__pycache__/\n")
            self.git("init", "-q", "-b", "main")
            self.git("add", "-A")
            self.git("commit", "-q", "-m", "demo")

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=self.top, env=agent_env(self.home), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def pytest(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        agent = () if "no:llmharness" in args else ("--agent-id", "1")
        return subprocess.run(
            [str(Path(sys.executable).parent / "pytest"), *agent, *args],
            cwd=self.path,
            env=agent_env(self.home, **env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmharness", *args],
            cwd=self.path,
            env=agent_env(self.home),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def regressions(self) -> tuple[int, dict[str, Any]]:
        """`llmharness regressions --json --check`: the gate's exit code and the diff."""
        done = self.cli("regressions", "--json", "--check")
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json.loads(done.stdout)

    def edit(self, path: str, old: str, new: str) -> None:
        file = self.path / path
        text = file.read_text()
        assert old in text, old
        file.write_text(text.replace(old, new, 1))

    def log_errors(self) -> list[str]:
        log = self.path / ".llmharness" / "last" / "log.txt"
        return [line for line in log.read_text().splitlines() if line.startswith("ERROR ")]


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["nodeid"] for item in items}


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    """A clean clone whose run at the base recorded the demo's 7 failures there."""
    made = Clone(tmp_path)
    run = made.pytest()
    assert run.returncode == 1 and "is the base; 7 failures failing at the base" in run.stdout
    return made


def _junit_counts(path: Path) -> dict[str, str]:
    head = re.search(r"<testsuite ([^>]*)>", path.read_text())
    assert head is not None
    return dict(re.findall(r'(\w+)="([^"]*)"', head.group(1)))


def test_widening_a_failing_tests_check_is_a_fix_by_test_change(clone: Clone) -> None:
    clone.edit(EVALUATOR_TESTS, STRICT_CHECK, WIDE_CHECK)
    run = clone.pytest()
    assert run.returncode == 1  # the 6 other failures stand
    assert "1 fixed (1 by changing the test)" in run.stdout, run.stdout
    code, diff = clone.regressions()
    assert code == 1
    assert _ids(diff["fixed"]) == {MODULO}
    [item] = diff["fixed_by_test_change"]
    assert item["nodeid"] == MODULO
    assert (item["before"], item["after"]) == ("failed", "passed")
    assert (item["asserts_before"], item["asserts_after"]) == (1, 1)
    assert item["checks_dropped"] == [
        "pytest.raises(EvalError) widened to Exception",
        "match= dropped from pytest.raises(EvalError)",
    ]
    assert item["changed"] == [EVALUATOR_TESTS]
    assert diff["removed"] == diff["hooks_changed"] == diff["protected_changed"] == []
    assert diff["tampered"] is False
    text = clone.cli("regressions").stdout.splitlines()
    assert (
        f"FIXED BY TEST CHANGE {MODULO} ({EVALUATOR_TESTS}): checks 1 -> 1; "
        "pytest.raises(EvalError) widened to Exception; match= dropped from "
        "pytest.raises(EvalError)"
    ) in text

    # A team that allows test changes lets the same run through the gate, still listed.
    (clone.path / "llmharness.yaml").write_text("allow_test_changes: true\n")
    clone.pytest()
    code, diff = clone.regressions()
    assert code == 0
    assert _ids(diff["fixed_by_test_change"]) == {MODULO}
    assert diff["allow_test_changes"] is True


def test_an_honest_fix_is_a_plain_fix_even_with_the_test_reformatted(clone: Clone) -> None:
    clone.edit("minicalc/evaluator.py", *HONEST_FIX)
    # Comments and layout are not the test's code: a reformatted test is the same test.
    clone.edit(
        EVALUATOR_TESTS,
        STRICT_CHECK,
        "        # modulo by zero is division by zero\n"
        "        with pytest.raises(EvalError,\n"
        "                           match='division by zero'):\n"
        '            calc("7 % 0")',
    )
    # Another test of the same file, new and with a weak check, is not this test's code.
    (clone.path / EVALUATOR_TESTS).write_text(
        (clone.path / EVALUATOR_TESTS).read_text() + "\n\ndef test_new():\n    assert True\n"
    )
    run = clone.pytest()
    assert "regressions vs base" in run.stdout and "1 fixed, 6 failing" in run.stdout, run.stdout
    code, diff = clone.regressions()
    assert code == 0
    assert _ids(diff["fixed"]) == {MODULO}
    assert diff["fixed_by_test_change"] == diff["removed"] == diff["newly_skipped"] == []
    assert diff["hooks_changed"] == diff["protected_changed"] == []
    assert diff["tampered"] is False and diff["tamper_reason"] is None
    assert diff["integrity_note"] is None


def test_deleting_a_failing_test_or_its_file_is_a_removal(clone: Clone) -> None:
    clone.edit(
        EVALUATOR_TESTS,
        "    def test_unknown_function(self) -> None:",
        "    def _unknown_function(self) -> None:",
    )
    (clone.path / "tests" / "test_lexer.py").unlink()
    clone.pytest()
    code, diff = clone.regressions()
    assert code == 1
    removed = {item["nodeid"]: item for item in diff["removed"]}
    assert removed[UNKNOWN_FUNCTION] == {
        "nodeid": UNKNOWN_FUNCTION,
        "before": "failed",
        "known_by": "recorded",
        "why": "not collected from its file",
    }
    assert removed[HEX]["why"] == "its file is gone" and removed[HEX]["before"] == "failed"
    # Every test of the deleted file is listed, with its outcome at the base.
    lexer = {nodeid for nodeid in removed if nodeid.startswith("tests/test_lexer.py::")}
    assert len(lexer) > 10 and {removed[n]["before"] for n in lexer} == {"passed", "failed"}
    assert set(removed) == lexer | {UNKNOWN_FUNCTION}
    assert diff["fixed"] == diff["fixed_by_test_change"] == []
    lines = clone.cli("regressions").stdout.splitlines()
    assert f"REMOVED {UNKNOWN_FUNCTION} failed at the base: not collected from its file" in lines


def test_a_rootdir_below_the_top_of_the_work_tree(tmp_path: Path) -> None:
    clone = Clone(tmp_path, sub="app")
    assert clone.pytest().returncode == 1  # clean: recorded at the base
    assert clone.git("ls-files", "app/pytest.ini") == "app/pytest.ini"
    clone.edit(EVALUATOR_TESTS, STRICT_CHECK, WIDE_CHECK)
    conftest = clone.path / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + "\n\ndef pytest_deselected(items):\n    pass\n")
    (clone.path / "llmharness.yaml").write_text("protected: [tests/test_evaluator.py]\n")
    clone.pytest()
    code, diff = clone.regressions()
    assert code == 1
    # Paths are the rootdir's, as node ids are.
    [item] = diff["fixed_by_test_change"]
    assert item["nodeid"] == MODULO
    assert item["changed"] == [EVALUATOR_TESTS, "tests/conftest.py"]
    assert diff["hooks_changed"] == [{"path": "tests/conftest.py", "hooks": ["pytest_deselected"]}]
    assert diff["protected_changed"] == [EVALUATOR_TESTS]


def test_ids_that_change_from_run_to_run_in_an_untouched_file_are_not_removals(
    tmp_path: Path,
) -> None:
    clone = Clone(tmp_path)
    (clone.path / "tests" / "test_unstable.py").write_text(
        "import uuid\n\nimport pytest\n\n\n"
        "@pytest.mark.parametrize('x', [1], ids=[str(uuid.uuid4())])\n"
        "def test_unstable(x):\n    assert x == 2\n"
    )
    clone.git("add", "-A")
    clone.git("commit", "-q", "-m", "a test whose id is new in every run")
    clone.pytest()  # clean at the base: recorded there
    clone.edit("minicalc/evaluator.py", *HONEST_FIX)
    clone.pytest()
    code, diff = clone.regressions()
    assert diff["removed"] == []
    # Its new id fails as a new test would; the gate says so, as it says of any new failure.
    assert code == 1
    assert [item["nodeid"].split("[")[0] for item in diff["new_tests_failing"]] == [
        "tests/test_unstable.py::test_unstable"
    ]


def test_a_sample_that_leaves_a_file_out_removes_nothing(clone: Clone) -> None:
    # A run of one file says nothing of the others' tests.
    clone.pytest("tests/test_parser.py")
    code, diff = clone.regressions()
    assert code == 0 and diff["removed"] == []
    clone.pytest("--fast-fraction", "1%")
    code, diff = clone.regressions()
    assert code == 0 and diff["removed"] == []


def test_skipping_a_failing_test_is_newly_skipped(clone: Clone) -> None:
    clone.edit(
        "tests/test_parser.py",
        "def test_power_is_right_associative",
        '@pytest.mark.skip(reason="later")\ndef test_power_is_right_associative',
    )
    run = clone.pytest()
    assert "1 failing test now skipped" in run.stdout, run.stdout
    code, diff = clone.regressions()
    assert code == 1
    [item] = diff["newly_skipped"]
    assert item["nodeid"] == RIGHT_ASSOCIATIVE
    assert (item["before"], item["after"], item["known_by"]) == ("failed", "skipped", "recorded")
    assert diff["fixed"] == [] and len(diff["still_failing"]) == 6
    lines = clone.cli("regressions").stdout.splitlines()
    assert any(
        line.startswith(f"NOW SKIPPED {RIGHT_ASSOCIATIVE} failed at the base") for line in lines
    )


def test_a_conftest_that_rewrites_failures_is_caught_by_the_tripwire(clone: Clone) -> None:
    conftest = clone.path / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + REWRITING_CONFTEST)
    junit = clone.path / "junit.xml"
    run = clone.pytest(f"--junitxml={junit}")
    assert run.returncode == 0  # the rewrite fools pytest itself
    # The tripwire is in none of pytest's counts.
    counts = _junit_counts(junit)
    assert (counts["tests"], counts["failures"], counts["errors"]) == ("327", "0", "0")
    assert "tripwire" not in junit.read_text()
    assert "TAMPERED" in run.stdout
    code, diff = clone.regressions()
    assert code == 1
    assert diff["tampered"] is True
    assert diff["tamper_reason"] == (
        "a pytest_runtest_makereport hook turned llmharness's failing tripwire into passed "
        "(tests/conftest.py)"
    )
    assert diff["hooks_changed"] == [
        {"path": "tests/conftest.py", "hooks": ["pytest_runtest_makereport"]}
    ]
    tripwire_lines = [line for line in clone.log_errors() if "tripwire" in line]
    assert tripwire_lines == [f"ERROR llmharness::tripwire tampered: {diff['tamper_reason']}"]
    summary = json.loads(clone.cli("summary", "--json").stdout)
    assert summary["tampered"] is True and summary["counts"]["failed"] == 0
    # Under xdist the controller, which loads the same conftest, trips it too.
    assert clone.pytest("-n", "2").returncode == 0
    code, diff = clone.regressions()
    assert code == 1 and diff["tamper_reason"].endswith("into passed (tests/conftest.py)")
    # A tampered clean run's outcomes are not kept as what is known at its commit.
    clone.git("add", "-A")
    clone.git("commit", "-q", "-m", "green at last")
    clone.pytest()
    commit = clone.git("rev-parse", "HEAD")
    assert not (clone.path / ".llmharness" / "commits" / commit).exists()


def test_an_honest_run_keeps_its_counts_and_exit_code(clone: Clone) -> None:
    junit = clone.path / "junit.xml"
    run = clone.pytest("tests/test_parser.py", "-k", "not right_associative", f"--junitxml={junit}")
    assert run.returncode == 0
    counts = _junit_counts(junit)
    plain = clone.pytest(
        "-p",
        "no:llmharness",
        "tests/test_parser.py",
        "-k",
        "not right_associative",
        f"--junitxml={junit}.plain",
    )
    assert plain.returncode == 0
    plain_counts = _junit_counts(Path(f"{junit}.plain"))
    assert {k: counts[k] for k in ("tests", "failures", "errors", "skipped")} == {
        k: plain_counts[k] for k in ("tests", "failures", "errors", "skipped")
    }
    assert "tripwire" not in junit.read_text()
    code, diff = clone.regressions()
    assert code == 0 and diff["tampered"] is False
    assert not [line for line in clone.log_errors() if "tripwire" in line]
    # Under xdist and with reruns, an honest failing run is not tampered either.
    for args in (("-n", "2"), ("--reruns", "1")):
        run = clone.pytest(*args)
        assert run.returncode == 1, run.stdout
        code, diff = clone.regressions()
        assert diff["tampered"] is False, (args, diff["tamper_reason"])
        assert code == 0


def test_a_hook_that_rewrites_reports_after_makereport_is_caught(clone: Clone) -> None:
    conftest = clone.path / "tests" / "conftest.py"
    conftest.write_text(
        conftest.read_text()
        + "\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_logreport(report):\n"
        + "    if report.failed:\n        report.outcome = 'passed'\n"
    )
    clone.pytest()
    summary = json.loads(clone.cli("summary", "--json").stdout)
    assert summary["counts"]["failed"] == 0  # the record was fooled, not pytest's own count
    code, diff = clone.regressions()
    assert code == 1 and diff["tampered"] is True
    assert diff["tamper_reason"] == (
        "pytest counted 7 failed reports but every test reached llmharness passed or skipped: "
        "a pytest_runtest_logreport hook rewrote them (tests/conftest.py)"
    )
    assert diff["hooks_changed"] == [
        {"path": "tests/conftest.py", "hooks": ["pytest_runtest_logreport"]}
    ]


def test_an_exit_status_set_to_ok_over_failures_is_tampered_outside_git_too(
    tmp_path: Path,
) -> None:
    plain = Clone(tmp_path, git=False)
    (plain.path / "conftest.py").write_text(
        "def pytest_sessionfinish(session):\n    session.exitstatus = 0\n"
    )
    run = plain.pytest()
    assert run.returncode == 0
    code, diff = plain.regressions()
    assert code == 1
    assert diff["tampered"] is True
    assert diff["tamper_reason"] == (
        "pytest's exit status is 0 (OK) but 7 tests failed: a hook changed the exit status"
    )
    assert diff["integrity_note"] == "not in a git work tree: only the tripwire was checked"
    summary = json.loads(plain.cli("summary", "--json").stdout)
    assert summary["exitstatus"] == 0 and summary["counts"]["failed"] == 7


def test_a_change_to_a_protected_path_fails_the_gate(clone: Clone) -> None:
    (clone.path / "llmharness.yaml").write_text("protected: [tests/]\n")
    clone.edit("minicalc/evaluator.py", *HONEST_FIX)
    clone.pytest()
    code, diff = clone.regressions()
    assert code == 0 and diff["protected_changed"] == []  # the code may change
    clone.edit("tests/test_formatter.py", '"""', '"""Edited. ')
    (clone.path / "tests" / "test_extra.py").write_text("def test_extra():\n    pass\n")
    clone.pytest()
    code, diff = clone.regressions()
    assert code == 1
    assert diff["protected_changed"] == ["tests/test_extra.py", "tests/test_formatter.py"]
    assert diff["protected"] == ["tests/"]
    # Protected paths stay protected when test changes are allowed.
    (clone.path / "llmharness.yaml").write_text("protected: [tests/]\nallow_test_changes: true\n")
    clone.pytest()
    assert clone.regressions()[0] == 1


@pytest.mark.parametrize(
    ("diff", "reasons"),
    [
        ({}, []),
        ({"tampered": True, "tamper_reason": "r", "allow_test_changes": True}, ["tampered: r"]),
        (
            {
                "fixed_by_test_change": [{"nodeid": "t"}],
                "removed": [
                    {"nodeid": "a", "before": "passed"},
                    {"nodeid": "b", "before": "error"},
                ],
                "newly_skipped": [
                    {"nodeid": "c", "before": "passed"},
                    {"nodeid": "d", "before": "failed"},
                ],
                "protected_changed": ["tests/x.py"],
            },
            [
                "1 protected path changed: tests/x.py",
                "1 test fixed by changing the test",
                "1 failing test removed",
                "1 failing test now skipped",
            ],
        ),
        (
            {
                "fixed_by_test_change": [{"nodeid": "t"}],
                "removed": [{"before": "failed"}],
                "allow_test_changes": True,
            },
            [],
        ),
        (
            {
                "removed": [{"nodeid": "a", "before": "passed"}],
                "newly_skipped": [{"before": "passed"}],
            },
            [],
        ),
    ],
)
def test_what_blocks_the_gate(diff: dict[str, Any], reasons: list[str]) -> None:
    assert integrity.blocking(diff) == reasons
