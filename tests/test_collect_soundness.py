"""The collection cache never changes which tests a `--fast` run runs.

Each test records a suite's collection, changes what its node ids depend on (an environment
variable, an option, a data file, hidden state), and checks that `--fast` runs exactly the tests
the same run without the cache (`LLMHARNESS_FAST_COLLECT=0`, the ground truth) runs; and that
the cache is used again once nothing changes, so that none passes by turning the cache off.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET

from llmharness.collectcache import (
    IGNORED_VARIABLES,
    changed_names,
    collection_args,
    variable_digests,
)
from llmharness.harness import HARNESS_KEY
from llmharness.sampling import score

STORE = ".llmharness"
PLAIN = "\n".join(f"def test_{t}():\n    pass\n" for t in range(5))


def _plain_files(pytester: pytest.Pytester) -> None:
    """Ten files of five tests: most of them are skipped by a 10% plan."""
    for f in range(10):
        pytester.makepyfile(**{f"test_a{f}": PLAIN})


def _record(pytester: pytest.Pytester) -> tuple[set[str], dict[str, Any]]:
    last = pytester.path / STORE / "last"
    rows = (last / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ran = {json.loads(row)["nodeid"] for row in rows if row.strip()}
    summary = json.loads((last / "summary.json").read_text(encoding="utf-8"))
    return ran, summary["sample"]


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str, cached: bool = True
) -> tuple[set[str], dict[str, Any]]:
    """Run in-process; return the node ids that ran and the summary's sample."""
    monkeypatch.setenv("LLMHARNESS_FAST_COLLECT", "true" if cached else "false")
    result = pytester.runpytest(*QUIET, *args)
    assert result.ret == 0, result.stdout.str()
    return _record(pytester)


def _check(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str
) -> dict[str, Any]:
    """The run with the cache runs what the run without it runs, a strict part of the suite;
    return its sample."""
    truth_ran, truth = _run(pytester, monkeypatch, *args, cached=False)
    ran, sample = _run(pytester, monkeypatch, *args)
    assert ran == truth_ran
    assert (sample["selected"], sample["total"]) == (truth["selected"], truth["total"])
    assert 0 < len(ran) < sample["total"]
    return sample


def _seed(*conditions: Callable[[str], bool]) -> str:
    """The first seed of s0, s1... that meets every condition."""
    return next(
        seed for seed in (f"s{i}" for i in range(100_000)) if all(c(seed) for c in conditions)
    )


def _hides(old: list[str], new: list[str], fraction: float) -> Callable[[str], bool]:
    """A seed that samples none of a file's `old` ids and some of its `new` ones: a cache that
    trusted the old ids would skip the file and miss them."""

    def condition(seed: str) -> bool:
        return all(score(seed, n) >= fraction for n in old) and any(
            score(seed, n) < fraction for n in new
        )

    return condition


def _cache_files(pytester: pytest.Pytester) -> dict[str, Any]:
    data = json.loads((pytester.path / STORE / "collection.json").read_text(encoding="utf-8"))
    files: dict[str, Any] = data["files"]
    return files


def _warnings(pytester: pytest.Pytester) -> list[str]:
    log = (pytester.path / STORE / "last" / "log.txt").read_text(encoding="utf-8")
    return [line for line in log.splitlines() if line.startswith("WARNING")]


PARAM_BY_ENV = """
import os
import pytest

@pytest.mark.parametrize("i", range(int(os.environ["N"])))
def test_p(i):
    pass
"""


def test_parametrization_by_an_environment_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for f in range(20):
        pytester.makepyfile(**{f"test_f{f}": PARAM_BY_ENV})
    fast = ("--fast", "--seed", "s1")
    monkeypatch.setenv("N", "1")
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    # s1 samples no N=1 id of some file but some of its N=30 ids.
    old = [f"test_f{f}.py::test_p[0]" for f in range(20)]
    assert any(
        _hides([old[f]], [f"test_f{f}.py::test_p[{i}]" for i in range(30)], 0.1)("s1")
        for f in range(20)
    )
    monkeypatch.setenv("N", "30")
    assert _check(pytester, monkeypatch, *fast)["total"] == 600
    sample = _check(pytester, monkeypatch, *fast)
    assert sample["uncollected_files"] > 0  # recorded again under N=30, and used
    monkeypatch.setenv("N", "1")
    assert _check(pytester, monkeypatch, *fast)["total"] == 20
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


def test_count_option_of_pytest_repeat(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pytest_repeat")
    _plain_files(pytester)
    fast = ("--fast", "--seed", "s1")
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    assert _check(pytester, monkeypatch, "--count", "4", *fast)["total"] == 200
    assert _check(pytester, monkeypatch, "--count=4", *fast)["uncollected_files"] > 0
    assert _check(pytester, monkeypatch, *fast)["total"] == 50


def test_conftest_option_used_by_generate_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        """
        def pytest_addoption(parser):
            parser.addoption("--n-cases", type=int, default=1)

        def pytest_generate_tests(metafunc):
            if "case" in metafunc.fixturenames:
                metafunc.parametrize("case", range(metafunc.config.getoption("n_cases")))
        """
    )
    for f in range(10):
        pytester.makepyfile(**{f"test_c{f}": "def test_case(case):\n    pass\n"})
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    old = [f"test_c{f}.py::test_case[0]" for f in range(10)]
    new = [f"test_c{f}.py::test_case[{i}]" for f in range(10) for i in range(12)]
    seed = _seed(_hides(old, new, 0.1))
    fast = ("--fast", "--seed", seed)
    assert _check(pytester, monkeypatch, "--n-cases", "12", *fast)["total"] == 120
    assert _check(pytester, monkeypatch, "--n-cases", "12", *fast)["uncollected_files"] > 0


def test_generate_tests_in_a_conftest_reading_a_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(
        """
        import os

        def pytest_generate_tests(metafunc):
            if "n" in metafunc.fixturenames:
                metafunc.parametrize("n", range(int(os.environ.get("CASES", "2"))))
        """
    )
    _plain_files(pytester)
    for f in range(10):
        pytester.makepyfile(**{f"test_g{f}": "def test_n(n):\n    pass\n"})
    old = [f"test_g{f}.py::test_n[{i}]" for f in range(10) for i in range(2)]
    new = [f"test_g{f}.py::test_n[{i}]" for f in range(10) for i in range(25)]
    fast = ("--fast", "--seed", _seed(_hides(old, new, 0.1)))
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 20
    monkeypatch.setenv("CASES", "25")
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 250
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


DATA_DRIVEN = {
    "test_json": """
        import json
        import pathlib
        import pytest

        CASES = json.loads((pathlib.Path(__file__).parent / "cases.json").read_text())

        @pytest.mark.parametrize("case", CASES)
        def test_case(case):
            pass
        """,
    "test_folder": """
        import glob
        import os
        import pytest

        HERE = os.path.dirname(__file__)
        NAMES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "data", "*.txt")))

        @pytest.mark.parametrize("name", NAMES)
        def test_file(name):
            pass
        """,
}


def test_node_ids_from_a_data_file_and_a_data_folder(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _plain_files(pytester)
    pytester.makepyfile(**DATA_DRIVEN)
    cases = pytester.path / "cases.json"
    cases.write_text(json.dumps(["a", "b"]))
    data = pytester.path / "data"
    data.mkdir()
    for name in ("a", "b"):
        (data / f"{name}.txt").write_text("")
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    deps = {rel: set(entry["deps"]) for rel, entry in _cache_files(pytester).items()}
    assert "cases.json" in deps["test_json.py"]
    assert "data/" in deps["test_folder.py"]

    old = ["test_json.py::test_case[a]", "test_json.py::test_case[b]"]
    new = [f"test_json.py::test_case[c{i}]" for i in range(40)]
    fast = ("--fast", "--seed", _seed(_hides(old, new, 0.1)))
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    cases.write_text(json.dumps(["a", "b", *(f"c{i}" for i in range(40))]))
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 42 + 2
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0

    old = ["test_folder.py::test_file[a.txt]", "test_folder.py::test_file[b.txt]"]
    new = [f"test_folder.py::test_file[n{i}.txt]" for i in range(30)]
    fast = ("--fast", "--seed", _seed(_hides(old, new, 0.1)))
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    for i in range(30):
        (data / f"n{i}.txt").write_text("")
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 42 + 32
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


def test_data_file_read_by_a_helper_module_at_import(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper is imported (and reads its data) while the first of its users is collected;
    the others' collection depends on that data too."""
    _plain_files(pytester)
    pytester.makepyfile(
        loader="import json, pathlib\n\n"
        "def load():\n"
        "    return json.loads((pathlib.Path(__file__).parent / 'cases.json').read_text())\n",
        helpers="import loader\n\nCASES = loader.load()\n",
        **{
            f"test_h{f}": "import pytest\nfrom helpers import CASES\n\n"
            "@pytest.mark.parametrize('case', CASES)\ndef test_case(case):\n    pass\n"
            for f in range(3)
        },
    )
    cases = pytester.path / "cases.json"
    cases.write_text(json.dumps(["a"]))
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    # test_h1.py and test_h2.py found helpers imported already: a seed that skips them.
    old = [f"test_h{f}.py::test_case[a]" for f in (1, 2)]
    new = [f"test_h{f}.py::test_case[c{i}]" for f in (1, 2) for i in range(20)]
    fast = ("--fast", "--seed", _seed(_hides(old, new, 0.1)))
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    cases.write_text(json.dumps(["a", *(f"c{i}" for i in range(20))]))
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 63
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


def test_data_file_read_by_a_folders_conftest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conftest below the rootdir is imported while its folder is collected: what it reads
    is a dependency of every file below it."""
    _plain_files(pytester)
    sub = pytester.mkpydir("sub")
    (sub / "conftest.py").write_text(
        "import json, pathlib\n\n"
        "CASES = json.loads((pathlib.Path(__file__).parent / 'cases.json').read_text())\n\n"
        "def pytest_generate_tests(metafunc):\n"
        "    if 'case' in metafunc.fixturenames:\n"
        "        metafunc.parametrize('case', CASES)\n"
    )
    for f in range(3):
        (sub / f"test_s{f}.py").write_text("def test_case(case):\n    pass\n")
    cases = sub / "cases.json"
    cases.write_text(json.dumps(["a"]))
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    old = [f"sub/test_s{f}.py::test_case[a]" for f in range(3)]
    new = [f"sub/test_s{f}.py::test_case[c{i}]" for f in range(3) for i in range(20)]
    fast = ("--fast", "--seed", _seed(_hides(old, new, 0.1)))
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    cases.write_text(json.dumps(["a", *(f"c{i}" for i in range(20))]))
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 63
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


def test_doctest_modules(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _plain_files(pytester)
    pytester.makepyfile(
        mod='''
        def double(x):
            """
            >>> double(2)
            4
            """
            return 2 * x
        ''',
        test_mixed='''
        def helper():
            """
            >>> helper()
            1
            """
            return 1

        def test_real():
            assert helper() == 1
        ''',
    )
    doctests = ("--doctest-modules",)
    _run(pytester, monkeypatch, *doctests, "--agent-id", "warmup")
    # Both kinds of collector of test_mixed.py (one node id) are recorded together.
    assert set(_cache_files(pytester)["test_mixed.py"]["ids"]) == {
        "test_mixed.py::test_mixed.helper",
        "test_mixed.py::test_real",
    }
    # A sample with doctests, where test_mixed.py's module is built without its test.
    seed = _seed(
        lambda s: score(s, "mod.py::mod.double") < 0.2,
        lambda s: score(s, "test_mixed.py::test_mixed.helper") < 0.2,
        lambda s: score(s, "test_mixed.py::test_real") >= 0.2,
    )
    fast = (*doctests, "--fast-fraction", "20%", "--seed", seed)
    sample = _check(pytester, monkeypatch, *fast)
    assert sample["uncollected_files"] > 0
    assert _warnings(pytester) == []  # the module built in part matched its record
    ran, _ = _run(pytester, monkeypatch, *fast)
    assert {"mod.py::mod.double", "test_mixed.py::test_mixed.helper"} <= ran

    old = ["mod.py::mod.double"]
    new = [f"mod.py::mod.triple{i}" for i in range(20)]
    seed = _seed(_hides(old, new, 0.2))
    fast = (*doctests, "--fast-fraction", "20%", "--seed", seed)
    triples = "".join(
        f'\ndef triple{i}(x):\n    """\n    >>> triple{i}(1)\n    3\n    """\n    return 3 * x\n'
        for i in range(20)
    )
    mod = pytester.path / "mod.py"
    mod.write_text(mod.read_text() + triples)
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 3 + 20
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


def test_non_python_collector(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(
        """
        import pytest

        def pytest_collect_file(parent, file_path):
            if file_path.suffix == ".yaml" and file_path.name.startswith("test"):
                return YamlFile.from_parent(parent, path=file_path)

        class YamlFile(pytest.File):
            def collect(self):
                for line in self.path.read_text().splitlines():
                    if line.strip():
                        yield YamlItem.from_parent(self, name=line.strip())

        class YamlItem(pytest.Item):
            def runtest(self):
                pass

            def reportinfo(self):
                return self.path, 0, self.name
        """
    )
    _plain_files(pytester)
    cases = pytester.path / "test_cases.yaml"
    cases.write_text("one\ntwo\n")
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert "test_cases.yaml" not in _cache_files(pytester)  # never skipped: always collected
    old = ["test_cases.yaml::one", "test_cases.yaml::two"]
    new = [f"test_cases.yaml::case{i}" for i in range(30)]
    fast = ("--fast", "--seed", _seed(_hides(old, new, 0.1)))
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    cases.write_text("one\ntwo\n" + "".join(f"case{i}\n" for i in range(30)))
    assert _check(pytester, monkeypatch, *fast)["total"] == 50 + 32
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


HIDDEN = """
import pathlib
import pytest

# Outside the rootdir: what the cache's key cannot see.
HIDDEN = pathlib.Path(__file__).resolve().parent.parent / "{name}-hidden.txt"
SETUPS = []

def setup_module():
    SETUPS.append(1)

@pytest.fixture
def value(value):  # overrides the conftest's: a module built twice must not stack it
    return value + 1

@pytest.mark.parametrize("i", range(int(HIDDEN.read_text())))
def test_hidden(i, value):
    assert (value, SETUPS) == (2, [1])

def test_other():
    pass
"""


def _hidden_suite(pytester: pytest.Pytester, count: int) -> Path:
    """Plain files, then one (collected last) whose node ids hidden state decides."""
    _plain_files(pytester)
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef value():\n    return 1\n")
    pytester.makepyfile(test_zz_hidden=HIDDEN.format(name=pytester.path.name))
    hidden = pytester.path.parent / f"{pytester.path.name}-hidden.txt"
    hidden.write_text(str(count))
    return hidden


def _skipped(seed: str, fraction: float) -> int:
    """How many plain files a plan skips: those with no sampled test."""
    ids = [[f"test_a{f}.py::test_{t}" for t in range(5)] for f in range(10)]
    return sum(all(score(seed, n) >= fraction for n in file) for file in ids)


@pytest.mark.parametrize(("after", "new", "gone"), [(40, 35, 0), (2, 0, 3)])
def test_hidden_state_is_caught_in_a_file_built_in_part(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, after: int, new: int, gone: int
) -> None:
    hidden = _hidden_suite(pytester, 5)
    recorded = [f"test_zz_hidden.py::test_hidden[{i}]" for i in range(5)]
    changed = [f"test_zz_hidden.py::test_hidden[{i}]" for i in range(5, after)]
    seed = _seed(
        # The hidden file is built in part: one of its recorded ids is sampled (and, when it
        # shrinks, one that goes)...
        lambda s: after >= 5 or any(score(s, n) < 0.1 for n in recorded[after:]),
        lambda s: any(score(s, n) < 0.1 for n in recorded),
        # ...one of its new ids too when it grows, and a plain file is skipped before it.
        lambda s: after < 5 or any(score(s, n) < 0.1 for n in changed),
        lambda s: _skipped(s, 0.1) > 0,
    )
    fast = ("--fast", "--seed", seed)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    hidden.write_text(str(after))
    truth_ran, truth = _run(pytester, monkeypatch, *fast, cached=False)
    ran, sample = _run(pytester, monkeypatch, *fast)
    skipped = _skipped(seed, 0.1)
    files = "file" if skipped == 1 else "files"
    assert _warnings(pytester) == [
        'WARNING message="collection cache: test_zz_hidden.py produced other node ids than '
        f"recorded ({new} new, {gone} gone); cache dropped, the rest of this run collected in "
        f'full; {skipped} {files} skipped before it may be missing tests"'
    ]
    # The file was built whole; the files skipped before it did not change.
    assert ran == truth_ran
    assert sample["selected"] == truth["selected"]
    assert _cache_files(pytester) == {}
    # The next run collects everything (and records it); the one after uses the cache again.
    ran, sample = _run(pytester, monkeypatch, *fast)
    assert (ran, sample["total"], sample["uncollected_files"]) == (truth_ran, truth["total"], 0)
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    assert _warnings(pytester) == []


def test_hidden_state_is_caught_on_xdist_workers(pytester: pytest.Pytester) -> None:
    hidden = _hidden_suite(pytester, 5)
    recorded = [f"test_zz_hidden.py::test_hidden[{i}]" for i in range(5)]
    changed = [f"test_zz_hidden.py::test_hidden[{i}]" for i in range(5, 40)]
    seed = _seed(
        lambda s: any(score(s, n) < 0.1 for n in recorded),
        lambda s: any(score(s, n) < 0.1 for n in changed),
    )
    fast = ("--fast", "--seed", seed, "-n", "2")
    assert pytester.runpytest_subprocess(*QUIET, "--agent-id", "warmup").ret == 0
    hidden.write_text("40")
    assert pytester.runpytest_subprocess(*QUIET, *fast).ret == 0
    ran, sample = _record(pytester)
    assert len(_warnings(pytester)) == 1
    assert _cache_files(pytester) == {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LLMHARNESS_FAST_COLLECT", "0")
        assert pytester.runpytest_subprocess(*QUIET, *fast).ret == 0
    truth_ran, truth = _record(pytester)
    assert ran == truth_ran
    assert sample["selected"] == truth["selected"]


def test_narrowed_run_records_no_partial_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_functions=PLAIN,
        test_classes="""
        class TestOne:
            def test_a(self): pass
            def test_b(self): pass

        class TestTwo:
            def test_c(self): pass
        """,
    )
    _plain_files(pytester)
    narrowed = ("test_functions.py::test_1", "test_classes.py::TestOne::test_a")
    _run(pytester, monkeypatch, *narrowed)
    files = _cache_files(pytester)
    # A module's report holds all its functions: recorded whole; a class never collected
    # leaves its file out.
    assert files["test_functions.py"]["ids"] == [f"test_functions.py::test_{t}" for t in range(5)]
    assert "test_classes.py" not in files
    # The same narrowed run in a sample draws from what it names only, as without the cache.
    seed = _seed(lambda s: score(s, "test_functions.py::test_1") >= 0.5)
    ran, _ = _run(pytester, monkeypatch, *narrowed, "--fast-fraction", "50%", "--seed", seed)
    truth_ran, _ = _run(pytester, monkeypatch, *narrowed, "--fast-fraction", "50%", "--seed", seed)
    assert ran == truth_ran
    # A narrower run does not replace the broader cache of a whole run.
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert len(_cache_files(pytester)) == 12
    _run(pytester, monkeypatch, "test_a0.py")
    assert len(_cache_files(pytester)) == 12
    assert _check(pytester, monkeypatch, "--fast", "--seed", "s1")["uncollected_files"] > 0


def test_a_rejected_cache_says_why(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not in a warning (an ordinary change of the environment), but for a debug log."""
    _plain_files(pytester)
    monkeypatch.setenv("N", "1")
    _run(pytester, monkeypatch, "--agent-id", "warmup")

    def reason(*args: str) -> str | None:
        cache = pytester.parseconfigure(*QUIET, "--fast", *args).stash[HARNESS_KEY].collection
        assert cache is not None
        cache.plan()
        return cache.reason

    assert reason() is None
    monkeypatch.setenv("N", "2")
    monkeypatch.setenv("NEW", "")
    assert reason() == "environment variables changed: N, NEW"
    monkeypatch.setenv("N", "1")
    monkeypatch.delenv("NEW")
    assert reason("--import-mode", "importlib") == "command line changed"


def test_key_leaves_out_what_cannot_change_node_ids() -> None:
    args = [
        "-q", "-vv", "-rA", "-x", "-n", "2", "--dist=load", "--tb", "short", "-p", "xdist",
        "--fast", "--fast-fraction", "1%", "--seed=s1", "--agent-id", "7", "--count", "3",
        "-xvs", "-k", "slow", "tests/test_a.py::test_x", "--co", "--color=no", "-nauto",
        "--import-mode=importlib", "--", "-q",
    ]  # fmt: skip
    assert collection_args(args) == [
        "-p", "xdist", "--count", "3", "-k", "slow", "tests/test_a.py::test_x",
        "--import-mode", "importlib", "--", "-q",
    ]  # fmt: skip
    # A stack with an option that may change node ids is kept whole.
    assert collection_args(["-xk", "slow"]) == ["-xk", "slow"]


def test_variables_that_change_between_shells_are_not_keyed() -> None:
    base = {"N": "1", "PATH": "/bin", "PYTEST_ADDOPTS": "--count 2"}
    shell = {"_": "/usr/bin/pytest", "OLDPWD": "/", "SHLVL": "2", "LLMHARNESS_AGENT_ID": "7"}
    assert set(IGNORED_VARIABLES).isdisjoint(base)
    assert variable_digests(base) == variable_digests({**base, **shell})
    assert variable_digests({**base, "PYTEST_XDIST_WORKER": "gw1"}) == variable_digests(base)
    changed = variable_digests({**base, "N": "30", "NEW": ""})
    assert changed_names(variable_digests(base), changed) == ["N", "NEW"]
    # Digests, not the values (which may be secrets).
    assert set(changed.values()).isdisjoint({"1", "30", "/bin", "--count 2"})
