"""The environment for tests that drive real git repositories and real pytest processes: the
machine's git config and the outer run's llmharness settings kept out, an author set."""

from __future__ import annotations

import os
from pathlib import Path

from llmharness import agents


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment an agent's shell would have, with `home` as its HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMHARNESS_", "GIT_"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="agent",
        GIT_AUTHOR_EMAIL="agent@example.com",
        GIT_COMMITTER_NAME="agent",
        GIT_COMMITTER_EMAIL="agent@example.com",
        PYTEST_ADDOPTS="-p no:randomly -p no:anyio -p no:hypothesispytest -p no:cacheprovider",
    )
    env.update(extra)
    return env


def outside_env(**extra: str) -> dict[str, str]:
    """This process's environment without llmharness's variables or any coding agent's (which
    would turn compact output on), plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LLMHARNESS_") and name not in agents.VARIABLES
    }
    env["PYTEST_ADDOPTS"] = "-p no:randomly -p no:anyio -p no:hypothesispytest"
    env.update(extra)
    return env
