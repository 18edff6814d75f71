"""`--fast` under `-k`/`-m` still leaves files with no selected test unimported, and runs exactly
what the same run without the collection cache (`LLMHARNESS_FAST_COLLECT=false`) runs.

Each test file of the suites here appends its name to a log outside the rootdir when imported
(outside, so that the cache does not take the log for a dependency): a fast run must import
exactly the files of the tests it runs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET

from llmharness.collectcache import Fingerprints, collection_args, plan, selection_free
from llmharness.harness import HARNESS_KEY
from llmharness.sampling import Sampler, score
from llmharness.selection import Expression, ExpressionError, Selection

STORE = ".llmharness"

PLAIN = """
import pathlib
import pytest

with pathlib.Path({log!r}).open("a") as log:
    log.write(pathlib.Path(__file__).name + "\\n")

def test_alpha_{f}(): pass
def test_beta_{f}(): pass

@pytest.mark.slow
def test_slow_{f}(): pass

class TestGroup:
    def test_in_{f}(self): pass

    @pytest.mark.parametrize("v", ["x-y", pytest.param("Three", marks=pytest.mark.slow), 3])
    def test_param(self, v): pass
"""

ALL_SLOW = """
import pathlib
import pytest

with pathlib.Path({log!r}).open("a") as log:
    log.write(pathlib.Path(__file__).name + "\\n")
pytestmark = pytest.mark.slow

{tests}
"""

DEVICES = """
import pathlib
import pytest

with pathlib.Path({log!r}).open("a") as log:
    log.write(pathlib.Path(__file__).name + "\\n")

@pytest.mark.device(serial="123", fast=True)
def test_serial_123(): pass

@pytest.mark.device(serial="9")
def test_serial_9(): pass

@pytest.mark.device(serial=123)
def test_serial_int(): pass

def test_no_device(): pass
"""


MARKERS = "[pytest]\nmarkers =\n" + "".join(
    f"    {name}: {name}\n" for name in ("slow", "quick", "device", "net", "added")
)


def _log(pytester: pytest.Pytester) -> Path:
    return pytester.path.parent / f"{pytester.path.name}-imports.log"


def _suite(pytester: pytest.Pytester) -> None:
    """Eight mixed files, four whose tests are all slow, and a folder of device tests: 84."""
    log = str(_log(pytester))
    for f in range(8):
        pytester.makepyfile(**{f"test_plain_{f}": PLAIN.format(log=log, f=f)})
    for f in range(4):
        tests = "\n".join(f"def test_s{f}_{t}(): pass" for t in range(6))
        pytester.makepyfile(**{f"test_all_slow_{f}": ALL_SLOW.format(log=log, tests=tests)})
    sub = pytester.mkdir("sub")
    (sub / "test_devices.py").write_text(DEVICES.format(log=log))
    pytester.makeini(MARKERS)


def _imported(pytester: pytest.Pytester) -> set[str]:
    log = _log(pytester)
    return set(log.read_text().split()) if log.exists() else set()


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str, cached: bool = True
) -> tuple[set[str], dict[str, Any]]:
    """Run in-process; the node ids that ran and the summary's sample."""
    monkeypatch.setenv("LLMHARNESS_FAST_COLLECT", "true" if cached else "false")
    _log(pytester).unlink(missing_ok=True)
    result = pytester.runpytest(*QUIET, *args)
    assert result.ret == 0, result.stdout.str()
    last = pytester.path / STORE / "last"
    rows = (last / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ran = {json.loads(row)["nodeid"] for row in rows if row.strip()}
    summary = json.loads((last / "summary.json").read_text(encoding="utf-8"))
    return ran, summary["sample"]


def _warnings(pytester: pytest.Pytester) -> list[str]:
    log = (pytester.path / STORE / "last" / "log.txt").read_text(encoding="utf-8")
    return [line for line in log.splitlines() if line.startswith("WARNING")]


def _cache_files(pytester: pytest.Pytester) -> dict[str, Any]:
    data = json.loads((pytester.path / STORE / "collection.json").read_text(encoding="utf-8"))
    files: dict[str, Any] = data["files"]
    return files


def _files(nodeids: set[str]) -> set[str]:
    return {nodeid.split("::")[0].rpartition("/")[2] for nodeid in nodeids}


def _check(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str, also: str = ""
) -> dict[str, Any]:
    """The fast run runs, counts and deselects what the run without the cache does, with no
    warning, and imports only the files of the tests it runs (and `also`); return its
    sample."""
    truth_ran, truth = _run(pytester, monkeypatch, *args, cached=False)
    ran, sample = _run(pytester, monkeypatch, *args)
    assert ran == truth_ran
    keys = ("selected", "total", "deselected")
    assert [sample[k] for k in keys] == [truth[k] for k in keys]
    assert _warnings(pytester) == []
    assert _imported(pytester) == _files(ran) | ({also} if also else set())
    return sample


def test_addopts_marker_expression_leaves_unselected_files_unimported(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    ini = pytester.path / "tox.ini"
    ini.write_text(ini.read_text() + '\naddopts = -m "not slow"\n')
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    for seed in ("a", "b", "c"):
        sample = _check(pytester, monkeypatch, "--fast-fraction", "30%", "--seed", seed)
        assert sample["total"] == 84
        assert sample["deselected"] == 8 + 8 + 24  # test_slow_*, the Three params, all-slow
        assert sample["uncollected_files"] >= 4  # at least the all-slow files
    # -m on the command line replaces addopts' (the last -m wins), with the same cache.
    sample = _check(pytester, monkeypatch, "--fast-fraction", "30%", "--seed", "a", "-m", "slow")
    assert sample["deselected"] == 84 - 40
    assert sample["uncollected_files"] > 0


@pytest.mark.parametrize("seed", ["k1"])
def test_keyword_expressions(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, seed: str
) -> None:
    _suite(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")  # records, without -k
    fast = ("--fast-fraction", "30%", "--seed", seed)
    expressions = [
        "alpha",  # a substring of function names
        "not alpha",
        "alpha and not _3",
        "TestGroup or beta",  # a class name
        "x-y",  # a parametrize id
        "three or ALPHA_1",  # case-insensitive, on an id and a name
        "test_all_slow_2.py or sub",  # a module's and a folder's name
        "slow and not TestGroup",  # a marker's name
    ]
    skipped = 0
    for expression in expressions:
        sample = _check(pytester, monkeypatch, *fast, "-k", expression)
        assert sample["total"] == 84
        skipped += sample["uncollected_files"]
    assert skipped > len(expressions)
    # The expressions are no part of the cache's key: runs without -k still use the cache.
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    assert "select" in _cache_files(pytester)["test_plain_0.py"]


def test_marker_added_in_an_edited_file_is_honoured(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    seed = next(
        s for s in (f"e{i}" for i in range(1000)) if score(s, "test_plain_5.py::test_beta_5") < 0.3
    )
    fast = ("--fast-fraction", "30%", "--seed", seed, "-m", "not slow")
    ran = _run(pytester, monkeypatch, *fast)[0]
    assert "test_plain_5.py::test_beta_5" in ran
    path = pytester.path / "test_plain_5.py"
    path.write_text(
        path.read_text().replace("def test_beta_5", "@pytest.mark.slow\ndef test_beta_5")
    )
    sample = _check(pytester, monkeypatch, *fast)
    assert "test_plain_5.py::test_beta_5" not in _run(pytester, monkeypatch, *fast)[0]
    assert sample["deselected"] == 8 + 8 + 24 + 1
    # And taken off again, in a file now known with the marker.
    path.write_text(
        path.read_text().replace("@pytest.mark.slow\ndef test_beta_5", "def test_beta_5")
    )
    _check(pytester, monkeypatch, *fast)
    assert "test_plain_5.py::test_beta_5" in _run(pytester, monkeypatch, *fast)[0]


def test_marker_keyword_arguments(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    (pytester.path / "test_opaque.py").write_text(
        "import pathlib\nimport pytest\n\n"
        f"with pathlib.Path({str(_log(pytester))!r}).open('a') as log:\n"
        "    log.write('test_opaque.py\\n')\n\n"
        "class Serial:\n"
        "    def __eq__(self, other):\n"
        "        return other == '123'\n"
        "    __hash__ = object.__hash__\n\n"
        "@pytest.mark.device(serial=Serial())\n"
        "def test_opaque(): pass\n"
    )
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    fast = ("--fast-fraction", "100%", "--seed", "d")
    # Plain values are recorded and evaluated: no file without a device marker is imported. An
    # argument that is not plain data is not evaluated on the record: its file is collected
    # whenever an expression asks for that argument, and pytest decides (by the object's __eq__).
    sample = _check(pytester, monkeypatch, *fast, "-m", "device(serial=123)", also="test_opaque.py")
    assert sample["selected"] == 1
    assert _check(pytester, monkeypatch, *fast, "-m", "device(fast=True)")["selected"] == 1
    ran, sample = _run(pytester, monkeypatch, *fast, "-m", "device(serial='123')")
    assert ran == {"sub/test_devices.py::test_serial_123", "test_opaque.py::test_opaque"}
    _check(pytester, monkeypatch, *fast, "-m", "device(serial='123') and not device(fast=True)")
    assert _imported(pytester) == {"test_opaque.py"}
    # A value written in a way this evaluator does not take (pytest does: int("١٢٣") is 123)
    # turns the plan off, as -k and -m did before.
    truth_ran, truth = _run(pytester, monkeypatch, *fast, "-m", "device(serial=١٢٣)", cached=False)
    ran, sample = _run(pytester, monkeypatch, *fast, "-m", "device(serial=١٢٣)")
    assert (ran, sample["deselected"]) == (truth_ran, truth["deselected"])
    assert sample["uncollected_files"] == 0
    config = pytester.parseconfigure(*QUIET, *fast, "-m", "device(serial=١٢٣)")
    cache = config.stash[HARNESS_KEY].collection
    assert cache is not None
    assert not cache.plan().known
    assert cache.reason == "cannot evaluate -k/-m on the record: not a value: ١٢٣"


def test_attributes_pytest_versions_match_otherwise_are_left_to_pytest(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recent pytest (9.2 here) no longer matches `-k` against private function attributes
    (`__wrapped__`) or `pytestmark`, older versions do: a test that such a name alone would
    select has its file collected, whatever the version."""
    _suite(pytester)
    (pytester.path / "test_wrapped.py").write_text(
        "import functools\nimport pathlib\n\n"
        f"with pathlib.Path({str(_log(pytester))!r}).open('a') as log:\n"
        "    log.write('test_wrapped.py\\n')\n\n"
        "def deco(f):\n"
        "    @functools.wraps(f)\n"
        "    def inner():\n"
        "        return f()\n"
        "    return inner\n\n"
        "@deco\ndef test_one(): pass\n\n"
        "def test_two(): pass\n"
        "test_two.flavour = 'x'\n"
    )
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    fast = ("--fast-fraction", "100%", "--seed", "w")
    assert _check(pytester, monkeypatch, *fast, "-k", "flavour")["selected"] == 1
    assert _imported(pytester) == {"test_wrapped.py"}
    truth_ran, _ = _run(pytester, monkeypatch, *fast, "-k", "wrapped or alpha_0", cached=False)
    ran, sample = _run(pytester, monkeypatch, *fast, "-k", "wrapped or alpha_0")
    assert ran == truth_ran
    assert sample["uncollected_files"] > 0
    assert "test_wrapped.py" in _imported(pytester)


HIDDEN = """
import pathlib
import pytest

with pathlib.Path({log!r}).open("a") as log:
    log.write(pathlib.Path(__file__).name + "\\n")

# Outside the rootdir: what the cache's key cannot see.
SLOW = pathlib.Path({hidden!r}).read_text() == "slow"
mark = pytest.mark.slow if SLOW else pytest.mark.quick

@mark
@pytest.mark.parametrize("i", range(5))
def test_hidden(i): pass
"""


def test_hidden_marker_change_drops_the_cache(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    hidden = pytester.path.parent / f"{pytester.path.name}-hidden.txt"
    hidden.write_text("quick")
    pytester.makepyfile(test_zz_hidden=HIDDEN.format(hidden=str(hidden), log=str(_log(pytester))))
    ids = [f"test_zz_hidden.py::test_hidden[{i}]" for i in range(5)]
    seed = next(s for s in (f"h{i}" for i in range(1000)) if any(score(s, n) < 0.3 for n in ids))
    fast = ("--fast-fraction", "30%", "--seed", seed, "-m", "not slow")
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0
    hidden.write_text("slow")
    truth_ran, truth = _run(pytester, monkeypatch, *fast, cached=False)
    ran, sample = _run(pytester, monkeypatch, *fast)
    [warning] = _warnings(pytester)
    assert warning.startswith(
        'WARNING message="collection cache: -k/-m selected otherwise than recorded in '
        "test_zz_hidden.py ("
    )
    assert "; or a plugin deselected them); cache dropped; " in warning
    # The hidden file was built, and pytest deselected its tests there.
    assert (ran, sample["deselected"]) == (truth_ran, truth["deselected"])
    assert _cache_files(pytester) == {}
    # The next run collects everything and records it; the one after uses the cache again.
    ran, sample = _run(pytester, monkeypatch, *fast)
    assert (ran, sample["uncollected_files"]) == (truth_ran, 0)
    assert _check(pytester, monkeypatch, *fast)["uncollected_files"] > 0


def test_a_plugin_that_deselects_is_caught(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    pytester.makeconftest(
        """
        def pytest_collection_modifyitems(config, items):
            drop = [item for item in items if item.name.startswith("test_beta")]
            if drop:
                config.hook.pytest_deselected(items=drop)
                items[:] = [item for item in items if item not in drop]
        """
    )
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    seed = next(
        s
        for s in (f"p{i}" for i in range(1000))
        if any(score(s, f"test_plain_{f}.py::test_beta_{f}") < 0.3 for f in range(8))
    )
    _run(pytester, monkeypatch, "--fast-fraction", "30%", "--seed", seed, "-m", "not slow")
    [warning] = _warnings(pytester)
    assert "-k/-m selected otherwise than recorded" in warning
    assert _cache_files(pytester) == {}


def test_under_xdist(pytester: pytest.Pytester) -> None:
    _suite(pytester)

    def run(*args: str, cached: bool = True) -> tuple[set[str], dict[str, Any]]:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("LLMHARNESS_FAST_COLLECT", "true" if cached else "false")
            _log(pytester).unlink(missing_ok=True)
            result = pytester.runpytest_subprocess(*QUIET, *args)
        assert result.ret == 0, result.stdout.str()
        last = pytester.path / STORE / "last"
        rows = (last / "results.jsonl").read_text(encoding="utf-8").splitlines()
        summary = json.loads((last / "summary.json").read_text(encoding="utf-8"))
        return {json.loads(row)["nodeid"] for row in rows if row.strip()}, summary["sample"]

    run("--agent-id", "warmup")
    fast = ("-n", "2", "--fast-fraction", "30%", "--seed", "x", "-m", "not slow", "-k", "not beta")
    truth_ran, truth = run(*fast, cached=False)
    ran, sample = run(*fast)
    assert ran == truth_ran
    keys = ("selected", "total", "deselected")
    assert [sample[k] for k in keys] == [truth[k] for k in keys]
    assert sample["uncollected_files"] >= 4
    assert _warnings(pytester) == []
    # Each worker imports what it collects: none imports an all-slow file.
    assert not any(name.startswith("test_all_slow") for name in _imported(pytester))


# -- the evaluator against pytest itself ---------------------------------------------------

DIFFERENTIAL = {
    "test_d1.py": """
import functools
import pytest

pytestmark = pytest.mark.net

@pytest.mark.slow
def test_alpha(): pass

@pytest.mark.device(serial="1", kind=True)
def test_beta(): pass

class TestGroup:
    @pytest.mark.parametrize("v", [1, "x-y", pytest.param(3, marks=pytest.mark.slow, id="Three")])
    def test_param(self, v): pass

    class TestInner:
        @pytest.mark.device(serial=2)
        def test_deep(self): pass

def test_attr(): pass
test_attr.flavour = 1

def deco(f):
    @functools.wraps(f)
    def inner():
        return f()
    return inner

@deco
def test_w(): pass
""",
    "sub/test_d2.py": """
import pytest

@pytest.mark.device(serial=2, kind=False)
def test_gamma(): pass

@pytest.mark.device(serial=object())
def test_delta(): pass

def test_Epsilon_CASE(): pass

@pytest.mark.parametrize("n", range(3))
@pytest.mark.slow
def test_numbers(n): pass
""",
    "conftest.py": """
def pytest_collection_modifyitems(items):
    for item in items:
        if "gamma" in item.name or "Three" in item.name:
            item.add_marker("added")
        if "alpha" in item.name:
            item.extra_keyword_matches.add("extra_kw")
""",
}

_K_WORDS = [
    "alpha", "ALPHA", "beta", "TestGroup", "inner", "param", "x-y", "Three", "three", "1]",
    "flavour", "w", "wrap", "mark", "pytestmark", "net", "slow", "device", "test_d1.py", "sub",
    "d2", "gamma", "epsilon_case", "numbers[2]", "extra_kw", "added", "t", "nothing", "True",
]  # fmt: skip
_M_WORDS = [
    "slow", "net", "device", "added", "parametrize", "nothing", "Slow",
    "device(serial=2)", "device(serial='1')", "device(kind=True)", "device(kind=False)",
    "device(serial=1)", "device(serial=2, kind=False)", "device(missing=None)",
    "device(serial='2')",
]  # fmt: skip


def _expression(rng: random.Random, words: list[str], depth: int = 0) -> str:
    roll = rng.random()
    if depth >= 3 or roll < 0.4:
        return rng.choice(words)
    if roll < 0.55:
        return f"not {_expression(rng, words, depth + 1)}"
    if roll < 0.7:
        return f"({_expression(rng, words, depth + 1)})"
    operator = rng.choice(["and", "or"])
    left, right = _expression(rng, words, depth + 1), _expression(rng, words, depth + 1)
    return f"{left} {operator} {right}"


def _pytest_selects(pytester: pytest.Pytester, *args: str) -> set[str]:
    """The node ids pytest itself keeps, without llmharness."""
    reprec = pytester.inline_run(*QUIET, "-p", "no:llmharness", "--co", *args)
    items = reprec.getcall("pytest_collection_finish").session.items
    return {item.nodeid for item in items}


def test_evaluator_selects_what_pytest_selects(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random -k and -m expressions on the recorded names and markers, against pytest's own
    -k and -m on the same suite."""
    for name, text in DIFFERENTIAL.items():
        path = pytester.path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    pytester.makeini(MARKERS)
    monkeypatch.setenv("LLMHARNESS_FAST_COLLECT", "true")
    assert pytester.runpytest(*QUIET, "--agent-id", "warmup").ret == 0
    files = _cache_files(pytester)
    assert set(files) == {"test_d1.py", "sub/test_d2.py"}
    fingerprints = Fingerprints(pytester.path)
    rng = random.Random(20261202)
    decided = unknown = 0
    for round_ in range(60):
        keyword = _expression(rng, _K_WORDS) if round_ % 3 != 1 else ""
        markexpr = _expression(rng, _M_WORDS) if round_ % 3 != 0 else ""
        try:
            select = Selection.from_options(keyword, markexpr)
        except ExpressionError as exc:  # every generated expression is one it takes
            raise AssertionError((keyword, markexpr)) from exc
        args = [*(["-k", keyword] if keyword else []), *(["-m", markexpr] if markexpr else [])]
        kept = _pytest_selects(pytester, *args)
        planned = plan(fingerprints, files, 1.0, Sampler("s"), select)
        for rel, ids in files.items():
            if rel not in planned.known:
                unknown += 1  # a test whose selection the record cannot tell
                continue
            decided += 1
            ours = set(ids["ids"]) - planned.unselected.get(rel, frozenset())
            assert ours == {n for n in kept if n.startswith(rel + "::")}, (keyword, markexpr)
    assert decided > 90
    assert unknown > 0


@pytest.mark.parametrize(
    "text",
    ["", " ", "a", "not a", "(a or b) and not c", "a.b[1]/x:y+z-w\\v", "True", "not not a"],
)
def test_expressions_pytest_takes(text: str) -> None:
    Expression.parse(text)


@pytest.mark.parametrize(
    "text",
    ["a or", "(a", "a)", "a b", "not", "'a'", "a(x=1", "a(x=y)", "a(1=2)", "a(x=1, x=2)",
     "a(if=1)", "a(x='\\n')", "a(x=١٢٣)", "a $"],
)  # fmt: skip
def test_expressions_it_refuses(text: str) -> None:
    with pytest.raises(ExpressionError):
        Expression.parse(text)


def test_keyword_takes_no_arguments_and_blank_mark_selects_nothing() -> None:
    with pytest.raises(ExpressionError):
        Selection.from_options("a(x=1)", "")
    assert not Selection.from_options("   ", "").active  # pytest strips -k: no filter
    assert Selection.from_options("", " ").active  # an -m of blanks deselects everything


def test_expressions_are_no_part_of_the_key() -> None:
    args = ["-k", "slow", "-m", "not slow", "-kfast", "-m=net", "-x", "-xk", "a", "--", "-k"]
    assert collection_args(selection_free(args)) == ["-xk", "a", "--", "-k"]
