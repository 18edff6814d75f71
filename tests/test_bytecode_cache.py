"""The bytecode cache under the store, for processes where Python may not write bytecode."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import QUIET

TEST_MODULE = """
from helper import value

def test_value():
    assert value() == 1
"""
HELPER = "def value():\n    return 1\n"


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    result = pytester.runpytest_subprocess(*QUIET, "-p", "no:cacheprovider", *args)
    return int(result.ret)


def _pycs(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*.pyc")}


def _age(path: Path, seconds: float) -> None:
    """Date a file back, as if written `seconds` ago (the cache trusts it only after 2 s)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_value=TEST_MODULE, helper=HELPER)
    for name in ("test_value.py", "helper.py"):
        _age(pytester.path / name, 10)
    return pytester.path


def test_rewritten_modules_are_cached_in_the_store_and_nowhere_else(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    assert _run(pytester, monkeypatch, "--agent-id", "1") == 0
    cache = project / ".llmharness" / "pycache"
    first = _pycs(cache)
    names = {Path(name).name for name in first}
    assert any(n.startswith("test_value.") and "-pytest-" in n for n in names), names
    assert any(n.startswith("helper.") for n in names), names
    # Nothing beside the sources: no __pycache__ anywhere but under the store.
    outside = [p for p in project.rglob("__pycache__") if ".llmharness" not in p.parts]
    assert outside == []
    # The second run reads them: none is written again.
    assert _run(pytester, monkeypatch, "--agent-id", "1") == 0
    assert _pycs(cache) == first


def test_an_edited_module_is_compiled_again_never_run_stale(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    assert _run(pytester, monkeypatch, "--agent-id", "1") == 0
    # Same sizes, new contents: both the test module and the helper it imports.
    (project / "helper.py").write_text(HELPER.replace("return 1", "return 2"))
    assert _run(pytester, monkeypatch, "--agent-id", "1") == 1
    (project / "test_value.py").write_text(TEST_MODULE.replace("== 1", "== 2"))
    assert _run(pytester, monkeypatch, "--agent-id", "1") == 0


def test_a_pyc_written_right_after_its_source_changed_is_not_kept(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    """Python checks a source's mtime in whole seconds: a .pyc written in the second its
    source changed could miss a same-size edit in that second, so the run drops it."""
    helper = project / "helper.py"
    helper.write_text(HELPER)
    # "Changed just now" as the run will see it however slowly a loaded machine starts it: the
    # source's mtime a little ahead, so the .pyc is written less than 2 s after it.
    ahead = time.time() + 10
    os.utime(helper, (ahead, ahead))
    assert _run(pytester, monkeypatch, "--agent-id", "1") == 0
    names = {Path(name).name for name in _pycs(project / ".llmharness" / "pycache")}
    assert not any(n.startswith("helper.") for n in names), names
    assert any(n.startswith("test_value.") for n in names), names


@pytest.mark.parametrize(
    ("setting", "dont_write", "in_store"),
    [
        ("bytecode_cache: false\n", "1", False),
        ("", None, False),  # Python may write bytecode: its own __pycache__, as usual
        ("bytecode_cache: true\n", None, True),
    ],
    ids=["off", "auto-with-bytecode", "on-with-bytecode"],
)
def test_the_setting_turns_it_off_or_on(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    project: Path,
    setting: str,
    dont_write: str | None,
    in_store: bool,
) -> None:
    if setting:
        pytester.makefile(".yaml", llmharness=setting)
    if dont_write is None:
        monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    else:
        monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", dont_write)
    result = pytester.runpytest_subprocess(*QUIET, "-p", "no:cacheprovider", "--agent-id", "1")
    assert result.ret == 0
    assert (project / ".llmharness" / "pycache").is_dir() == in_store
    beside = (project / "__pycache__").is_dir()
    assert beside == (dont_write is None and not in_store)


def test_xdist_workers_use_the_same_cache(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    assert _run(pytester, monkeypatch, "--agent-id", "1", "-n", "2") == 0
    names = {Path(name).name for name in _pycs(project / ".llmharness" / "pycache")}
    assert any(n.startswith("test_value.") and "-pytest-" in n for n in names), names
    assert [p for p in project.rglob("__pycache__") if ".llmharness" not in p.parts] == []
