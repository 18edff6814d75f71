"""Tests for minicalc.formatter."""

from __future__ import annotations

import pytest

from minicalc import Environment, dump, evaluate, parse, to_source
from minicalc.formatter import format_number
from minicalc.nodes import BinOp, Num, Unary, Var


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (42, "42"),
        (-7, "-7"),
        (1.5, "1.5"),
        (2.0, "2.0"),
        (0.1, "0.1"),
        (1e20, "1e+20"),
        (-0.0, "-0.0"),
    ],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("1+2", "1 + 2"),
        ("(1 + 2)", "1 + 2"),
        ("(1 + 2) * 3", "(1 + 2) * 3"),
        ("1 + (2 * 3)", "1 + 2 * 3"),
        ("((a))", "a"),
        ("-(x)", "-x"),
        ("-(a + b)", "-(a + b)"),
        ("(-2) ** 2", "(-2) ** 2"),
        ("-2 ** 2", "-2 ** 2"),
        ("2 ** -1", "2 ** -1"),
        ("f( 1 ,2 )", "f(1, 2)"),
        ("g()", "g()"),
        ("x=1", "x = 1"),
        ("y = (a - b) / c", "y = (a - b) / c"),
        ("0x10", "16"),
        ("1e3", "1000.0"),
    ],
)
def test_canonical_source(source: str, canonical: str) -> None:
    assert to_source(parse(source)) == canonical


@pytest.mark.parametrize(
    "source",
    [
        "1 + 2 * 3",
        "(1 + 2) * 3",
        "10 - 4 - 3",
        "10 - (4 - 3)",
        "100 / 10 / 5",
        "8 / (4 / 2)",
        "2 * (3 * 4)",
        "1 + (2 + 3)",
        "-(2 ** 2)",
        "(-2) ** 2",
        "max(1, 2 - 3) * 2",
        "hypot(3, 4) ** 2",
        "17 % 5 * 2",
        "17 // 5 + 1",
        "-(-3)",
        "2 ** 0.5 * 2 ** 0.5",
    ],
)
def test_roundtrip_preserves_value(source: str) -> None:
    env = Environment()
    original = evaluate(parse(source), env)
    reformatted = evaluate(parse(to_source(parse(source))), env)
    assert reformatted == pytest.approx(original), to_source(parse(source))


@pytest.mark.parametrize("source", ["a + b", "f(x, -y)", "z = 1 - 2", "-(a * b)", "(a + b) ** 2"])
def test_to_source_is_idempotent(source: str) -> None:
    once = to_source(parse(source))
    assert to_source(parse(once)) == once


def test_built_nodes_render() -> None:
    tree = BinOp("*", Unary("-", Var("x")), BinOp("+", Num(1), Num(2.5)))
    assert to_source(tree) == "-x * (1 + 2.5)"


def test_negative_number_node_is_parenthesised_as_base() -> None:
    assert to_source(BinOp("**", Num(-2), Num(2))) == "(-2) ** 2"


def test_rejects_non_nodes() -> None:
    with pytest.raises(TypeError):
        to_source("1 + 2")  # type: ignore[arg-type]


class TestDump:
    def test_leaf(self) -> None:
        assert dump(parse("42")) == "Num 42"

    def test_nested(self) -> None:
        assert dump(parse("x = max(1, -y)")) == (
            "Assign x\n  Call max\n    Num 1\n    Unary -\n      Var y"
        )

    def test_custom_indent(self) -> None:
        assert dump(parse("a + b"), indent=4) == "BinOp +\n    Var a\n    Var b"

    def test_one_line_per_node(self) -> None:
        assert len(dump(parse("1 + 2 * (3 - f(4, 5))")).splitlines()) == 9
