"""The reason on a failed test's ERROR line: what failed, how, and where in the project's code.

Each test runs a small suite through pytest with llmharness and reads the ERROR lines of
`.llmharness/last/log.txt` whole.
"""

from __future__ import annotations

import fnmatch
import glob

import pytest
from conftest import QUIET, error_lines


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # In file order, so that the ERROR lines come in the order the tests are written.
    result = pytester.runpytest(*QUIET, "-p", "no:randomly", *args)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.outlines
    return result


def _assert_lines_match(lines: list[str], patterns: list[str]) -> None:
    assert len(lines) == len(patterns), lines
    for line, pattern in zip(lines, patterns, strict=True):
        assert fnmatch.fnmatchcase(line, pattern), (line, pattern)


def test_lists_keep_the_index_where_they_differ(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_lists="""
        def test_long_lists():
            expected = list(range(100))
            expected[57] = -1
            assert list(range(100)) == expected

        def test_longer_list():
            assert list(range(10)) == list(range(3))
        """
    )
    result = _run(pytester, "--compact")
    expected = [
        "ERROR test_lists.py::test_long_lists AssertionError: assert [0, 1, 2, 3, 4, 5, ...]"
        " == [0, 1, 2, 3, 4, 5, ...]; At index 57 diff: 57 != -1 (test_lists.py:4)",
        "ERROR test_lists.py::test_longer_list AssertionError: assert [0, 1, 2, 3, 4, 5, ...]"
        " == [0, 1, 2]; Left contains 7 more items, first extra item: 3 (test_lists.py:7)",
    ]
    assert error_lines(pytester) == expected
    # The terminal's compact lines carry the same reasons.
    result.stdout.fnmatch_lines(expected, consecutive=True)


def test_dicts_and_sets_name_the_first_differing_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_maps="""
        def test_dict():
            assert {"a": 1, "b": 2, "c": 3} == {"a": 1, "b": 5, "c": 3}

        def test_dict_with_an_extra_key():
            assert {"a": 1, "b": 2} == {"a": 1}

        def test_set():
            assert {1, 2, 3} == {1, 2, 4}
        """
    )
    _run(pytester)
    assert error_lines(pytester) == [
        "ERROR test_maps.py::test_dict AssertionError: assert {'a': 1, 'b': 2, 'c': 3}"
        " == {'a': 1, 'b': 5, 'c': 3}; Differing items: {'b': 2} != {'b': 5} (test_maps.py:2)",
        "ERROR test_maps.py::test_dict_with_an_extra_key AssertionError: assert"
        " {'a': 1, 'b': 2} == {'a': 1}; Left contains 1 more item: {'b': 2} (test_maps.py:5)",
        "ERROR test_maps.py::test_set AssertionError: assert {1, 2, 3} == {1, 2, 4};"
        " Extra items in the left set: 3 (test_maps.py:8)",
    ]


def test_long_strings_say_where_the_difference_starts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_text="""
        def test_long_strings():
            assert "x" * 100 + "abc" == "x" * 100 + "abd"

        def test_short_strings():
            assert "abc" == "abd"
        """
    )
    _run(pytester)
    assert error_lines(pytester) == [
        "ERROR test_text.py::test_long_strings AssertionError: assert"
        " 'xxxxxxxxxxxx...xxxxxxxxxxabc' == 'xxxxxxxxxxxx...xxxxxxxxxxabd';"
        " Skipping 92 identical leading characters in diff (test_text.py:2)",
        # Both strings are on the comparison line: pytest's character diff adds nothing.
        "ERROR test_text.py::test_short_strings AssertionError: assert 'abc' == 'abd'"
        " (test_text.py:5)",
    ]


def test_a_custom_message_keeps_the_compared_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_message="""
        def test_expression():
            expr = "((11 + 16 * 10 * 39) + 6 - 31 - 23) * 25"
            got, expected = -157225, 155075
            assert got == expected, f"{expr}"

        def test_two_line_message():
            assert [1, 2] == [1, 3], "first line\\nsecond line"

        def test_message_like_a_comparison():
            assert 1 == 2, "assert failed here"
        """
    )
    _run(pytester)
    assert error_lines(pytester) == [
        "ERROR test_message.py::test_expression AssertionError:"
        " ((11 + 16 * 10 * 39) + 6 - 31 - 23) * 25; assert -157225 == 155075 (test_message.py:4)",
        "ERROR test_message.py::test_two_line_message AssertionError: first line;"
        " assert [1, 2] == [1, 3]; At index 1 diff: 2 != 3 (test_message.py:7)",
        "ERROR test_message.py::test_message_like_a_comparison AssertionError: assert failed"
        " here; assert 1 == 2 (test_message.py:10)",
    ]


def test_a_value_from_a_call_names_the_call(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_calls="""
        import types

        def double(n):
            return 2 * n

        helpers = types.SimpleNamespace(double=double)

        def test_call():
            assert double(2) == 5

        def test_call_through_an_attribute():
            assert helpers.double(3) == 5
        """
    )
    _run(pytester)
    # The second is `where 6 = <function double at 0x…>(3)` in pytest's explanation.
    assert error_lines(pytester) == [
        "ERROR test_calls.py::test_call AssertionError: assert 4 == 5; where 4 = double(2)"
        " (test_calls.py:9)",
        "ERROR test_calls.py::test_call_through_an_attribute AssertionError: assert 6 == 5;"
        " where 6 = double(3) (test_calls.py:12)",
    ]


def test_unittest_failures_point_at_the_test_not_at_unittest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_case="""
        import unittest

        class TestValues(unittest.TestCase):
            def test_sub(self):
                for i in range(2):
                    with self.subTest(i=i):
                        self.assertEqual(i, 0)

            def test_lists(self):
                self.assertEqual([1, 2], [1, 3])
        """
    )
    _run(pytester)
    # unittest runs a TestCase's tests in the order of their names.
    assert error_lines(pytester) == [
        "ERROR test_case.py::TestValues::test_lists AssertionError: Lists differ: [1, 2] != [1, 3]"
        " (test_case.py:10)",
        "ERROR test_case.py::TestValues::test_sub subtest (i=1): AssertionError: 1 != 0"
        " (test_case.py:7)",
    ]


def test_a_failure_in_the_projects_library_points_into_it(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("minicalc")
    (pytester.path / "minicalc" / "evaluator.py").write_text(
        "def evaluate(op, a, b):\n"
        "    return _apply(op, a, b)\n"
        "\n"
        "\n"
        "def _apply(op, a, b):\n"
        "    if op == '/':\n"
        "        return a / b\n"
        "    raise ValueError(f'unknown operator {op!r}')\n",
        encoding="utf-8",
    )
    pytester.makepyfile(
        test_calc="""
        from minicalc.evaluator import evaluate

        def test_divide():
            evaluate("/", 1, 0)

        def test_operator():
            evaluate("%", 1, 2)
        """
    )
    _run(pytester)
    assert error_lines(pytester) == [
        "ERROR test_calc.py::test_divide ZeroDivisionError: division by zero"
        " (minicalc/evaluator.py:7)",
        "ERROR test_calc.py::test_operator ValueError: unknown operator '%'"
        " (minicalc/evaluator.py:8)",
    ]


def test_installed_standard_library_and_generated_code_is_not_the_location(
    pytester: pytest.Pytester,
) -> None:
    # An environment inside the rootdir, as `python -m venv .venv` makes: still not the project.
    packages = pytester.mkdir("venv_lib").joinpath("site-packages")
    packages.mkdir()
    (packages / "checks.py").write_text(
        "def check_two(value):\n"
        "    if value != 2:\n"
        "        raise ValueError(f'expected 2, got {value}')\n",
        encoding="utf-8",
    )
    pytester.syspathinsert(packages)
    pytester.makepyfile(
        test_helpers="""
        import json
        from checks import check_two

        def test_stdlib():
            json.loads("{bad")

        def test_installed():
            check_two(3)

        def test_compiled_from_text():
            namespace = {}
            exec(compile("def f():\\n    raise KeyError(1)", "<generated>", "exec"), namespace)
            namespace["f"]()
        """
    )
    _run(pytester)
    _assert_lines_match(
        error_lines(pytester),
        [
            "ERROR test_helpers.py::test_stdlib json.decoder.JSONDecodeError: *"
            " (test_helpers.py:5)",
            "ERROR test_helpers.py::test_installed ValueError: expected 2, got 3"
            " (test_helpers.py:8)",
            "ERROR test_helpers.py::test_compiled_from_text KeyError: 1 (test_helpers.py:13)",
        ],
    )


def test_a_long_reason_is_cut_at_the_limit_losing_the_least(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_long="""
        def test_huge_message():
            assert 1 == 2, "M" * 5000

        def test_long_message():
            expected = list(range(100))
            expected[57] = -1
            assert list(range(100)) == expected, "L" * 200
        """
    )
    _run(pytester)
    # max_reason_chars is 300 by default. The message comes first, then the compared values,
    # then the first difference, then the location: the cut takes them from the end.
    long = (
        "AssertionError: " + "L" * 200 + "; assert [0, 1, 2, 3, 4, 5, ...] == [0, 1, 2, 3, 4, 5,"
        " ...]; At index 57 diff: 57 != -1 (test_long.py:7)"
    )
    _assert_lines_match(
        error_lines(pytester),
        [
            # The count is exact: 5,048 characters ("AssertionError: ", the message, "; assert
            # 1 == 2 (test_long.py:4)"), 300 kept.
            "ERROR test_long.py::test_huge_message AssertionError: "
            + "M" * 284
            + "…[[]+4748 chars]",
            "ERROR test_long.py::test_long_message " + glob.escape(long[:300]) + "…[[]+* chars]",
        ],
    )
