"""Seeded random expressions cross-checked against Python's own arithmetic."""

from __future__ import annotations

import random

import pytest

from minicalc import calc, parse, to_source

SEED = 20240611
COUNT = 15


def _expression(rng: random.Random, depth: int) -> str:
    if depth == 0 or rng.random() < 0.25:
        return str(rng.randint(0, 50))
    op = rng.choice(["+", "-", "*"])
    left = _expression(rng, depth - 1)
    right = _expression(rng, depth - 1)
    return f"({left} {op} {right})" if rng.random() < 0.5 else f"{left} {op} {right}"


@pytest.fixture(scope="module")
def expressions() -> list[str]:
    """One deterministic batch of expressions shared by every test in the module."""
    rng = random.Random(SEED)
    return [_expression(rng, 4) for _ in range(COUNT)]


@pytest.mark.parametrize("index", range(COUNT))
def test_matches_python(expressions: list[str], index: int) -> None:
    source = expressions[index]
    assert calc(source) == eval(source), source


@pytest.mark.parametrize("index", range(COUNT))
def test_source_is_stable(expressions: list[str], index: int) -> None:
    canonical = to_source(parse(expressions[index]))
    assert to_source(parse(canonical)) == canonical


def test_batch_is_deterministic(expressions: list[str]) -> None:
    rng = random.Random(SEED)
    assert expressions == [_expression(rng, 4) for _ in range(COUNT)]
