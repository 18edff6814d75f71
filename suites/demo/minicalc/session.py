"""Run multi-line minicalc scripts with persistent variables."""

from __future__ import annotations

from dataclasses import dataclass, field

from minicalc.errors import CalcError
from minicalc.evaluator import Environment, Value, evaluate
from minicalc.parser import parse


@dataclass
class Session:
    """A REPL-like session: each statement sees the variables of earlier ones."""

    env: Environment = field(default_factory=Environment)
    history: list[tuple[str, Value]] = field(default_factory=list)

    def execute(self, line: str) -> Value:
        """Evaluate one statement and record it in the history."""
        value = evaluate(parse(line), self.env)
        self.history.append((line, value))
        return value

    def run(self, script: str) -> list[Value]:
        """Run every non-blank line of `script`; `#` starts a comment."""
        results: list[Value] = []
        for lineno, raw in enumerate(script.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                results.append(self.execute(line))
            except CalcError as exc:
                raise type(exc)(f"line {lineno}: {exc.message}", exc.pos) from exc
        return results

    @property
    def last(self) -> Value | None:
        """Value of the most recent statement, if any."""
        return self.history[-1][1] if self.history else None
