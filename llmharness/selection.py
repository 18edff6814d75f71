"""What pytest's `-k` and `-m` select, evaluated on recorded names and markers.

The collection cache records, for each known test, what the two options evaluate on
(`Keywords`); a `--fast` run under `-k`/`-m` then knows which known tests the options deselect
without importing their files. The grammar and the matching are pytest's (``_pytest.mark``):

- an expression is ``or``, ``and``, ``not``, parentheses and identifiers (runs of word
  characters and ``:+-.[]\\/``); an empty one is false;
- `-k NAME` is true when NAME, lower-cased, is a substring of one of the test's names lower-cased:
  its own, its parents' (less the session's and the root folder's), its extra keywords, its
  function's attributes and its markers';
- `-m NAME` is true when the test has a marker NAME; `-m NAME(key=value, ...)` (pytest 8.3) when
  one of its NAME markers has each of those keyword arguments equal to the value (a string, an
  integer, True, False or None).

Evaluation is three-valued: what the record cannot decide (a function attribute that pytest
versions treat differently, a marker argument that is not plain data) is unknown, and a test
whose selection is unknown is left to pytest (its file is collected). An expression this module
cannot parse exactly as pytest does raises `ExpressionError`: the caller then plans nothing.
Pure: no pytest import.
"""

from __future__ import annotations

import enum
import functools
import keyword
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "OPAQUE",
    "Expression",
    "ExpressionError",
    "Keywords",
    "Mark",
    "Selection",
    "Value",
    "doubtful_attribute",
    "plain_value",
]


class ExpressionError(ValueError):
    """A `-k` or `-m` expression this module cannot evaluate exactly as pytest would."""


class _Opaque(enum.Enum):
    """A marker argument that is not plain data: comparing it with a value is unknown."""

    OPAQUE = "opaque"


OPAQUE = _Opaque.OPAQUE

#: A recorded marker argument: plain data, or OPAQUE.
Value = str | int | float | bool | None | _Opaque

_LONGEST_STRING = 200  # longer marker arguments (a skip reason) are recorded as OPAQUE
_PLAIN_TYPES = (str, int, float, bool)


def plain_value(value: object) -> Value:
    """A marker argument as recorded: itself when comparing it with an expression's value is
    exact on the record (a short str, an int, a finite float, a bool, None), else OPAQUE."""
    if value is None:
        return None
    # Exact types: a subclass (an IntEnum, a str subclass) may compare otherwise.
    if not isinstance(value, _PLAIN_TYPES) or type(value) not in _PLAIN_TYPES:
        return OPAQUE
    if isinstance(value, str) and len(value) > _LONGEST_STRING:
        return OPAQUE
    if isinstance(value, float) and not math.isfinite(value):
        return OPAQUE
    return value


def doubtful_attribute(name: str) -> bool:
    """Whether `-k` matching a test function's attribute `name` depends on the pytest version:
    recent ones (9.2 here) skip private names and where pytest stores marks, older ones match
    every attribute (`-k wrapped` selected each `functools.wraps`-decorated test)."""
    return name.startswith("_") or name in ("pytestmark", "cache_parameters")


@dataclass(frozen=True)
class Mark:
    """A marker as `-m` sees it: its name and its keyword arguments (sorted by key)."""

    name: str
    kwargs: tuple[tuple[str, Value], ...] = ()

    def matches(self, kwargs: Mapping[str, str | int | bool | None]) -> bool | None:
        """Whether each of `kwargs` is one of this marker's keyword arguments, with an equal
        value (pytest's ``mark.kwargs.get(k, NOTSET) == v``); None when that is unknown."""
        own = dict(self.kwargs)
        result: bool | None = True
        for key, value in kwargs.items():
            if key not in own:
                return False
            recorded = own[key]
            if recorded is OPAQUE:
                result = None
            elif recorded != value:  # plain data: the negation of pytest's ==
                return False
        return result


@dataclass(frozen=True)
class Keywords:
    """What `-k` and `-m` evaluate on for one test."""

    name: str  # the test's own name
    names: frozenset[str] = frozenset()  # its other -k names, markers' included
    doubtful: frozenset[str] = frozenset()  # function attributes only some pytest versions match
    marks: frozenset[Mark] = frozenset()


# -- expressions --------------------------------------------------------------------------

_IDENT = re.compile(r"(:?\w|:|\+|-|\.|\[|\]|\\|/)+")  # pytest's, as it is written there
_RESERVED = frozenset({"or", "and", "not"})
_CONSTANTS: dict[str, bool | None] = {"True": True, "False": False, "None": None}


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """(kind, value) pairs, kind one of ``( ) = , str or and not ident end``."""
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in (" ", "\t"):
            pos += 1
        elif char in "()=,":
            yield char, char
            pos += 1
        elif char in ("'", '"'):
            end = text.find(char, pos + 1)
            if end == -1:
                raise ExpressionError(f"closing quote {char} is missing")
            value = text[pos + 1 : end]
            if "\\" in value:
                raise ExpressionError("escaping with \\ is not supported")
            yield "str", value
            pos = end + 1
        else:
            match = _IDENT.match(text, pos)
            if match is None:
                raise ExpressionError(f"unexpected character {char!r}")
            value = match.group(0)
            yield (value if value in _RESERVED else "ident"), value
            pos = match.end()
    yield "end", ""


# A parsed expression as nested tuples: ("const", False), ("ident", name, kwargs or None),
# ("not", node), ("and", left, right), ("or", left, right).
_Node = tuple[object, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.kind, self.value = next(self.tokens)
        self.calls = False

    def accept(self, kind: str) -> str | None:
        if self.kind != kind:
            return None
        value = self.value
        if kind != "end":
            self.kind, self.value = next(self.tokens)
        return value

    def expect(self, kind: str) -> str:
        value = self.accept(kind)
        if value is None:
            raise ExpressionError(f"expected {kind}, got {self.kind}")
        return value

    def expression(self) -> _Node:
        if self.accept("end") is not None:
            return ("const", False)
        node = self.disjunction()
        self.expect("end")
        return node

    def disjunction(self) -> _Node:
        node = self.conjunction()
        while self.accept("or") is not None:
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self) -> _Node:
        node = self.negation()
        while self.accept("and") is not None:
            node = ("and", node, self.negation())
        return node

    def negation(self) -> _Node:
        if self.accept("not") is not None:
            return ("not", self.negation())
        if self.accept("(") is not None:
            node = self.disjunction()
            self.expect(")")
            return node
        name = self.expect("ident")
        if self.accept("(") is None:
            return ("ident", name, None)
        self.calls = True
        kwargs: dict[str, str | int | bool | None] = {}
        while True:
            key = self.expect("ident")
            if not key.isidentifier() or keyword.iskeyword(key) or key in kwargs:
                raise ExpressionError(f"not a keyword argument name: {key}")
            self.expect("=")
            kwargs[key] = self.argument()
            if self.accept(",") is None:
                break
        self.expect(")")
        return ("ident", name, kwargs)

    def argument(self) -> str | int | bool | None:
        text = self.accept("str")
        if text is not None:
            return text
        word = self.expect("ident")
        digits = word[1:] if word.startswith("-") else word
        if digits.isascii() and digits.isdigit():
            return int(word)
        if word in _CONSTANTS:
            return _CONSTANTS[word]
        raise ExpressionError(f"not a value: {word}")  # pytest too rejects it (or crashes)


#: A matcher: (identifier, keyword arguments or None) -> True, False or None (unknown).
Matcher = Callable[[str, "Mapping[str, str | int | bool | None] | None"], "bool | None"]


@dataclass(frozen=True)
class Expression:
    """A parsed `-k` or `-m` expression."""

    text: str
    tree: _Node
    calls: bool  # whether an identifier takes keyword arguments, as `device(serial='1')`

    @classmethod
    def parse(cls, text: str) -> Expression:
        """Parse as pytest does; raise ExpressionError where this module may not agree."""
        try:
            parser = _Parser(text)
            tree = parser.expression()
        except RecursionError:
            raise ExpressionError("nested too deeply") from None
        return cls(text, tree, parser.calls)

    def evaluate(self, matcher: Matcher) -> bool | None:
        """The expression's value by `matcher`, in three-valued (Kleene) logic."""
        return _evaluate(self.tree, matcher)


def _evaluate(node: _Node, matcher: Matcher) -> bool | None:
    kind = node[0]
    if kind == "ident":
        return matcher(node[1], node[2])  # type: ignore[arg-type]
    if kind == "not":
        value = _evaluate(node[1], matcher)  # type: ignore[arg-type]
        return None if value is None else not value
    if kind == "and" or kind == "or":
        decisive = kind == "or"  # the value that settles it: True for or, False for and
        left = _evaluate(node[1], matcher)  # type: ignore[arg-type]
        if left is decisive:
            return decisive
        right = _evaluate(node[2], matcher)  # type: ignore[arg-type]
        if right is decisive:
            return decisive
        return None if left is None or right is None else not decisive
    return False  # the empty expression


# -- the two options ----------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _lowered(names: frozenset[str]) -> tuple[str, ...]:
    """Lower-cased, once for each set: the tests of a class or module share theirs."""
    return tuple(name.lower() for name in names)


def _keyword_matcher(keywords: Keywords) -> Matcher:
    own = keywords.name.lower()
    names = _lowered(keywords.names)
    doubtful = _lowered(keywords.doubtful)

    def match(ident: str, kwargs: Mapping[str, str | int | bool | None] | None) -> bool | None:
        part = ident.lower()
        if part in own or any(part in name for name in names):
            return True
        if any(part in name for name in doubtful):
            return None
        return False

    return match


def _mark_matcher(keywords: Keywords) -> Matcher:
    marks = keywords.marks

    def match(ident: str, kwargs: Mapping[str, str | int | bool | None] | None) -> bool | None:
        found: bool | None = False
        for mark in marks:
            if mark.name != ident:
                continue
            if kwargs is None:
                return True
            result = mark.matches(kwargs)
            if result:
                return True
            if result is None:
                found = None
        return found

    return match


@dataclass(frozen=True)
class Selection:
    """The `-k` and `-m` of a run, as pytest applies them: a test stays when both match."""

    keyword: Expression | None = None
    mark: Expression | None = None

    @classmethod
    def from_options(cls, keyword: str | None, markexpr: str | None) -> Selection:
        """From the options' values (pytest strips leading blanks from `-k` only, and an
        `-m` of blanks deselects everything); raise ExpressionError where not exact."""
        keyword = (keyword or "").lstrip()
        parsed = Expression.parse(keyword) if keyword else None
        if parsed is not None and parsed.calls:
            raise ExpressionError("-k takes no keyword arguments")
        return cls(parsed, Expression.parse(markexpr) if markexpr else None)

    @property
    def active(self) -> bool:
        return self.keyword is not None or self.mark is not None

    def selects(self, keywords: Keywords) -> bool | None:
        """Whether the test stays: True, False, or None when the record cannot tell."""
        result: bool | None = True
        if self.keyword is not None:
            result = self.keyword.evaluate(_keyword_matcher(keywords))
            if result is False:
                return False
        if self.mark is not None:
            value = self.mark.evaluate(_mark_matcher(keywords))
            if value is False:
                return False
            if value is None:
                result = None
        return result
