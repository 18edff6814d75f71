"""Render ASTs back to source text, to S-expressions, or to an indented tree."""

from __future__ import annotations

from minicalc.nodes import Assign, BinOp, Call, Node, Num, Unary, Var

PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2, "%": 2, "**": 4}
UNARY_PRECEDENCE = 3
ATOM_PRECEDENCE = 5


def format_number(value: int | float) -> str:
    """Shortest text that reads back as the same number."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return f"{value:.1f}"
    return repr(value)


def _precedence(node: Node) -> int:
    if isinstance(node, BinOp):
        return PRECEDENCE[node.op]
    if isinstance(node, Unary):
        return UNARY_PRECEDENCE
    if isinstance(node, Num) and node.value < 0:
        return UNARY_PRECEDENCE
    return ATOM_PRECEDENCE


def _wrap(node: Node, parens: bool) -> str:
    text = to_source(node)
    return f"({text})" if parens else text


def to_source(node: Node) -> str:
    """Render `node` as source with the fewest parentheses that keep its meaning."""
    if isinstance(node, Num):
        return format_number(node.value)
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Assign):
        return f"{node.name} = {to_source(node.value)}"
    if isinstance(node, Call):
        return f"{node.func}({', '.join(to_source(a) for a in node.args)})"
    if isinstance(node, Unary):
        return node.op + _wrap(node.operand, _precedence(node.operand) < UNARY_PRECEDENCE)
    if isinstance(node, BinOp):
        prec = PRECEDENCE[node.op]
        if node.op == "**":
            # Right-associative: the left side needs parens at equal precedence.
            left = _wrap(node.left, _precedence(node.left) <= prec)
            right = _wrap(node.right, _precedence(node.right) < UNARY_PRECEDENCE)
        else:
            left = _wrap(node.left, _precedence(node.left) < prec)
            right = _wrap(node.right, _precedence(node.right) < prec)
        return f"{left} {node.op} {right}"
    raise TypeError(f"not a minicalc node: {node!r}")


def to_sexpr(node: Node) -> str:
    """Render `node` as a fully parenthesised prefix S-expression."""
    if isinstance(node, Num):
        return format_number(node.value)
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Assign):
        return f"(= {node.name} {to_sexpr(node.value)})"
    if isinstance(node, Call):
        return "(" + " ".join([node.func, *(to_sexpr(a) for a in node.args)]) + ")"
    if isinstance(node, Unary):
        return f"({node.op} {to_sexpr(node.operand)})"
    return f"({node.op} {to_sexpr(node.left)} {to_sexpr(node.right)})"


def dump(node: Node, indent: int = 2) -> str:
    """Render `node` as an indented tree, one node per line."""
    lines: list[str] = []

    def walk(n: Node, depth: int) -> None:
        pad = " " * (indent * depth)
        if isinstance(n, Num):
            lines.append(f"{pad}Num {format_number(n.value)}")
        elif isinstance(n, Var):
            lines.append(f"{pad}Var {n.name}")
        elif isinstance(n, Assign):
            lines.append(f"{pad}Assign {n.name}")
            walk(n.value, depth + 1)
        elif isinstance(n, Call):
            lines.append(f"{pad}Call {n.func}")
            for arg in n.args:
                walk(arg, depth + 1)
        elif isinstance(n, Unary):
            lines.append(f"{pad}Unary {n.op}")
            walk(n.operand, depth + 1)
        else:
            lines.append(f"{pad}BinOp {n.op}")
            walk(n.left, depth + 1)
            walk(n.right, depth + 1)

    walk(node, 0)
    return "\n".join(lines)
