"""Deterministic test sampling: node ids and a seed in, a selection out.

Pure functions only: no pytest import and no I/O except `machine_seed`, which reads the
machine's identity once. Every law the plugin promises is a property of `score`:

* a test's membership depends only on the seed and its own node id (stable when tests are
  added or removed, identical on every process and machine, independent of PYTHONHASHSEED);
* samples are nested: a test scored below 0.01 is also below 0.10;
* different seeds give near-independent scores, so agents cover different tests.

A team (`Sampler` with `agents`) shares one seed instead: the seed's hash cuts the suite into
`agents` parts of near-equal size, and agent k starts its sample at the head of its own part
(k plus the rotation, modulo the team size). A fraction of 1/N is then exactly the agent's part:
the team's samples are disjoint and together cover every test. Smaller fractions are the head
of the part (still disjoint), larger ones run on into the next parts (still covering all).
"""

from __future__ import annotations

import hashlib
import math
import re
import socket
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = [
    "DEFAULT_UNKNOWN_DURATION",
    "TEAM_SEED",
    "Sample",
    "Sampler",
    "agent_seed",
    "machine_seed",
    "parse_fraction",
    "parse_seed",
    "score",
    "select",
    "select_budget",
    "with_files",
]

_SEED_RE = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")

#: Seconds assumed for a test with no recorded duration when planning a budget, unless some
#: durations are known, in which case their median is used.
DEFAULT_UNKNOWN_DURATION = 0.1

#: The seed a team shares unless one is given: every agent of it cuts the suite the same way.
TEAM_SEED = "team"
_SPAN = 2**64  # the range of a test's hash


@dataclass(frozen=True)
class Sample:
    """The outcome of sampling: which node ids run, and how they were chosen."""

    selected: tuple[str, ...]
    total: int
    fraction: float | None
    seed: str
    budget_s: float | None = None
    expected_s: float | None = None
    agents: int | None = None  # the team size when the sample is a team's part
    part: int | None = None  # which of the team's parts this agent ran
    added_for_changes: int = 0  # tests of changed files added beyond the sample

    @property
    def selected_set(self) -> frozenset[str]:
        return frozenset(self.selected)


def parse_fraction(text: str | float) -> float:
    """Parse `0.1`, `10%` or `.5` into a fraction in (0, 1]; raise ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"expected a fraction such as 0.1 or 10%, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    elif not isinstance(text, str):
        raise ValueError(f"expected a fraction such as 0.1 or 10%, got {text!r}")
    else:
        raw = text.strip()
        percent = raw.endswith("%")
        number = raw[:-1].strip() if percent else raw
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"expected a fraction such as 0.1 or 10%, got {text!r}") from None
        if percent:
            value /= 100.0
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"fraction must be greater than 0 and at most 1 (or 100%), got {text!r}")
    return value


def parse_seed(text: str) -> str:
    """Validate a seed given by the user: 1-64 characters of [0-9A-Za-z_.-]."""
    seed = text.strip()
    if not _SEED_RE.match(seed):
        raise ValueError(
            f"seed must be 1-64 characters of letters, digits, '_', '.' or '-', got {text!r}"
        )
    return seed


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def agent_seed(agent_id: str) -> str:
    """The seed an agent id stands for: 8 hex digits, the same on every machine."""
    return _short_hash("llmharness-agent\0" + agent_id)


def machine_seed() -> str:
    """A seed from the machine's identity: stable on one machine, different across machines."""
    ident = ""
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            ident = Path(candidate).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if ident:
            break
    if not ident:
        ident = f"{socket.gethostname()}-{uuid.getnode():012x}"
    return _short_hash("llmharness-machine\0" + ident)


def _hash(seed: str, nodeid: str) -> int:
    digest = hashlib.blake2b(
        nodeid.encode("utf-8", "surrogatepass"), digest_size=8, key=seed.encode("utf-8")[:64]
    ).digest()
    return int.from_bytes(digest, "big")


def score(seed: str, nodeid: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the node id alone."""
    return _hash(seed, nodeid) / float(_SPAN)


@dataclass(frozen=True)
class Sampler:
    """The order in which one agent takes tests: by the seed alone, or as part of a team.

    A test is in the sample of fraction f when `rank(nodeid) < cut(f)`. Ranks are integers,
    and Python compares an integer with a float exactly, so a test on a part's boundary
    belongs to exactly one part.
    """

    seed: str
    agents: int | None = None
    part: int = 0  # the team's part this agent starts at (its id plus the rotation)

    def __post_init__(self) -> None:
        if self.agents is not None and not (self.agents >= 1 and 0 <= self.part < self.agents):
            raise ValueError(f"part {self.part} of {self.agents} agents")

    def rank(self, nodeid: str) -> int:
        value = _hash(self.seed, nodeid)
        if self.agents is None:
            return value
        own, within = divmod(value * self.agents, _SPAN)  # which part, and where in it
        return ((own - self.part) % self.agents) * _SPAN + within

    def cut(self, fraction: float) -> float:
        return fraction * (self.agents or 1) * float(_SPAN)

    def part_of(self, nodeid: str) -> int:
        """The team part a test belongs to (0 without a team)."""
        return (_hash(self.seed, nodeid) * (self.agents or 1)) // _SPAN


def _sampler(seed: str | Sampler) -> Sampler:
    return seed if isinstance(seed, Sampler) else Sampler(seed)


def _ordered(nodeids: Iterable[str], sampler: Sampler) -> list[tuple[int, str]]:
    return sorted((sampler.rank(nodeid), nodeid) for nodeid in nodeids)


def _sample(
    nodeids: Sequence[str],
    chosen: set[str],
    sampler: Sampler,
    fraction: float | None,
    budget_s: float | None = None,
    expected_s: float | None = None,
) -> Sample:
    return Sample(
        selected=tuple(nodeid for nodeid in nodeids if nodeid in chosen),
        total=len(nodeids),
        fraction=fraction,
        seed=sampler.seed,
        budget_s=budget_s,
        expected_s=expected_s,
        agents=sampler.agents,
        part=sampler.part if sampler.agents is not None else None,
    )


def select(nodeids: Sequence[str], fraction: float, seed: str | Sampler) -> Sample:
    """Pick the tests ranked below the fraction's cut; at least one if there are any.

    The selection keeps the input order, so tests still run in the order pytest collected them.
    """
    sampler = _sampler(seed)
    cut = sampler.cut(fraction)
    chosen = {nodeid for nodeid in nodeids if sampler.rank(nodeid) < cut}
    if not chosen and nodeids:
        # The lowest-ranked test is in every larger sample too, so nesting survives this rule.
        chosen = {min(nodeids, key=lambda nodeid: (sampler.rank(nodeid), nodeid))}
    return _sample(nodeids, chosen, sampler, fraction=fraction)


def with_files(sample: Sample, nodeids: Sequence[str], files: Collection[str]) -> Sample:
    """The sample plus every test of `files` (node ids `file::...`), in the input order."""
    if not files:
        return sample
    chosen = set(sample.selected)
    added = {n for n in nodeids if n.partition("::")[0] in files and n not in chosen}
    if not added:
        return sample
    chosen |= added
    return replace(
        sample,
        selected=tuple(nodeid for nodeid in nodeids if nodeid in chosen),
        added_for_changes=sample.added_for_changes + len(added),
    )


def _valid_duration(seconds: float) -> bool:
    """A recorded duration that can be planned with: finite and not negative."""
    return math.isfinite(seconds) and seconds >= 0.0


def estimate_unknown(durations: Mapping[str, float]) -> float:
    """The duration assumed for never-timed tests: the median of known ones, or a default."""
    known = sorted(d for d in durations.values() if _valid_duration(d))
    if not known:
        return DEFAULT_UNKNOWN_DURATION
    mid = len(known) // 2
    return known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2.0


def select_budget(
    nodeids: Sequence[str],
    budget_s: float,
    seed: str | Sampler,
    durations: Mapping[str, float],
    fraction: float | None = None,
) -> Sample:
    """Fill a sample in the seed's order with tests whose expected durations fit the budget.

    Tests are visited lowest score first (restricted to the `fraction` sample when given); a
    test that would overrun the budget is passed over and smaller ones after it may still fit.
    Never-timed tests, and tests whose recorded duration is negative or not finite, are expected
    to take `estimate_unknown(durations)`. The first test in the
    seed's order is always taken, so the sample is never empty.
    """
    sampler = _sampler(seed)
    pool = list(nodeids)
    if fraction is not None:
        pool = list(select(pool, fraction, sampler).selected)
    unknown = estimate_unknown(durations)
    chosen: set[str] = set()
    expected = 0.0
    for _, nodeid in _ordered(pool, sampler):
        cost = durations.get(nodeid, unknown)
        if not _valid_duration(cost):
            cost = unknown
        if not chosen or expected + cost <= budget_s:
            chosen.add(nodeid)
            expected += cost
    return _sample(
        nodeids, chosen, sampler, fraction=fraction, budget_s=budget_s, expected_s=expected
    )
