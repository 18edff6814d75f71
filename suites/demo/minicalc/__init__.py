"""minicalc: a tiny calculator language (lexer, parser, evaluator, formatter)."""

from __future__ import annotations

from minicalc.errors import CalcError, EvalError, LexError, ParseError
from minicalc.evaluator import Environment, evaluate
from minicalc.formatter import dump, to_sexpr, to_source
from minicalc.lexer import Token, tokenize
from minicalc.parser import parse
from minicalc.session import Session

__all__ = [
    "CalcError",
    "Environment",
    "EvalError",
    "LexError",
    "ParseError",
    "Session",
    "Token",
    "dump",
    "evaluate",
    "parse",
    "to_sexpr",
    "to_source",
    "tokenize",
]


def calc(source: str, env: Environment | None = None) -> float | int:
    """Parse and evaluate one statement."""
    return evaluate(parse(source), env if env is not None else Environment())
