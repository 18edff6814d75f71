"""Evaluate minicalc ASTs against an environment of variables and functions."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from minicalc.errors import EvalError
from minicalc.nodes import Assign, BinOp, Call, Node, Num, Unary, Var

Value = int | float


@dataclass(frozen=True)
class Function:
    """A built-in function with an arity range (max_args None means variadic)."""

    impl: Callable[..., Value]
    min_args: int
    max_args: int | None


def _builtins() -> dict[str, Function]:
    return {
        "abs": Function(abs, 1, 1),
        "sqrt": Function(math.sqrt, 1, 1),
        "floor": Function(math.floor, 1, 1),
        "ceil": Function(math.ceil, 1, 1),
        "round": Function(round, 1, 2),
        "hypot": Function(math.hypot, 2, 2),
        "min": Function(lambda *xs: min(xs), 1, None),
        "max": Function(lambda *xs: max(xs), 1, None),
    }


@dataclass
class Environment:
    """Variables and functions visible to an evaluation."""

    variables: dict[str, Value] = field(default_factory=lambda: {"pi": math.pi, "e": math.e})
    functions: dict[str, Function] = field(default_factory=_builtins)

    def lookup(self, name: str) -> Value:
        if name not in self.variables:
            raise EvalError(f"undefined variable {name!r}")
        return self.variables[name]

    def call(self, name: str, args: list[Value]) -> Value:
        fn = self.functions[name]
        if len(args) < fn.min_args or (fn.max_args is not None and len(args) > fn.max_args):
            raise EvalError(f"{name}() got {len(args)} argument(s)")
        try:
            return fn.impl(*args)
        except (ValueError, OverflowError) as exc:
            raise EvalError(f"{name}(): {exc}") from exc


def _binary(op: str, a: Value, b: Value) -> Value:
    if op in ("/", "//") and b == 0:
        raise EvalError("division by zero")
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return a / b
    if op == "//":
        return a // b
    if op == "%":
        return a % b
    if op == "**":
        if a == 0 and b < 0:
            raise EvalError("zero to a negative power")
        result = a**b
        if isinstance(result, complex):
            raise EvalError("complex result")
        return result
    raise EvalError(f"unknown operator {op!r}")


def evaluate(node: Node, env: Environment) -> Value:
    """Compute the value of `node`; assignments store into `env` and return the value."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Var):
        return env.lookup(node.name)
    if isinstance(node, Unary):
        value = evaluate(node.operand, env)
        return -value if node.op == "-" else value
    if isinstance(node, BinOp):
        return _binary(node.op, evaluate(node.left, env), evaluate(node.right, env))
    if isinstance(node, Call):
        return env.call(node.func, [evaluate(arg, env) for arg in node.args])
    if isinstance(node, Assign):
        value = evaluate(node.value, env)
        env.variables[node.name] = value
        return value
    raise TypeError(f"not a minicalc node: {node!r}")
