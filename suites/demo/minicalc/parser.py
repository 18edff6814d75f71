"""Recursive-descent parser producing minicalc AST nodes.

Grammar (lowest precedence first)::

    statement := NAME "=" expr | expr
    expr      := term (("+" | "-") term)*
    term      := unary (("*" | "/" | "//" | "%") unary)*
    unary     := ("-" | "+") unary | power
    power     := primary ("**" exponent)*
    exponent  := ("-" | "+") exponent | primary
    primary   := NUMBER | NAME | NAME "(" [expr ("," expr)*] ")" | "(" expr ")"
"""

from __future__ import annotations

from minicalc.errors import ParseError
from minicalc.lexer import EOF_KIND, NAME, NUMBER, OP, Token, tokenize
from minicalc.nodes import Assign, BinOp, Call, Node, Num, Unary, Var


class Parser:
    """Consumes a token list; one instance parses one statement."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != EOF_KIND:
            self.i += 1
        return tok

    def _accept(self, *ops: str) -> Token | None:
        tok = self.current
        if tok.kind == OP and tok.text in ops:
            return self._advance()
        return None

    def _expect(self, op: str) -> Token:
        tok = self._accept(op)
        if tok is None:
            found = self.current.text or "end of input"
            raise ParseError(f"expected {op!r}, found {found!r}", self.current.pos)
        return tok

    def statement(self) -> Node:
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else self.current
        if self.current.kind == NAME and nxt.kind == OP and nxt.text == "=":
            name = self._advance().text
            self._advance()
            node: Node = Assign(name, self.expr())
        else:
            node = self.expr()
        if self.current.kind != EOF_KIND:
            raise ParseError(f"unexpected {self.current.text!r}", self.current.pos)
        return node

    def expr(self) -> Node:
        node = self.term()
        while tok := self._accept("+", "-"):
            node = BinOp(tok.text, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while tok := self._accept("*", "/", "//", "%"):
            node = BinOp(tok.text, node, self.unary())
        return node

    def unary(self) -> Node:
        if tok := self._accept("-", "+"):
            return Unary(tok.text, self.unary())
        return self.power()

    def power(self) -> Node:
        node = self.primary()
        while self._accept("**"):
            node = BinOp("**", node, self._exponent())
        return node

    def _exponent(self) -> Node:
        if tok := self._accept("-", "+"):
            return Unary(tok.text, self._exponent())
        return self.primary()

    def primary(self) -> Node:
        tok = self.current
        if tok.kind == NUMBER:
            self._advance()
            assert tok.value is not None
            return Num(tok.value)
        if tok.kind == NAME:
            self._advance()
            if self._accept("("):
                return Call(tok.text, self._arguments())
            return Var(tok.text)
        if self._accept("("):
            node = self.expr()
            self._expect(")")
            return node
        found = tok.text or "end of input"
        raise ParseError(f"unexpected {found!r}", tok.pos)

    def _arguments(self) -> tuple[Node, ...]:
        args: list[Node] = []
        if self._accept(")"):
            return ()
        args.append(self.expr())
        while self._accept(","):
            args.append(self.expr())
        self._expect(")")
        return tuple(args)


def parse(source: str) -> Node:
    """Parse one statement (an assignment or an expression)."""
    return Parser(tokenize(source)).statement()
