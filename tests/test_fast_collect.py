"""`--fast` leaves known unsampled files uncollected, and selects exactly what a full collection
would: checked against the same run with `fast_collect: false` and against `sampling.select`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET

from llmharness.sampling import score, select


def _suite(pytester: pytest.Pytester, cases: int = 6) -> None:
    """Plain, class-based, parametrized, helper-driven and conftest-generated tests."""
    for f in range(10):
        body = "\n".join(f"def test_{f}_{t}():\n    pass\n" for t in range(12))
        pytester.makepyfile(**{f"test_plain_{f}": body})
    pytester.makepyfile(
        test_classes="""
        class TestOuter:
            def test_a(self): pass
            def test_b(self): pass
            class TestInner:
                def test_c(self): pass
                def test_d(self): pass

        class TestOther:
            def test_e(self): pass
        """,
        test_params="""
        import pytest

        @pytest.mark.parametrize("v", ["a::b", "x[1]", "plain", "sp ace"])
        def test_param(v): pass

        @pytest.mark.parametrize("n", range(8))
        def test_numbers(n): pass
        """,
        helpers=f"CASES = list(range({cases}))\n",
        # Imports helpers before test_helper_params.py does (files are collected in name order).
        test_helper_more="""
        from helpers import CASES

        def test_more():
            assert CASES
        """,
        test_helper_params="""
        import pytest
        from helpers import CASES

        @pytest.mark.parametrize("case", CASES)
        def test_case(case): pass
        """,
    )
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def level():
            return 1
        """
    )
    sub = pytester.path / "sub"
    sub.mkdir(exist_ok=True)
    (sub / "test_deep.py").write_text(
        "def test_level(level):\n    assert level == 1\n\ndef test_other():\n    pass\n"
    )


def _run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str, cached: bool = True
) -> tuple[set[str], dict[str, Any]]:
    """Run with the plugin; return the node ids that ran and the summary's sample."""
    monkeypatch.setenv("LLMHARNESS_FAST_COLLECT", "true" if cached else "false")
    pytester.runpytest(*QUIET, *args)
    last = pytester.path / ".llmharness" / "last"
    rows = (last / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ran = {json.loads(row)["nodeid"] for row in rows if row.strip()}
    summary = json.loads((last / "summary.json").read_text(encoding="utf-8"))
    return ran, summary["sample"]


def _all_ids(pytester: pytest.Pytester) -> list[str]:
    result = pytester.runpytest(*QUIET, "-p", "no:llmharness", "--collect-only", "-q")
    return [line for line in result.outlines if "::" in line]


def _same_as_full_collection(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str
) -> dict[str, Any]:
    """The cached run and a naive full-collection run select the same; return the former."""
    naive_ran, naive = _run(pytester, monkeypatch, *args, cached=False)
    ran, sample = _run(pytester, monkeypatch, *args)
    assert ran == naive_ran
    assert (sample["selected"], sample["total"]) == (naive["selected"], naive["total"])
    assert naive["uncollected_files"] == 0
    return sample


def test_selects_exactly_what_a_full_collection_selects(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    everything = _all_ids(pytester)
    assert len(everything) == 120 + 5 + 12 + 6 + 2 + 1
    _run(pytester, monkeypatch, "--agent-id", "warmup")  # records every file's node ids
    skipped_files = skipped_tests = 0
    for seed in ("a", "b", "c", "d"):
        for fraction, value in (("1%", 0.01), ("10%", 0.10), ("30%", 0.30)):
            args = ("--fast-fraction", fraction, "--seed", seed)
            ran, sample = _run(pytester, monkeypatch, *args)
            assert ran == set(select(everything, value, seed).selected)
            assert sample["total"] == len(everything)
            # Nothing changed: every file built in part matched its record.
            log = (pytester.path / ".llmharness" / "last" / "log.txt").read_text()
            assert "collection cache:" not in log
            skipped_files += sample["uncollected_files"]
            skipped_tests += sample["uncollected_tests"]
    # The cache did its work: whole files went unimported and most tests were never built.
    assert skipped_files > 0
    assert skipped_tests > len(everything)


def test_changed_helper_module_changes_the_parametrization(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester, cases=6)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    seed = _seed_sampling_new_cases("helper_params", 6, 60, 0.2)
    _suite(pytester, cases=60)  # only helpers.py's content differs
    sample = _same_as_full_collection(
        pytester, monkeypatch, "--fast-fraction", "20%", "--seed", seed
    )
    assert sample["total"] == 146 + 54


def test_edited_test_file_is_collected_in_full(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    extra = "\n".join(f"def test_new_{t}():\n    pass\n" for t in range(40))
    path = pytester.path / "test_plain_3.py"
    path.write_text(path.read_text() + "\n" + extra)
    sample = _same_as_full_collection(
        pytester, monkeypatch, "--fast-fraction", "10%", "--seed", "e"
    )
    assert sample["total"] == 146 + 40


def test_new_conftest_in_a_folder_is_noticed(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    # A new conftest parametrizes sub/'s tests: their node ids change without their file changing.
    (pytester.path / "sub" / "conftest.py").write_text(
        "def pytest_generate_tests(metafunc):\n"
        "    if 'level' in metafunc.fixturenames:\n"
        "        metafunc.parametrize('level', [1, 1, 1], ids=['x', 'y', 'z'])\n"
    )
    ran, sample = _run(pytester, monkeypatch, "--fast-fraction", "100%", "--seed", "c")
    assert {"sub/test_deep.py::test_level[x]", "sub/test_deep.py::test_level[z]"} <= ran
    assert "sub/test_deep.py::test_level" not in ran
    assert sample["total"] == 146 + 2
    _same_as_full_collection(pytester, monkeypatch, "--fast-fraction", "5%", "--seed", "c")


def test_deleted_file_leaves_the_total(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    (pytester.path / "test_plain_7.py").unlink()
    sample = _same_as_full_collection(pytester, monkeypatch, "--fast-fraction", "1%", "--seed", "d")
    assert sample["total"] == 146 - 12


def test_upgraded_plugin_makes_every_file_collected_again(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed plugin may shape any file's collection: a new version of one (its
    metadata) makes the cache unknown, until a run has collected everything again."""
    _suite(pytester)
    site = pytester.path.parent / f"{pytester.path.name}-site"
    info = site / "fakeplug-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "fakeplug.py").write_text("def pytest_report_header():\n    return 'fakeplug'\n")
    (info / "entry_points.txt").write_text("[pytest11]\nfakeplug = fakeplug\n")
    metadata = info / "METADATA"
    metadata.write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(site)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    args = ("--fast-fraction", "10%", "--seed", "p")
    assert _run(pytester, monkeypatch, *args)[1]["uncollected_files"] > 0
    metadata.write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 2.0\n")
    assert _same_as_full_collection(pytester, monkeypatch, *args)["uncollected_files"] == 0
    assert _run(pytester, monkeypatch, *args)[1]["uncollected_files"] > 0


@pytest.mark.parametrize("seed", ["s1", "s2", "s3"])
def test_never_empty_rule_holds_with_files_left_out(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, seed: str
) -> None:
    _suite(pytester)
    everything = _all_ids(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    ran, sample = _run(pytester, monkeypatch, "--fast-fraction", "0.0001", "--seed", seed)
    assert len(ran) == 1
    assert ran == set(select(everything, 0.0001, seed).selected)
    assert sample["uncollected_files"] >= 10


def test_keyword_filter_keeps_the_plan_and_the_sample(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    sample = _same_as_full_collection(
        pytester, monkeypatch, "--fast-fraction", "30%", "--seed", "k", "-k", "plain or param"
    )
    assert sample["uncollected_files"] > 0  # -k is evaluated on what was recorded


def test_corrupt_cache_is_set_aside_and_rebuilt(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    everything = _all_ids(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    cache = pytester.path / ".llmharness" / "collection.json"
    cache.write_bytes(b'{"schema": 1, "env": "x", "files": {"test_plain_0.py": ')
    ran, sample = _run(pytester, monkeypatch, "--fast-fraction", "10%", "--seed", "z")
    assert ran == set(select(everything, 0.1, "z").selected)
    assert sample["uncollected_files"] == 0
    aside = list(cache.parent.glob("collection.json.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b'{"schema": 1, "env": "x"')
    log = (pytester.path / ".llmharness" / "last" / "log.txt").read_text(encoding="utf-8")
    assert sum("collection.json" in line for line in log.splitlines()) == 1
    # That run collected everything and wrote a good cache: the next one uses it.
    ran, sample = _run(pytester, monkeypatch, "--fast-fraction", "10%", "--seed", "z")
    assert ran == set(select(everything, 0.1, "z").selected)
    assert sample["uncollected_files"] > 0


def test_xdist_workers_apply_the_same_plan(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _suite(pytester)
    everything = _all_ids(pytester)
    # In a fresh interpreter too: its PYTHONPATH, in the cache's key, is not this process's.
    pytester.runpytest_subprocess(*QUIET, "--agent-id", "warmup")
    args = ("--fast-fraction", "10%", "--seed", "w")
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", *args)
    assert result.ret == 0, result.stdout.str()
    last = Path(pytester.path / ".llmharness" / "last")
    rows = (last / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ran = [json.loads(row)["nodeid"] for row in rows if row.strip()]
    assert sorted(ran) == sorted(select(everything, 0.1, "w").selected)
    sample = json.loads((last / "summary.json").read_text(encoding="utf-8"))["sample"]
    assert sample["total"] == len(everything)
    assert sample["uncollected_files"] > 0


# -- runs that do not record what collection read -------------------------------------------
def _data_suite(pytester: pytest.Pytester, name: str, cases: int) -> None:
    """A test file parametrized by a data file its helper module reads when imported."""
    (pytester.path / f"{name}.json").write_text(json.dumps(list(range(cases))))
    pytester.makepyfile(
        **{
            f"{name}_helper": f"""
            import json, pathlib
            CASES = json.loads((pathlib.Path(__file__).parent / "{name}.json").read_text())
            """,
            f"test_{name}": f"""
            import pytest
            from {name}_helper import CASES

            @pytest.mark.parametrize("case", CASES)
            def test_case(case): pass
            """,
        }
    )


def _recorded(pytester: pytest.Pytester) -> tuple[bool, list[str]]:
    """Whether the last run recorded its collection, and the files it could not record."""
    text = (pytester.path / ".llmharness" / "last" / "debug.log").read_text()
    line = next(line for line in text.splitlines() if "event='collection_recorded'" in line)
    recorded = "recorded=True" in line
    unrecorded = line.partition("unrecorded=")[2]
    return recorded, json.loads(unrecorded.replace("'", '"'))


def _cache(pytester: pytest.Pytester) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (pytester.path / ".llmharness" / "collection.json").read_text()
    )
    return data


def _seed_sampling_new_cases(name: str, old: int, new: int, fraction: float) -> str:
    """A seed whose sample holds none of the first `old` cases but some of the next ones: a
    cache that trusted the unchanged test file would skip it and miss them."""
    ids = [f"test_{name}.py::test_case[{i}]" for i in range(new)]
    return next(
        seed
        for seed in (f"s{i}" for i in range(1_000))
        if not any(score(seed, n) < fraction for n in ids[:old])
        and any(score(seed, n) < fraction for n in ids[old:])
    )


def test_a_run_with_nothing_changed_does_not_record_and_the_cache_stays_sound(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMHARNESS_DEBUG_LOG", "1")
    _suite(pytester)
    _data_suite(pytester, "data", cases=6)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert _recorded(pytester) == (True, [])
    written = (pytester.path / ".llmharness" / "collection.json").read_bytes()
    assert "data.json" in _cache(pytester)["files"]["test_data.py"]["deps"]

    _run(pytester, monkeypatch, "--agent-id", "again")
    assert _recorded(pytester) == (False, [])
    assert (pytester.path / ".llmharness" / "collection.json").read_bytes() == written

    # What the first run's audit read still guards the file: only data.json changes.
    seed = _seed_sampling_new_cases("data", 6, 60, 0.2)
    (pytester.path / "data.json").write_text(json.dumps(list(range(60))))
    sample = _same_as_full_collection(
        pytester, monkeypatch, "--fast-fraction", "20%", "--seed", seed
    )
    assert sample["total"] == 146 + 60
    assert _recorded(pytester) == (True, [])


def test_a_file_new_in_a_run_that_does_not_record_is_recorded_by_the_next(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMHARNESS_DEBUG_LOG", "1")
    _suite(pytester)
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    _data_suite(pytester, "late", cases=6)

    # Nothing cached changed, so this run does not record: the new file gets no entry.
    _run(pytester, monkeypatch, "--agent-id", "new")
    assert _recorded(pytester) == (False, ["test_late.py"])
    cache = _cache(pytester)
    assert "test_late.py" not in cache["files"]
    assert cache["complete"] is False

    _run(pytester, monkeypatch, "--agent-id", "next")
    assert _recorded(pytester) == (True, [])
    cache = _cache(pytester)
    assert "late.json" in cache["files"]["test_late.py"]["deps"]
    assert cache["complete"] is True

    seed = _seed_sampling_new_cases("late", 6, 60, 0.2)
    (pytester.path / "late.json").write_text(json.dumps(list(range(60))))
    sample = _same_as_full_collection(
        pytester, monkeypatch, "--fast-fraction", "20%", "--seed", seed
    )
    assert sample["total"] == 146 + 60


def test_a_file_that_builds_other_ids_unrecorded_loses_its_entry(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ids changed with nothing it was recorded reading changed (here: an environment
    variable llmharness does not key on, as pytest's own are not): its entry goes, and the
    next run records it."""
    monkeypatch.setenv("LLMHARNESS_DEBUG_LOG", "1")
    _suite(pytester)
    pytester.makepyfile(
        test_env="""
        import os, pytest

        @pytest.mark.parametrize("n", range(int(os.environ.get("PYTEST_XDIST_LLMH_CASES", "2"))))
        def test_n(n): pass
        """
    )
    _run(pytester, monkeypatch, "--agent-id", "warmup")
    assert len(_cache(pytester)["files"]["test_env.py"]["ids"]) == 2
    monkeypatch.setenv("PYTEST_XDIST_LLMH_CASES", "3")
    _run(pytester, monkeypatch, "--agent-id", "more")
    assert _recorded(pytester) == (False, ["test_env.py"])
    cache = _cache(pytester)
    assert "test_env.py" not in cache["files"]
    assert cache["complete"] is False
    _run(pytester, monkeypatch, "--agent-id", "next")
    assert _recorded(pytester) == (True, [])
    assert len(_cache(pytester)["files"]["test_env.py"]["ids"]) == 3


def test_xdist_workers_do_not_record_an_unchanged_cache_and_record_a_new_file_next(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMHARNESS_DEBUG_LOG", "1")
    _suite(pytester)
    _data_suite(pytester, "data", cases=6)

    def run(agent: str) -> None:
        result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "--agent-id", agent)
        assert result.ret == 0, result.stdout.str()

    run("warmup")
    assert _recorded(pytester) == (True, [])
    written = (pytester.path / ".llmharness" / "collection.json").read_bytes()
    run("again")
    assert _recorded(pytester) == (False, [])
    assert (pytester.path / ".llmharness" / "collection.json").read_bytes() == written

    _data_suite(pytester, "late", cases=6)
    run("new")
    assert _recorded(pytester) == (False, ["test_late.py"])
    assert "test_late.py" not in _cache(pytester)["files"]
    run("next")
    assert _recorded(pytester) == (True, [])
    assert "late.json" in _cache(pytester)["files"]["test_late.py"]["deps"]

    seed = _seed_sampling_new_cases("late", 6, 60, 0.2)
    (pytester.path / "late.json").write_text(json.dumps(list(range(60))))
    result = pytester.runpytest_subprocess(
        *QUIET, "-n", "2", "--fast-fraction", "20%", "--seed", seed
    )
    assert result.ret == 0, result.stdout.str()
    everything = _all_ids(pytester)
    last = pytester.path / ".llmharness" / "last"
    rows = (last / "results.jsonl").read_text(encoding="utf-8").splitlines()
    ran = [json.loads(row)["nodeid"] for row in rows if row.strip()]
    assert sorted(ran) == sorted(select(everything, 0.2, seed).selected)
