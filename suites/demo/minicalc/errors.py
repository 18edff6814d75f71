"""Exceptions raised by minicalc."""

from __future__ import annotations


class CalcError(Exception):
    """Base class for every minicalc error; carries a source position when known."""

    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message if pos is None else f"{message} at position {pos}")
        self.message = message
        self.pos = pos


class LexError(CalcError):
    """The source contains a character or literal the lexer cannot read."""


class ParseError(CalcError):
    """The token stream does not match the grammar."""


class EvalError(CalcError):
    """A well-formed expression cannot be evaluated."""
