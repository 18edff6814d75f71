"""Shared fixtures for the minicalc test suite."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from minicalc import Environment, Session, evaluate, parse


@pytest.fixture
def env() -> Environment:
    """A fresh environment with only the built-in constants and functions."""
    return Environment()


@pytest.fixture
def run(env: Environment) -> Callable[[str], float]:
    """Evaluate a statement in the test's environment."""

    def _run(source: str) -> float:
        return evaluate(parse(source), env)

    return _run


@pytest.fixture
def session() -> Session:
    return Session()
