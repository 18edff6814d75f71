"""A team of agents sharing one suite: who runs which part, and how much of the suite the
team's runs have covered at the base.

With `agents: N`, agent k's `--fast` sample starts at part (k + rotation) mod N of the suite
(see `sampling.Sampler`). The rotation is the base commit's generation (its count of
first-parent commits): every agent at one base agrees on it, so their parts are disjoint; at
the next base it is one more, so after N successive bases each agent has run every part.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmharness import gitinfo, sampling
from llmharness.config import ConfigError, Settings, check_team, load_settings
from llmharness.knowledge import Knowledge
from llmharness.store import Store, find_store

if TYPE_CHECKING:
    from llmharness.reader import Records

__all__ = [
    "Assignment",
    "assign",
    "coverage",
    "coverage_at",
    "coverage_command",
    "coverage_lines",
    "of_run",
    "sample_command",
    "seed",
]

_FILES_SHOWN = 5


def seed(settings: Settings) -> str:
    """The seed an agent samples with: the team's shared one, or its own."""
    if settings.agents is not None:
        return settings.seed or sampling.TEAM_SEED
    if settings.seed:
        return settings.seed
    if settings.agent_id is not None:
        return sampling.agent_seed(settings.agent_id)
    return sampling.machine_seed()


@dataclass(frozen=True)
class Assignment:
    """How far the team's parts are rotated at a base, and why not when they are not."""

    rotation: int
    note: str | None = None

    def part(self, agent: int, agents: int) -> int:
        return (agent + self.rotation) % agents

    def agent(self, part: int, agents: int) -> int:
        return (part - self.rotation) % agents


def assign(settings: Settings, version: gitinfo.CodeVersion | None) -> Assignment:
    """The rotation a setting fixes, or the base commit's generation."""
    if settings.rotation is not None:
        return Assignment(settings.rotation)
    if version is None or version.base is None:
        return Assignment(0, "parts not rotated: no base commit")
    count = gitinfo.generation(Path(version.top), version.base)
    if count is None:
        return Assignment(0, "parts not rotated: a shallow clone cannot count the base's history")
    return Assignment(count)


def coverage(store: Store, rootdir: Path, settings: Settings) -> dict[str, Any]:
    """Which share of the suite at the base has a known outcome there, from this store's runs
    and checks and what `llmharness sync` brought; with a team size, the parts not yet run."""
    version, why = gitinfo.read_version(rootdir, settings.base)
    if version is None or version.base is None:
        data = _coverage_data(None, settings.agents)
        data["note"] = why or "no base commit: coverage is counted at the base"
        return data
    assignment = assign(settings, version) if settings.agents is not None else Assignment(0)
    return coverage_at(store, version.base, settings.agents, assignment, seed(settings))


def _coverage_data(base: str | None, agents: int | None) -> dict[str, Any]:
    return {
        "base": base,
        "tests": None,
        "known": None,
        "share": None,
        "unrun_parts": [],
        "agents": agents,
        "parts": [],
        "unrun_files": [],
        "note": None,
    }


def coverage_at(
    store: Store,
    base: str,
    agents: int | None = None,
    assignment: Assignment | None = None,
    team_seed: str = sampling.TEAM_SEED,
) -> dict[str, Any]:
    """Coverage at commit `base`; with `agents`, by the team's parts as `assignment` rotates."""
    data = _coverage_data(base, agents)
    knowledge = Knowledge(store)
    suite = knowledge.suite(base)
    if suite is None:
        data["note"] = (
            f"the suite at the base {base[:10]} is not known yet: run pytest (--fast is "
            "enough) without paths on a clean checkout of the base"
        )
        return data
    # Only which tests are known counts here; each test's outcome (`Knowledge.at`) took over a
    # second on 100,000 tests, in every `llmharness summary`.
    known = knowledge.existed(base).intersection(suite)
    data.update(tests=len(suite), known=len(known))
    data["share"] = round(len(known) / len(suite), 4) if suite else 1.0
    unknown = [nodeid for nodeid in suite if nodeid not in known]
    unknown_files = Counter(nodeid.partition("::")[0] for nodeid in unknown)
    files = Counter(nodeid.partition("::")[0] for nodeid in suite) if unknown else Counter[str]()
    data["unrun_files"] = [
        {"file": rel, "tests": files[rel], "unknown": count}
        for rel, count in sorted(unknown_files.items())
    ]
    if agents is not None:
        assignment = assignment or Assignment(0)
        sampler = sampling.Sampler(team_seed, agents)
        sizes = Counter(sampler.part_of(nodeid) for nodeid in suite)
        missing = Counter(sampler.part_of(nodeid) for nodeid in unknown)
        data["parts"] = [
            {
                "part": part,
                "agent": assignment.agent(part, agents),
                "tests": sizes[part],
                "unknown": missing[part],
            }
            for part in range(agents)
        ]
        data["unrun_parts"] = [part for part in range(agents) if missing[part]]
        data["rotation"] = assignment.rotation
        data["note"] = assignment.note
    return data


def of_run(store: Store, summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """Coverage at a recorded run's base, by its team (None when the run had no base)."""
    base = summary.get("base")
    commit = base.get("commit") if isinstance(base, Mapping) else None
    if not isinstance(commit, str) or not commit:
        return None
    sample = summary.get("sample") or {}
    agents = sample.get("agents")
    if not isinstance(agents, int) or agents < 1:
        return coverage_at(store, commit)
    rotation = sample.get("rotation")
    assignment = Assignment(rotation if isinstance(rotation, int) else 0, sample.get("team_note"))
    return coverage_at(store, commit, agents, assignment, str(sample.get("seed")))


def coverage_lines(data: dict[str, Any]) -> list[str]:
    """`llmharness coverage` in a few lines."""
    if data["share"] is None:
        return [f"coverage: unknown: {data['note']}"]
    lines = [
        f"coverage at base {data['base'][:10]}: {data['share'] * 100:.1f}% "
        f"({data['known']:,} of {data['tests']:,} tests have a known outcome there)"
    ]
    if data["parts"]:
        unrun = [p for p in data["parts"] if p["unknown"]]
        if unrun:
            shown = ", ".join(
                f"{p['part']} (agent {p['agent']}: {p['unknown']:,} of {p['tests']:,} unknown)"
                for p in unrun[:8]
            )
            more = f" and {len(unrun) - 8} more" if len(unrun) > 8 else ""
            lines.append(f"parts not yet run at this base: {shown}{more}")
        else:
            lines.append(f"every part of {data['agents']} has been run at this base")
    elif data["unrun_files"]:
        files = data["unrun_files"]
        shown = ", ".join(f"{f['file']} ({f['unknown']:,})" for f in files[:_FILES_SHOWN])
        more = f" and {len(files) - _FILES_SHOWN} more" if len(files) > _FILES_SHOWN else ""
        lines.append(f"files with tests not yet run at this base: {shown}{more}")
    if data["note"]:
        lines.append(f"note: {data['note']}")
    return lines


def _project(store_root: Path | None) -> Path:
    """The project folder whose settings and git apply: the store's, unless it is shared."""
    if store_root is None or os.environ.get("LLMHARNESS_STORE"):
        return Path.cwd()
    return store_root.parent


def _settings(rootdir: Path, cli: dict[str, Any], agent: bool = False) -> Settings | None:
    try:
        settings = load_settings(rootdir, cli, os.environ)
        if agent:  # a sample, as --fast draws it
            check_team(replace(settings, fast=True))
        return settings
    except ConfigError as exc:
        sys.stderr.write(f"llmharness: {exc}\n")
        return None


def coverage_command(records: Records, agents: str | None, as_json: bool) -> int:
    """`llmharness coverage`: the team size from --agents, the settings, or the latest run."""
    rootdir = _project(records.root)
    settings = _settings(rootdir, {"agents": agents})
    if settings is None:
        return 2
    from llmharness.reader import NoRecordError

    if settings.agents is None:
        with contextlib.suppress(NoRecordError):
            latest = records.summary().sample.get("agents")
            if isinstance(latest, int) and latest >= 1:
                settings = replace(settings, agents=latest)
    data = coverage(records.store, rootdir, settings)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        print("\n".join(coverage_lines(data)))
    return 0


def sample_command(
    where: str | None,
    agent_id: str | None,
    fraction: str | None,
    agents: str | None,
    seed_text: str | None,
) -> int:
    """`llmharness sample`: the ids on stdin that the agent's sample holds, in input order."""
    found = find_store(Path(where) if where else Path.cwd())
    rootdir = Path(where) if where and found is None else _project(found)
    cli = {"agent_id": agent_id, "fast_fraction": fraction, "agents": agents, "seed": seed_text}
    settings = _settings(rootdir, cli, agent=True)
    if settings is None:
        return 2
    nodeids = list(dict.fromkeys(line.strip() for line in sys.stdin if line.strip()))
    fraction_value = settings.fast_fraction
    sampler = sampling.Sampler(seed(settings))
    if settings.agents is not None:
        version = gitinfo.read_version(rootdir, settings.base)[0]
        part = assign(settings, version).part(int(settings.agent_id or 0), settings.agents)
        sampler = sampling.Sampler(sampler.seed, settings.agents, part)
        if fraction_value is None:
            fraction_value = 1.0 / settings.agents
    chosen = sampling.select(nodeids, fraction_value or 0.10, sampler)
    sys.stdout.write("".join(f"{nodeid}\n" for nodeid in chosen.selected))
    return 0
