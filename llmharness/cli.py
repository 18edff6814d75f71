"""The `llmharness` command: a few lines by default, `--json` for the whole data.

Exit codes: 0 ok; 1 `regressions --check` found new failures; 2 usage error, or nothing
recorded where asked.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from llmharness import integrity, reporting, team
from llmharness.reader import NoRecordError, Records, Regressions, RunSummary

__all__ = ["main"]

EXIT_OK = 0
EXIT_REGRESSED = 1
EXIT_USAGE = 2

_EPILOG = """\
exit codes: 0 ok; 1 `regressions --check` found a test failing that passed at the base, a new
            test failing or a failure whose outcome at the base is unknown (without git or a
            base: a test failing whose last known outcome was a pass); or the run was
            tampered with (its reports or exit status rewritten), a protected path changed,
            or a test was fixed by changing it or a failing test removed or skipped (unless
            allow_test_changes); or the run did not finish (-x, --maxfail, a time limit, a
            signal), so the tests it did not run are unchecked;
            2 usage error, nothing recorded yet (no store, run or baseline), or `sync` failed
            (not a git repository, no usable remote, the push refused)
The store is found like git finds a repository: .llmharness/ in the current folder or above
(or --dir DIR, or the LLMHARNESS_STORE environment variable)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, no usage dump: an agent reads every byte of it.
        self.exit(EXIT_USAGE, f"llmharness: error: {message} (see llmharness --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llmharness",
        description="Read the test-run records that the llmharness pytest plugin writes.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", help="store folder, or a folder below which to look for one")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    verbs.add_parser(
        "prompt",
        help="a Markdown section for AGENTS.md or CLAUDE.md on running and reading the tests",
        description="Print the section an agent's instructions file needs: how this project's "
        "tests are run and read with llmharness, filled in from its settings (fraction, gate, "
        "base, store); works before anything is recorded. --dir: the project folder.",
    )

    summary = verbs.add_parser("summary", help="aggregates of a run in a few lines")
    summary.add_argument("run", nargs="?", help="run id or prefix (default: the latest run)")
    summary.add_argument("--json", action="store_true", help="print the whole summary as JSON")

    regress = verbs.add_parser("regressions", help="what a run broke and fixed")
    regress.add_argument("run", nargs="?", help="run id or prefix (default: the latest run)")
    regress.add_argument(
        "--against",
        metavar="RUN|baseline",
        help="compare with a run or the pinned baseline (default: the outcomes at the base "
        "commit, or each test's last known outcome outside git)",
    )
    regress.add_argument("--json", action="store_true", help="print the diff as JSON")
    regress.add_argument(
        "--check", action="store_true", help="exit 1 if anything broke (see exit codes)"
    )

    baseline = verbs.add_parser("baseline", help="pin a run as the baseline to diff against")
    baseline.add_argument("run", nargs="?", help="run id or prefix (default: the latest run)")
    baseline.add_argument("--force", action="store_true", help="pin even an unfinished run")
    baseline.add_argument("--show", action="store_true", help="show the pinned baseline")
    baseline.add_argument("--json", action="store_true", help="print as JSON")

    history = verbs.add_parser(
        "history", help="one line per recorded run; with NODEID, that test's result in each"
    )
    history.add_argument(
        "nodeid", nargs="?", help="a test's node id: its outcome in each run that ran it"
    )
    history.add_argument("-n", type=int, default=20, help="how many runs (default 20)")
    history.add_argument("--json", action="store_true", help="print as JSON")

    show = verbs.add_parser("show", help="the full failure text of one test")
    show.add_argument("nodeid", help="the test's node id, as in an ERROR line")
    show.add_argument("--run", help="run id or prefix (default: the latest run that ran it)")

    sync = verbs.add_parser("sync", help="exchange outcomes known at commits through git notes")
    sync.add_argument(
        "--remote",
        metavar="NAME",
        help="git remote (default: the current branch's upstream, else origin)",
    )
    sync.add_argument("--json", action="store_true", help="print as JSON")

    bisect = verbs.add_parser(
        "bisect",
        help="the tests that make an order-dependent test fail",
        description="Run NODEID after subsets of the tests that ran before it in a recorded run "
        "(its xdist worker's, under -n), each in a fresh pytest process, to name the smallest "
        "sets that make it fail; kept in the store for run verdicts. Exit codes: 0 found; "
        "1 the budget ran out (what was narrowed is shown); 2 not in the run, did not fail "
        "there, fails alone, or passes after the same tests (not order-dependent here).",
    )
    bisect.add_argument(
        "nodeid", metavar="NODEID", help="the failing test's node id, as in an ERROR line"
    )
    bisect.add_argument("--run", help="run id or prefix (default: the latest run it failed in)")
    bisect.add_argument(
        "--budget",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="stop after this long and show what was narrowed (default 300)",
    )
    bisect.add_argument("--json", action="store_true", help="print as JSON")

    flaky = verbs.add_parser(
        "flaky",
        help="tests whose outcome flips between runs at the same code version",
        description="From the recorded runs: each test's flips between passed and failed at "
        "the same commit (and the same uncommitted changes), over its runs there; runs without "
        "a code version (outside git) are skipped.",
    )
    flaky.add_argument("-n", type=int, default=10, help="how many tests (default 10)")
    flaky.add_argument("--json", action="store_true", help="print as JSON")

    coverage = verbs.add_parser(
        "coverage",
        help="which share of the suite has a known outcome at the base, and what is not run",
        description="From this store's runs and checks and what `sync` brought: the share of "
        "the suite (as a whole collection at the base found it) with a known outcome at the "
        "base commit; with a team size (`agents`), the parts nobody has run there yet.",
    )
    coverage.add_argument(
        "--agents", metavar="N", help="team size (default: the settings, else the latest run's)"
    )
    coverage.add_argument("--json", action="store_true", help="print as JSON")

    sample = verbs.add_parser(
        "sample",
        help="an agent's sample of the test ids read on stdin, for any test runner",
        description="Read test ids (one a line) on stdin and print the ones the agent's --fast "
        "sample holds, in input order: the same rule, seed and team parts as the pytest plugin "
        "(llmharness.yaml and LLMHARNESS_* settings apply; the flags win).",
    )
    sample.add_argument("--agent-id", metavar="ID", help="who runs (seeds the sample)")
    sample.add_argument("--fast-fraction", metavar="F", help="0.01 or 1%% (default 10%%)")
    sample.add_argument("--agents", metavar="N", help="team size: agent ids 0..N-1")
    sample.add_argument("--seed", metavar="S", help="an explicit seed")

    mcp = verbs.add_parser(
        "mcp",
        help="serve run_tests, summary, regressions, show and history to an agent over MCP",
        description="An MCP server over stdio (needs the extra: pip install 'llmharness[mcp]'); "
        "run_tests runs pytest in the project folder: --dir, else the current folder.",
    )
    # SUPPRESS: without it, this default would overwrite a `--dir` given before the verb.
    mcp.add_argument("--dir", default=argparse.SUPPRESS, help="the project folder")

    export = verbs.add_parser(
        "export",
        help="a run as a JUnit XML and/or CTRF JSON report",
        description="Write a recorded run as JUnit XML (as pytest's --junitxml writes it) and/or "
        "CTRF JSON (ctrf.io), with the sample, verdicts and regressions in the formats' "
        "properties and extra fields.",
    )
    export.add_argument("run", nargs="?", help="run id or prefix (default: the latest run)")
    export.add_argument("--junit", metavar="FILE", help="write JUnit XML to FILE")
    export.add_argument("--ctrf", metavar="FILE", help="write CTRF JSON to FILE")

    ingest = verbs.add_parser(
        "ingest",
        help="record another runner's JUnit XML or CTRF JSON report as a run",
        description="Record the results in a JUnit XML or CTRF JSON file (told apart by "
        "content) as a run, with the same log, summary, index, regressions and gate as a pytest "
        "run; creates .llmharness/ in the current folder when no store is found.",
    )
    ingest.add_argument("file", metavar="FILE", help="the report file")
    ingest.add_argument("--agent-id", metavar="ID", help="who ran the tests (tags the run)")
    ingest.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    return parser


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=True) + "\n")


def _print_summary(summary: RunSummary, records: Records) -> None:
    data = summary.data
    print(reporting.headline({**data, "status": summary.status, "run_id": summary.run_id}))
    rate = "n/a" if summary.pass_rate is None else f"{summary.pass_rate * 100:.1f}%"
    slowest = ", ".join(
        f"{item['nodeid']} {item['duration_s']:.2f}s" for item in data.get("slowest", [])[:3]
    )
    print(
        f"pass rate {rate}; test time {data.get('test_time_s', 0):.1f}s; slowest: {slowest or '-'}"
    )
    by_dir = sorted(
        data.get("by_dir", {}).items(), key=lambda kv: -float(kv[1].get("duration_s", 0))
    )
    if by_dir:
        print(
            "time by dir: "
            + ", ".join(f"{name} {entry.get('duration_s', 0):.1f}s" for name, entry in by_dir[:4])
        )
    clusters = data.get("clusters", [])
    if clusters:
        top = "; ".join(f"{c['count']}x {c['cause'][:70]}" for c in clusters[:3])
        print(f"failures by cause: {top}")
    second = reporting.regressions_line(data.get("regressions"), reporting.why_no_base(data))
    if second:
        print(second)
    hint = reporting.next_line(data.get("next"))
    if hint:
        print(hint)
    covered = team.of_run(records.store, data)
    if covered is not None and covered["share"] is not None:
        print(team.coverage_lines(covered)[0])
    notes = [str(note) for note in data.get("notes", ())]
    notes += [records.later_note(run_id) for run_id in records.unfinished_after(summary.run_id)]
    for note in notes[:3]:
        print(f"note: {note}")
    if summary.failed:
        print(f"details: grep '^ERROR ' {records.root}/runs/{summary.run_id}/log.txt")


def _print_regressions(diff: Regressions) -> None:
    base = diff.base
    if base is not None:
        ref = f", {base.get('ref')}" if base.get("ref") else ""
        here = "; this clean run is the base" if base.get("at_base") else ""
        against = f"base {str(base.get('commit'))[:12]}{ref}{here}"
    else:
        against = diff.against or "each test's last known outcome"
    counts = [
        reporting.counted(len(diff.new_failures), "new failure", "new failures"),
        reporting.counted(len(diff.new_tests_failing), "new test failing", "new tests failing"),
    ]
    if base is not None:
        counts.append(f"{len(diff.unknown_at_base):,} unknown at the base")
    counts += [
        f"{len(diff.newly_skipped):,} now skipped",
        f"{len(diff.fixed):,} fixed",
        f"{len(diff.still_failing):,} still failing",
        f"{diff.not_run:,} not run",
    ]
    print(f"regressions of run {diff.run_id} vs {against}: {', '.join(counts)}")
    shown = 0
    listed = (
        ("NEW FAILURE", diff.new_failures),
        ("NEW TEST FAILING", diff.new_tests_failing),
        ("UNKNOWN AT BASE", diff.unknown_at_base),
        ("NOW SKIPPED", diff.newly_skipped),
    )
    for label, items in listed:
        for item in items:
            if shown == 10:
                break
            reason = f" {reporting.sanitize(item.reason, 160)}" if item.reason else ""
            if item.known_by in (None, "last-known"):
                was = f"was {item.before}" if item.before else "new test"
            else:
                was = f"{item.before or 'absent'} at the base ({item.known_by})"
            if label == "UNKNOWN AT BASE":
                was = "not known at the base"
            print(f"{label} {reporting.quote_nodeid(item.nodeid)} {was}:{reason}")
            shown += 1
    hidden = sum(len(items) for _, items in listed) - shown
    if hidden > 0:
        print(f"... {hidden} more: llmharness regressions --json")
    for line in integrity.lines(diff.data):
        print(line)
    for note in diff.notes[:3]:
        print(f"note: {note}")


def _test_history(records: Records, nodeid: str, most: int, as_json: bool) -> int:
    """`llmharness history NODEID`: the test's result in each of the latest runs that ran it."""
    runs = records.test_history(nodeid, most)
    counts = dict(collections.Counter(run.outcome for run in runs))
    if as_json:
        _dump({"nodeid": nodeid, "runs": [run.__dict__ for run in runs], "counts": counts})
        return EXIT_OK
    last = {}  # "passed" / "failed": the latest run where it did so
    for run in runs:
        agent = f" agent {run.agent_id}" if run.agent_id is not None else ""
        at = f" at {run.commit[:10]}{'+changes' if run.dirty else ''}" if run.commit else ""
        rerun = f" after {reporting.counted(run.reruns, 'rerun', 'reruns')}" if run.reruns else ""
        failing = run.outcome in reporting.FAILING
        why = f" {run.reason}" if run.reason and failing else ""
        print(f"{run.run_id}{agent}{at}: {run.outcome}{rerun} {run.duration:.2f}s{why}")
        if failing or run.outcome == "passed":
            last["failed" if failing else "passed"] = run.run_id
    seen = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    tail = "".join(
        f"; last {word} in run {last[word]}" for word in ("passed", "failed") if word in last
    )
    runs_word = reporting.counted(len(runs), "run", "runs")
    print(f"{reporting.quote_nodeid(nodeid)}: {runs_word}: {seen}{tail}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.verb == "prompt":  # reads the settings; a fresh clone has no store yet
        from llmharness import prompt

        return prompt.command(args.dir)
    if args.verb == "sync":  # finds its store itself: a fresh clone has none yet
        from llmharness.sync import command

        return command(args.dir, args.remote, args.json)
    if args.verb == "mcp":  # serves from the project folder, which may have no store yet
        try:
            from llmharness import mcp_server
        except ModuleNotFoundError as exc:  # the SDK is an extra; nothing else imports it
            if not (exc.name or "").startswith("mcp"):
                raise
            sys.stderr.write("llmharness: mcp needs the MCP SDK: pip install 'llmharness[mcp]'\n")
            return EXIT_USAGE
        return mcp_server.command(args.dir)
    if args.verb == "sample":  # needs no store: any runner's ids in, the sample out
        return team.sample_command(
            args.dir, args.agent_id, args.fast_fraction, args.agents, args.seed
        )
    if args.verb == "ingest":  # makes its store when there is none, as a pytest run would
        from llmharness import ingest

        return ingest.command(args.dir, args.file, args.agent_id, args.json)
    records = Records(args.dir)
    try:
        return _verb(args, records)
    finally:
        for warning in records.warnings:
            sys.stderr.write(f"llmharness: warning: {warning}\n")


def _verb(args: argparse.Namespace, records: Records) -> int:
    if args.verb == "coverage":
        return team.coverage_command(records, args.agents, args.json)
    if args.verb == "summary":
        summary = records.summary(args.run)
        if args.json:
            _dump(summary.to_json())
        else:
            _print_summary(summary, records)
        return EXIT_OK
    if args.verb == "regressions":
        diff = records.regressions(args.run, args.against)
        if args.json:
            _dump(diff.to_json())
        else:
            _print_regressions(diff)
        return EXIT_REGRESSED if args.check and diff.broken else EXIT_OK
    if args.verb == "baseline":
        if args.show:
            baseline = records.baseline()
            if baseline is None:
                raise NoRecordError("no baseline pinned: run `llmharness baseline [RUN]`")
            info = {"run_id": baseline["run_id"], "tests": len(baseline["outcomes"])}
            if args.json:
                _dump(info)
            else:
                print(f"baseline: run {info['run_id']} ({info['tests']:,} tests)")
            return EXIT_OK
        run_id, count = records.pin_baseline(args.run, force=args.force)
        if args.json:
            _dump({"run_id": run_id, "tests": count})
        else:
            print(f"baseline pinned: run {run_id} ({count:,} tests); diff with --against baseline")
        return EXIT_OK
    if args.verb == "history" and args.nodeid is not None:
        return _test_history(records, args.nodeid, max(args.n, 1), args.json)
    if args.verb == "history":
        runs = records.history()[-max(args.n, 1) :]
        if args.json:
            _dump([run.__dict__ for run in runs])
            return EXIT_OK
        for run in runs:
            counts = reporting.format_counts(run.counts) if run.counts else "-"
            agent = f" agent {run.agent_id}" if run.agent_id is not None else ""
            mode = f" {run.scope}" if run.scope else ""
            print(f"{run.run_id} {run.status}{agent}{mode}: {counts}")
        return EXIT_OK
    if args.verb == "show":
        run_id, text = records.failure_text(args.nodeid, args.run)
        sys.stdout.write(f"# run {run_id}\n{text}")
        return EXIT_OK
    if args.verb in ("bisect", "flaky"):
        from llmharness import bisect, flaky

        if args.verb == "bisect":
            return bisect.command(records, args.nodeid, args.run, args.budget, args.json)
        return flaky.command(records, args.n, args.json)
    if args.verb == "export":
        from llmharness import export

        try:
            return export.command(records, args.run, args.junit, args.ctrf)
        except export.ExportError as exc:
            sys.stderr.write(f"llmharness: export: {exc}\n")
            return EXIT_USAGE
    raise AssertionError(args.verb)  # argparse only lets known verbs through


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except NoRecordError as exc:
        sys.stderr.write(f"llmharness: {exc}\n")
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
