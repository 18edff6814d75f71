#!/usr/bin/env python3
"""Benchmark llmharness against plain pytest and its peers, on synthetic and real suites.

Builds one virtual environment per tool under bench/_work/venvs/ (so each run loads only the
pytest plugins it needs). Then, all in one run, each figure a ratio to plain pytest measured in
the same run: the tools part times every variant and peer round-robin on a synthetic suite; the
where-agents-run part times `pytest -q` with and without llmharness on synthetic suites and two
real projects' own tests (from their sdists on PyPI), with PYTHONDONTWRITEBYTECODE=1 and
without it, from the second run on; the record part records a 100,000-test run, times the
`llmharness` CLI on it and sizes the store. Prints the tables and the goals, met or not, and
writes bench/_work/results.json. Standard library only; Linux or macOS (uses os.wait4).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import hashlib
import importlib.util
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Installed from a copy so that building the wheel never writes build/ into the work tree.
SOURCE_FILES = ("pyproject.toml", "README.md", "llmharness")
# Variables that would change what pytest or llmharness does in every variant.
SCRUBBED_ENV = (
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTHONPATH",
    "PYTHONHOME",
    # Which repository git finds: a hook's environment would point every run at another one.
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
)
# Every variant runs without pytest's cache plugin, so that it is never the difference measured.
COMMON = ("-q", "-p", "no:cacheprovider")
AGENT = ("--agent-id", "bench")
FAIL_SEED = 0

GOAL_FULL_WALL = 1.05
GOAL_FULL_RSS = 1.10
GOAL_FAST1_WALL = 0.12
GOAL_CLI_S = 0.5


# -- virtual environments --------------------------------------------------------------------
@dataclass(frozen=True)
class VenvSpec:
    """One tool's virtual environment: its name and what pip installs into it."""

    name: str
    requirements: tuple[str, ...]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def run_quiet(cmd: Sequence[str | Path], **kwargs: Any) -> str:
    """Run a setup command; on failure stop the benchmark with its output."""
    proc = subprocess.run(
        [str(part) for part in cmd], capture_output=True, text=True, check=False, **kwargs
    )
    if proc.returncode != 0:
        sys.exit(
            f"bench: command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return str(proc.stdout)


def source_fingerprint() -> str:
    """A hash of the files the llmharness wheel is built from."""
    digest = hashlib.blake2b(digest_size=8)
    for name in SOURCE_FILES:
        path = REPO / name
        paths = sorted(path.rglob("*")) if path.is_dir() else [path]
        for item in paths:
            if item.is_file() and "__pycache__" not in item.parts:
                digest.update(str(item.relative_to(REPO)).encode())
                digest.update(item.read_bytes())
    return digest.hexdigest()


def copy_source(work: Path, fingerprint: str) -> Path:
    target = work / "src" / f"llmharness-{fingerprint}"
    if target.exists():
        return target
    shutil.rmtree(work / "src", ignore_errors=True)
    target.mkdir(parents=True)
    for name in SOURCE_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, target / name)
    return target


def ensure_venv(
    root: Path, spec: VenvSpec, python: str, rebuild: bool, stamp: dict[str, Any]
) -> Path:
    """Create (or reuse, when its recorded spec matches) the venv and install its packages."""
    venv = root / spec.name
    marker = venv / "bench-spec.json"
    wanted = {"python": python, "requirements": list(spec.requirements), **stamp}
    if not rebuild and marker.exists():
        try:
            if json.loads(marker.read_text()) == wanted:
                return venv
        except ValueError:
            pass
    progress(f"building venv {spec.name}: {' '.join(spec.requirements)}")
    shutil.rmtree(venv, ignore_errors=True)
    run_quiet([python, "-m", "venv", venv])
    pip: list[str | Path] = [venv_python(venv), "-m", "pip", "install", "-q"]
    pip.append("--disable-pip-version-check")
    run_quiet([*pip, *spec.requirements])
    marker.write_text(json.dumps(wanted))
    return venv


_INSPECT = """\
import importlib.metadata as m, json, sys
dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in m.distributions())
plugins = sorted(f"{e.name} ({e.value})" for e in m.entry_points(group="pytest11"))
print(json.dumps({"packages": dists, "pytest11": plugins,
                  "dont_write_bytecode": bool(sys.flags.dont_write_bytecode),
                  "python": sys.version.split()[0]}))
"""


def inspect_venv(venv: Path, env: dict[str, str]) -> dict[str, Any]:
    """What a venv holds: its packages, the pytest plugins it auto-loads, its bytecode flag."""
    # From the venv's own folder: `python -c` puts the current folder on sys.path, and a
    # checkout's llmharness.egg-info there would be listed as installed.
    command: list[str | Path] = [venv_python(venv), "-c", _INSPECT]
    data: dict[str, Any] = json.loads(run_quiet(command, env=env, cwd=venv))
    return data


def check_plugin(info: dict[str, Any], venv: str, loaded: bool) -> None:
    """Stop unless the venv does (or does not) auto-load the llmharness plugin."""
    if any(entry.startswith("llmharness ") for entry in info["pytest11"]) != loaded:
        state = "does not load" if loaded else "loads"
        sys.exit(f"bench: venv {venv} {state} the llmharness plugin: {info['pytest11']}")


def installed_version(info: dict[str, Any], name: str) -> str:
    prefix = f"{name.lower()}=="
    for item in info["packages"]:
        if item.lower().replace("_", "-").startswith(prefix):
            return str(item.split("==", 1)[1])
    sys.exit(f"bench: {name} is not installed in the llmharness venv")


# -- every suite a git repository of its own -------------------------------------------------
# bench/_work lies inside llmharness's own work tree: a suite without a repository of its own
# would be recorded at llmharness's commit and its failures checked at llmharness's base, where
# the suite does not exist. A fresh clone is a clean tree at its base: so is every suite here.
SUITE_GITIGNORE = ("__pycache__/", ".pytest_cache/", ".llmharness*/")
GIT_IDENTITY = ("-c", "user.name=bench", "-c", "user.email=bench@localhost")


def git_setup_env() -> dict[str, str]:
    """The environment the suites' repositories are made in: no system or user git config."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    # A user's config could sign commits, run hooks from a template or rename the branch.
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    return env


def make_repo(root: Path) -> str:
    """Make `root` a git repository of its own (if it is not one) with everything in it
    committed on `main`; return the commit."""
    env = git_setup_env()
    ignore = root / ".gitignore"
    have = ignore.read_text().splitlines() if ignore.exists() else []
    missing = [line for line in SUITE_GITIGNORE if line not in have]
    if missing:
        text = ignore.read_text() if ignore.exists() else ""
        if text and not text.endswith("\n"):
            text += "\n"
        ignore.write_text(text + "".join(f"{line}\n" for line in missing))
    if not (root / ".git").exists():
        run_quiet(["git", "init", "-q", "-b", "main"], cwd=root, env=env)
    run_quiet(["git", "add", "-A"], cwd=root, env=env)
    if run_quiet(["git", "status", "--porcelain"], cwd=root, env=env).strip():
        commit = ["git", *GIT_IDENTITY, "commit", "-q", "--no-verify", "-m", "bench suite"]
        run_quiet(commit, cwd=root, env=env)
    return run_quiet(["git", "rev-parse", "HEAD"], cwd=root, env=env).strip()


# -- measuring one process -------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One timed process: wall seconds, peak RSS, exit code and what it printed."""

    wall_s: float
    rss_bytes: int
    exit_code: int
    out_bytes: int
    last_line: str
    # Clock time (time.time) at the start and the end, to compare with summary.json's own.
    started_at: float = 0.0
    ended_at: float = 0.0


def _maxrss_bytes(value: int) -> int:
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return value if sys.platform == "darwin" else value * 1024


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


def measure(
    cmd: Sequence[str], cwd: Path, env: dict[str, str], log: Path, timeout: float
) -> Sample:
    """Run `cmd` and return its wall time and peak RSS (from the child's own rusage)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        started_at = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _kill_group, (proc,))
        timer.start()
        try:
            # wait4 reaps the child and gives its rusage alone: ru_maxrss is the largest RSS of
            # the child and the descendants it waited for (not a sum over processes).
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        ended_at = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_bytes()
    lines = [line for line in text.decode("utf-8", "replace").splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("llmharness: ")]
    last = (ours or lines or [""])[-1].strip()
    rss = _maxrss_bytes(usage.ru_maxrss)
    return Sample(wall, rss, proc.returncode, len(text), last[:200], started_at, ended_at)


# -- the variants ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One way of running the suite: which venv, which pytest arguments, which store."""

    name: str
    venv: str
    args: tuple[str, ...]
    meaning: str
    store: str | None = None  # llmharness store folder, relative to the suite
    fast: bool = False  # needs a full recording run in its store first

    def command(self, venvs: Path, out: Path) -> list[str]:
        args = [arg.replace("{out}", str(out)) for arg in self.args]
        store = ["--llmharness-store", self.store] if self.store else []
        return [str(venvs / self.venv / "bin" / "pytest"), *COMMON, *args, *store]


VARIANTS = (
    Variant("plain", "plain", (), "pytest alone (the baseline)"),
    Variant(
        "llmh-disabled",
        "llmharness",
        ("-p", "no:llmharness"),
        "llmharness installed, disabled (its dependencies' plugins still load)",
    ),
    Variant(
        "llmh-full",
        "llmharness",
        AGENT,
        "llmharness recording everything, compact output",
        store=".llmharness-full",
    ),
    Variant(
        "llmh-fast1",
        "llmharness",
        ("--fast", "--fast-fraction", "1%", *AGENT),
        "llmharness 1% sample",
        store=".llmharness-fast1",
        fast=True,
    ),
    Variant(
        "llmh-fast10",
        "llmharness",
        ("--fast", "--fast-fraction", "10%", *AGENT),
        "llmharness 10% sample",
        store=".llmharness-fast10",
        fast=True,
    ),
    Variant(
        "llmh-n2",
        "llmharness",
        ("-n", "2", *AGENT),
        "llmharness recording everything under pytest-xdist, 2 workers",
        store=".llmharness-n2",
    ),
    Variant(
        "json-report",
        "jsonreport",
        ("--json-report", "--json-report-file={out}/report.json"),
        "pytest-json-report writing one JSON file",
    ),
    Variant(
        "report-log",
        "reportlog",
        ("--report-log={out}/reportlog.jsonl",),
        "pytest-reportlog writing JSON lines",
    ),
    Variant("xdist-n2", "xdist", ("-n", "2"), "pytest-xdist alone, 2 workers"),
)


@dataclass
class Result:
    """A variant's samples and the figures derived from them."""

    name: str
    meaning: str
    command: list[str]
    samples: list[Sample] = field(default_factory=list)
    median_s: float = 0.0
    min_s: float = 0.0
    peak_rss_mb: float = 0.0
    x_plain: float | None = None
    # The ratio to plain pytest's run of the same round, round by round: runs close in time
    # share the machine's drift, so their spread shows how far one ratio can be trusted.
    x_plain_rounds: list[float] = field(default_factory=list)
    x_plain_rss: float | None = None
    x_full_record: float | None = None
    out_kb: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)

    def finish(self) -> None:
        walls = [sample.wall_s for sample in self.samples]
        self.median_s = statistics.median(walls)
        self.min_s = min(walls)
        self.peak_rss_mb = max(sample.rss_bytes for sample in self.samples) / 2**20
        self.out_kb = self.samples[-1].out_bytes / 1024


def ratio(value: float, base: float | None) -> float | None:
    return value / base if base else None


# -- steps -----------------------------------------------------------------------------------
def progress(message: str) -> None:
    sys.stderr.write(f"bench: {message}\n")
    sys.stderr.flush()


def load_module(rel: str, name: str) -> ModuleType:
    """A module of this repository by its path, without installing or importing the package
    (the modules loaded so use the standard library only)."""
    path = REPO / rel
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        sys.exit(f"bench: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_agents() -> ModuleType:
    """llmharness's agent detector, for the variables it reads."""
    return load_module("llmharness/agents.py", "llmharness_agents")


def load_generator() -> ModuleType:
    return load_module("suites/generate.py", "llmharness_suite_generate")


def generate(
    generator: ModuleType,
    root: Path,
    files: int,
    tests: int,
    fail_rate: float,
    seed: int,
    fresh: bool = True,
) -> dict[str, Any]:
    """Write a synthetic suite at `root`; `fresh` first removes the old one and its stores."""
    if fresh:
        shutil.rmtree(root, ignore_errors=True)
    subdirs = min(10, files)
    nodeids = generator.synthetic(root, files, tests, fail_rate, seed, subdirs)
    failing = sum(generator.is_failing(seed, nodeid, fail_rate) for nodeid in nodeids)
    # Rewritten in place (not `fresh`), the suite's change is committed: still clean at its base.
    commit = make_repo(root)
    return {
        "path": str(root),
        "files": files,
        "tests_per_file": tests,
        "tests": len(nodeids),
        "subdirs": subdirs,
        "fail_rate": fail_rate,
        "seed": seed,
        "failing": failing,
        "commit": commit,
        # Tests per folder (pkg_00, pkg_01, ...), for the instruction counts on part of it.
        "by_subdir": dict(collections.Counter(nodeid.split("/", 1)[0] for nodeid in nodeids)),
    }


def check_exit(sample: Sample, command: Sequence[str], log: Path) -> None:
    # pytest: 0 all passed, 1 some tests failed; anything else means the run itself broke.
    if sample.exit_code not in (0, 1):
        tail = log.read_text(errors="replace")[-2000:]
        sys.exit(f"bench: exit {sample.exit_code} from {' '.join(command)}\n{tail}")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def store_facts(store: Path) -> dict[str, Any]:
    """What the store's latest run says about itself (counts, warnings), for the sanity list."""
    summary = read_json(store / "last" / "summary.json")
    if not isinstance(summary, dict):
        return {"error": f"no readable {store / 'last' / 'summary.json'}"}
    sample = summary.get("sample") or {}
    return {
        **version_facts(summary),
        "status": summary.get("status"),
        "counts": {k: v for k, v in (summary.get("counts") or {}).items() if v},
        "selected": sample.get("selected"),
        "total": sample.get("total"),
        "store_warnings": summary.get("store_warnings") or [],
        "notes": summary.get("notes") or [],
        "runs_kept": len(list((store / "runs").iterdir())) if (store / "runs").is_dir() else 0,
    }


def version_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """What a run's summary.json says of its code version and of any check at the base."""
    git = summary.get("git") or {}
    base = summary.get("base") or {}
    return {
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "at_base": base.get("at_base"),
        "git_note": summary.get("git_note"),
        "base_check": summary.get("base_check"),
    }


def not_at_base(facts: dict[str, Any]) -> str | None:
    """Why a run of a suite's own repository was not the clean run at its base it should be."""
    if not facts.get("git_commit"):
        return f"no code version ({facts.get('git_note') or facts.get('error')})"
    if facts.get("git_dirty") or not facts.get("at_base"):
        return f"not a clean run at its base (dirty {facts.get('git_dirty')})"
    checked = (facts.get("base_check") or {}).get("checked")
    return f"{checked} tests checked at the base" if checked else None


def bench_variants(
    variants: Sequence[Variant],
    suite: Path,
    venvs: Path,
    work: Path,
    env: dict[str, str],
    repeat: int,
    timeout: float,
    wait: Callable[[], None] = lambda: None,
) -> list[Result]:
    """Warm every variant up, then time them round-robin `repeat` times."""
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    results = [Result(v.name, v.meaning, v.command(venvs, out)) for v in variants]

    def once(name: str, command: list[str], label: str) -> Sample:
        log = work / "logs" / f"{name}.txt"
        sample = measure(command, suite, env, log, timeout)
        check_exit(sample, command, log)
        progress(f"{label} {name}: {sample.wall_s:.2f}s {sample.rss_bytes / 2**20:.0f}MB")
        return sample

    for variant, result in zip(variants, results, strict=True):
        if variant.fast:
            # --fast reuses what a full run left in the store (durations, the collection cache).
            first = Variant("", "llmharness", AGENT, "", variant.store).command(venvs, out)
            once(variant.name, first, "warm-up full run for")
        once(variant.name, result.command, "warm-up")
    wait()
    for round_no in range(repeat):
        # Rotate the start so that no variant always runs right after the same other one.
        order = list(range(len(variants)))
        order = order[round_no % len(order) :] + order[: round_no % len(order)]
        for index in order:
            variant, result = variants[index], results[index]
            label = f"round {round_no + 1}/{repeat}"
            result.samples.append(once(variant.name, result.command, label))
    by_name = {result.name: result for result in results}
    plain = by_name["plain"]
    for result in results:
        result.finish()
    full = by_name.get("llmh-full")
    for variant, result in zip(variants, results, strict=True):
        result.x_plain = ratio(result.median_s, plain.median_s)
        result.x_plain_rounds = [
            mine.wall_s / base.wall_s
            for mine, base in zip(result.samples, plain.samples, strict=True)
            if base.wall_s
        ]
        result.x_plain_rss = ratio(result.peak_rss_mb, plain.peak_rss_mb)
        if variant.fast and full is not None:
            result.x_full_record = ratio(result.median_s, full.median_s)
        if variant.store:
            result.record = store_facts(suite / variant.store)
    return results


def bench_pairs(
    results: list[Result], suite: Path, work: Path, env: dict[str, str], pairs: int, timeout: float
) -> dict[str, Any] | None:
    """Plain pytest and the full recording run back to back, `pairs` times, each pair started
    by the other of the two in turn. The machine's speed drifts by more than the cost being
    measured; two runs a few seconds apart share its state, so the ratio within each pair is
    steadier than a ratio of medians taken over the whole benchmark."""
    by_name = {result.name: result for result in results}
    plain, full = by_name.get("plain"), by_name.get("llmh-full")
    if pairs < 1 or plain is None or full is None:
        return None
    ratios: list[float] = []
    walls: dict[str, list[float]] = {"plain": [], "llmh-full": []}
    for number in range(pairs):
        order = (plain, full) if number % 2 == 0 else (full, plain)
        wall = {}
        for result in order:
            log = work / "logs" / f"pair-{result.name}.txt"
            sample = measure(result.command, suite, env, log, timeout)
            check_exit(sample, result.command, log)
            wall[result.name] = sample.wall_s
            walls[result.name].append(sample.wall_s)
        ratios.append(wall["llmh-full"] / wall["plain"])
        progress(
            f"pair {number + 1}/{pairs}: plain {wall['plain']:.2f}s, "
            f"llmh-full {wall['llmh-full']:.2f}s, ratio {ratios[-1]:.3f}"
        )
    quartiles = (
        statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    )
    return {
        "pairs": pairs,
        "ratios": ratios,
        "median": statistics.median(ratios),
        "q1": quartiles[0],
        "q3": quartiles[-1],
        "walls": walls,
    }


_COLLECTED = re.compile(r"Collected : (\d+)")


def bench_instructions(
    suite: Path, venvs: Path, work: Path, env: dict[str, str], facts: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """User-space instructions of plain pytest and the full recording, counted by valgrind's
    callgrind on the suite's first tenth and first fifth (pkg_00, then pkg_00 and pkg_01).

    Unlike wall time, the counts do not drift with the machine. Their difference between the
    two sizes is the cost per test, the rest a cost once per run; both extrapolate to the whole
    suite. Progress lines are turned off, as a run fifty times slower would print some that a
    real run does not; PYTHONHASHSEED is fixed so that two counts of one run agree.
    """
    counted_env = {**env, "PYTHONHASHSEED": "0", "LLMHARNESS_PROGRESS_INTERVAL": "1000000"}
    subsets = (["pkg_00"], ["pkg_00", "pkg_01"])
    out = work / "out"

    def commands(subset: list[str], number: int) -> dict[str, list[str]]:
        store = f".llmharness-instructions-{number}"
        llmh = Variant("", "llmharness", AGENT, "", store=store).command(venvs, out)
        return {"plain": [*VARIANTS[0].command(venvs, out), *subset], "llmh-full": [*llmh, *subset]}

    def count(name: str, command: list[str], number: int) -> int:
        log = work / "logs" / f"callgrind-{name}-{number}.txt"
        sample = measure(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
            suite,
            counted_env,
            log,
            timeout,
        )
        check_exit(sample, command, log)
        found = _COLLECTED.search(log.read_text(errors="replace"))
        if found is None:
            sys.exit(f"bench: no instruction count from valgrind in {log}")
        progress(f"instructions {name}, {number} tenth(s): {int(found[1]) / 1e9:.3f} G")
        return int(found[1])

    counts: dict[str, list[int]] = {"plain": [], "llmh-full": []}
    tests: list[int] = []
    for number, subset in enumerate(subsets, start=1):
        tests.append(sum(facts["by_subdir"][part] for part in subset))
        runs = commands(subset, number)
        # Warm the store (durations, collection cache) as a repeated run finds it: under
        # valgrind too, as it sets LD_PRELOAD, which is in the collection cache's key.
        log = work / "logs" / f"callgrind-warm-{number}.txt"
        warm = ["valgrind", "--tool=none", *runs["llmh-full"]]
        check_exit(measure(warm, suite, counted_env, log, timeout), warm, log)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # one process a core
            futures = {name: pool.submit(count, name, cmd, number) for name, cmd in runs.items()}
            for name, future in futures.items():
                counts[name].append(future.result())
    more = tests[1] - tests[0]
    per_test = {name: (c[1] - c[0]) / more for name, c in counts.items()}
    fixed = {name: c[0] - per_test[name] * tests[0] for name, c in counts.items()}

    def at(size: int, name: str) -> float:
        return fixed[name] + per_test[name] * size

    return {
        "tests": tests,
        "counts": counts,
        "per_test": per_test,
        "per_test_x": per_test["llmh-full"] / per_test["plain"],
        "fixed": fixed,
        "suite_tests": facts["tests"],
        "suite_x": at(facts["tests"], "llmh-full") / at(facts["tests"], "plain"),
    }


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_size
    return total


def run_sizes(run: Path) -> dict[str, int]:
    sizes = {"total": tree_bytes(run)}
    for entry in sorted(run.iterdir()):
        # A symlink (the store's `last`) is sized as itself, as tree_bytes does.
        folder = entry.is_dir() and not entry.is_symlink()
        sizes[entry.name] = tree_bytes(entry) if folder else entry.lstat().st_size
    return sizes


def bench_record(
    generator: ModuleType,
    root: Path,
    files: int,
    tests: int,
    fail_rate: float,
    venvs: Path,
    work: Path,
    env: dict[str, str],
    repeat: int,
    timeout: float,
    wait: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Record two real runs of a large suite, then time the CLI verbs on that store."""
    pytest = str(venvs / "llmharness" / "bin" / "pytest")
    progress(f"generating the record suite: {files} x {tests} tests")
    suite = generate(generator, root, files, tests, fail_rate, FAIL_SEED)
    logs = work / "logs"
    command = [pytest, *COMMON, *AGENT]
    store = root / ".llmharness"
    runs: list[dict[str, Any]] = []
    seen: set[str] = set()
    wait()
    for number, seed in enumerate((FAIL_SEED, FAIL_SEED + 1), start=1):
        if number == 2:
            # Different failing tests, so that the second run's regression diff has content;
            # committed, so that run 2 too is a clean run at its base (a newer commit).
            suite["commit_2"] = generate(generator, root, files, tests, fail_rate, seed, False)[
                "commit"
            ]
        progress(f"recording run {number} of {suite['tests']:,} tests")
        sample = measure(command, root, env, logs / f"record-{number}.txt", timeout)
        check_exit(sample, command, logs / f"record-{number}.txt")
        new = {p.name for p in (store / "runs").iterdir() if p.is_dir()} - seen
        if len(new) != 1:
            sys.exit(f"bench: recording run {number} left {len(new)} new runs in {store}")
        run_id = new.pop()
        seen.add(run_id)
        version = version_facts(read_json(store / "runs" / run_id / "summary.json") or {})
        why = not_at_base(version)
        if why:
            sys.exit(f"bench: recording run {number}: {why}")
        runs.append(
            {
                "run_id": run_id,
                "fail_seed": seed,
                "wall_s": sample.wall_s,
                "rss_mb": sample.rss_bytes / 2**20,
                "last_line": sample.last_line,
                # A later run may compact an earlier one's folder: sized as its run left it
                # here, and as kept (`bytes`) at the end.
                "bytes_written": run_sizes(store / "runs" / run_id),
                # The whole store after this run. What the second run added is what each run
                # adds in the steady state: its folder as written, less what it compacted.
                "store_bytes_after": tree_bytes(store),
                # The same by the store's top-level entries, to say what the growth is made of.
                "store_entries_after": run_sizes(store),
                "version": version,
            }
        )
        progress(f"recording run {number}: {sample.wall_s:.1f}s")
    plain_cmd = [str(venvs / "plain" / "bin" / "pytest"), *COMMON]
    plain = measure(plain_cmd, root, env, logs / "record-plain.txt", timeout)
    check_exit(plain, plain_cmd, logs / "record-plain.txt")
    progress(f"plain pytest on the record suite: {plain.wall_s:.1f}s")

    for info in runs:
        info["bytes"] = run_sizes(store / "runs" / info["run_id"])
    return {
        "suite": suite,
        "runs": runs,
        "plain_wall_s": plain.wall_s,
        "plain_rss_mb": plain.rss_bytes / 2**20,
        "index_bytes": (store / "index.json").stat().st_size,
        "store_bytes": tree_bytes(store),
        **time_cli(venvs, root, runs[0]["run_id"], work / "logs", env, repeat, timeout),
    }


def time_cli(
    venvs: Path,
    suite: Path,
    first_run: str,
    logs: Path,
    env: dict[str, str],
    repeat: int,
    timeout: float,
) -> dict[str, Any]:
    """Median wall time of each CLI verb, run from the suite folder, interleaved."""
    cli = str(venvs / "llmharness" / "bin" / "llmharness")
    against = ("regressions", "--against", first_run)
    verbs: list[tuple[tuple[str, ...], bool]] = [
        (("summary",), True),
        (("summary", "--json"), True),
        (("regressions",), True),
        (("regressions", "--json"), True),
        # Not goals: this path reads both runs' results.jsonl and diffs them on the spot.
        (against, False),
        ((*against, "--json"), False),
    ]
    entries: list[dict[str, Any]] = [
        {"verb": " ".join(verb), "goal": goal, "samples_s": [], "rss_mb": 0.0, "stdout_bytes": 0}
        for verb, goal in verbs
    ]
    floor_cmd = [str(venv_python(venvs / "llmharness")), "-c", "pass"]
    floor: list[float] = []
    for _ in range(repeat):
        floor.append(measure(floor_cmd, suite, env, logs / "cli-floor.txt", timeout).wall_s)
        for (verb, _), entry in zip(verbs, entries, strict=True):
            sample = measure([cli, *verb], suite, env, logs / "cli.txt", timeout)
            if sample.exit_code != 0:
                text = (logs / "cli.txt").read_text(errors="replace")[-2000:]
                sys.exit(f"bench: `llmharness {entry['verb']}` exited {sample.exit_code}\n{text}")
            entry["samples_s"].append(sample.wall_s)
            entry["rss_mb"] = max(entry["rss_mb"], sample.rss_bytes / 2**20)
            entry["stdout_bytes"] = sample.out_bytes
    for entry in entries:
        entry["median_s"] = statistics.median(entry["samples_s"])
    return {"python_startup_s": statistics.median(floor), "cli": entries}


# -- where agents run ------------------------------------------------------------------------
# The part above measures tools on one synthetic suite with the environment as it comes and
# pytest's cache plugin off. Agents run `pytest -q` as it comes, on real projects, on machines
# that may set PYTHONDONTWRITEBYTECODE. This part measures that: several suites, each run with
# PYTHONDONTWRITEBYTECODE=1 and without it, each figure against plain `pytest -q` on the same
# suite, in the same env state and round.
WHERE_ARGS = ("-q",)
AGENT_ONE = ("--agent-id", "1")
FAILING_RATE = 0.01  # the failing suite: 1 test in 100 fails

GOAL_WHERE_FAST1 = 0.12
GOAL_WHERE_FULL_NOPYC = 0.85
GOAL_COMPACT_FAILING = 1.0
GOAL_REAL_WALL = 1.03
GOAL_REAL_RSS = 1.05
GOAL_END_GAP_S = 2.0
GOAL_STORE_MB = 3.0
GOAL_STORE_TESTS = 60_000


@dataclass(frozen=True)
class EnvState:
    """How PYTHONDONTWRITEBYTECODE is set for the children: "1" or "unset"."""

    name: str
    # Each state runs in a copy of the suite of its own: Python and pytest still read the .pyc
    # files they find when PYTHONDONTWRITEBYTECODE is set, so the runs without it would
    # otherwise hand their bytecode cache to the runs with it.
    folder: str

    def apply(self, env: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        if self.name == "1":
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


ENV_STATES = (EnvState("1", "nopyc"), EnvState("unset", "pyc"))


@dataclass(frozen=True)
class Mode:
    """One way of running a suite: pytest -q plus these options, in which venv and store."""

    name: str
    args: tuple[str, ...]
    meaning: str
    store: str | None = None  # None: plain pytest, in the venv without llmharness
    fast: bool = False  # needs a full recording run in its store first


WHERE_MODES = (
    Mode("plain", (), "pytest -q, llmharness not installed (the baseline)"),
    Mode("full", (), "llmharness recording every test, pytest's own output", ".llmharness-full"),
    Mode(
        "agent",
        AGENT_ONE,
        "llmharness recording every test, compact (--agent-id 1): what an agent runs",
        ".llmharness-agent",
    ),
    Mode(
        "fast1",
        ("--fast", "--fast-fraction", "1%", *AGENT_ONE),
        "a 1% sample, compact",
        ".llmharness-fast1",
        fast=True,
    ),
    Mode(
        "fast10",
        ("--fast", "--fast-fraction", "10%", *AGENT_ONE),
        "a 10% sample, compact",
        ".llmharness-fast10",
        fast=True,
    ),
)
MODES_BY_NAME = {mode.name: mode for mode in WHERE_MODES}
ALL_MODES = tuple(mode.name for mode in WHERE_MODES)
FAILING_MODES = ("plain", "full", "agent")


@dataclass(frozen=True)
class RealProject:
    """A published project whose sdist ships its tests, and how its suite is run."""

    name: str  # on PyPI, and as `--suites` names it
    version: str
    test_requires: tuple[str, ...]
    paths: tuple[str, ...] = ()  # pytest's arguments; () runs the project's own testpaths
    quick_paths: tuple[str, ...] = ()
    note: str = ""  # why `paths` is not the whole suite


# Both are pure Python, ship their tests in the sdist, pass offline and take seconds here.
REAL_PROJECTS = (
    RealProject(
        "jinja2",
        "3.1.6",
        ("trio",),  # requirements/tests.in
        quick_paths=("tests/test_filters.py", "tests/test_api.py"),
    ),
    RealProject(
        "packaging",
        "26.4",
        ("hypothesis", "pretend", "tomli_w"),  # its "test" dependency group, less coverage
        paths=("tests/test_specifiers.py", "tests/test_markers.py"),
        quick_paths=("tests/test_tags.py", "tests/test_utils.py"),
        # The whole suite is 64,000 tests, 51,500 of them generated cases in test_version.py,
        # and takes minutes: too long to run about thirty times.
        note="two of its test files",
    ),
)
REAL_BY_NAME = {project.name: project for project in REAL_PROJECTS}


@dataclass(frozen=True)
class BrokenProject:
    """A real project's suite run against its own source with bugs put in: a real suite with
    hundreds of failures (the goal that a failing run ends soon after its reported time)."""

    name: str  # as `--suites` names it
    project: str  # the RealProject whose sdist, venvs and paths it uses
    src: str  # set as PYTHONPATH, so the tests import the broken source
    edits: tuple[tuple[str, str, str], ...]  # (file, text, replacement), each found once
    note: str
    # --quick: a smoke test of the suite (a few failures), not of the goal (hundreds).
    quick_paths: tuple[str, ...] = ()


BROKEN_PROJECTS = (
    BrokenProject(
        "packaging-failing",
        "packaging",
        "src",
        (
            (
                "src/packaging/specifiers.py",
                "    op_str, ver_str = specifier._spec\n",
                "    op_str, ver_str = specifier._spec\n"
                '    if op_str != "~=" and len(ver_str) % 2:  # bench: a bug put in\n'
                '        return op_str == "!=" and ver_str.endswith("0")\n',
            ),
        ),
        "the fast path of version specifiers broken for odd-length versions",
        quick_paths=("tests/test_markers.py",),
    ),
)
BROKEN_BY_NAME = {broken.name: broken for broken in BROKEN_PROJECTS}
SYNTHETIC_SUITES = ("pass", "assert", "failing")
WHERE_SUITES = (*SYNTHETIC_SUITES, *REAL_BY_NAME, *BROKEN_BY_NAME)
# The suites some of whose tests fail on purpose: their runs exit 1 and are timed to the end.
FAILING_SUITES = ("failing", *BROKEN_BY_NAME)


@dataclass(frozen=True)
class WhereSuite:
    """A suite of this part: its venvs, its pytest arguments, the modes it runs in."""

    name: str
    plain_venv: str
    llmh_venv: str
    modes: tuple[str, ...]
    paths: tuple[str, ...] = ()
    describe: str = ""
    env: tuple[tuple[str, str], ...] = ()  # set for each of its runs


@dataclass
class Cell:
    """One suite in one env state in one mode: its command, samples and derived figures."""

    suite: WhereSuite
    state: EnvState
    mode: Mode
    folder: Path
    result: Result
    loads: list[float] = field(default_factory=list)
    # Per timed llmharness run: summary.json's duration against the process's own times.
    timings: list[dict[str, Any]] = field(default_factory=list)
    store: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.suite.name}-{self.state.folder}-{self.mode.name}"


def write_assert_suite(
    generator: ModuleType, root: Path, files: int, tests: int, fail_rate: float, seed: int
) -> dict[str, Any]:
    """Write the "assert" shape afresh: generate.py's layout, `assert n == n` (`n + 1` fails)."""
    # generate.py writes the layout (pytest.ini, pkg_NN/ folders, file and test names) and
    # decides which tests fail; only the bodies are rewritten here, so both shapes share names.
    shutil.rmtree(root, ignore_errors=True)
    subdirs = min(10, files)
    nodeids = generator.synthetic(root, files, tests, 0.0, seed, subdirs)
    by_file: dict[str, list[str]] = collections.defaultdict(list)
    for nodeid in nodeids:
        rel, name = nodeid.split("::")
        by_file[rel].append(name)
    failing = 0
    for rel, names in by_file.items():
        chunks = []
        for name in names:
            n = int(name.removeprefix("test_"))
            fails = generator.is_failing(seed, f"{rel}::{name}", fail_rate)
            failing += fails
            chunks.append(f"def {name}():\n    assert {n} == {n}{' + 1' if fails else ''}\n")
        (root / rel).write_text("\n\n".join(chunks))
    commit = make_repo(root)
    # The same facts as generate()'s.
    return {
        "path": str(root),
        "files": files,
        "tests_per_file": tests,
        "tests": len(nodeids),
        "subdirs": subdirs,
        "fail_rate": fail_rate,
        "seed": seed,
        "failing": failing,
        "commit": commit,
    }


def fetch_sdist(project: RealProject, python: Path, work: Path) -> Path:
    """Download the project's sdist from PyPI (once) and unpack it; return its source tree."""
    sdists = work / "sdists"
    sdists.mkdir(parents=True, exist_ok=True)

    def normalized(text: str) -> str:
        return re.sub(r"[-_.]+", "_", text.lower())

    wanted = normalized(f"{project.name}-{project.version}.tar.gz")

    def archive() -> Path | None:
        return next((path for path in sdists.iterdir() if normalized(path.name) == wanted), None)

    if archive() is None:
        progress(f"downloading the {project.name} {project.version} sdist")
        pip: list[str | Path] = [python, "-m", "pip", "download", "-q"]
        pip.append("--disable-pip-version-check")
        spec = f"{project.name}=={project.version}"
        run_quiet([*pip, "--no-binary", ":all:", "--no-deps", "-d", sdists, spec])
    found = archive()
    if found is None:
        sys.exit(f"bench: no .tar.gz sdist of {project.name} {project.version} in {sdists}")
    unpacked = sdists / f"unpacked-{found.name}"
    if not unpacked.is_dir():
        partial = sdists / f"partial-{found.name}"
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(found) as tar:
            if hasattr(tarfile, "data_filter"):  # 3.11.4+: refuses links and paths outside
                tar.extractall(partial, filter="data")
            else:
                tar.extractall(partial)
        partial.rename(unpacked)  # only once whole, so an interrupted unpacking is redone
    tops = [path for path in unpacked.iterdir() if path.is_dir()]
    if len(tops) != 1 or not (tops[0] / "tests").is_dir():
        sys.exit(f"bench: expected one source tree with a tests/ folder in {unpacked}")
    return tops[0]


def real_venvs(
    project: RealProject,
    tree: Path,
    source: Path,
    python: str,
    pytest_v: str,
    venvs: Path,
    rebuild: bool,
    env: dict[str, str],
) -> dict[str, Any]:
    """Two venvs for a project: its package and test requirements, and the same plus llmharness.

    The second is installed under constraints frozen from the first, so both hold the same
    versions of everything they share and the difference measured is llmharness alone (with
    what it brings: pytest-xdist's plugin loads too).
    """
    common = (str(tree), f"pytest=={pytest_v}", *project.test_requires)
    plain = ensure_venv(venvs, VenvSpec(f"real-{project.name}", common), python, rebuild, {})
    freeze: list[str | Path] = [venv_python(plain), "-m", "pip", "freeze"]
    frozen = run_quiet(freeze, env=env, cwd=plain).splitlines()  # cwd: as in inspect_venv
    # The project itself is frozen as "name @ file://...": it comes from the tree in both.
    constraints = "".join(f"{line}\n" for line in frozen if line and " @ " not in line)
    constraints_file = venvs / f"real-{project.name}.constraints.txt"
    if not constraints_file.exists() or constraints_file.read_text() != constraints:
        constraints_file.write_text(constraints)
    digest = hashlib.blake2b(constraints.encode(), digest_size=8).hexdigest()
    spec = VenvSpec(
        f"real-{project.name}-llmh", (*common, str(source), "-c", str(constraints_file))
    )
    stamp = {"source": source.name, "constraints": digest}
    llmh = ensure_venv(venvs, spec, python, rebuild, stamp)
    infos = {plain.name: inspect_venv(plain, env), llmh.name: inspect_venv(llmh, env)}
    check_plugin(infos[plain.name], plain.name, loaded=False)
    check_plugin(infos[llmh.name], llmh.name, loaded=True)
    before, after = (set(info["packages"]) for info in infos.values())
    if not before <= after:
        sys.exit(f"bench: {llmh.name} differs from {plain.name} in {sorted(before - after)}")
    return {"venvs": infos, "llmharness_adds": sorted(after - before)}


def prepare_where(
    names: Sequence[str],
    states: Sequence[EnvState],
    args: argparse.Namespace,
    generator: ModuleType,
    source: Path,
    python: str,
    pytest_v: str,
    venvs: Path,
    work: Path,
    env: dict[str, str],
) -> tuple[list[WhereSuite], dict[str, Any]]:
    """Write (or copy) every suite afresh for each env state and build the projects' venvs."""
    root = work / "suites" / "where"
    suites: list[WhereSuite] = []
    facts: dict[str, Any] = {}
    for name in names:
        broken = BROKEN_BY_NAME.get(name)
        project = REAL_BY_NAME.get(broken.project if broken else name)
        if project is None:
            rate = FAILING_RATE if name == "failing" else args.fail_rate
            write = generate if name == "pass" else write_assert_suite
            for state in states:
                folder = root / f"{name}-{state.folder}"
                facts[name] = write(generator, folder, args.files, args.tests, rate, FAIL_SEED)
            body = "pass" if name == "pass" else "assert n == n"
            modes = FAILING_MODES if name == "failing" else ALL_MODES
            describe = (
                f"{facts[name]['tests']:,} tests ({args.files} files x {args.tests} `{body}`, "
                f"{facts[name]['failing']} failing)"
            )
            suites.append(WhereSuite(name, "plain", "llmharness", modes, (), describe))
            continue
        tree = fetch_sdist(project, venv_python(venvs / "llmharness"), work)
        built = real_venvs(project, tree, source, python, pytest_v, venvs, args.rebuild, env)
        paths = project.quick_paths if args.quick else project.paths
        if broken is not None and args.quick:
            paths = broken.quick_paths
        for state in states:
            folder = root / f"{name}-{state.folder}"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(tree, folder)
            if broken is not None:
                break_source(folder, broken)
            make_repo(folder)
        facts[name] = {"version": project.version, "sdist": str(tree), "paths": paths, **built}
        describe = f"{project.name} {project.version}: " + (
            " ".join(paths) if paths else "its whole suite"
        )
        if args.quick:
            describe += " (--quick)"
        elif project.note:
            describe += f" ({project.note})"
        if broken is not None:
            describe += f"; {broken.note}"
        venv = f"real-{project.name}"
        modes = FAILING_MODES if broken else ALL_MODES
        suite_env = (("PYTHONPATH", broken.src),) if broken else ()
        suites.append(WhereSuite(name, venv, f"{venv}-llmh", modes, paths, describe, suite_env))
    return suites, facts


def break_source(tree: Path, broken: BrokenProject) -> None:
    """Put the bugs of `broken` into the project's source tree at `tree`."""
    for rel, text, replacement in broken.edits:
        path = tree / rel
        source = path.read_text(encoding="utf-8")
        if source.count(text) != 1:
            sys.exit(f"bench: {broken.name}: {rel} no longer has the text to edit once")
        path.write_text(source.replace(text, replacement), encoding="utf-8")


def where_command(
    suite: WhereSuite, mode: Mode, venvs: Path, fast_warmup: bool = False
) -> list[str]:
    venv = suite.plain_venv if mode.store is None else suite.llmh_venv
    args = AGENT_ONE if fast_warmup else mode.args
    store = ["--llmharness-store", mode.store] if mode.store else []
    return [str(venvs / venv / "bin" / "pytest"), *WHERE_ARGS, *suite.paths, *args, *store]


def run_timing(cell: Cell, sample: Sample) -> dict[str, Any]:
    """summary.json's own start, end and duration against the process's (None when stale)."""
    summary = read_json(cell.folder / str(cell.mode.store) / "last" / "summary.json")
    if not isinstance(summary, dict) or float(summary.get("finished") or 0) < sample.started_at:
        return {"reported_s": None}
    reported = float(summary.get("duration_s") or 0.0)
    return {
        "reported_s": reported,
        # What the process took that its reported duration leaves out: start-up before the
        # recorder started, and whatever ran after it wrote summary.json.
        "gap_s": sample.wall_s - reported,
        "head_s": float(summary["started"]) - sample.started_at,
        "tail_s": sample.ended_at - float(summary["finished"]),
    }


def bench_where(
    suites: Sequence[WhereSuite],
    states: Sequence[EnvState],
    venvs: Path,
    work: Path,
    env: dict[str, str],
    repeat: int,
    timeout: float,
    wait: Callable[[], None] = lambda: None,
) -> list[Cell]:
    """Warm every cell up, then time them round-robin, `repeat` rounds."""
    groups: list[list[Cell]] = []
    for suite in suites:
        for state in states:
            folder = work / "suites" / "where" / f"{suite.name}-{state.folder}"
            group = []
            for name in suite.modes:
                mode = MODES_BY_NAME[name]
                command = where_command(suite, mode, venvs)
                group.append(Cell(suite, state, mode, folder, Result(name, mode.meaning, command)))
            groups.append(group)
    logs = work / "logs" / "where"

    def once(cell: Cell, command: list[str], label: str) -> tuple[Sample, dict[str, Any]]:
        log = logs / f"{cell.key}.txt"
        child_env = {**cell.state.apply(env), **dict(cell.suite.env)}
        sample = measure(command, cell.folder, child_env, log, timeout)
        check_exit(sample, command, log)
        timing = run_timing(cell, sample) if cell.mode.store else {}
        # A plugin that breaks can leave pytest's exit code at 1 with nothing recorded: such a
        # run measures nothing, so it stops the benchmark.
        text = log.read_text(errors="replace")
        if "INTERNALERROR" in text or timing.get("reported_s", 0) is None:
            what = "INTERNALERROR" if "INTERNALERROR" in text else "no summary.json of its own"
            sys.exit(f"bench: {what} from {' '.join(command)} (in {cell.folder})\n{text[-2000:]}")
        progress(
            f"{label} {cell.suite.name} PYTHONDONTWRITEBYTECODE={cell.state.name} "
            f"{cell.mode.name}: {sample.wall_s:.2f}s {sample.rss_bytes / 2**20:.0f}MB"
        )
        return sample, timing

    # Second run onwards: each plain cell's untimed run fills pytest's __pycache__ (where it is
    # written) and the file cache; each llmharness cell's also records a first run into its
    # own store, so its collection cache, index and any cache of its own exist.
    for group in groups:
        for cell in group:
            if cell.mode.fast:
                # --fast reuses what a full run left in the store (durations, collection cache).
                warm = where_command(cell.suite, cell.mode, venvs, fast_warmup=True)
                once(cell, warm, "warm-up full run for")
            once(cell, cell.result.command, "warm-up")
    wait()
    for round_no in range(repeat):
        # Rotate both the suites and the modes within one, so that no cell always runs right
        # after the same other one and slow drift in the machine's load spreads over all.
        for group in rotated(groups, round_no):
            for cell in rotated(group, round_no):
                load = os.getloadavg()[0]
                sample, timing = once(cell, cell.result.command, f"round {round_no + 1}/{repeat}")
                cell.result.samples.append(sample)
                cell.loads.append(load)
                if cell.mode.store:
                    cell.timings.append(timing)
    for group in groups:
        plain = group[0].result  # every suite's modes start with plain
        for cell in group:
            cell.result.finish()
        for cell in group:
            result = cell.result
            result.x_plain = ratio(result.median_s, plain.median_s)
            result.x_plain_rounds = [
                mine.wall_s / base.wall_s
                for mine, base in zip(result.samples, plain.samples, strict=True)
                if base.wall_s
            ]
            result.x_plain_rss = ratio(result.peak_rss_mb, plain.peak_rss_mb)
            if cell.mode.store:
                store = cell.folder / cell.mode.store
                cell.store = store_facts(store)
                last = store / "last"
                if last.is_dir():
                    cell.store["run_bytes"] = tree_bytes(last.resolve())
    return [cell for group in groups for cell in group]


def rotated(items: Sequence[Any], by: int) -> list[Any]:
    by %= len(items) or 1
    return [*items[by:], *items[:by]]


def tests_run(cell: Cell) -> int | None:
    """How many tests the cell's last run ran, by its store's count (None for plain pytest)."""
    if cell.store.get("selected") is not None:
        return int(cell.store["selected"])
    counts = cell.store.get("counts")
    return sum(counts.values()) if counts else None


def where_data(cells: Sequence[Cell]) -> list[dict[str, Any]]:
    return [
        {
            "suite": cell.suite.name,
            "PYTHONDONTWRITEBYTECODE": cell.state.name,
            "mode": cell.mode.name,
            "folder": str(cell.folder),
            "loads": cell.loads,
            "timings": cell.timings,
            "store": cell.store,
            **asdict(cell.result),
        }
        for cell in cells
    ]


def median_of(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


# -- the code version ------------------------------------------------------------------------
# Inside a git work tree each run reads its code version in a thread (gitinfo.read_version: a
# few git commands) and compares its failures with the outcomes at the base. A clean run at its
# base has nothing to check there: what it still pays is the git calls and the bookkeeping of
# the outcomes known at its commit. Measured on the `pass` suite, --fast 1%, in its own
# repository against the same files without .git (where read_version returns at once).
GOAL_GIT_FAST1 = 1.03
GIT_READS = 20

_READ_VERSION = """\
import json, statistics, sys, time
from pathlib import Path
from llmharness.gitinfo import read_version
walls = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    version, note = read_version(Path(sys.argv[1]))
    walls.append((time.perf_counter() - start) * 1000)
print(json.dumps({"ms": walls, "median_ms": statistics.median(walls), "note": note,
                  "version": version.to_json() if version else None,
                  "at_base": version.at_base if version else None}))
"""


def time_read_version(
    python: Path, folder: Path, env: dict[str, str], calls: int, venv: Path
) -> dict[str, Any]:
    """read_version(folder) timed in-process, `calls` times, with the llmharness venv's python."""
    command: list[str | Path] = [python, "-c", _READ_VERSION, folder, str(calls)]
    data: dict[str, Any] = json.loads(run_quiet(command, env=env, cwd=venv))  # cwd: inspect_venv
    return data


def bench_git(
    generator: ModuleType,
    args: argparse.Namespace,
    venvs: Path,
    work: Path,
    env: dict[str, str],
    waits: list[dict[str, Any]],
) -> dict[str, Any]:
    """read_version's time, and --fast 1% in the suite's repository against outside any."""
    root = work / "suites" / "git"
    shutil.rmtree(root, ignore_errors=True)
    folders = {"git": root / "pass-git", "no git": root / "pass-nogit"}
    progress(f"generating the code version suites: {args.files} x {args.tests} tests")
    facts = generate(generator, folders["git"], args.files, args.tests, args.fail_rate, FAIL_SEED)
    shutil.copytree(folders["git"], folders["no git"], ignore=shutil.ignore_patterns(".git"))
    # The copy lies inside llmharness's own work tree: the ceiling keeps git from finding that.
    # Both runs get it; in the suite's repository git finds its .git before reaching it.
    run_env = {**ENV_STATES[0].apply(env), "GIT_CEILING_DIRECTORIES": str(root)}
    llmh = venvs / "llmharness"
    mode = MODES_BY_NAME["fast1"]
    store = ["--llmharness-store", str(mode.store)]
    pytest = str(llmh / "bin" / "pytest")
    command = [pytest, *WHERE_ARGS, *mode.args, *store]
    logs = work / "logs" / "git"

    def once(name: str, cmd: list[str], label: str) -> Sample:
        folder = folders[name]
        log = logs / f"{folder.name}.txt"
        sample = measure(cmd, folder, run_env, log, args.timeout)
        check_exit(sample, cmd, log)
        text = log.read_text(errors="replace")
        summary = read_json(folder / str(mode.store) / "last" / "summary.json")
        finished = float(summary.get("finished") or 0) if isinstance(summary, dict) else 0.0
        fresh = isinstance(summary, dict) and finished >= sample.started_at
        version = version_facts(summary) if isinstance(summary, dict) and fresh else {}
        why = None
        if "INTERNALERROR" in text or not fresh:
            why = "INTERNALERROR" if "INTERNALERROR" in text else "no summary.json of its own"
        elif name == "git":
            why = not_at_base(version)
        elif version.get("git_commit"):
            why = f"a code version outside any repository: {version['git_commit']}"
        if why:
            sys.exit(f"bench: {why} from {' '.join(cmd)} (in {folder})\n{text[-2000:]}")
        progress(f"{label} code version, {name}: {sample.wall_s:.2f}s")
        return sample

    warm = [pytest, *WHERE_ARGS, *AGENT_ONE, *store]
    for name in folders:
        once(name, warm, "warm-up full run for")  # --fast relies on what a full run left
        once(name, command, "warm-up")
    waits.append(wait_quiet(args, "code version"))
    reads = {
        name: time_read_version(venv_python(llmh), folder, run_env, GIT_READS, llmh)
        for name, folder in folders.items()
    }
    if not reads["git"]["at_base"] or reads["no git"]["version"] is not None:
        sys.exit(f"bench: read_version: expected a clean repository at its base and none: {reads}")
    progress(
        f"read_version: {reads['git']['median_ms']:.1f} ms in the repository, "
        f"{reads['no git']['median_ms']:.1f} ms without .git (median of {GIT_READS})"
    )
    samples: dict[str, list[Sample]] = {name: [] for name in folders}
    loads: list[float] = []
    rounds = args.git_rounds
    for number in range(rounds):
        order = list(folders) if number % 2 == 0 else list(reversed(folders))
        loads.append(os.getloadavg()[0])
        for name in order:
            samples[name].append(once(name, command, f"round {number + 1}/{rounds}"))
    walls = {name: [sample.wall_s for sample in got] for name, got in samples.items()}
    medians = {name: statistics.median(got) for name, got in walls.items()}
    by_round = [mine / base for mine, base in zip(walls["git"], walls["no git"], strict=True)]
    return {
        "suite": facts,
        "folders": {name: str(folder) for name, folder in folders.items()},
        "command": command,
        "PYTHONDONTWRITEBYTECODE": ENV_STATES[0].name,
        "read_version": {**reads, "calls": GIT_READS},
        "rounds": rounds,
        "walls": walls,
        "median_s": medians,
        "x_no_git": medians["git"] / medians["no git"],
        "by_round": by_round,
        "by_round_median": statistics.median(by_round),
        "rss_mb": {n: max(s.rss_bytes for s in got) / 2**20 for n, got in samples.items()},
        "loads": loads,
    }


HINT_SUITES = ("pass", "assert")


def bench_hints(
    generator: ModuleType,
    args: argparse.Namespace,
    venvs: Path,
    work: Path,
    env: dict[str, str],
    waits: list[dict[str, Any]],
) -> dict[str, Any]:
    """The time hints against the clock: what each run's summary said a full and a --fast run
    would take next (`next` in summary.json), and what the next one then took (its wall time,
    start to exit), on the synthetic suites with PYTHONDONTWRITEBYTECODE=1."""
    run_env = ENV_STATES[0].apply(env)
    pytest = str(venvs / "llmharness" / "bin" / "pytest")
    store = ("--llmharness-store", ".llmharness-hints")
    commands = {
        "full": [pytest, *WHERE_ARGS, *AGENT_ONE, *store],
        "fast": [pytest, *WHERE_ARGS, "--fast", *AGENT_ONE, *store],
    }
    logs = work / "logs" / "hints"
    suites: dict[str, Any] = {}
    for name in HINT_SUITES:
        folder = work / "suites" / "hints" / name
        write = generate if name == "pass" else write_assert_suite
        facts = write(generator, folder, args.files, args.tests, args.fail_rate, FAIL_SEED)

        def once(kind: str, label: str, folder: Path = folder, name: str = name) -> Sample:
            log = logs / f"{name}-{kind}.txt"
            sample = measure(commands[kind], folder, run_env, log, args.timeout)
            check_exit(sample, commands[kind], log)
            progress(f"{label} hints {name} {kind}: {sample.wall_s:.2f}s")
            return sample

        def predicted(folder: Path = folder) -> dict[str, Any]:
            summary = read_json(folder / store[1] / "last" / "summary.json")
            hint = summary.get("next") if isinstance(summary, dict) else None
            if not isinstance(hint, dict):
                sys.exit(f"bench: no time hint in the summary of the last run in {folder}")
            return hint

        once("full", "warm-up")  # records the durations and the bytecode cache
        once("fast", "warm-up")  # and the collection cache --fast reads
        waits.append(wait_quiet(args, f"time hints, {name}"))
        pairs: dict[str, list[tuple[float, float]]] = {"full": [], "fast": []}
        for number in range(args.repeat):
            for kind in ("full", "fast"):
                hint = predicted()
                sample = once(kind, f"round {number + 1}/{args.repeat}")
                pairs[kind].append((float(hint[f"{kind}_s"]), sample.wall_s))
        suites[name] = {
            "suite": facts,
            "pairs": pairs,
            "x_predicted": {
                kind: statistics.median(actual / guess for guess, actual in got if guess > 0)
                for kind, got in pairs.items()
            },
        }
    return {"commands": commands, "suites": suites, "repeat": args.repeat}


def hints_report(hints: dict[str, Any]) -> list[str]:
    lines = ["", "time hints: the wall time of a run / what the run before it predicted"]
    for name, data in hints["suites"].items():
        facts, pairs = data["suite"], data["pairs"]
        parts = []
        for kind, x in data["x_predicted"].items():
            guess = statistics.median(g for g, _ in pairs[kind])
            actual = statistics.median(a for _, a in pairs[kind])
            parts.append(f"{kind} {x:.2f}x (predicted {guess:.2f} s, took {actual:.2f} s)")
        lines.append(f"  {name}, {facts['tests']:,} tests: " + "; ".join(parts))
    return lines


def wait_quiet(args: argparse.Namespace, part: str) -> dict[str, Any]:
    """Wait (polling every 30 s, at most --wait-max minutes) until the 1-minute load average is
    under --wait-load, before a part's timed runs; say how long it took and what the load was."""
    start = time.monotonic()
    load = os.getloadavg()[0]
    gave_up = False
    while args.wait_load and load >= args.wait_load:
        if time.monotonic() - start >= args.wait_max * 60:
            gave_up = True
            progress(
                f"{part}: load {load:.2f} still >= {args.wait_load} after "
                f"{args.wait_max:g} min: measuring anyway"
            )
            break
        progress(f"{part}: load {load:.2f} >= {args.wait_load}, waiting")
        time.sleep(30)
        load = os.getloadavg()[0]
    return {
        "part": part,
        "limit": args.wait_load or None,
        "waited_s": round(time.monotonic() - start, 1),
        "load_at_start": round(load, 2),
        "gave_up": gave_up,
    }


# -- output ----------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def goals(
    results: list[Result],
    record: dict[str, Any] | None,
    paired: dict[str, Any] | None = None,
    counted: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    by_name = {result.name: result for result in results}
    checks: list[dict[str, Any]] = []

    def check(goal: str, value: float | None, target: float, met: Callable[[float], bool]) -> None:
        ok = None if value is None else met(value)
        checks.append({"goal": goal, "value": value, "target": target, "met": ok})

    full = by_name.get("llmh-full")
    fast1 = by_name.get("llmh-fast1")
    if paired is not None:
        check(
            f"full recording wall <= {GOAL_FULL_WALL}x plain "
            f"(median of {paired['pairs']} back-to-back pairs)",
            paired["median"],
            GOAL_FULL_WALL,
            lambda v: v <= GOAL_FULL_WALL,
        )
    if counted is not None:
        check(
            f"full recording instructions <= {GOAL_FULL_WALL}x plain "
            f"(callgrind, at {counted['suite_tests']:,} tests)",
            counted["suite_x"],
            GOAL_FULL_WALL,
            lambda v: v <= GOAL_FULL_WALL,
        )
    if results:  # the tools table ran
        check(
            f"full recording wall <= {GOAL_FULL_WALL}x plain (ratio of the rounds' medians)",
            full.x_plain if full else None,
            GOAL_FULL_WALL,
            lambda v: v <= GOAL_FULL_WALL,
        )
        check(
            f"full recording peak RSS <= {GOAL_FULL_RSS}x plain",
            full.x_plain_rss if full else None,
            GOAL_FULL_RSS,
            lambda v: v <= GOAL_FULL_RSS,
        )
        check(
            f"--fast 1% wall <= {GOAL_FAST1_WALL}x a full plain run",
            fast1.x_plain if fast1 else None,
            GOAL_FAST1_WALL,
            lambda v: v <= GOAL_FAST1_WALL,
        )
    if record is not None:
        tests = record["suite"]["tests"]
        for entry in record["cli"]:
            if entry["goal"]:
                goal = f"llmharness {entry['verb']} on {tests:,} tests < 0.5 s"
                check(goal, entry["median_s"], GOAL_CLI_S, lambda v: v < GOAL_CLI_S)
    return checks


def report(data: dict[str, Any], results: list[Result], cells: Sequence[Cell]) -> str:
    meta = data["meta"]
    lines = [
        f"llmharness benchmark, {meta['started']}, {meta['host']}: {meta['cpus']} CPUs, "
        f"load {meta['load_before']} before / {meta['load_after']} after",
        f"python {meta['python']}, pytest {meta['pytest']}; llmharness {meta['llmharness_source']}"
        f" (work tree at {meta['llmharness_git']})",
        "every suite is a git repository of its own, committed: each run is a clean run at its "
        "base, as in a fresh clone",
    ]
    for wait in meta["load_waits"]:
        if wait["limit"] is None:
            how = "(--wait-load not given)"
        else:
            how = f"after waiting {wait['waited_s']:.0f} s for < {wait['limit']:g}"
            if wait["gave_up"]:
                how += ": gave up waiting, measured anyway"
        lines.append(
            f"{wait['part']}: timed runs started at load {wait['load_at_start']:.2f} {how}"
        )
    if results:
        lines += tools_report(data, results)
    if cells:
        lines += where_report(data, cells)
    if data.get("git"):
        lines += git_report(data["git"])
    if data.get("record"):
        lines += record_report(data["record"], data.get("store_per_run"))
    if data.get("hints"):
        lines += hints_report(data["hints"])
    lines += ["", "goals:"]
    for goal in data["goals"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        detail = f" ({goal['detail']})" if goal.get("detail") else ""
        lines.append(f"  {mark:12} {goal['goal']}: {fmt(goal['value'], '.3f')}{detail}")
    if data["config"]["quick"]:
        lines.append("  (--quick: small suites, not the goals' scale)")
    lines.append(f"\nwritten: {data['results_file']}")
    return "\n".join(lines)


def tools_report(data: dict[str, Any], results: list[Result]) -> list[str]:
    meta = data["meta"]
    suite = data["suite"]
    bytecode = (
        "no .pyc written: test modules are re-rewritten on every run, collection is slower"
        if meta["dont_write_bytecode"]
        else ".pyc cached: rewritten test modules are reused"
    )
    lines = [
        "",
        f"tools: PYTHONDONTWRITEBYTECODE={meta['PYTHONDONTWRITEBYTECODE']!r} as this "
        f"environment has it, children's sys.flags.dont_write_bytecode="
        f"{meta['dont_write_bytecode']} ({bytecode})",
        f"suite: {suite['tests']:,} tests in {suite['files']} files ({suite['failing']} failing); "
        f"median of {data['config']['repeat']} interleaved runs after one warm-up each; "
        "all variants run with -q -p no:cacheprovider",
        "",
    ]
    header = ["variant", "median s", "min s", "x plain", "by round (range)", "RSS MB", "x RSS"]
    rows = [[*header, "x llmh-full", "out KB"]]
    for r in results:
        rounds = r.x_plain_rounds
        by_round = (
            f"{statistics.median(rounds):.3f} ({min(rounds):.2f}-{max(rounds):.2f})"
            if rounds
            else "-"
        )
        rows.append(
            [
                r.name,
                fmt(r.median_s),
                fmt(r.min_s),
                fmt(r.x_plain, ".3f"),
                by_round,
                fmt(r.peak_rss_mb, ".1f"),
                fmt(r.x_plain_rss, ".3f"),
                fmt(r.x_full_record, ".3f"),
                fmt(r.out_kb, ".1f"),
            ]
        )
    lines.append(table(rows, set(range(1, 9))))
    lines.append(
        "(x plain: ratio of the medians; by round: the median and range of each round's ratio "
        "to plain pytest's run in the same round)"
    )
    paired = data.get("paired")
    if paired:
        ratios = paired["ratios"]
        lines.append(
            f"back-to-back pairs ({paired['pairs']}, each started by the other in turn): "
            f"llmh-full / plain median {paired['median']:.3f}, middle half "
            f"{paired['q1']:.3f}-{paired['q3']:.3f}, range {min(ratios):.3f}-{max(ratios):.3f}"
        )
    counted = data.get("instructions")
    if counted:
        t, c, per = counted["tests"], counted["counts"], counted["per_test"]
        lines.append(
            f"instructions (callgrind, user space) on the first {t[0]:,} and {t[1]:,} tests: "
            f"plain {c['plain'][0] / 1e9:.3f} / {c['plain'][1] / 1e9:.3f} G, llmh-full "
            f"{c['llmh-full'][0] / 1e9:.3f} / {c['llmh-full'][1] / 1e9:.3f} G; per test "
            f"{per['plain'] / 1e6:.3f} / {per['llmh-full'] / 1e6:.3f} M "
            f"({counted['per_test_x']:.3f}x), "
            f"once a run {counted['fixed']['plain'] / 1e9:.2f} / "
            f"{counted['fixed']['llmh-full'] / 1e9:.2f} G; at {counted['suite_tests']:,} tests "
            f"{counted['suite_x']:.3f}x"
        )
    lines.append("")
    lines.append("what each run printed last (and the store's own count where it has one):")
    for r in results:
        extra = ""
        if r.record:
            counts = ", ".join(f"{n} {k}" for k, n in (r.record.get("counts") or {}).items())
            kept = r.record.get("runs_kept")
            extra = f"  [store: {r.record.get('status')}, {counts}; {kept} runs kept]"
            for warning in r.record.get("store_warnings", [])[:3]:
                extra += f"\n    store warning: {warning}"
            why = not_at_base(r.record)
            if why:
                extra += f"\n    {why}"
        lines.append(f"  {r.name}: {r.samples[-1].last_line}{extra}")
    return lines


def git_report(git: dict[str, Any]) -> list[str]:
    reads, walls = git["read_version"], git["walls"]
    suite = git["suite"]
    rounds = git["by_round"]
    lines = [
        "",
        f"code version: the pass suite ({suite['tests']:,} tests, {suite['failing']} failing) "
        "in a git repository of its own, clean at its base, against the same files without "
        f".git; PYTHONDONTWRITEBYTECODE={git['PYTHONDONTWRITEBYTECODE']}",
        f"  llmharness.gitinfo.read_version, median of {reads['calls']} calls in-process: "
        f"{reads['git']['median_ms']:.1f} ms in the repository "
        f"({min(reads['git']['ms']):.1f}-{max(reads['git']['ms']):.1f}), "
        f"{reads['no git']['median_ms']:.1f} ms without .git ({reads['no git']['note']})",
    ]
    rows = [["--fast --fast-fraction 1% --agent-id 1", "median s", "min s", "RSS MB"]]
    for name in ("git", "no git"):
        rows.append(
            [
                "in the repository" if name == "git" else "without .git",
                fmt(git["median_s"][name]),
                fmt(min(walls[name])),
                fmt(git["rss_mb"][name], ".1f"),
            ]
        )
    lines.append(table(rows, {1, 2, 3}))
    lines.append(
        f"  {git['rounds']} interleaved rounds (each started by the other in turn), load "
        f"{statistics.median(git['loads']):.1f}: repository / without .git "
        f"{git['by_round_median']:.3f} by round ({min(rounds):.2f}-{max(rounds):.2f}), "
        f"{git['x_no_git']:.3f} of the medians"
    )
    return lines


def record_report(record: dict[str, Any], store: dict[str, Any] | None) -> list[str]:
    s = record["suite"]
    shape = f"{s['files']} files x {s['tests_per_file']}"
    lines = ["", f"record of {s['tests']:,} tests ({shape}), two real runs:"]
    for number, run in enumerate(record["runs"], start=1):
        x_wall = fmt(ratio(run["wall_s"], record["plain_wall_s"]))
        x_rss = fmt(ratio(run["rss_mb"], record["plain_rss_mb"]))
        lines.append(
            f"  run {number} ({run['run_id']}): {run['wall_s']:.1f}s ({x_wall}x plain), "
            f"{run['rss_mb']:.0f} MB ({x_rss}x)"
        )
        for when, key in (("as written", "bytes_written"), ("as kept at the end", "bytes")):
            b = run.get(key, {})
            parts = ", ".join(f"{k} {v / 1024:,.0f} KB" for k, v in b.items() if k != "total")
            lines.append(f"    run folder {when}: {b.get('total', 0) / 2**20:.2f} MB ({parts})")
    lines.append(
        f"  plain pytest on the same suite: {record['plain_wall_s']:.1f}s, "
        f"{record['plain_rss_mb']:.0f} MB; index.json {record['index_bytes'] / 2**20:.2f} MB; "
        f"whole store {record['store_bytes'] / 2**20:.2f} MB"
    )
    if store is not None:
        lines.append(
            f"  store per full run ({store['source']}): {store['bytes_per_run'] / 2**20:.2f} MB, "
            f"{store['bytes_per_test']:.0f} bytes a test; at {GOAL_STORE_TESTS:,} tests "
            f"{store['at_goal_tests_mb']:.2f} MB"
        )
        parts = ", ".join(
            f"{name} {size / 1024:+,.0f} KB" for name, size in store["added_by_entry"].items()
        )
        if parts:
            lines.append(f"    of which: {parts}")
    rows = [["llmharness (cwd = suite)", "median s", "RSS MB", "stdout B"]]
    for entry in record["cli"]:
        verb = entry["verb"]
        if not entry["goal"]:
            verb = verb.replace(record["runs"][0].get("run_id", ""), "<run 1>")
        rows.append(
            [
                verb,
                fmt(entry["median_s"], ".3f"),
                fmt(entry["rss_mb"], ".1f"),
                str(entry["stdout_bytes"]),
            ]
        )
    rows.append(["(python -c pass)", fmt(record["python_startup_s"], ".3f"), "", ""])
    lines.append(table(rows, {1, 2, 3}))
    return lines


def where_report(data: dict[str, Any], cells: Sequence[Cell]) -> list[str]:
    where = data["where"]
    flags = ", ".join(
        f"PYTHONDONTWRITEBYTECODE={name} -> {flag}" for name, flag in where["flags"].items()
    )
    lines = [
        "",
        "where agents run: `pytest -q` as it comes (pytest's cache plugin on), each figure "
        "against plain `pytest -q` on the same suite, in the same env state and round;",
        f"median of {where['repeat']} interleaved rounds, after one untimed run of each "
        "(and a recording run into each --fast store): second run onwards",
        f"children's sys.flags.dont_write_bytecode: {flags}",
    ]
    lines += [f"  {suite['name']}: {suite['describe']}" for suite in where["suites"]]
    lines.append("")
    header = ["suite", "PYTHONDONTWRITEBYTECODE", "variant", "median s", "min s", "x plain"]
    header += ["by round (range)", "RSS MB", "x RSS", "ran", "run KB", "out KB", "load"]
    rows = [header]
    for cell in cells:
        r = cell.result
        rounds = r.x_plain_rounds
        by_round = (
            f"{statistics.median(rounds):.3f} ({min(rounds):.2f}-{max(rounds):.2f})"
            if rounds
            else "-"
        )
        ran = tests_run(cell)
        run_bytes = cell.store.get("run_bytes")
        rows.append(
            [
                cell.suite.name,
                cell.state.name,
                cell.mode.name,
                fmt(r.median_s),
                fmt(r.min_s),
                fmt(r.x_plain, ".3f"),
                by_round,
                fmt(r.peak_rss_mb, ".1f"),
                fmt(r.x_plain_rss, ".3f"),
                "-" if ran is None else f"{ran:,}",
                "-" if run_bytes is None else f"{run_bytes / 1024:,.0f}",
                fmt(r.out_kb, ".1f"),
                fmt(statistics.median(cell.loads), ".1f"),
            ]
        )
    lines.append(table(rows, set(range(3, 13))))
    lines.append(
        "(x plain: over plain pytest's median in the same suite and env state; for fast1 and "
        "fast10 that is a full plain run; ran: tests the last run ran, by its store; run KB: "
        "that run's folder as written; load: median 1-minute load average at the runs' starts)"
    )
    failing = [cell for cell in cells if cell.suite.name in FAILING_SUITES and cell.mode.store]
    if failing:
        lines += [
            "",
            "the failing suites' runs: their own reported duration (summary.json duration_s) "
            "against the process's wall time",
        ]
        header = ["suite", "PYTHONDONTWRITEBYTECODE", "variant", "wall s", "reported s"]
        header += ["wall - reported s", "(max)", "after summary.json s", "load"]
        rows = [header]
        for cell in failing:
            gaps = [t["gap_s"] for t in cell.timings if t.get("reported_s") is not None]
            rows.append(
                [
                    cell.suite.name,
                    cell.state.name,
                    cell.mode.name,
                    fmt(cell.result.median_s),
                    fmt(median_of([t.get("reported_s") for t in cell.timings])),
                    fmt(median_of(gaps)),
                    fmt(max(gaps) if gaps else None),
                    fmt(median_of([t.get("tail_s") for t in cell.timings])),
                    fmt(statistics.median(cell.loads), ".1f"),
                ]
            )
        lines.append(table(rows, set(range(3, 9))))
        lines.append(
            "(wall - reported: start-up before the recorder starts plus what runs after it wrote "
            "summary.json; after summary.json: the second part alone)"
        )
    broken = [
        f"  {cell.key}: {cell.store.get('error') or cell.store.get('store_warnings')}"
        for cell in cells
        if cell.mode.store and (cell.store.get("error") or cell.store.get("store_warnings"))
    ]
    recorded = sum(1 for cell in cells if cell.mode.store)
    store = data.get("store_per_run")
    if store is not None and not data.get("record"):
        lines.append(
            f"store per full run ({store['source']}): {store['bytes_per_run'] / 2**20:.2f} MB, "
            f"{store['bytes_per_test']:.0f} bytes a test; at {GOAL_STORE_TESTS:,} tests "
            f"{store['at_goal_tests_mb']:.2f} MB"
        )
    if broken:
        lines += ["stores with errors or warnings:", *broken]
    else:
        lines.append(f"every llmharness run ({recorded} variants) recorded, no store warnings")
    off_base = [
        f"  {cell.key}: {why}"
        for cell in cells
        if cell.mode.store and (why := not_at_base(cell.store))
    ]
    if off_base:
        lines += ["last runs that were not a clean run at their base:", *off_base]
    else:
        lines.append(
            f"each variant's last run ({recorded}) was a clean run at its base, nothing checked "
            "there"
        )
    return lines


def store_per_run(record: dict[str, Any] | None, cells: Sequence[Cell]) -> dict[str, Any] | None:
    """What one full run adds to the store, per test and at GOAL_STORE_TESTS tests.

    From the record when it ran: what the second run added to the whole store (its run folder
    and any growth of the index and caches). Otherwise the largest synthetic suite's last run
    folder, shown for its size but not judged against the goal: the store keeps that folder
    compacted, so its size as written is not what a run costs the store.
    """
    if record is not None:
        tests = record["suite"]["tests"]
        after = [run["store_bytes_after"] for run in record["runs"]]
        added = after[-1] - after[-2]
        source = f"growth per run: what record run 2 added to the whole store, {tests:,} tests"
        entries = [run["store_entries_after"] for run in record["runs"]]
        by_entry = {
            name: entries[-1].get(name, 0) - entries[-2].get(name, 0)
            for name in sorted(set(entries[-1]) | set(entries[-2]))
            if name != "total" and entries[-1].get(name, 0) != entries[-2].get(name, 0)
        }
    else:
        recorded = [
            cell
            for cell in cells
            if cell.suite.name in ("pass", "assert") and cell.mode.name in ("full", "agent")
            if cell.store.get("run_bytes")
        ]
        if not recorded:
            return None
        largest = max(recorded, key=lambda cell: cell.store.get("total") or 0)
        tests = int(largest.store.get("total") or tests_run(largest) or 0)
        added = int(largest.store["run_bytes"])
        source = (
            f"not the growth: {largest.key}'s last run folder as written, uncompressed, "
            f"{tests:,} tests"
        )
        by_entry = {}
    if not tests:
        return None
    per_test = added / tests
    return {
        "source": source,
        "growth": record is not None,
        "tests": tests,
        "bytes_per_run": added,
        "added_by_entry": by_entry,
        "bytes_per_test": per_test,
        "at_goal_tests_mb": per_test * GOAL_STORE_TESTS / 2**20,
    }


def git_goals(git: dict[str, Any] | None) -> list[dict[str, Any]]:
    if git is None:
        return []
    value = git["by_round_median"]
    return [
        {
            "goal": f"--fast 1% in a git repository, clean at its base, <= {GOAL_GIT_FAST1}x the "
            f"same outside git (median of {git['rounds']} rounds' ratios), "
            "PYTHONDONTWRITEBYTECODE=1",
            "value": value,
            "target": GOAL_GIT_FAST1,
            "met": value <= GOAL_GIT_FAST1,
            "detail": f"of the medians {git['x_no_git']:.3f}; read_version "
            f"{git['read_version']['git']['median_ms']:.1f} ms",
        }
    ]


def where_goals(cells: Sequence[Cell], store: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The goals of the where-agents-run part: one line per suite and env state each is on."""
    found = {(c.suite.name, c.state.name, c.mode.name): c for c in cells}
    checks: list[dict[str, Any]] = []

    def check(goal: str, values: dict[str, float | None], target: float) -> None:
        # With several values (full and agent), the goal holds only if it holds for each.
        present = [value for value in values.values() if value is not None]
        worst = max(present) if present else None
        detail = ", ".join(f"{k} {fmt(v, '.3f')}" for k, v in values.items())
        met = None if worst is None else worst <= target
        checks.append({"goal": goal, "value": worst, "target": target, "met": met})
        if len(values) > 1:
            checks[-1]["detail"] = detail

    def x(suite: str, state: str, mode: str, what: str = "x_plain") -> float | None:
        cell = found.get((suite, state, mode))
        return None if cell is None else getattr(cell.result, what)

    suites = list(dict.fromkeys(cell.suite.name for cell in cells))
    for suite in suites:
        if suite in ("pass", "assert") and (suite, "1", "fast1") in found:
            check(
                f"--fast 1% <= {GOAL_WHERE_FAST1}x plain full run, {suite}, "
                "PYTHONDONTWRITEBYTECODE=1",
                {"fast1": x(suite, "1", "fast1")},
                GOAL_WHERE_FAST1,
            )
    for suite in suites:
        if suite not in FAILING_SUITES and (suite, "1", "full") in found:
            check(
                f"full recorded run <= {GOAL_WHERE_FULL_NOPYC}x plain pytest, {suite}, "
                "PYTHONDONTWRITEBYTECODE=1, second run onwards",
                {mode: x(suite, "1", mode) for mode in ("full", "agent")},
                GOAL_WHERE_FULL_NOPYC,
            )
    states = list(dict.fromkeys(cell.state.name for cell in cells))
    for suite, state in itertools.product(FAILING_SUITES, states):
        if (suite, state, "agent") in found:
            check(
                f"compact full run of {suite} <= {GOAL_COMPACT_FAILING}x plain pytest -q, "
                f"PYTHONDONTWRITEBYTECODE={state}",
                {"agent": x(suite, state, "agent")},
                GOAL_COMPACT_FAILING,
            )
    for suite in suites:
        if suite not in REAL_BY_NAME:
            continue
        for state in states:
            check(
                f"real suite {suite}: full recorded wall <= {GOAL_REAL_WALL}x plain, "
                f"PYTHONDONTWRITEBYTECODE={state}",
                {mode: x(suite, state, mode) for mode in ("full", "agent")},
                GOAL_REAL_WALL,
            )
            check(
                f"real suite {suite}: full recorded peak RSS <= {GOAL_REAL_RSS}x plain, "
                f"PYTHONDONTWRITEBYTECODE={state}",
                {mode: x(suite, state, mode, "x_plain_rss") for mode in ("full", "agent")},
                GOAL_REAL_RSS,
            )
    for suite, state in itertools.product(FAILING_SUITES, states):
        cell = found.get((suite, state, "agent"))
        if cell is not None:
            gaps = [t["gap_s"] for t in cell.timings if t.get("reported_s") is not None]
            failures = (cell.store.get("counts") or {}).get("failed", 0)
            check(
                f"compact run of {suite} ({failures} failures) ends within {GOAL_END_GAP_S} s "
                f"of its reported time (median wall - duration_s), "
                f"PYTHONDONTWRITEBYTECODE={state}",
                {"gap s": median_of(gaps)},
                GOAL_END_GAP_S,
            )
    if store is not None:
        check(
            f"store <= {GOAL_STORE_MB} MB per full run of a {GOAL_STORE_TESTS:,}-test suite "
            f"({store['source']}, times {GOAL_STORE_TESTS:,} / tests"
            + (")" if store["growth"] else "; only the record part measures the goal)"),
            {"MB": store["at_goal_tests_mb"] if store["growth"] else None},
            GOAL_STORE_MB,
        )
    return checks


# -- main ------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Figures are only comparable within one run: read the ratios, not the seconds.",
    )
    parser.add_argument("--files", type=int, help="test files in the suite (default 200)")
    parser.add_argument("--tests", type=int, help="tests per file (default 100)")
    parser.add_argument(
        "--fail-rate", type=float, help="fraction of failing tests (0.001; --quick 0.005)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per variant (5)")
    parser.add_argument(
        "--pairs",
        type=int,
        help="back-to-back runs of plain pytest and llmh-full, for the wall-time goal "
        "(10; --quick 2)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2,000-test suites, two files of each project, a 10,000-test record",
    )
    parser.add_argument("--record-files", type=int, help="files of the record suite (500)")
    parser.add_argument("--record-tests", type=int, help="tests per file of it (200)")
    parser.add_argument("--no-record", action="store_true", help="skip the large record and CLI")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions with valgrind (plain vs full recording; ~10 min)",
    )
    parser.add_argument(
        "--variants",
        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS),
    )
    parser.add_argument(
        "--no-tools",
        action="store_true",
        help="skip the tools table (the variants above and the peers) and the pairs",
    )
    parser.add_argument(
        "--suites",
        default=",".join(WHERE_SUITES),
        help="where agents run: comma-separated subset of "
        f"{', '.join(WHERE_SUITES)}, or none (default: all)",
    )
    parser.add_argument(
        "--no-where", action="store_true", help="skip where agents run (as --suites none)"
    )
    parser.add_argument(
        "--env-states",
        default=",".join(state.name for state in ENV_STATES),
        help="PYTHONDONTWRITEBYTECODE states for those suites: 1, unset or 1,unset (both)",
    )
    parser.add_argument(
        "--no-git",
        action="store_true",
        help="skip the code version part (read_version, --fast 1%% in git against outside)",
    )
    parser.add_argument(
        "--git-rounds",
        type=int,
        help="interleaved rounds of the code version part's two --fast runs (20; --quick 3)",
    )
    parser.add_argument(
        "--wait-load",
        type=float,
        default=0.0,
        help="before each part's timed runs, wait until the 1-minute load average is below "
        "this (polled every 30 s; default 0: do not wait)",
    )
    parser.add_argument(
        "--wait-max",
        type=float,
        default=40.0,
        help="minutes to wait for --wait-load before measuring anyway (40)",
    )
    parser.add_argument(
        "--no-hints", action="store_true", help="skip the time hints against the clock"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild every venv")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    parser.add_argument("--work", type=Path, default=BENCH / "_work", help="work folder")
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds before a run is killed (3600)"
    )
    args = parser.parse_args(argv)
    default_files, default_tests = (20, 100) if args.quick else (200, 100)
    record_files, record_tests = (50, 200) if args.quick else (500, 200)
    if args.fail_rate is None:
        args.fail_rate = 0.005 if args.quick else 0.001
    if args.pairs is None:
        args.pairs = 2 if args.quick else 10
    if args.git_rounds is None:
        args.git_rounds = 3 if args.quick else 20
    if args.git_rounds < 1:
        parser.error("--git-rounds must be at least 1")
    args.files = args.files or default_files
    args.tests = args.tests or default_tests
    args.record_files = args.record_files or record_files
    args.record_tests = args.record_tests or record_tests
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    names = {v.name for v in VARIANTS}
    chosen = {"plain", *(args.variants.split(",") if args.variants else names)}
    unknown = chosen - names
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    args.chosen = [v for v in VARIANTS if v.name in chosen]
    none = args.no_where or args.suites == "none"
    suites = [] if none else [n for n in args.suites.split(",") if n]
    unknown = set(suites) - set(WHERE_SUITES)
    if unknown:
        parser.error(f"--suites: unknown suite(s): {', '.join(sorted(unknown))}")
    args.suites = [name for name in WHERE_SUITES if name in suites]
    states = set(args.env_states.split(","))
    args.states = [state for state in ENV_STATES if state.name in states]
    if not args.states or states - {state.name for state in ENV_STATES}:
        parser.error("--env-states: give 1, unset or 1,unset")
    if args.instructions and args.no_tools:
        parser.error("--instructions counts on the tools' suite: drop --no-tools")
    return args


def llmharness_git() -> str:
    """The commit of llmharness's own work tree and how many paths differ from it (read only)."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, env=env
    )
    if head.returncode != 0:
        return "no git work tree"
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, env=env
    )
    changed = len(status.stdout.splitlines())
    return f"{head.stdout.strip()}" + (f", {changed} paths changed" if changed else ", clean")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if sys.version_info < (3, 10) or not hasattr(os, "wait4"):
        sys.exit("bench: needs Python 3.10+ on Linux or macOS (os.wait4)")
    if shutil.which("git") is None:
        sys.exit("bench: needs git: every suite is made a git repository of its own")
    work: Path = args.work.resolve()
    venvs = work / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env = {k: v for k, v in env.items() if not k.startswith("LLMHARNESS_")}
    # A coding agent running the benchmark would turn every run's compact output on.
    env = {k: v for k, v in env.items() if k not in load_agents().VARIABLES}
    scrubbed = sorted(set(os.environ) - set(env))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    # Read at the start, with the sources the venv is built from: the tree may move on meanwhile.
    llmharness_at = llmharness_git()
    waits: list[dict[str, Any]] = []

    def waiter(part: str) -> Callable[[], None]:
        return lambda: waits.append(wait_quiet(args, part))

    source = copy_source(work, source_fingerprint())
    python = str(Path(args.python).resolve()) if os.sep in args.python else args.python
    stamp = {"source": source.name}
    llmh = ensure_venv(venvs, VenvSpec("llmharness", (str(source),)), python, args.rebuild, stamp)
    llmh_info = inspect_venv(llmh, env)
    pytest_v = installed_version(llmh_info, "pytest")
    xdist_v = installed_version(llmh_info, "pytest-xdist")
    specs = [
        VenvSpec("plain", (f"pytest=={pytest_v}",)),
        VenvSpec("jsonreport", (f"pytest=={pytest_v}", "pytest-json-report")),
        VenvSpec("reportlog", (f"pytest=={pytest_v}", "pytest-reportlog")),
        VenvSpec("xdist", (f"pytest=={pytest_v}", f"pytest-xdist=={xdist_v}")),
    ]
    infos = {"llmharness": llmh_info}
    needed = {"plain"} | (set() if args.no_tools else {v.venv for v in args.chosen})
    for spec in specs:
        if spec.name in needed:
            infos[spec.name] = inspect_venv(ensure_venv(venvs, spec, python, args.rebuild, {}), env)

    generator = load_generator()
    suite_dir = work / "suites" / "main"
    suite: dict[str, Any] | None = None
    results: list[Result] = []
    paired = counted = None
    if not args.no_tools:
        progress(f"generating the suite: {args.files} x {args.tests} tests")
        suite = generate(generator, suite_dir, args.files, args.tests, args.fail_rate, FAIL_SEED)
        results = bench_variants(
            args.chosen, suite_dir, venvs, work, env, args.repeat, args.timeout, waiter("tools")
        )
        paired = bench_pairs(results, suite_dir, work, env, args.pairs, args.timeout)
        if args.instructions:
            if shutil.which("valgrind") is None:
                sys.exit("bench: --instructions needs valgrind (e.g. apt-get install valgrind)")
            counted = bench_instructions(suite_dir, venvs, work, env, suite, args.timeout)
    cells: list[Cell] = []
    where: dict[str, Any] | None = None
    if args.suites:
        check_plugin(infos["plain"], "plain", loaded=False)
        check_plugin(llmh_info, "llmharness", loaded=True)
        where_suites, where_facts = prepare_where(
            args.suites, args.states, args, generator, source, python, pytest_v, venvs, work, env
        )
        cells = bench_where(
            where_suites,
            args.states,
            venvs,
            work,
            env,
            args.repeat,
            args.timeout,
            waiter("where agents run"),
        )
        flag = "import sys; print(sys.flags.dont_write_bytecode)"
        where = {
            "repeat": args.repeat,
            "common_args": list(WHERE_ARGS),
            "flags": {
                state.name: run_quiet([venv_python(llmh), "-c", flag], env=state.apply(env)).strip()
                for state in args.states
            },
            "suites": [asdict(s) for s in where_suites],
            "facts": where_facts,
            "cells": where_data(cells),
        }
    git = None if args.no_git else bench_git(generator, args, venvs, work, env, waits)
    record = None
    if not args.no_record:
        record = bench_record(
            generator,
            work / "suites" / "record",
            args.record_files,
            args.record_tests,
            args.fail_rate,
            venvs,
            work,
            env,
            args.repeat,
            args.timeout,
            waiter("the record"),
        )

    hints = None if args.no_hints else bench_hints(generator, args, venvs, work, env, waits)

    results_file = work / "results.json"
    data: dict[str, Any] = {
        "meta": {
            "started": started,
            "host": platform.node(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": llmh_info["python"],
            "pytest": pytest_v,
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
            "dont_write_bytecode": llmh_info["dont_write_bytecode"],
            "env_removed": scrubbed,
            "llmharness_source": source.name,
            "llmharness_git": llmharness_at,
            "load_waits": waits,
        },
        "config": {
            "repeat": args.repeat,
            "pairs": args.pairs,
            "quick": args.quick,
            "common_args": list(COMMON),
            "goals": {
                "full_wall_x_plain": GOAL_FULL_WALL,
                "full_rss_x_plain": GOAL_FULL_RSS,
                "fast1_wall_x_plain": GOAL_FAST1_WALL,
                "cli_s": GOAL_CLI_S,
                "where_fast1_x_plain": GOAL_WHERE_FAST1,
                "where_full_x_plain_nopyc": GOAL_WHERE_FULL_NOPYC,
                "compact_failing_x_plain": GOAL_COMPACT_FAILING,
                "real_wall_x_plain": GOAL_REAL_WALL,
                "real_rss_x_plain": GOAL_REAL_RSS,
                "end_gap_s": GOAL_END_GAP_S,
                "store_mb_per_run": GOAL_STORE_MB,
                "store_goal_tests": GOAL_STORE_TESTS,
                "git_fast1_x_no_git": GOAL_GIT_FAST1,
            },
        },
        "venvs": infos,
        "suite": suite,
        "variants": [{**asdict(r), "samples": [asdict(s) for s in r.samples]} for r in results],
        "paired": paired,
        "instructions": counted,
        "where": where,
        "git": git,
        "record": record,
        "hints": hints,
        "store_per_run": store_per_run(record, cells),
        "results_file": str(results_file),
    }
    data["goals"] = goals(results, record, paired, counted)
    data["goals"] += where_goals(cells, data["store_per_run"])
    data["goals"] += git_goals(git)
    results_file.write_text(json.dumps(data, indent=2) + "\n")
    print(report(data, results, cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
