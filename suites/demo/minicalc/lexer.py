"""Turn source text into a list of tokens."""

from __future__ import annotations

import string
from dataclasses import dataclass

from minicalc.errors import LexError

NUMBER = "NUMBER"
NAME = "NAME"
OP = "OP"
EOF_KIND = "EOF"

# Longest operators first so that "**" is not read as two "*".
OPERATORS = ("**", "//", "+", "-", "*", "/", "%", "(", ")", ",", "=")


@dataclass(frozen=True)
class Token:
    """One lexical token; `value` is only set for numbers."""

    kind: str
    text: str
    pos: int
    value: int | float | None = None


def _number_value(text: str) -> int | float:
    if text.startswith("0x"):
        return int(text, 16)
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


def _scan_number(src: str, i: int) -> int:
    """Return the index just past the number literal starting at `i`."""
    n = len(src)
    if src.startswith(("0x", "0X"), i):
        j = i + 2
        while j < n and src[j] in string.hexdigits:
            j += 1
        if j == i + 2:
            raise LexError("hex literal without digits", i)
        return j
    j = i
    while j < n and src[j].isdigit():
        j += 1
    if j < n and src[j] == ".":
        j += 1
        while j < n and src[j].isdigit():
            j += 1
    if j < n and src[j] in "eE":
        k = j + 1
        if k < n and src[k] in "+-":
            k += 1
        if k < n and src[k].isdigit():
            while k < n and src[k].isdigit():
                k += 1
            j = k
    return j


def tokenize(src: str) -> list[Token]:
    """Split `src` into tokens, always ending with an EOF token."""
    tokens: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch.isspace():
            i += 1
            continue
        if ch.isdigit() or (ch == "." and i + 1 < n and src[i + 1].isdigit()):
            end = _scan_number(src, i)
            if end < n and (src[end].isalpha() or src[end] == "_"):
                raise LexError(f"invalid number literal {src[i : end + 1]!r}", i)
            text = src[i:end]
            tokens.append(Token(NUMBER, text, i, _number_value(text)))
            i = end
            continue
        if ch.isalpha() or ch == "_":
            end = i
            while end < n and (src[end].isalnum() or src[end] == "_"):
                end += 1
            tokens.append(Token(NAME, src[i:end], i))
            i = end
            continue
        for op in OPERATORS:
            if src.startswith(op, i):
                tokens.append(Token(OP, op, i))
                i += len(op)
                break
        else:
            raise LexError(f"unexpected character {ch!r}", i)
    tokens.append(Token(EOF_KIND, "", n))
    return tokens
