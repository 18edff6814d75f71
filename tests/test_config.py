"""Configuration end to end: the YAML file, environment, command line, ini key and profiles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401  (see below)
import pytest

# pytester restores sys.modules after every in-process run, and hypothesis's pytest plugin imports
# hypothesis in each run's terminal summary: imported once here, it costs ~2 s once, not per run.

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
USAGE_ERROR = pytest.ExitCode.USAGE_ERROR


def _suite(pytester: pytest.Pytester, passing: int = 10, failing: int = 0) -> None:
    body = [f"def test_pass_{i}():\n    pass\n" for i in range(passing)]
    body += [f"def test_fail_{i}():\n    assert {i} == -1\n" for i in range(failing)]
    pytester.makepyfile(test_suite="\n".join(body))


def _write_config(pytester: pytest.Pytester, text: str, name: str = "llmharness.yaml") -> Path:
    path = pytester.path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _usage_error(result: pytest.RunResult) -> str:
    """The single stderr line of a usage error; fails unless the run is exactly that."""
    assert result.ret == USAGE_ERROR, (result.stdout.str(), result.stderr.str())
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in result.stderr.str()
    assert "Traceback" not in result.stdout.str()
    return lines[0]


def _summary(pytester: pytest.Pytester) -> dict[str, Any]:
    path = pytester.path / ".llmharness" / "last" / "summary.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _nonempty(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.strip()]


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


# -- the config file: syntax, keys, types ----------------------------------------------------


def test_malformed_yaml_is_one_usage_error_naming_file_and_line(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    _write_config(pytester, "max_lines: 5\nfast_fraction: [0.1\nkeep_runs: 3\n")
    result = pytester.runpytest()
    line = _usage_error(result)
    assert line.startswith("ERROR: llmharness: ")
    result.stderr.fnmatch_lines(["ERROR: llmharness: */llmharness.yaml:3: malformed YAML: *"])
    assert not (pytester.path / ".llmharness").exists()


def test_unknown_key_names_file_line_and_key(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    _write_config(pytester, "max_lines: 5\n\n# a comment\nmax_line: 6\n")
    line = _usage_error(pytester.runpytest())
    assert "llmharness.yaml:4:" in line
    assert "unknown key 'max_line'" in line
    # The message lists the known keys, so the fix is in the same line.
    assert "max_lines" in line.split("known keys:", 1)[1]


@pytest.mark.parametrize(
    ("text", "where", "named"),
    [
        pytest.param('fast_fraction: "abc"\n', ":1:", "fast_fraction", id="fraction-text"),
        pytest.param(
            "keep_runs: 4\nfast_fraction: -1\n", ":2:", "fast_fraction", id="fraction-neg"
        ),
        pytest.param("fast_fraction: 1.5\n", ":1:", "fast_fraction", id="fraction-above-one"),
        pytest.param("max_lines: two\n", ":1:", "max_lines", id="max-lines-word"),
        pytest.param("max_lines: 2\n", ":1:", "max_lines", id="max-lines-too-few"),
        pytest.param("keep_runs: 0\n", ":1:", "keep_runs", id="keep-runs-zero"),
        pytest.param("keep_runs: 2.5\n", ":1:", "keep_runs", id="keep-runs-fraction"),
        pytest.param("compact: maybe\n", ":1:", "compact", id="compact-word"),
        pytest.param("test_timeout: [1, 2]\n", ":1:", "test_timeout", id="timeout-list"),
        pytest.param("agent_id: [1]\n", ":1:", "agent_id", id="agent-list"),
        pytest.param("- max_lines: 5\n- keep_runs: 3\n", ":1:", "mapping", id="top-level-list"),
        pytest.param("just text\n", ":1:", "mapping", id="top-level-scalar"),
        pytest.param("fast_fraction: [0.1]\n", ":1:", "fast_fraction", id="fraction-list"),
    ],
)
def test_bad_value_in_file_is_one_usage_error_naming_the_key(
    pytester: pytest.Pytester, text: str, where: str, named: str
) -> None:
    _suite(pytester)
    _write_config(pytester, text)
    line = _usage_error(pytester.runpytest())
    assert line.startswith("ERROR: llmharness: ")
    assert f"llmharness.yaml{where} " in line
    assert named in line
    assert not (pytester.path / ".llmharness").exists()


def test_empty_config_file_means_defaults(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    _write_config(pytester, "# nothing set yet\n")
    result = pytester.runpytest("--fast")
    assert result.ret == pytest.ExitCode.OK
    assert _summary(pytester)["sample"]["fraction"] == pytest.approx(0.10)


def test_bad_value_in_environment_names_the_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    monkeypatch.setenv("LLMHARNESS_MAX_LINES", "two")
    line = _usage_error(pytester.runpytest())
    assert "LLMHARNESS_MAX_LINES" in line
    assert "'two'" in line


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--fast-fraction", "abc"], "--fast-fraction"),
        (["--fast-fraction", "0"], "--fast-fraction"),
        (["--fast-fraction", "101%"], "--fast-fraction"),
        (["--fast-budget", "-3"], "--fast-budget"),
        (["--time-limit", "nan"], "--time-limit"),
        (["--seed", "a b"], "--seed"),
        (["--agent-id", ""], "--agent-id"),
        (["--agent-id", "   "], "--agent-id"),
        (["--agent-id", "../../etc"], "--agent-id"),
        (["--agent-id", "/"], "--agent-id"),
        (["--agent-id", ".."], "--agent-id"),
        (["--agent-id", "a\\..\\b"], "--agent-id"),
        (["--agent-id", "x" * 300], "--agent-id"),
        (["--agent-id", "a\nb"], "--agent-id"),
        (["--agent-id", "a\tb"], "--agent-id"),
        # In-process, a NUL byte reaches the option parser as it could from a wrapper script.
        (["--agent-id", "a\0b"], "--agent-id"),
    ],
    ids=[
        "fraction-text",
        "fraction-zero",
        "fraction-over-100%",
        "budget-negative",
        "time-limit-nan",
        "seed-space",
        "agent-empty",
        "agent-blank",
        "agent-traversal",
        "agent-slash",
        "agent-dotdot",
        "agent-backslash",
        "agent-300-chars",
        "agent-newline",
        "agent-tab",
        "agent-nul",
    ],
)
def test_bad_command_line_value_names_the_flag_and_writes_nothing(
    pytester: pytest.Pytester, args: list[str], flag: str
) -> None:
    _suite(pytester)
    outside = pytester.path.parent
    before_outside = set(outside.iterdir())
    before_inside = _tree(pytester.path)
    line = _usage_error(pytester.runpytest("-p", "no:cacheprovider", *args))
    assert line.startswith(f"ERROR: llmharness: {flag}: ")
    assert set(outside.iterdir()) == before_outside
    assert _tree(pytester.path) == before_inside


def test_bad_agent_id_in_environment_names_the_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    monkeypatch.setenv("LLMHARNESS_AGENT_ID", "../escape")
    before = _tree(pytester.path)
    line = _usage_error(pytester.runpytest("-p", "no:cacheprovider"))
    assert "environment variable LLMHARNESS_AGENT_ID" in line
    assert _tree(pytester.path) == before


def test_unicode_agent_id_is_accepted_and_recorded(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    outside = pytester.path.parent
    before_outside = set(outside.iterdir())
    result = pytester.runpytest("--agent-id", "σ-7")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["llmharness: PASSED 10 passed in *agent σ-7*"])
    summary = _summary(pytester)
    assert summary["agent_id"] == "σ-7"
    assert summary["sample"]["agent_id"] == "σ-7"
    # The per-agent pointer stays inside the store, whatever characters the id has.
    agents = pytester.path / ".llmharness" / "agents"
    assert [p.parent for p in agents.iterdir()] == [agents]
    assert set(outside.iterdir()) == before_outside


def test_agent_id_of_64_characters_is_the_longest_accepted(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=1)
    assert pytester.runpytest("--agent-id", "a" * 64).ret == pytest.ExitCode.OK
    assert _summary(pytester)["agent_id"] == "a" * 64
    _usage_error(pytester.runpytest("--agent-id", "a" * 65))


def test_seed_and_agent_id_in_file_are_taken_as_written(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    # 8 hex digits, as agent seeds are; about 1 in 2,000 of them is made of octal digits.
    _write_config(pytester, "fast: true\nseed: 01234567\nagent_id: 007\n")
    assert pytester.runpytest().ret == pytest.ExitCode.OK
    sample = _summary(pytester)["sample"]
    assert (sample["seed"], sample["agent_id"]) == ("01234567", "007")


def test_bad_store_flag_is_named_as_spelled(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    line = _usage_error(pytester.runpytest("-p", "no:cacheprovider", "--llmharness-store", ""))
    assert line.startswith("ERROR: llmharness: --llmharness-store: ")


# -- precedence: command line > environment > file > defaults --------------------------------


def test_max_lines_default_file_then_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester, passing=2, failing=12)

    result = pytester.runpytest("--compact")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = _nonempty(result)
    assert len(lines) == 8, lines
    assert lines[0].startswith("llmharness: FAILED 12 failed, 2 passed")

    _write_config(pytester, "compact: true\nmax_lines: 3\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = _nonempty(result)
    assert len(lines) == 3, lines
    assert lines[0].startswith("llmharness: FAILED 12 failed, 2 passed")
    assert lines[-1].startswith("... 12 more: ")

    monkeypatch.setenv("LLMHARNESS_MAX_LINES", "5")
    result = pytester.runpytest()
    lines = _nonempty(result)
    assert len(lines) == 5, lines
    assert lines[-1].startswith("... 10 more: ")


def test_fast_fraction_default_file_environment_command_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester, passing=20)

    assert pytester.runpytest("--fast").ret == pytest.ExitCode.OK
    assert _summary(pytester)["sample"]["fraction"] == pytest.approx(0.10)

    _write_config(pytester, "fast: true\nfast_fraction: 0.5\n")
    assert pytester.runpytest().ret == pytest.ExitCode.OK
    assert _summary(pytester)["sample"]["fraction"] == pytest.approx(0.5)

    monkeypatch.setenv("LLMHARNESS_FAST_FRACTION", "25%")
    assert pytester.runpytest().ret == pytest.ExitCode.OK
    assert _summary(pytester)["sample"]["fraction"] == pytest.approx(0.25)

    result = pytester.runpytest("--fast-fraction", "0.2")
    assert result.ret == pytest.ExitCode.OK
    sample = _summary(pytester)["sample"]
    assert sample["fraction"] == pytest.approx(0.2)
    assert sample["total"] == 20
    assert 1 <= sample["selected"] < 20


def test_command_line_compact_flags_override_file_and_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester, passing=3)
    _write_config(pytester, "compact: false\n")
    monkeypatch.setenv("LLMHARNESS_COMPACT", "false")
    normal = pytester.runpytest("--agent-id", "4")
    normal.stdout.fnmatch_lines(["*test session starts*"])
    compact = pytester.runpytest("--agent-id", "4", "--compact")
    compact.stdout.no_fnmatch_line("*test session starts*")
    assert _nonempty(compact)[0].startswith("llmharness: PASSED 3 passed")

    _write_config(pytester, "compact: true\n")
    monkeypatch.setenv("LLMHARNESS_COMPACT", "true")
    normal = pytester.runpytest("--agent-id", "4", "--no-compact")
    normal.stdout.fnmatch_lines(["*test session starts*", "*3 passed*"])
    normal.stdout.no_fnmatch_line("llmharness: *")


# -- naming the config file ------------------------------------------------------------------


def test_config_named_with_option(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=1, failing=6)
    _write_config(pytester, "compact: true\nmax_lines: 4\n", name="conf/harness.yaml")
    # Not the default name: without the option the file is not read.
    plain = pytester.runpytest()
    plain.stdout.fnmatch_lines(["*test session starts*"])
    result = pytester.runpytest("--llmharness-config", "conf/harness.yaml")
    lines = _nonempty(result)
    assert len(lines) == 4, lines
    assert lines[0].startswith("llmharness: FAILED 6 failed, 1 passed")


def test_config_named_with_ini_key(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=1, failing=6)
    _write_config(pytester, "compact: true\nmax_lines: 3\n", name="conf/harness.yaml")
    pytester.makeini("[pytest]\nllmharness_config = conf/harness.yaml\n")
    lines = _nonempty(pytester.runpytest())
    assert len(lines) == 3, lines
    assert lines[0].startswith("llmharness: FAILED 6 failed, 1 passed")


def test_config_named_with_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester, passing=1, failing=6)
    path = _write_config(pytester, "compact: true\nmax_lines: 5\n", name="conf/harness.yaml")
    monkeypatch.setenv("LLMHARNESS_CONFIG", str(path))
    lines = _nonempty(pytester.runpytest())
    assert len(lines) == 5, lines
    assert lines[0].startswith("llmharness: FAILED 6 failed, 1 passed")


def test_config_naming_precedence_option_then_environment_then_ini(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester, passing=20)
    _write_config(pytester, "fast: true\nfast_fraction: 0.3\n", name="ini.yaml")
    _write_config(pytester, "fast: true\nfast_fraction: 0.4\n", name="env.yaml")
    _write_config(pytester, "fast: true\nfast_fraction: 0.5\n", name="opt.yaml")
    _write_config(pytester, "fast: true\nfast_fraction: 0.6\n")
    pytester.makeini("[pytest]\nllmharness_config = ini.yaml\n")

    assert pytester.runpytest().ret == pytest.ExitCode.OK
    assert _summary(pytester)["sample"]["fraction"] == pytest.approx(0.3)

    monkeypatch.setenv("LLMHARNESS_CONFIG", "env.yaml")
    assert pytester.runpytest().ret == pytest.ExitCode.OK
    assert _summary(pytester)["sample"]["fraction"] == pytest.approx(0.4)

    assert pytester.runpytest("--llmharness-config", "opt.yaml").ret == pytest.ExitCode.OK
    assert _summary(pytester)["sample"]["fraction"] == pytest.approx(0.5)


def test_named_config_that_does_not_exist_is_a_usage_error(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    line = _usage_error(pytester.runpytest("--llmharness-config", "missing.yaml"))
    assert "missing.yaml" in line
    assert "not found" in line


def test_error_in_named_config_names_that_file(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    _write_config(pytester, "keep_runs: 1\nkeep_runs_extra: 2\n", name="conf/harness.yaml")
    line = _usage_error(pytester.runpytest("--llmharness-config", "conf/harness.yaml"))
    assert "harness.yaml:2:" in line
    assert "'keep_runs_extra'" in line


def _project_with_testpaths(pytester: pytest.Pytester) -> None:
    """A project whose pytest settings say to test tests/ only, with a stray test beside it.
    Its conftest imports the project's code by the ini file's `pythonpath`, as the demo's does:
    under another rootdir that import fails before any plugin is configured."""
    pytester.makepyprojecttoml(
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\npythonpath = ["src"]\n'
    )
    for rel, text in (
        ("tests/test_a.py", "def test_one():\n    pass\n"),
        ("docs/test_stray.py", "def test_one():\n    pass\n"),
        ("tests/conftest.py", "import projectcode  # noqa: F401\n"),
        ("src/projectcode.py", ""),
    ):
        path = pytester.path / rel
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_a_store_outside_the_project_as_a_separate_word_is_refused_once_it_moves_the_rootdir(
    pytester: pytest.Pytester,
) -> None:
    # pytest chooses its rootdir before it knows llmharness's options: once the shared store
    # exists, `--llmharness-store /shared` counts as a path to test, the rootdir moves up, the
    # project's testpaths are lost and every node id changes.
    _project_with_testpaths(pytester)
    shared = pytester.path.parent / f"{pytester.path.name}-shared-store"
    first = pytester.runpytest("-p", "no:cacheprovider", "--llmharness-store", str(shared))
    assert first.ret == pytest.ExitCode.OK  # the store did not exist yet: nothing moved
    index = shared / "index.json"
    before = index.read_bytes()
    assert sorted(json.loads(before)["tests"]) == ["tests/test_a.py::test_one"]
    runs = sorted((shared / "runs").iterdir())

    line = _usage_error(
        pytester.runpytest("-p", "no:cacheprovider", "--llmharness-store", str(shared))
    )
    assert line.startswith("ERROR: llmharness: pytest took the value of '--llmharness-store "), line
    assert line.endswith(f"write --llmharness-store={shared}"), line
    assert index.read_bytes() == before  # nothing recorded under the wrong names
    assert sorted((shared / "runs").iterdir()) == runs

    joined = pytester.runpytest("-p", "no:cacheprovider", f"--llmharness-store={shared}")
    assert joined.ret == pytest.ExitCode.OK
    assert sorted(json.loads(index.read_bytes())["tests"]) == ["tests/test_a.py::test_one"]

    config = pytester.path.parent / f"{pytester.path.name}-settings.yaml"
    config.write_text("max_lines: 4\n", encoding="utf-8")
    line = _usage_error(pytester.runpytest("--llmharness-config", str(config)))
    assert line.endswith(f"write --llmharness-config={config}"), line
    assert pytester.runpytest(f"--llmharness-config={config}").ret == pytest.ExitCode.OK


def test_values_inside_the_project_given_as_separate_words_are_accepted(
    pytester: pytest.Pytester,
) -> None:
    _project_with_testpaths(pytester)
    _write_config(pytester, "max_lines: 4\n", name="conf/harness.yaml")
    for _ in range(2):  # the second time, the store exists
        result = pytester.runpytest(
            "-p", "no:cacheprovider", "tests", "--llmharness-store", "store",
            "--llmharness-config", "conf/harness.yaml",
        )  # fmt: skip
        assert result.ret == pytest.ExitCode.OK, result.errlines
    index = json.loads((pytester.path / "store" / "index.json").read_bytes())
    assert sorted(index["tests"]) == ["tests/test_a.py::test_one"]


# -- the bundled profiles --------------------------------------------------------------------


def _use_profile(pytester: pytest.Pytester, name: str) -> None:
    shutil.copyfile(CONFIGS / name, pytester.path / "llmharness.yaml")


def test_profiles_folder_holds_the_three_profiles() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} >= {"default.yaml", "agent.yaml", "ci.yaml"}


def test_default_profile_keeps_pytest_output_and_records(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=3, failing=1)
    _use_profile(pytester, "default.yaml")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test session starts*", "*1 failed, 3 passed*"])
    result.stdout.no_fnmatch_line("llmharness: *")
    assert _summary(pytester)["counts"]["failed"] == 1


def test_default_profile_is_compact_with_an_agent_id(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=3)
    _use_profile(pytester, "default.yaml")
    result = pytester.runpytest("--agent-id", "2")
    result.stdout.no_fnmatch_line("*test session starts*")
    assert _nonempty(result)[0].startswith("llmharness: PASSED 3 passed")


def test_agent_profile_is_compact_without_flags(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=2, failing=12)
    _use_profile(pytester, "agent.yaml")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = _nonempty(result)
    assert 1 <= len(lines) <= 8, lines
    assert lines[0].startswith("llmharness: FAILED 12 failed, 2 passed")
    result.stdout.no_fnmatch_line("*test session starts*")


def test_ci_profile_keeps_pytest_output_with_agent_id_and_records(
    pytester: pytest.Pytester,
) -> None:
    _suite(pytester, passing=3)
    _use_profile(pytester, "ci.yaml")
    result = pytester.runpytest("--agent-id", "3")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test session starts*", "*3 passed*"])
    result.stdout.no_fnmatch_line("llmharness: *")
    summary = _summary(pytester)
    assert summary["agent_id"] == "3"
    assert summary["counts"]["passed"] == 3


# -- disabling the plugin --------------------------------------------------------------------


def test_disabled_plugin_creates_no_store_and_ignores_config(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=3)
    _write_config(pytester, "compact: true\nfast_fraction: [\n")
    result = pytester.runpytest("-p", "no:llmharness")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test session starts*", "*3 passed*"])
    assert not (pytester.path / ".llmharness").exists()


def test_disabled_plugin_does_not_know_its_options(pytester: pytest.Pytester) -> None:
    _suite(pytester, passing=1)
    result = pytester.runpytest("-p", "no:llmharness", "--fast")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --fast*"])
    assert not (pytester.path / ".llmharness").exists()
