#!/usr/bin/env python3
"""Benchmark llmharness against plain pytest and its peers on large synthetic suites.

Builds one virtual environment per tool under bench/_work/venvs/ (so each run loads only the
pytest plugins it needs), generates a synthetic suite with suites/generate.py, times every
variant round-robin (median wall time, peak RSS, ratios to plain pytest measured in the same
run), then records a 100,000-test run and times the `llmharness` CLI on it. Prints a table and
writes bench/_work/results.json. Standard library only; Linux or macOS (uses os.wait4).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
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
    data: dict[str, Any] = json.loads(run_quiet([venv_python(venv), "-c", _INSPECT], env=env))
    return data


def installed_version(info: dict[str, Any], name: str) -> str:
    prefix = f"{name.lower()}=="
    for item in info["packages"]:
        if item.lower().replace("_", "-").startswith(prefix):
            return str(item.split("==", 1)[1])
    sys.exit(f"bench: {name} is not installed in the llmharness venv")


# -- measuring one process -------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One timed process: wall seconds, peak RSS, exit code and what it printed."""

    wall_s: float
    rss_bytes: int
    exit_code: int
    out_bytes: int
    last_line: str


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
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_bytes()
    lines = [line for line in text.decode("utf-8", "replace").splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("llmharness: ")]
    last = (ours or lines or [""])[-1].strip()
    return Sample(wall, _maxrss_bytes(usage.ru_maxrss), proc.returncode, len(text), last[:200])


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


def load_generator() -> ModuleType:
    path = REPO / "suites" / "generate.py"
    spec = importlib.util.spec_from_file_location("llmharness_suite_generate", path)
    if spec is None or spec.loader is None:
        sys.exit(f"bench: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    return {
        "path": str(root),
        "files": files,
        "tests_per_file": tests,
        "tests": len(nodeids),
        "subdirs": subdirs,
        "fail_rate": fail_rate,
        "seed": seed,
        "failing": failing,
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
        "status": summary.get("status"),
        "counts": {k: v for k, v in (summary.get("counts") or {}).items() if v},
        "selected": sample.get("selected"),
        "total": sample.get("total"),
        "store_warnings": summary.get("store_warnings") or [],
        "notes": summary.get("notes") or [],
        "runs_kept": len(list((store / "runs").iterdir())) if (store / "runs").is_dir() else 0,
    }


def bench_variants(
    variants: Sequence[Variant],
    suite: Path,
    venvs: Path,
    work: Path,
    env: dict[str, str],
    repeat: int,
    timeout: float,
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
        # Warm the store (durations, collection cache) as a repeated run finds it.
        log = work / "logs" / f"callgrind-warm-{number}.txt"
        check_exit(
            measure(runs["llmh-full"], suite, counted_env, log, timeout), runs["llmh-full"], log
        )
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
        sizes[entry.name] = tree_bytes(entry) if entry.is_dir() else entry.stat().st_size
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
) -> dict[str, Any]:
    """Record two real runs of a large suite, then time the CLI verbs on that store."""
    pytest = str(venvs / "llmharness" / "bin" / "pytest")
    progress(f"generating the record suite: {files} x {tests} tests")
    suite = generate(generator, root, files, tests, fail_rate, FAIL_SEED)
    logs = work / "logs"
    command = [pytest, *COMMON, *AGENT]
    runs: list[dict[str, Any]] = []
    for number, seed in enumerate((FAIL_SEED, FAIL_SEED + 1), start=1):
        if number == 2:
            # Different failing tests, so that the second run's regression diff has content.
            generate(generator, root, files, tests, fail_rate, seed, fresh=False)
        progress(f"recording run {number} of {suite['tests']:,} tests")
        sample = measure(command, root, env, logs / f"record-{number}.txt", timeout)
        check_exit(sample, command, logs / f"record-{number}.txt")
        runs.append(
            {
                "fail_seed": seed,
                "wall_s": sample.wall_s,
                "rss_mb": sample.rss_bytes / 2**20,
                "last_line": sample.last_line,
            }
        )
        progress(f"recording run {number}: {sample.wall_s:.1f}s")
    plain_cmd = [str(venvs / "plain" / "bin" / "pytest"), *COMMON]
    plain = measure(plain_cmd, root, env, logs / "record-plain.txt", timeout)
    check_exit(plain, plain_cmd, logs / "record-plain.txt")
    progress(f"plain pytest on the record suite: {plain.wall_s:.1f}s")

    store = root / ".llmharness"
    run_ids = sorted(p.name for p in (store / "runs").iterdir() if p.is_dir())
    if len(run_ids) != len(runs):
        sys.exit(f"bench: expected {len(runs)} runs in {store / 'runs'}, found {run_ids}")
    for info, run_id in zip(runs, run_ids, strict=True):
        info["run_id"] = run_id
        info["bytes"] = run_sizes(store / "runs" / run_id)
    return {
        "suite": suite,
        "runs": runs,
        "plain_wall_s": plain.wall_s,
        "plain_rss_mb": plain.rss_bytes / 2**20,
        "index_bytes": (store / "index.json").stat().st_size,
        "store_bytes": tree_bytes(store),
        **time_cli(venvs, root, run_ids[0], work / "logs", env, repeat, timeout),
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


def report(data: dict[str, Any], results: list[Result]) -> str:
    meta = data["meta"]
    suite = data["suite"]
    bytecode = (
        "no .pyc written: test modules are re-rewritten on every run, collection is slower"
        if meta["dont_write_bytecode"]
        else ".pyc cached: rewritten test modules are reused"
    )
    lines = [
        f"llmharness benchmark, {meta['started']}, {meta['host']}: {meta['cpus']} CPUs, "
        f"load {meta['load_before']} before / {meta['load_after']} after",
        f"python {meta['python']}, pytest {meta['pytest']}; PYTHONDONTWRITEBYTECODE="
        f"{meta['PYTHONDONTWRITEBYTECODE']!r}, children's sys.flags.dont_write_bytecode="
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
        lines.append(f"  {r.name}: {r.samples[-1].last_line}{extra}")
    record = data.get("record")
    if record:
        s = record["suite"]
        shape = f"{s['files']} files x {s['tests_per_file']}"
        lines += ["", f"record of {s['tests']:,} tests ({shape}), two real runs:"]
        for number, run in enumerate(record["runs"], start=1):
            b = run.get("bytes", {})
            parts = ", ".join(f"{k} {v / 1024:,.0f} KB" for k, v in b.items() if k != "total")
            x_wall = fmt(ratio(run["wall_s"], record["plain_wall_s"]))
            x_rss = fmt(ratio(run["rss_mb"], record["plain_rss_mb"]))
            lines.append(
                f"  run {number} ({run['run_id']}): {run['wall_s']:.1f}s ({x_wall}x plain), "
                f"{run['rss_mb']:.0f} MB ({x_rss}x); "
                f"run folder {b.get('total', 0) / 2**20:.2f} MB ({parts})"
            )
        lines.append(
            f"  plain pytest on the same suite: {record['plain_wall_s']:.1f}s, "
            f"{record['plain_rss_mb']:.0f} MB; index.json {record['index_bytes'] / 2**20:.2f} MB; "
            f"whole store {record['store_bytes'] / 2**20:.2f} MB"
        )
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
    lines += ["", "goals:"]
    for goal in data["goals"]:
        mark = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
        lines.append(f"  {mark:12} {goal['goal']}: {fmt(goal['value'], '.3f')}")
    if data["config"]["quick"]:
        lines.append("  (--quick: small suites, not the goals' scale)")
    lines.append(f"\nwritten: {data['results_file']}")
    return "\n".join(lines)


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
        default=10,
        help="back-to-back runs of plain pytest and llmh-full, for the wall-time goal (10)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: 2,000 tests and a 10,000-test record"
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
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if sys.version_info < (3, 10) or not hasattr(os, "wait4"):
        sys.exit("bench: needs Python 3.10+ on Linux or macOS (os.wait4)")
    work: Path = args.work.resolve()
    venvs = work / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env = {k: v for k, v in env.items() if not k.startswith("LLMHARNESS_")}
    scrubbed = sorted(set(os.environ) - set(env))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())

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
    needed = {v.venv for v in args.chosen} | {"plain"}
    for spec in specs:
        if spec.name in needed:
            infos[spec.name] = inspect_venv(ensure_venv(venvs, spec, python, args.rebuild, {}), env)

    generator = load_generator()
    suite_dir = work / "suites" / "main"
    progress(f"generating the suite: {args.files} x {args.tests} tests")
    suite = generate(generator, suite_dir, args.files, args.tests, args.fail_rate, FAIL_SEED)
    results = bench_variants(args.chosen, suite_dir, venvs, work, env, args.repeat, args.timeout)
    paired = bench_pairs(results, suite_dir, work, env, args.pairs, args.timeout)
    counted = None
    if args.instructions:
        if shutil.which("valgrind") is None:
            sys.exit("bench: --instructions needs valgrind (e.g. apt-get install valgrind)")
        counted = bench_instructions(suite_dir, venvs, work, env, suite, args.timeout)
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
        )

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
            },
        },
        "venvs": infos,
        "suite": suite,
        "variants": [{**asdict(r), "samples": [asdict(s) for s in r.samples]} for r in results],
        "paired": paired,
        "instructions": counted,
        "record": record,
        "results_file": str(results_file),
    }
    data["goals"] = goals(results, record, paired, counted)
    results_file.write_text(json.dumps(data, indent=2) + "\n")
    print(report(data, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
