"""Run given tests again, in a fresh pytest process on the work tree as it is: alone, or after
the tests that ran before them, in that order. What verdicts and `llmharness bisect` are made of.

The child is plain pytest with llmharness blocked and the small plugin the check at the base
uses (`llmharness.atbase_plugin`), which runs only the wanted tests, in the given order when
asked, and writes each outcome as it finishes, so a child killed at its deadline keeps those.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from llmharness import environ
from llmharness.atbase_plugin import PLAN_ENV
from llmharness.basecheck import (
    child_options,
    llmharness_options,
    plugin_folder,
    read_records,
    run_child,
)

__all__ = ["Rerun", "run_tests"]


@dataclass(frozen=True)
class Rerun:
    """What became of the tests run again."""

    outcomes: dict[str, str]  # node id to pytest's outcome word; the tests that finished
    timed_out: bool
    note: str | None = None  # why some have no outcome, in one line


def run_tests(
    rootdir: Path,
    store_root: Path,
    nodeids: Sequence[str],
    *,
    deadline: float,
    ordered: bool = False,
    python: str = sys.executable,
) -> Rerun:
    """Run `nodeids` (in that order when `ordered`) in one fresh pytest process at `rootdir`,
    stopping it at `deadline` (time.monotonic())."""
    files = list(dict.fromkeys(nodeid.split("::", 1)[0] for nodeid in nodeids))
    folder = store_root / "reruns"
    try:
        plugin = plugin_folder(folder)
    except OSError as exc:
        return Rerun({}, False, f"cannot write the re-run's plugin: {exc.strerror or exc}")
    with tempfile.TemporaryDirectory(prefix="rerun-", dir=folder) as scratch:
        out = Path(scratch) / "out"
        out.mkdir()
        plan = {
            "wanted": list(nodeids),
            "ordered": ordered,
            "files": files,
            "modules": [],
            "out": str(out),
            "options": llmharness_options(),
            "ini": ["llmharness_config"],
        }
        plan_file = Path(scratch) / "plan.json"
        plan_file.write_text(json.dumps(plan), encoding="utf-8")
        env = {k: v for k, v in environ.at_start().items() if not k.startswith("LLMHARNESS_")}
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (env.get("PYTHONPATH", ""), str(plugin)) if part
        )
        env[PLAN_ENV] = str(plan_file)
        # One process, in the order given, every test run, no cache choosing tests.
        extra = ["-p", "no:randomly", "-p", "no:cacheprovider"]
        if _has_xdist():
            extra += ["-n", "0"]  # undoes an -n in the addopts
        command = [python, "-m", "pytest", *extra, *child_options(rootdir), *files]
        try:
            returncode, timed_out = run_child(
                command, cwd=rootdir, env=env, deadline=deadline, log=Path(scratch) / "out.txt"
            )
        except OSError as exc:
            return Rerun({}, False, f"cannot start {python}: {exc.strerror or exc}")
        outcomes = {
            str(record["nodeid"]): str(record["outcome"])
            for record in read_records(out)
            if record.get("kind") == "test"
        }
    note = None
    missing = [nodeid for nodeid in nodeids if nodeid not in outcomes]
    if missing:
        why = "its time ran out" if timed_out else f"pytest exited {returncode}"
        note = f"{len(missing)} of {len(nodeids)} tests re-run without an outcome: {why}"
    return Rerun(outcomes, timed_out, note)


def _has_xdist() -> bool:
    """Whether pytest-xdist is installed, so `-n 0` may undo an `-n` in the addopts."""
    import importlib.util

    return importlib.util.find_spec("xdist") is not None
