"""Tests for minicalc.lexer."""

from __future__ import annotations

import pytest

from minicalc import LexError, tokenize
from minicalc.lexer import EOF_KIND, NAME, NUMBER, OP


def kinds(source: str) -> list[str]:
    return [t.kind for t in tokenize(source)]


def texts(source: str) -> list[str]:
    return [t.text for t in tokenize(source)[:-1]]


@pytest.mark.parametrize(
    ("source", "value"),
    [("0", 0), ("7", 7), ("42", 42), ("007", 7), ("99999999999999999999", 99999999999999999999)],
)
def test_integer_literals(source: str, value: int) -> None:
    tok = tokenize(source)[0]
    assert tok.kind == NUMBER
    assert tok.value == value
    assert isinstance(tok.value, int)


@pytest.mark.parametrize(
    ("source", "value"),
    [("1.5", 1.5), (".5", 0.5), ("3.", 3.0), ("1e3", 1000.0), ("2.5e-2", 0.025), ("6E+2", 600.0)],
)
def test_float_literals(source: str, value: float) -> None:
    tok = tokenize(source)[0]
    assert tok.kind == NUMBER
    assert tok.value == pytest.approx(value)
    assert isinstance(tok.value, float)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("0x0", 0),
        ("0xff", 255),
        ("0x10", 16),
        ("0xdeadbeef", 0xDEADBEEF),
        ("0x1F", 31),
        ("0X1F", 31),
    ],
)
def test_hex_literals(source: str, value: int) -> None:
    assert tokenize(source)[0].value == value


@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//", "%", "**", "(", ")", ",", "="])
def test_single_operator(op: str) -> None:
    tokens = tokenize(op)
    assert [t.kind for t in tokens] == [OP, EOF_KIND]
    assert tokens[0].text == op


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("2**3", ["2", "**", "3"]),
        ("7//2", ["7", "//", "2"]),
        ("a*-b", ["a", "*", "-", "b"]),
        ("x***y", ["x", "**", "*", "y"]),
        ("1///2", ["1", "//", "/", "2"]),
    ],
)
def test_longest_operator_wins(source: str, expected: list[str]) -> None:
    assert texts(source) == expected


@pytest.mark.parametrize("name", ["x", "y1", "_tmp", "rate_of_change", "X9"])
def test_names(name: str) -> None:
    tokens = tokenize(name)
    assert tokens[0].kind == NAME
    assert tokens[0].text == name


@pytest.mark.parametrize("source", ["1+2", " 1 + 2 ", "\t1\t+\t2", "1 +\n2", "  1+  2  "])
def test_whitespace_is_ignored(source: str) -> None:
    assert texts(source) == ["1", "+", "2"]


@pytest.mark.parametrize(
    ("source", "positions"),
    [
        ("1 + 2", [0, 2, 4, 5]),
        ("abc", [0, 3]),
        ("  x", [2, 3]),
        ("f(1,2)", [0, 1, 2, 3, 4, 5, 6]),
        ("10**2", [0, 2, 4, 5]),
    ],
)
def test_token_positions(source: str, positions: list[int]) -> None:
    assert [t.pos for t in tokenize(source)] == positions


@pytest.mark.parametrize("char", ["@", "$", "&", "!", "?", "^", "["])
def test_unexpected_character(char: str) -> None:
    with pytest.raises(LexError, match="unexpected character") as info:
        tokenize(f"1 + {char}")
    assert info.value.pos == 4


@pytest.mark.parametrize("source", ["2x", "3abc", "1.5e", "0x", "12_000"])
def test_malformed_number(source: str) -> None:
    with pytest.raises(LexError):
        tokenize(source)


def test_empty_source_is_just_eof() -> None:
    assert kinds("") == [EOF_KIND]


def test_blank_source_is_just_eof() -> None:
    assert kinds("   \n\t ") == [EOF_KIND]


def test_eof_position_is_source_length() -> None:
    assert tokenize("1 + 22")[-1].pos == 6


def test_tokens_are_immutable() -> None:
    tok = tokenize("1")[0]
    with pytest.raises(AttributeError):
        tok.text = "2"  # type: ignore[misc]


class TestMixedStreams:
    """Realistic statements lexed end to end."""

    def test_assignment(self) -> None:
        assert kinds("rate = 0.05") == [NAME, OP, NUMBER, EOF_KIND]

    def test_call_with_arguments(self) -> None:
        assert texts("max(a, 2, 0x3)") == ["max", "(", "a", ",", "2", ",", "0x3", ")"]

    def test_nested_parentheses(self) -> None:
        assert texts("((1))") == ["(", "(", "1", ")", ")"]

    def test_name_followed_by_number(self) -> None:
        assert texts("x 1") == ["x", "1"]

    def test_number_values_only_on_numbers(self) -> None:
        assert [t.value for t in tokenize("a + 1")] == [None, None, 1, None]
