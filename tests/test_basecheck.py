"""Running tests at the base commit: real git repositories, real pytest processes in the store's
worktree, and where the code under test is imported from."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import filelock
import pytest

from llmharness.basecheck import BaseCheck, check_at_base, remove_worktree, worktree_path
from llmharness.codeundertest import foreign_imports

# Inner runs without the plugins of the outer one that cost startup time.
ADDOPTS = "-p no:randomly -p no:hypothesispytest"

BASE_FILES = {
    "calc/__init__.py": """
        def add(a, b):
            return a + b


        def mul(a, b):
            return a * b
    """,
    "tests/test_calc.py": """
        import pytest

        import calc


        @pytest.fixture
        def broken_setup():
            raise RuntimeError("no database")


        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("cannot clean up")


        def test_bad():
            assert calc.mul(2, 2) == 5


        def test_add():
            assert calc.add(1, 2) == 3


        def test_mul():
            assert calc.mul(2, 3) == 6


        def test_skip():
            pytest.skip("not here")


        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert 0


        @pytest.mark.xfail(reason="fixed since")
        def test_xpass():
            pass


        def test_setup_error(broken_setup):
            pass


        def test_teardown_error(broken_teardown):
            pass


        def test_helper():
            import calchelp  # only at head
    """,
    "tests/test_broken.py": """
        import no_such_module_at_the_base


        def test_fixed():
            pass
    """,
    "tests/test_later.py": """
        import pytest

        pytest.skip("not yet", allow_module_level=True)


        def test_m():
            pass
    """,
}

HEAD_FILES = {
    "calc/__init__.py": """
        def add(a, b):
            return a - b


        def mul(a, b):
            return a * b
    """,
    "calchelp.py": "",
    "tests/test_added.py": """
        def test_a():
            assert 0
    """,
    "tests/test_broken.py": """
        def test_fixed():
            assert 0
    """,
    # Had pytest found this at the base, test_xpass would be a strict XPASS there: failed.
    "pytest.ini": """
        [pytest]
        xfail_strict = true
    """,
}

EXPECTED = {
    "tests/test_calc.py::test_bad": "failed",
    "tests/test_calc.py::test_add": "passed",
    "tests/test_calc.py::test_skip": "skipped",
    "tests/test_calc.py::test_xfail": "xfailed",
    "tests/test_calc.py::test_xpass": "xpassed",
    "tests/test_calc.py::test_setup_error": "error",
    "tests/test_calc.py::test_teardown_error": "error",
    "tests/test_calc.py::test_helper": "failed",
    "tests/test_calc.py::test_new": "absent",
    "tests/test_added.py::test_a": "absent",
    "tests/test_broken.py::test_fixed": "error",
    "tests/test_later.py::test_m": "skipped",
}


@pytest.fixture(autouse=True)
def _quiet_git_and_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Git without the machine's or the user's settings; inner runs without slow plugins."""
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "t")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "t@t")
    monkeypatch.setenv("PYTEST_ADDOPTS", ADDOPTS)
    monkeypatch.delenv("PYTHONPATH", raising=False)


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # a status must not rewrite the index
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def new_repo(root: Path, files: dict[str, str]) -> tuple[Path, str]:
    """A repository whose first commit holds `files`, with a store that git ignores."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write(repo, {".llmharness/.gitignore": "*\n"})
    return repo, commit(repo, files, "base")


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str, str]:
    """(repository, base, head): at head `calc.add` is broken and tests were added."""
    repo, base = new_repo(tmp_path, BASE_FILES)
    added = (repo / "tests/test_calc.py").read_text() + "\n\ndef test_new():\n    assert 0\n"
    head = commit(repo, {**HEAD_FILES, "tests/test_calc.py": added}, "head")
    return repo, base, head


def user_state(repo: Path) -> tuple[str, ...]:
    """What checking at the base must leave as it was: HEAD, branch, status, index."""
    index = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        # Ignored files too (bytecode, caches), but for the store's own.
        "\n".join(
            line
            for line in git(
                repo, "status", "--porcelain", "--untracked-files=all", "--ignored"
            ).splitlines()
            if not line.startswith("!! .llmharness/")
        ),
        index,
    )


def check(
    repo: Path, base: str, nodeids: list[str], budget: float = 30.0, python: str = sys.executable
) -> BaseCheck:
    """check_at_base with the repository's top as the rootdir and the store in it."""
    return check_at_base(repo, repo, repo / ".llmharness", base, nodeids, budget, python)


def test_outcomes_at_the_base(
    project: tuple[Path, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every outcome word, under the base's config, whatever PYTEST_ADDOPTS says; the user's
    HEAD, branch, index and work tree stay as they were."""
    repo, base, head = project
    # -x would stop at test_bad; llmharness's own options must not break the blocked run.
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{ADDOPTS} -x --agent-id=someone --compact")
    before = user_state(repo)

    found = check(repo, base, list(EXPECTED))

    assert found.outcomes == EXPECTED
    assert list(found.outcomes) == list(EXPECTED)
    assert (found.unchecked, found.note) == ([], None)
    worktree = worktree_path(repo / ".llmharness")
    assert found.imported_from == {"calc": str(worktree / "calc")}
    assert git(worktree, "rev-parse", "HEAD") == base
    assert user_state(repo) == before
    assert git(repo, "rev-parse", "HEAD") == head


def _venv(tmp_path: Path, pth: str) -> str:
    """A virtual environment with this one's packages and the `.pth` file `pth`."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    relative = Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    site = venv / relative
    ours = sysconfig.get_paths()["purelib"]
    (site / "aaa_dev.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    (site / "zzz_other_clone.pth").write_text(pth)
    return str(venv / "bin" / "python")


FINDER = """
import importlib.util, sys


class Finder:
    # What setuptools' editable install appends to sys.meta_path.
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name == "calc":
            return importlib.util.spec_from_file_location(
                name, {init!r}, submodule_search_locations=[{folder!r}]
            )
        return None


sys.meta_path.{insert}
"""


def _finder_pth(tmp_path: Path, other: Path, insert: str) -> str:
    """A `.pth` file's text that installs an import hook finding `calc` in `other`."""
    finder = tmp_path / "finder"
    init, folder = str(other / "calc" / "__init__.py"), str(other / "calc")
    write(finder, {"calc_finder.py": FINDER.format(init=init, folder=folder, insert=insert)})
    return f"{finder}\nimport calc_finder\n"


@pytest.mark.parametrize(
    "setup", ["PYTHONPATH other clone", "PYTHONPATH this clone", ".pth path", "editable finder"]
)
def test_imports_the_base_code(
    project: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str
) -> None:
    """Where the environment imports the project from another clone (or from the user's own,
    broken, one), the tests at the base still import the base's code."""
    repo, base, _ = project
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo), str(other))  # at head: add is broken there
    python = sys.executable
    if setup == "PYTHONPATH other clone":
        monkeypatch.setenv("PYTHONPATH", str(other))
    elif setup == "PYTHONPATH this clone":
        monkeypatch.setenv("PYTHONPATH", str(repo))
    elif setup == ".pth path":
        python = _venv(tmp_path, f"{other}\n")
    else:
        python = _venv(tmp_path, _finder_pth(tmp_path, other, "append(Finder)"))
    if python != sys.executable:
        seen = subprocess.run(
            [python, "-c", "import calc; print(calc.__file__)"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        assert seen.stdout.strip() == str(other / "calc" / "__init__.py")  # the trap is real

    wanted = {"tests/test_calc.py::test_add": "passed"}
    if setup == "PYTHONPATH this clone":
        # The user's clone is off the path: what only it has cannot be imported at the base.
        wanted["tests/test_calc.py::test_helper"] = "failed"

    found = check(repo, base, list(wanted), python=python)

    assert found.outcomes == wanted, found.note
    worktree = worktree_path(repo / ".llmharness")
    assert found.imported_from == {"calc": str(worktree / "calc")}


def test_a_project_in_a_subfolder_of_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rootdir below the repository's top, with a src layout the user's PYTHONPATH names:
    node ids stay relative to the rootdir, the code comes from the base's src."""
    files = {
        "py/pytest.ini": "[pytest]\n",
        "py/src/calc/__init__.py": BASE_FILES["calc/__init__.py"],
        "py/tests/test_calc.py": BASE_FILES["tests/test_calc.py"],
    }
    repo, base = new_repo(tmp_path, files)
    commit(repo, {"py/src/calc/__init__.py": HEAD_FILES["calc/__init__.py"]}, "head")
    monkeypatch.setenv("PYTHONPATH", str(repo / "py" / "src"))
    rootdir = repo / "py"

    found = check_at_base(
        repo, rootdir, repo / ".llmharness", base, ["tests/test_calc.py::test_add"], 30.0
    )

    assert found.outcomes == {"tests/test_calc.py::test_add": "passed"}, found.note
    worktree = worktree_path(repo / ".llmharness")
    assert found.imported_from == {"calc": str(worktree / "py" / "src" / "calc")}


def test_outcomes_discarded_when_the_base_code_cannot_win(
    project: tuple[Path, str, str], tmp_path: Path
) -> None:
    """An environment whose import hook finds the project in another clone before any path
    entry: nothing seen at the base counts."""
    repo, base, _ = project
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(repo), str(other))
    python = _venv(tmp_path, _finder_pth(tmp_path, other, "insert(0, Finder)"))
    nodeids = ["tests/test_calc.py::test_add", "tests/test_calc.py::test_bad"]

    found = check(repo, base, nodeids, python=python)

    assert (found.outcomes, found.unchecked) == ({}, nodeids)
    assert found.note == (
        f"2 tests not checked at base {base[:12]}: at the base calc was imported from "
        f"{other / 'calc'}, outside its worktree (an import hook or a sys.path change that "
        "wins over PYTHONPATH?), so the outcomes were not the base's"
    )


SLOW_TEST = """
import os
import subprocess
import sys
import time

PIDS = {pids!r}


def test_fast1() -> None:
    pass


def test_fast2() -> None:
    pass


def test_sleep() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(PIDS, "w") as handle:
        handle.write(f"{{os.getpid()}} {{sleeper.pid}}")
    time.sleep(10)


def test_after() -> None:
    pass
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to see processes end")
def test_budget_kills_the_run_and_keeps_what_finished(tmp_path: Path) -> None:
    """Past the budget the run at the base and all it started are killed; the tests that
    finished keep their outcomes, the rest are unchecked and the note says why."""
    pids = tmp_path / "pids"
    repo, base = new_repo(tmp_path, {"tests/test_slow.py": SLOW_TEST.format(pids=str(pids))})
    nodeids = [f"tests/test_slow.py::test_{name}" for name in ("fast1", "fast2", "sleep", "after")]

    started = time.monotonic()
    found = check(repo, base, nodeids, budget=2.0)
    took = time.monotonic() - started

    assert found.outcomes == {nodeids[0]: "passed", nodeids[1]: "passed"}
    assert found.unchecked == nodeids[2:]
    assert found.note == (
        f"2 of 4 tests not checked at base {base[:12]}: the 2s budget ran out "
        "(setting base_check_budget)"
    )
    assert 2.0 <= found.seconds <= took < 4.0
    deadline = time.monotonic() + 5.0
    processes = [int(pid) for pid in pids.read_text().split()]
    while not all(_gone(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in processes)


def test_one_check_at_a_time(project: tuple[Path, str, str]) -> None:
    """While another run holds the store's worktree, a check waits for it within its budget and
    then gives up, saying so."""
    repo, base, _ = project
    lock = filelock.FileLock(str(worktree_path(repo / ".llmharness").parent / "base.lock"))

    with lock:
        found = check(repo, base, ["tests/test_calc.py::test_add"], budget=0.5)

    assert (found.outcomes, found.unchecked) == ({}, ["tests/test_calc.py::test_add"])
    assert found.note == (
        f"1 test not checked at base {base[:12]}: another run was using the base worktree "
        "all the budget"
    )
    assert 0.5 <= found.seconds < 2.0


def test_base_missing_from_a_shallow_clone(project: tuple[Path, str, str], tmp_path: Path) -> None:
    """A base the clone does not have: everything unchecked, a note, no worktree, no error."""
    repo, base, _ = project
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    nodeids = ["tests/test_calc.py::test_add"]

    found = check_at_base(shallow, shallow, shallow / ".llmharness", base, nodeids, 30.0)

    assert (found.outcomes, found.unchecked) == ({}, nodeids)
    assert found.note == (
        f"1 test not checked at base {base[:12]}: the commit is not in this clone "
        "(a shallow clone? git fetch --unshallow)"
    )
    assert not worktree_path(shallow / ".llmharness").exists()


def test_base_whose_pytest_cannot_start(tmp_path: Path) -> None:
    """A base whose conftest fails to import: its tests are unchecked, with pytest's word."""
    repo, base = new_repo(
        tmp_path,
        {
            "conftest.py": "raise ImportError('half a refactoring')\n",
            "test_a.py": "def test_a(): pass\n",
        },
    )

    found = check(repo, base, ["test_a.py::test_a"])

    assert (found.outcomes, found.unchecked) == ({}, ["test_a.py::test_a"])
    assert found.note is not None
    assert found.note.startswith(
        f"1 test not checked at base {base[:12]}: pytest at the base exited 4: "
    )


def test_worktree_reused_for_the_same_base_and_moved_for_another(
    project: tuple[Path, str, str],
) -> None:
    """The worktree stays while the base does (what runs leave in it too), is restored when
    something changed it, follows a new base, comes back when deleted, and can be removed."""
    repo, base, head = project
    store = repo / ".llmharness"
    worktree = worktree_path(store)
    add = ["tests/test_calc.py::test_add"]
    before = user_state(repo)

    assert check(repo, base, add).outcomes == {add[0]: "passed"}
    marker = worktree / "tests" / "__pycache__" / "marker"
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    made = (worktree / ".git").stat()

    assert check(repo, base, add).outcomes == {add[0]: "passed"}
    assert marker.exists()
    assert (worktree / ".git").stat().st_ino == made.st_ino
    assert (worktree / ".git").stat().st_mtime_ns == made.st_mtime_ns

    (worktree / "calc" / "__init__.py").write_text("def add(a, b):\n    return 0\n")
    (worktree / "calc" / "stray.py").write_text("")
    assert check(repo, base, add).outcomes == {add[0]: "passed"}
    assert not (worktree / "calc" / "stray.py").exists()

    assert check(repo, head, add).outcomes == {add[0]: "failed"}
    assert git(worktree, "rev-parse", "HEAD") == head
    assert not marker.exists()

    shutil.rmtree(worktree)  # by hand: git still has it registered
    assert check(repo, base, add).outcomes == {add[0]: "passed"}

    assert remove_worktree(repo, store)
    assert not worktree.exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert user_state(repo) == before


# -- where the code under test comes from -------------------------------------------------------
def _load(name: str, init: Path) -> ModuleType:
    """The module at `init`, loaded as `name` without going into sys.modules."""
    spec = importlib.util.spec_from_file_location(name, init)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clones(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Makes a clone-like folder holding a `minicalc` package and the usual non-project files."""

    def make(name: str) -> Path:
        root = tmp_path / name
        for package in ("minicalc", "tests", "src/minisrc"):
            write(root, {f"{package}/__init__.py": "VALUE = 1\n"})
        write(root, {"conftest.py": "", "setup.py": "", "tool.py": ""})
        return root

    yield make


def test_foreign_imports_reports_another_clone(clones: Callable[[str], Path]) -> None:
    """A project package imported from another clone is reported, with the folder and a hint;
    one from this work tree, and the non-project names, are not."""
    mine, other = clones("mine"), clones("other")
    modules = {
        "minicalc": _load("minicalc", other / "minicalc" / "__init__.py"),
        "minisrc": _load("minisrc", mine / "src" / "minisrc" / "__init__.py"),
        "tool": _load("tool", mine / "tool.py"),
        "tests": _load("tests", other / "tests" / "__init__.py"),
        "conftest": _load("conftest", other / "conftest.py"),
        "setup": _load("setup", other / "setup.py"),
    }

    lines = foreign_imports(mine, mine, modules)

    assert lines == [
        f"code under test: minicalc is imported from {other / 'minicalc'}, outside this work "
        "tree (an editable install of another clone? pip install -e .)"
    ]
    assert (
        foreign_imports(
            mine,
            mine,
            {**modules, "minicalc": _load("minicalc", mine / "minicalc" / "__init__.py")},
        )
        == []
    )


def test_foreign_imports_names_what_would_be_imported(
    clones: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project package not imported yet but importable only from another clone, here through
    PYTHONPATH, is reported too."""
    mine, other = clones("mine"), clones("other")
    monkeypatch.syspath_prepend(str(other))
    monkeypatch.setenv("PYTHONPATH", str(other))

    lines = foreign_imports(mine, mine, {})

    assert lines == [
        f"code under test: minicalc would be imported from {other / 'minicalc'}, outside this "
        f"work tree (PYTHONPATH names {other}: point it at this work tree)",
        f"code under test: tool would be imported from {other / 'tool.py'}, outside this "
        f"work tree (PYTHONPATH names {other}: point it at this work tree)",
    ]
