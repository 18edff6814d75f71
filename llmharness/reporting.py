"""What llmharness writes for people and agents to read: ERROR lines, aggregates, terminal lines.

ERROR line format (one line per failed or errored test, and per collection error)::

    ERROR <nodeid> <reason>

`<nodeid>` is written bare when it is made only of printable non-space characters other than
`"` and `\\`; otherwise it is written as a JSON string (double quotes, backslash escapes), so
`parse_error_line` recovers the exact node id either way. `<reason>` is the exception type, the
first line of its message and `(file:line)`, with control characters escaped (`\\n`, `\\x1b`,
...) so it never spans lines, and cut to a bounded length with a `…[+N chars]` marker.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OUTCOMES",
    "TestResult",
    "aggregate",
    "cluster_key",
    "compact_lines",
    "counted",
    "error_line",
    "format_counts",
    "next_line",
    "next_runs",
    "parse_error_line",
    "quote_nodeid",
    "sanitize",
]

#: pytest's outcome words, in the order pytest prints them.
OUTCOMES = ("failed", "passed", "skipped", "xfailed", "xpassed", "error")
FAILING = frozenset({"failed", "error"})
_BARE_NODEID = re.compile(r'^[^\s"\\\x00-\x1f\x7f-\x9f]+$')
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test's single, combined outcome in a run (setup, call and teardown together)."""

    nodeid: str
    outcome: str
    phase: str
    duration: float
    reason: str | None = None
    failure_file: str | None = None
    worker: str | None = None  # the xdist worker that ran it
    reruns: int = 0  # attempts pytest-rerunfailures ran again before this outcome

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "phase": self.phase,
            "duration": round(self.duration, 6),
        }
        if self.reason is not None:
            data["reason"] = self.reason
        if self.failure_file is not None:
            data["failure_file"] = self.failure_file
        if self.worker is not None:
            data["worker"] = self.worker
        if self.reruns:
            data["reruns"] = self.reruns
        return data


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def sanitize(text: str, limit: int) -> str:
    """Make `text` one printable line of at most about `limit` characters."""
    unseen = 0
    if len(text) > 4 * limit + 64:  # a megabyte message: escape only what can be kept
        unseen = len(text) - (4 * limit + 64)
        text = text[: 4 * limit + 64]
    text = _ANSI.sub("", text)
    text = _CONTROL.sub(_escape_char, text)
    if len(text) > limit or unseen:
        cut = max(len(text) - limit, 0) + unseen
        text = f"{text[:limit]}…[+{cut} chars]"
    return text


def quote_nodeid(nodeid: str) -> str:
    """Write a node id so that it stays one token on an ERROR line."""
    if _BARE_NODEID.match(nodeid) and nodeid.isprintable():
        return nodeid
    return json.dumps(nodeid, ensure_ascii=True)


def error_line(nodeid: str, reason: str, limit: int = 300) -> str:
    """One `ERROR <nodeid> <reason>` line, without the trailing newline."""
    return f"ERROR {quote_nodeid(nodeid)} {sanitize(reason, limit)}"


def parse_error_line(line: str) -> tuple[str, str]:
    """Split an ERROR line back into the exact node id and the reason."""
    if not line.startswith("ERROR "):
        raise ValueError(f"not an ERROR line: {line[:60]!r}")
    rest = line[len("ERROR ") :].rstrip("\n")
    if rest.startswith('"'):
        nodeid, end = json.JSONDecoder().raw_decode(rest)
        return str(nodeid), rest[end:].lstrip(" ")
    nodeid, _, reason = rest.partition(" ")
    return nodeid, reason


_NUMBER = re.compile(r"\b0x[0-9a-fA-F]+\b|\b\d+(\.\d+)?\b")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_LOCATION = re.compile(r"\s*\([^()]*:\d+\)$")


def cluster_key(reason: str) -> str:
    """The cause of a failure with its particulars (numbers, quoted values, location) removed."""
    key = _LOCATION.sub("", reason)
    key = _QUOTED.sub("'…'", key)
    key = _NUMBER.sub("N", key)
    return " ".join(key.split())[:160]


def counted(number: int, one: str, many: str) -> str:
    """`1 new failure`, `2 new failures`: a count with the word that agrees with it."""
    return f"{number:,} {one if number == 1 else many}"


def format_counts(counts: Mapping[str, int]) -> str:
    """pytest's way: `3 failed, 118 passed, 2 skipped`; `errors` in the plural as pytest does."""
    parts = []
    for outcome in OUTCOMES:
        number = counts.get(outcome, 0)
        if number:
            word = "errors" if outcome == "error" and number != 1 else outcome
            parts.append(f"{number:,} {word}")
    return ", ".join(parts) or "no tests ran"


def aggregate(
    results: Iterable[TestResult],
    collection_errors: Sequence[Mapping[str, str]] = (),
    slowest: int = 10,
    clusters: int = 20,
) -> dict[str, Any]:
    """Pre-computed statistics of a run: counts, pass rate, per file/dir, slowest, clusters."""
    by_file: dict[str, Counter[str]] = {}
    file_time: dict[str, float] = {}
    groups: dict[str, list[TestResult]] = {}
    timed: list[TestResult] = []
    for result in results:
        path = result.nodeid.split("::", 1)[0]
        by_file.setdefault(path, Counter())[result.outcome] += 1
        file_time[path] = file_time.get(path, 0.0) + result.duration
        timed.append(result)
        if result.outcome in FAILING and result.reason:
            groups.setdefault(cluster_key(result.reason), []).append(result)
    for error in collection_errors:
        path = error["nodeid"].split("::", 1)[0]
        by_file.setdefault(path, Counter())["error"] += 1
        file_time.setdefault(path, 0.0)
        groups.setdefault(cluster_key(error["reason"]), []).append(
            TestResult(error["nodeid"], "error", "collect", 0.0, error["reason"])
        )
    counts: Counter[str] = Counter()
    by_dir: dict[str, Counter[str]] = {}
    dir_time: dict[str, float] = {}
    for path, counter in by_file.items():
        directory = path.rsplit("/", 1)[0] if "/" in path else "."
        counts.update(counter)
        by_dir.setdefault(directory, Counter()).update(counter)
        dir_time[directory] = dir_time.get(directory, 0.0) + file_time[path]
    ran = counts["passed"] + counts["failed"] + counts["error"]
    longest = heapq.nsmallest(slowest, timed, key=lambda r: (-r.duration, r.nodeid))
    for members in groups.values():
        members.sort(key=lambda member: member.nodeid)  # not the order xdist workers finish in
    ordered_groups = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    rerun = sorted(result.nodeid for result in timed if result.reruns)
    return {
        "counts": {outcome: counts.get(outcome, 0) for outcome in OUTCOMES},
        "pass_rate": round(counts["passed"] / ran, 4) if ran else None,
        "test_time_s": round(sum(file_time.values()), 3),
        # pytest-rerunfailures' attempts run again: a test that passed only then is flaky.
        "reruns": {
            "count": sum(result.reruns for result in timed),
            "tests": len(rerun),
            "nodeids": rerun[:10],
        },
        "by_file": _grouped(by_file, file_time),
        "by_dir": _grouped(by_dir, dir_time),
        "slowest": [
            {"nodeid": r.nodeid, "duration_s": round(r.duration, 4), "outcome": r.outcome}
            for r in longest
        ],
        "clusters": [
            {
                "cause": key,
                "count": len(members),
                "example": members[0].reason,
                "nodeids": [member.nodeid for member in members[:10]],
            }
            for key, members in ordered_groups[:clusters]
        ],
    }


def _grouped(
    counters: Mapping[str, Counter[str]], times: Mapping[str, float]
) -> dict[str, dict[str, Any]]:
    grouped: dict[str, dict[str, Any]] = {}
    for name in sorted(counters):
        entry: dict[str, Any] = {k: v for k, v in counters[name].items() if v}
        entry["duration_s"] = round(times.get(name, 0.0), 3)
        grouped[name] = entry
    return grouped


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 1] + "…"


def headline(summary: Mapping[str, Any]) -> str:
    """The first compact line: status, counts, time and how the tests were chosen."""
    counts = summary.get("counts", {})
    status = summary.get("status", "complete")
    failing = counts.get("failed", 0) + counts.get("error", 0)
    if status == "interrupted":
        word = "INTERRUPTED"
    elif status in ("time-limit", "stopped"):
        word = "STOPPED"
    elif failing:
        word = "FAILED"
    elif not any(counts.values()):
        word = "NO TESTS"
    else:
        word = "PASSED"
    details = sample_text(summary.get("sample") or {})
    duration = summary.get("duration_s") or 0.0
    reruns = (summary.get("reruns") or {}).get("count", 0)
    rerun = f", {reruns:,} rerun" if reruns else ""  # as pytest-rerunfailures counts them
    return (
        f"llmharness: {word} {format_counts(counts)}{rerun} in {duration:.1f}s "
        f"({details}, run {summary.get('run_id')})"
    )


def sample_text(sample: Mapping[str, Any]) -> str:
    """How the tests were chosen, with what reproduces it: `fast 10%: 123 of 1,234, seed ...`."""
    details = []
    mode = sample.get("mode", "full")
    if mode != "full":
        what = []
        if sample.get("fraction") is not None:
            what.append(_percent(sample["fraction"]))
        if sample.get("budget_s") is not None:
            expected = sample.get("expected_s") or 0.0
            what.append(f"budget {sample['budget_s']:g}s, expect {expected:.1f}s")
        selected, total = sample.get("selected", 0), sample.get("total", 0)
        details.append(f"fast {' '.join(what)}: {selected:,} of {total:,}")
        if sample.get("agents") is not None:
            details.append(f"part {sample.get('part')} of {sample['agents']}")
        if sample.get("added_for_changes"):
            details.append(f"+{sample['added_for_changes']:,} for changes")
    elif (sample.get("known") or 0) > sample.get("total", 0):
        # Not sampled, but narrowed (paths, --lf, a plugin): not the whole suite either.
        details.append(f"{sample.get('total', 0):,} of {sample['known']:,} known tests")
    else:
        details.append("full run")
    if sample.get("deselected"):
        details.append(f"{sample['deselected']:,} deselected")
    if sample.get("agent_id") is not None:
        details.append(f"agent {sample['agent_id']}")
    details.append(f"seed {sample.get('seed')}")
    return ", ".join(details)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def regressions_line(diff: Mapping[str, Any] | None, why_no_base: str | None = None) -> str | None:
    """The second compact line: what changed against the base, or against each test's last
    known outcome where there is no base."""
    if not diff:
        return None
    base = diff.get("base")
    if isinstance(base, Mapping):
        return _base_line(diff, base)
    why = f"; no base: {why_no_base}" if why_no_base else ""
    if diff.get("against") is None and not diff.get("known_before"):
        return f"regressions: no earlier outcomes recorded; this run is the baseline{why}"
    parts = []
    for key, one, many in (
        ("new_failures", "new failure", "new failures"),
        ("new_tests_failing", "new test failing", "new tests failing"),
        ("newly_skipped", "passing test now skipped", "passing tests now skipped"),
        ("fixed", "fixed", "fixed"),
        ("still_failing", "still failing", "still failing"),
    ):
        number = len(diff.get(key, ()))
        if number:
            judged = _judged(diff.get(key, ()))
            parts.append(counted(number, one, many) + (f" ({judged})" if judged else ""))
    text = ", ".join(parts) if parts else "none"
    return f"regressions: {text} (vs last known outcome of each test{why})"


#: How a verdict reads in the compact line.
_VERDICT_WORDS = {
    "regression": "confirmed",
    "order-dependent": "order-dependent",
    "flaky": "flaky",
    "known": "known",
    "unchecked": "unchecked",
}


def _judged(items: Sequence[Mapping[str, Any]]) -> str:
    """`1 confirmed, 1 flaky` for new failures with verdicts, else nothing."""
    counts: dict[str, int] = {}
    for item in items:
        verdict = item.get("verdict")
        if verdict in _VERDICT_WORDS:
            counts[verdict] = counts.get(verdict, 0) + 1
    if not counts:
        return ""
    order = list(_VERDICT_WORDS)
    words = [f"{counts[v]} {_VERDICT_WORDS[v]}" for v in sorted(counts, key=order.index)]
    return ", ".join(words)


def why_no_base(summary: Mapping[str, Any]) -> str | None:
    """Why a run inside a git work tree has no base to compare with, if it has none."""
    base = summary.get("base")
    if isinstance(base, Mapping) and base.get("commit") is None:
        return str(base.get("note") or "no base found")
    return None


def _base_line(diff: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    commit = str(base.get("commit"))[:10]
    still = len(diff.get("still_failing", ()))
    if base.get("at_base"):
        failing = f"; {counted(still, 'failure', 'failures')} failing at the base" if still else ""
        return f"regressions: none: this clean run at {commit} is the base{failing}"
    parts = []
    judged = _judged(diff.get("new_failures", ()))
    after = f" (passed at the base; {judged})" if judged else " (passed at the base)"
    for key, one, many in (
        ("new_failures", "new failure" + after, "new failures" + after),
        ("new_tests_failing", "new test failing", "new tests failing"),
        ("unknown_at_base", "failure unknown at the base", "failures unknown at the base"),
        ("newly_skipped", "passing test now skipped", "passing tests now skipped"),
        ("fixed", "fixed", "fixed"),
        ("still_failing", "failing at the base too", "failing at the base too"),
    ):
        items = diff.get(key, ())
        if key == "newly_skipped":  # the failing ones are counted with the integrity parts
            items = [item for item in items if item.get("before") not in FAILING]
        number = len(items)
        if number:
            verdicts = _judged(items) if key == "new_tests_failing" else ""
            if key == "fixed" and diff.get("fixed_by_test_change"):
                verdicts = f"{len(diff['fixed_by_test_change'])} by changing the test"
            parts.append(counted(number, one, many) + (f" ({verdicts})" if verdicts else ""))
    parts += _integrity_parts(diff)
    how: dict[str, int] = {}
    for key in ("new_failures", "new_tests_failing", "still_failing", "fixed"):
        for item in diff.get(key, ()):
            source = str(item.get("known_by"))
            how[source] = how.get(source, 0) + 1
    known = ", ".join(f"{number} {source}" for source, number in sorted(how.items()))
    text = ", ".join(parts) if parts else "none"
    ref = f" ({base.get('ref')})" if base.get("ref") else ""
    return f"regressions vs base {commit}{ref}: {text}" + (f" [{known}]" if known else "")


def _integrity_parts(diff: Mapping[str, Any]) -> list[str]:
    """What the change did to the tests themselves, for the regressions line (the tests fixed
    by changing them are told with the fixed ones)."""
    removed = [i for i in diff.get("removed", ()) if i.get("before") in FAILING]
    skipped = [i for i in diff.get("newly_skipped", ()) if i.get("before") in FAILING]
    parts = []
    for items, one, many in (
        (removed, "failing test removed", "failing tests removed"),
        (skipped, "failing test now skipped", "failing tests now skipped"),
        (diff.get("protected_changed", ()), "protected path changed", "protected paths changed"),
    ):
        if items:
            parts.append(counted(len(items), one, many))
    if diff.get("tampered"):
        parts.insert(0, "TAMPERED")
    return parts


def compact_lines(
    summary: Mapping[str, Any],
    error_lines: Sequence[str],
    max_lines: int,
    log_hint: str,
    width: int = 200,
) -> list[str]:
    """At most `max_lines` short lines for the terminal, failures first, then a log pointer."""
    lines = [headline(summary)]
    second = regressions_line(summary.get("regressions"), why_no_base(summary))
    if second:
        lines.append(second)
    notes = list(summary.get("notes", ()))
    room = max_lines - len(lines) - (1 if error_lines else 0)
    for note in notes[: max(room, 0)]:
        lines.append(note)
    room = max_lines - len(lines) - (1 if error_lines else 0)
    if error_lines:
        shown = error_lines[: max(room, 0)] if len(error_lines) > room else error_lines
        lines.extend(shown)
        hidden = len(error_lines) - len(shown)
        if hidden:
            lines.append(f"... {hidden:,} more: grep '^ERROR ' {log_hint}")
        else:
            lines.append(f"details: llmharness show NODEID; log: {log_hint}")
    hint = next_line(summary.get("next"))
    if hint is not None and len(lines) < max_lines:  # the least needed line: only when free
        lines.append(hint)
    return [_fit(line, width) for line in lines[:max_lines]]


def _timing_parts(timing: Mapping[str, Any]) -> tuple[float, float, float]:
    """A run's fixed cost (start-up and record), collection seconds per file it imported, and
    other seconds per test it ran."""
    fixed = float(timing.get("startup_s") or 0.0) + float(timing["record_s"])
    per_file = float(timing["collect_s"]) / max(int(timing["files"]), 1)
    per_test = float(timing["other_s"]) / max(int(timing["tests"]), 1)
    return fixed, per_file, per_test


def next_runs(
    timing: Mapping[str, Any],
    suite: Mapping[str, tuple[int, float]],
    fraction: float | None,
    budget_s: float | None,
    fast_collect: bool = True,
    full_timing: Mapping[str, Any] | None = None,
    fast_timing: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """What a full and a --fast run would take next: the known tests' recorded seconds (`suite`:
    per test file, its tests and their seconds) spread over the workers, plus a run's start-up
    and record time, its collection time per file imported and its other time per test, scaled
    to what each run would import and run. Each kind is priced by the `timing` of the latest
    run of its kind (`full_timing`, `fast_timing`; this run's when there is none): a --fast run
    builds only the sampled tests of the files it imports, so its collection per file says
    little of a full run's, and the other way round. None when no test is known."""
    if not suite:
        return None
    workers = max(int(timing.get("workers") or 1), 1)
    tests = sum(count for count, _ in suite.values())
    seconds = sum(spent for _, spent in suite.values())
    fixed, per_file, per_test = _timing_parts(full_timing or timing)
    full = fixed + per_file * len(suite) + seconds / workers + per_test * tests
    share = 1.0 if fraction is None else fraction
    fast_tests_s = seconds * share
    if budget_s is not None and fast_tests_s > budget_s:
        fast_tests_s = budget_s
        share = budget_s / seconds
    fast_tests_s = max(fast_tests_s, seconds / tests)  # a sample is never empty
    # A file is imported when one of its tests is sampled (with fast_collect), which for a file
    # of n tests happens with probability 1 - (1 - share)^n.
    files = (
        sum(1.0 - (1.0 - share) ** count for count, _ in suite.values())
        if fast_collect
        else float(len(suite))
    )
    files = max(files, 1.0)
    fixed, per_file, per_test = _timing_parts(fast_timing or timing)
    fast = fixed + per_file * files + fast_tests_s / workers + per_test * max(share * tests, 1.0)
    return {
        "full_s": round(full, 2),
        "fast_s": round(fast, 2),
        "fast_fraction": fraction,
        "fast_budget_s": budget_s,
        "tests": tests,
        "files": len(suite),
        "test_time_s": round(seconds, 3),
        "workers": workers,
        "priced_by": {
            "full": "this run" if full_timing in (None, timing) else "a full run",
            "fast": "this run" if fast_timing in (None, timing) else "a --fast run",
        },
    }


def _about(seconds: float) -> str:
    if seconds < 10:
        return f"about {seconds:.1f} s"
    if seconds < 120:
        return f"about {seconds:.0f} s"
    return f"about {seconds / 60:.0f} min"


def next_line(hint: Mapping[str, Any] | None) -> str | None:
    """`next: full about 34 s, --fast (10%) about 4.2 s`: what the next runs would cost."""
    if not isinstance(hint, Mapping) or hint.get("full_s") is None:
        return None
    how = []
    if hint.get("fast_fraction") is not None:
        how.append(_percent(float(hint["fast_fraction"])))
    if hint.get("fast_budget_s") is not None:
        how.append(f"budget {float(hint['fast_budget_s']):g}s")
    fast = f"--fast ({', '.join(how)})" if how else "--fast"
    return f"next: full {_about(float(hint['full_s']))}, {fast} {_about(float(hint['fast_s']))}"
