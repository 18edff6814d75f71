"""Tests for minicalc.parser, checked through S-expressions."""

from __future__ import annotations

import pytest

from minicalc import ParseError, parse, to_sexpr
from minicalc.nodes import Assign, BinOp, Call, Node, Num, Unary, Var

CORPUS = [
    "1",
    "x",
    "1 + 2 * 3",
    "(1 + 2) * 3",
    "-x ** 2",
    "f()",
    "hypot(3, 4)",
    "total = price * (1 + tax)",
    "max(a, b, c) - min(a, b, c)",
    "2 ** -1",
    "a // b % c",
    "+-+1",
]


@pytest.fixture(scope="module")
def parsed_corpus() -> dict[str, Node]:
    """Parse the corpus once per module; the trees are immutable."""
    return {source: parse(source) for source in CORPUS}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2", "(+ 1 2)"),
        ("1 + 2 * 3", "(+ 1 (* 2 3))"),
        ("1 * 2 + 3", "(+ (* 1 2) 3)"),
        ("(1 + 2) * 3", "(* (+ 1 2) 3)"),
        ("1 - 2 - 3", "(- (- 1 2) 3)"),
        ("8 / 4 / 2", "(/ (/ 8 4) 2)"),
        ("7 // 2 * 3", "(* (// 7 2) 3)"),
        ("7 % 4 + 1", "(+ (% 7 4) 1)"),
        ("-3", "(- 3)"),
        ("--3", "(- (- 3))"),
        ("-2 ** 2", "(- (** 2 2))"),
        ("2 ** -1", "(** 2 (- 1))"),
        ("2 * -3", "(* 2 (- 3))"),
        ("+x", "(+ x)"),
        ("((((1))))", "1"),
        ("a + b * c ** d", "(+ a (* b (** c d)))"),
    ],
)
def test_precedence(source: str, expected: str) -> None:
    assert to_sexpr(parse(source)) == expected


def test_power_is_right_associative() -> None:
    assert to_sexpr(parse("2 ** 3 ** 2")) == "(** 2 (** 3 2))"


@pytest.mark.parametrize(
    ("source", "name", "value"),
    [
        ("x = 1", "x", "1"),
        ("total = a + b", "total", "(+ a b)"),
        ("y = -y", "y", "(- y)"),
        ("r = sqrt(2)", "r", "(sqrt 2)"),
        ("_ = 0", "_", "0"),
    ],
)
def test_assignment(source: str, name: str, value: str) -> None:
    node = parse(source)
    assert isinstance(node, Assign)
    assert node.name == name
    assert to_sexpr(node.value) == value


@pytest.mark.parametrize(
    ("source", "func", "argc"),
    [
        ("f()", "f", 0),
        ("sqrt(2)", "sqrt", 1),
        ("hypot(3, 4)", "hypot", 2),
        ("max(1, 2, 3, 4)", "max", 4),
        ("max(min(1, 2), 3)", "max", 2),
        ("abs(-x)", "abs", 1),
        ("round(x / 3, 2)", "round", 2),
    ],
)
def test_calls(source: str, func: str, argc: int) -> None:
    node = parse(source)
    assert isinstance(node, Call)
    assert node.func == func
    assert len(node.args) == argc


def test_call_arguments_are_full_expressions() -> None:
    assert to_sexpr(parse("f(1 + 2, x * y)")) == "(f (+ 1 2) (* x y))"


@pytest.mark.parametrize(
    "source",
    [
        "",
        "1 +",
        "* 2",
        "(1 + 2",
        "1 + 2)",
        "f(1,",
        "f(1 2)",
        "1 2",
        "x = ",
        "= 3",
        "1 = 2",
        "f(,)",
        "()",
        "x = y = 1",
    ],
)
def test_syntax_errors(source: str) -> None:
    with pytest.raises(ParseError):
        parse(source)


@pytest.mark.parametrize(("source", "pos"), [("1 +", 3), ("1 2", 2), ("(1 + 2", 6), ("f(1 2)", 4)])
def test_error_position(source: str, pos: int) -> None:
    with pytest.raises(ParseError) as info:
        parse(source)
    assert info.value.pos == pos


def test_error_message_mentions_end_of_input() -> None:
    with pytest.raises(ParseError, match="end of input"):
        parse("2 *")


class TestCorpus:
    """Structural checks over a shared, module-scoped corpus of parsed statements."""

    @pytest.mark.parametrize("source", CORPUS)
    def test_parses(self, parsed_corpus: dict[str, Node], source: str) -> None:
        assert parsed_corpus[source] is not None

    @pytest.mark.parametrize("source", CORPUS)
    def test_sexpr_is_balanced(self, parsed_corpus: dict[str, Node], source: str) -> None:
        text = to_sexpr(parsed_corpus[source])
        assert text.count("(") == text.count(")")

    def test_reparse_gives_equal_tree(self, parsed_corpus: dict[str, Node]) -> None:
        for source, tree in parsed_corpus.items():
            assert parse(source) == tree

    def test_node_types(self, parsed_corpus: dict[str, Node]) -> None:
        assert isinstance(parsed_corpus["1"], Num)
        assert isinstance(parsed_corpus["x"], Var)
        assert isinstance(parsed_corpus["-x ** 2"], Unary)
        assert isinstance(parsed_corpus["1 + 2 * 3"], BinOp)
        assert isinstance(parsed_corpus["total = price * (1 + tax)"], Assign)
