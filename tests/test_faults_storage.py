"""Storage faults (issue "Reliability"): a corrupt, read-only or full store, and one agent twice.

Each scenario runs real pytest sessions with the plugin (in-process where that is enough, else
as subprocesses) and the installed CLI (`python -m llmharness`). The promises checked are the
design's robustness rules: a bad shared file is reported in one line naming it (in the run's
`log.txt` as a `WARNING` line, in the compact output, on the CLI's stderr), moved aside as
`<name>.corrupt-<stamp>` with its bytes kept, the tests' exit code stands, earlier good data is
kept, and the next run heals (a valid file again, no warning).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

N_TESTS = 12
NODEIDS = [f"test_a.py::test_x[{i}]" for i in range(N_TESTS)]
HEADLINE = "llmharness: FAILED 1 failed, 11 passed"  # test_x[3] fails: pytest's exit code 1
GARBAGE = b"\x00\xff\xfe garbage \x1b[31m\r\nnot json\x80\x81" + bytes(range(0x90, 0xA0))
# The bad contents every shared file is tried with; "wrong-shape" and "future-schema" are
# valid JSON whose text depends on the file, so they are filled in per file.
KINDS = ["truncated", "empty", "garbage", "list", "wrong-shape", "future-schema"]
# Subprocess runs load only llmharness (through its entry point): about 1 s instead of 2.5 s.
FAST_ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
PLUGIN_ARGS = ("-p", "llmharness", "-p", "no:cacheprovider")


# -- helpers -------------------------------------------------------------------------------
def _write_suite(root: Path, tests: int = N_TESTS, body: str = "assert i != 3") -> None:
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (root / "test_a.py").write_text(
        f"import pytest\n\n@pytest.mark.parametrize('i', range({tests}))\n"
        f"def test_x(i):\n    {body}\n",
        encoding="utf-8",
    )


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """One in-process pytest run, compact output on (agent 1)."""
    return pytester.runpytest("-p", "no:cacheprovider", "--agent-id", "1", *args)


def _bad(kind: str, good: bytes, wrong_shape: str, future: str) -> bytes:
    return {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "garbage": GARBAGE,
        "list": b"[1, 2]",
        "wrong-shape": wrong_shape.encode(),
        "future-schema": future.encode(),
    }[kind]


def _runs(store: Path) -> list[str]:
    return sorted(path.name for path in (store / "runs").iterdir())


def _compact_warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if "llmharness warning" in line]


def _log_warnings(store: Path, run_id: str) -> list[str]:
    log = (store / "runs" / run_id / "log.txt").read_text(encoding="utf-8")
    return [line for line in log.splitlines() if line.startswith("WARNING")]


def _set_aside(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}.corrupt-*"))


def _index(store: Path) -> dict[str, list[Any]]:
    """The index's tests, after checking it is the valid shape."""
    data = json.loads((store / "index.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data["schema"] == 1
    assert isinstance(data["tests"], dict)
    for entry in data["tests"].values():
        assert isinstance(entry, list) and len(entry) == 5
    return data["tests"]


def _no_temp_files(store: Path) -> list[Path]:
    return [path for path in store.rglob("*") if path.name.endswith(".tmp")]


def _check_set_aside_once(
    result: pytest.RunResult, store: Path, folder: Path, name: str, bad: bytes
) -> None:
    """The run kept pytest's exit code and said, once, that `name` was bad and moved aside."""
    assert result.ret == 1, result.outlines
    assert result.outlines[0].startswith(HEADLINE), result.outlines
    assert not [line for line in result.outlines if "internal error" in line], result.outlines
    warned = _compact_warnings(result.outlines)
    assert len(warned) == 1, result.outlines
    assert name in warned[0], warned
    moved = _set_aside(folder, name)
    assert len(moved) == 1, moved
    assert moved[0].read_bytes() == bad
    run_id = _runs(store)[-1]
    logged = _log_warnings(store, run_id)
    assert len(logged) == 1 and name in logged[0], logged
    summary = json.loads((store / "runs" / run_id / "summary.json").read_text(encoding="utf-8"))
    assert len(summary["store_warnings"]) == 1 and name in summary["store_warnings"][0]


def _check_quiet(result: pytest.RunResult, store: Path) -> None:
    """A run on a healthy store: the tests' exit code, no warning anywhere."""
    assert result.ret == 1, result.outlines
    assert result.outlines[0].startswith(HEADLINE), result.outlines
    assert _compact_warnings(result.outlines) == [], result.outlines
    assert _log_warnings(store, _runs(store)[-1]) == []


def _pytest_proc(
    root: Path,
    *args: str,
    env: dict[str, str] | None = None,
    launcher: list[str] | None = None,
) -> subprocess.Popen[str]:
    """A pytest subprocess in `root` with only llmharness loaded."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LLMHARNESS_")}
    full_env.update(FAST_ENV)
    full_env.update(env or {})
    command = [*(launcher or [sys.executable]), "-m", "pytest", *PLUGIN_ARGS, *args]
    return subprocess.Popen(
        command,
        cwd=root,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, list[str], str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.splitlines(), err


# -- a corrupt index.json ----------------------------------------------------------------
INDEX_KINDS = [*KINDS, "bad-entries", "broken-line", "bad-line-entry"]


def _break_a_line(good: bytes, line: bytes) -> bytes:
    """index.json with its middle entry line replaced: it still starts and ends as written,
    so the break is only found partway through a streamed pass."""
    lines = good.splitlines(keepends=True)
    assert len(lines) > 4, "expected an entry a line"
    lines[len(lines) // 2] = line
    return b"".join(lines)


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_corrupt_index_is_set_aside_reported_and_healed(
    pytester: pytest.Pytester, kind: str
) -> None:
    _write_suite(pytester.path)
    store = pytester.path / ".llmharness"
    assert _run(pytester).ret == 1
    first_run = _runs(store)[0]
    first_summary = (store / "runs" / first_run / "summary.json").read_bytes()
    if kind == "bad-entries":
        # Well-formed JSON whose every entry is unusable: silently dropping them would turn
        # each known test into a "new" one, so a new failure would escape `--check`.
        bad = json.dumps({"schema": 1, "tests": {nodeid: "passed" for nodeid in NODEIDS}}).encode()
    elif kind == "broken-line":
        bad = _break_a_line((store / "index.json").read_bytes(), b"not json at all,\n")
    elif kind == "bad-line-entry":
        # Valid JSON, one entry of the wrong shape: it is dropped, the others are kept.
        bad = _break_a_line((store / "index.json").read_bytes(), b'"test_a.py::gone":"passed",\n')
    else:
        bad = _bad(
            kind,
            (store / "index.json").read_bytes(),
            '{"schema": 1, "tests": [1, 2]}',
            '{"schema": 999, "tests": {}}',
        )
    (store / "index.json").write_bytes(bad)

    second = _run(pytester)
    _check_set_aside_once(second, store, store, "index.json", bad)
    if kind == "future-schema":
        assert "999" in _compact_warnings(second.outlines)[0]
    tests = _index(store)
    assert sorted(tests) == sorted(NODEIDS)
    assert {entry[1] for entry in tests.values()} == {_runs(store)[-1]}
    # The earlier run's record is untouched.
    assert (store / "runs" / first_run / "summary.json").read_bytes() == first_summary

    third = _run(pytester)
    _check_quiet(third, store)
    assert len(_set_aside(store, "index.json")) == 1
    assert sorted(_index(store)) == sorted(NODEIDS)
    assert "still failing" in third.outlines[1]  # the healed index is used for the diff


def test_a_second_corruption_in_the_same_second_keeps_both_copies(
    pytester: pytest.Pytester,
) -> None:
    """`.corrupt-<stamp>` has one-second resolution: an earlier copy must not be replaced."""
    _write_suite(pytester.path)
    store = pytester.path / ".llmharness"
    assert _run(pytester).ret == 1
    # An earlier incident left a set-aside copy for each second the next run may fall in.
    now = time.time()
    earlier = {}
    for offset in range(-1, 30):
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now + offset))
        path = store / f"index.json.corrupt-{stamp}"
        path.write_bytes(f"earlier incident {stamp}".encode())
        earlier[path] = path.read_bytes()
    (store / "index.json").write_bytes(b"{ torn")

    result = _run(pytester)
    assert result.ret == 1
    assert len(_compact_warnings(result.outlines)) == 1, result.outlines
    for path, content in earlier.items():
        assert path.read_bytes() == content, f"{path.name} was overwritten"
    copies = [path.read_bytes() for path in _set_aside(store, "index.json")]
    assert copies.count(b"{ torn") == 1, "the newly corrupt index.json was not kept"
    assert sorted(_index(store)) == sorted(NODEIDS)


# -- a corrupt baseline.json -------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_baseline_is_set_aside_and_keeps_the_index(
    pytester: pytest.Pytester, kind: str
) -> None:
    _write_suite(pytester.path)
    store = pytester.path / ".llmharness"
    assert _run(pytester).ret == 1
    assert run_cli(pytester, "baseline").ret == 0
    pinned = _runs(store)[0]
    bad = _bad(
        kind,
        (store / "baseline.json").read_bytes(),
        '{"schema": 1, "run_id": "x", "outcomes": [1, 2]}',
        f'{{"schema": 999, "run_id": "{pinned}", "outcomes": {{}}}}',
    )
    (store / "baseline.json").write_bytes(bad)
    index_before = _index(store)

    second = _run(pytester)
    _check_set_aside_once(second, store, store, "baseline.json", bad)
    # The index was not touched by the bad baseline: same tests, same outcomes.
    after = _index(store)
    assert sorted(after) == sorted(index_before)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in index_before.items()}
    assert pinned in _runs(store)

    _check_quiet(_run(pytester), store)
    assert len(_set_aside(store, "baseline.json")) == 1
    # Pinning again heals.
    assert run_cli(pytester, "baseline").ret == 0
    assert json.loads((store / "baseline.json").read_text())["schema"] == 1


def test_corrupt_baseline_is_named_on_the_cli_stderr(pytester: pytest.Pytester) -> None:
    """The CLI, not a run, meets the bad baseline: it says which file it set aside."""
    _write_suite(pytester.path)
    store = pytester.path / ".llmharness"
    assert _run(pytester).ret == 1
    assert run_cli(pytester, "baseline").ret == 0
    (store / "baseline.json").write_bytes(GARBAGE)
    diff = run_cli(pytester, "regressions", "--against", "baseline", "--json")
    assert diff.ret == 2  # nothing pinned any more: a usage-level error, in one line each
    assert diff.stdout.str() == ""
    assert any("baseline.json" in line for line in diff.errlines), diff.errlines
    assert all(len(line) < 400 for line in diff.errlines)
    moved = _set_aside(store, "baseline.json")
    assert len(moved) == 1 and moved[0].read_bytes() == GARBAGE
    assert sorted(_index(store)) == sorted(NODEIDS)


# -- a run's corrupt summary.json and meta.json (read by the CLI) -----------------------
@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_run_files_are_set_aside_by_the_cli(pytester: pytest.Pytester, kind: str) -> None:
    _write_suite(pytester.path)
    store = pytester.path / ".llmharness"
    assert _run(pytester).ret == 1
    assert _run(pytester).ret == 1
    finished, killed = _runs(store)
    # `finished` loses its summary to corruption; `killed` looks like a run killed halfway
    # (no summary) whose meta.json is corrupt too.
    summary_path = store / "runs" / finished / "summary.json"
    bad_summary = _bad(
        kind,
        summary_path.read_bytes(),
        json.dumps({"schema": 1, "run_id": finished, "status": "complete", "counts": [1, 2]}),
        json.dumps({"schema": 999, "run_id": finished, "counts": {}}),
    )
    summary_path.write_bytes(bad_summary)
    (store / "runs" / killed / "summary.json").unlink()
    meta_path = store / "runs" / killed / "meta.json"
    bad_meta = _bad(
        kind,
        meta_path.read_bytes(),
        json.dumps({"schema": 1, "run_id": [1, 2]}),
        json.dumps({"schema": 999, "run_id": killed}),
    )
    meta_path.write_bytes(bad_meta)

    shown = run_cli(pytester, "summary", "--json")
    assert shown.ret == 0, shown.stderr.str()
    data = json.loads(shown.stdout.str())
    # Its summary is gone: no longer "complete" (in-process runs left a live pid: "running").
    assert data["run_id"] == finished and data["status"] in {"incomplete", "running"}
    assert data["counts"]["failed"] == 1 and data["counts"]["passed"] == N_TESTS - 1
    moved = _set_aside(store / "runs" / finished, "summary.json")
    assert len(moved) == 1 and moved[0].read_bytes() == bad_summary
    warned = [line for line in shown.errlines if "summary.json" in line]
    assert len(warned) == 1, shown.errlines

    history = run_cli(pytester, "history", "--json")
    assert history.ret == 0, history.stderr.str()
    statuses = {run["run_id"]: run["status"] for run in json.loads(history.stdout.str())}
    assert set(statuses) == {finished, killed}
    assert set(statuses.values()) <= {"incomplete", "running"}
    moved = _set_aside(store / "runs" / killed, "meta.json")
    assert len(moved) == 1 and moved[0].read_bytes() == bad_meta
    warned = [line for line in history.errlines if "meta.json" in line]
    assert len(warned) == 1, history.errlines

    healed = _run(pytester)
    _check_quiet(healed, store)
    again = run_cli(pytester, "summary", "--json")
    assert again.ret == 0 and again.errlines == []
    assert json.loads(again.stdout.str())["status"] == "complete"


# -- the `last` pointer as a text file (no symlinks) -------------------------------------
@pytest.fixture
def no_symlinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A filesystem without symlinks: the store falls back to `last.txt` pointer files."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "symlinks not supported here")

    monkeypatch.setattr(os, "symlink", refuse)
    yield


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_corrupt_last_pointer_file(pytester: pytest.Pytester, no_symlinks: None, kind: str) -> None:
    _write_suite(pytester.path)
    store = pytester.path / ".llmharness"
    assert _run(pytester).ret == 1
    (run_id,) = _runs(store)
    pointer = store / "last.txt"
    assert not (store / "last").exists() and pointer.read_text().strip() == run_id
    bad = {"empty": b"", "garbage": GARBAGE, "truncated": run_id[:11].encode()}[kind]
    pointer.write_bytes(bad)

    shown = run_cli(pytester, "summary", "--json")
    assert shown.ret == 0, shown.stderr.str()
    assert json.loads(shown.stdout.str())["run_id"] == run_id  # the latest finished run
    assert any("last.txt" in line for line in shown.errlines), shown.errlines
    moved = _set_aside(store, "last.txt")
    assert len(moved) == 1 and moved[0].read_bytes() == bad

    _check_quiet(_run(pytester), store)
    latest = _runs(store)[-1]
    assert pointer.read_text().strip() == latest
    again = run_cli(pytester, "summary", "--json")
    assert again.ret == 0 and again.errlines == []
    assert json.loads(again.stdout.str())["run_id"] == latest


# -- a read-only store ---------------------------------------------------------------------
def _unprivileged(root: Path) -> list[str]:
    """How to start a Python for which `root`'s store is read-only once chmod-ed.

    The current user when not root. Root ignores permissions: then an unprivileged user
    through setpriv(1), which keeps the capabilities needed to start this interpreter.
    """
    if os.geteuid() != 0:
        return [sys.executable]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root, which ignores permissions, and setpriv(1) is missing")
    launcher = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    probe = subprocess.run(
        [*launcher, "-c", "import os, pytest, llmharness.plugin; print(os.geteuid())"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "65534":
        pytest.skip(
            "running as root, which ignores permissions, and Python cannot run as an "
            f"unprivileged user here: {probe.stderr.strip().splitlines()[-1:]}"
        )
    return launcher


def _chmod_tree(top: Path, dirs: int, files: int) -> None:
    for path in [top, *top.rglob("*")]:
        if not path.is_symlink():
            path.chmod(dirs if path.is_dir() else files)


def test_read_only_store_still_runs_the_tests() -> None:
    # Not pytester's folder (private to root when running as root): the unprivileged user
    # must reach the project.
    root = Path(tempfile.mkdtemp(prefix="llmharness-readonly-"))
    store = root / ".llmharness"
    try:
        root.chmod(0o755)
        _write_suite(root)
        code, out, err = _finish(_pytest_proc(root, "--agent-id", "1"))
        assert code == 1, (out, err)
        (good_run,) = _runs(store)
        index_before = (store / "index.json").read_bytes()
        launcher = _unprivileged(root)
        _chmod_tree(store, 0o555, 0o555)

        code, out, err = _finish(_pytest_proc(root, "--agent-id", "1", launcher=launcher))
        assert code == 1, (out, err)
        assert "Traceback" not in err and "INTERNALERROR" not in err, err
        assert not [line for line in out if "internal error" in line], out
        assert out and out[0].startswith(HEADLINE), out
        assert any(line.startswith("ERROR test_a.py::test_x[3]") for line in out), out
        warned = _compact_warnings(out)
        assert warned, out
        assert all(str(store) in line for line in warned), warned
        assert len(out) <= 8, out
        assert (store / "index.json").read_bytes() == index_before
        assert _runs(store) == [good_run]

        # Reading a read-only store works.
        for verb in ("summary", "regressions", "history"):
            cli = subprocess.run(
                [*launcher, "-m", "llmharness", verb, "--json"],
                cwd=root,
                capture_output=True,
                text=True,
                check=False,
            )
            assert cli.returncode == 0, (verb, cli.stderr)
            assert "Traceback" not in cli.stderr
            data = json.loads(cli.stdout)
            if verb == "summary":
                assert data["run_id"] == good_run and data["status"] == "complete"

        # Writable again: the next run records normally and says nothing.
        _chmod_tree(store, 0o755, 0o644)
        code, out, err = _finish(_pytest_proc(root, "--agent-id", "1"))
        assert code == 1, (out, err)
        assert _compact_warnings(out) == [], out
        assert len(_runs(store)) == 2
        assert sorted(_index(store)) == sorted(NODEIDS)
    finally:
        _chmod_tree(root, 0o755, 0o644)
        shutil.rmtree(root, ignore_errors=True)


# -- a full disk ---------------------------------------------------------------------------
FSIZE_LIMIT = 8192
BIG_SUITE = 200  # its index.json (~20 KB) is far over the limit; one run's files are under


def _fsize_launcher(limit: int) -> list[str]:
    """A Python that runs its arguments with RLIMIT_FSIZE set and SIGXFSZ ignored (so EFBIG)."""
    code = (
        "import os, resource, signal, sys; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
    )
    return [sys.executable, "-c", code]


def test_full_disk_keeps_the_previous_index(pytester: pytest.Pytester) -> None:
    if not hasattr(signal, "SIGXFSZ"):
        pytest.skip("no RLIMIT_FSIZE/SIGXFSZ on this platform")
    root = pytester.path
    store = root / ".llmharness"
    _write_suite(root, tests=BIG_SUITE)
    few = ("-k", "test_x[3] or test_x[4] or test_x[5]")
    assert _run(pytester).ret == 1
    before = (store / "index.json").read_bytes()
    assert len(before) > 2 * FSIZE_LIMIT

    # A run of three tests (a subprocess, for the limit): its own files fit under the limit,
    # rewriting the index does not.
    code, out, err = _finish(
        _pytest_proc(root, "--agent-id", "1", *few, launcher=_fsize_launcher(FSIZE_LIMIT))
    )
    assert code == 1, (out, err)
    assert out[0].startswith("llmharness: FAILED 1 failed, 2 passed"), out
    assert "Traceback" not in err, err
    warned = _compact_warnings(out)
    assert len(warned) == 1 and "index.json" in warned[0], out
    assert (store / "index.json").read_bytes() == before
    assert _no_temp_files(store) == []
    limited = _runs(store)[-1]
    logged = _log_warnings(store, limited)
    assert len(logged) == 1 and "index.json" in logged[0], logged
    assert json.loads((store / "runs" / limited / "summary.json").read_text())["status"] == (
        "complete"
    )

    healed_run = _run(pytester, *few)
    assert healed_run.ret == 1
    assert _compact_warnings(healed_run.outlines) == [], healed_run.outlines
    tests = _index(store)
    assert len(tests) == BIG_SUITE
    healed = _runs(store)[-1]
    assert {tests[f"test_a.py::test_x[{i}]"][1] for i in (3, 4, 5)} == {healed}


@pytest.fixture
def tiny_tmpfs(pytester: pytest.Pytester) -> Iterator[Path]:
    """A 256 KiB tmpfs for the store (mounting needs root: skipped otherwise)."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); RLIMIT_FSIZE covers a full disk")
    point = pytester.path / "store"
    point.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=256k,mode=0755", "llmharness-test", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        umount = subprocess.run(["umount", str(point)], capture_output=True, check=False)
        if umount.returncode != 0:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while handle.write(b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_full_tmpfs_keeps_the_previous_index(pytester: pytest.Pytester, tiny_tmpfs: Path) -> None:
    store = tiny_tmpfs
    _write_suite(pytester.path)
    store_arg = ("--llmharness-store", str(store))
    assert _run(pytester, *store_arg).ret == 1
    before = (store / "index.json").read_bytes()
    (good_run,) = _runs(store)
    filler = _fill(store)

    full = _run(pytester, *store_arg)
    assert full.ret == 1, full.outlines
    assert full.outlines[0].startswith(HEADLINE), full.outlines
    assert not [line for line in full.outlines if "internal error" in line], full.outlines
    assert any(line.startswith("ERROR test_a.py::test_x[3]") for line in full.outlines)
    assert (store / "index.json").read_bytes() == before
    assert _no_temp_files(store) == []
    # `last` is "the latest finished run": never a run whose record could not be written.
    assert (store / "last" / "summary.json").is_file(), os.readlink(store / "last")
    warned = _compact_warnings(full.outlines)
    assert len(warned) == 1, full.outlines

    filler.unlink()
    healed = _run(pytester, *store_arg)
    assert healed.ret == 1
    assert _compact_warnings(healed.outlines) == [], healed.outlines
    assert sorted(_index(store)) == sorted(NODEIDS)
    latest = _runs(store)[-1]
    assert os.readlink(store / "last") == f"runs/{latest}" and latest != good_run


# -- the same agent id twice at once -------------------------------------------------------
def test_same_agent_id_twice_at_once(pytester: pytest.Pytester) -> None:
    root = pytester.path
    store = root / ".llmharness"
    _write_suite(
        root,
        tests=6,
        body="import os, time; time.sleep(0.15); assert not (i == 0 and os.environ.get('FAIL'))",
    )
    nodeids = [f"test_a.py::test_x[{i}]" for i in range(6)]
    failing = _pytest_proc(root, "--agent-id", "3", env={"FAIL": "1"})
    passing = _pytest_proc(root, "--agent-id", "3")
    (code_f, out_f, err_f), (code_p, out_p, err_p) = _finish(failing), _finish(passing)
    assert code_f == 1, (out_f, err_f)
    assert code_p == 0, (out_p, err_p)
    assert out_f[0].startswith("llmharness: FAILED 1 failed, 5 passed"), out_f
    assert out_p[0].startswith("llmharness: PASSED 6 passed"), out_p
    for out, err in ((out_f, err_f), (out_p, err_p)):
        assert _compact_warnings(out) == [], out
        assert "Traceback" not in err

    runs = _runs(store)
    assert len(runs) == 2
    for run_id in runs:
        summary = json.loads((store / "runs" / run_id / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["agent_id"] == "3"
    assert sorted(
        json.loads((store / "runs" / run_id / "summary.json").read_text())["exitstatus"]
        for run_id in runs
    ) == [0, 1]
    pointed = os.path.basename(os.readlink(store / "agents" / "3"))
    assert pointed in runs
    tests = _index(store)
    assert sorted(tests) == nodeids
    # The later of the two wrote both the index and the pointer, under the lock.
    assert {entry[1] for entry in tests.values()} == {pointed}
    assert os.path.basename(os.readlink(store / "last")) == pointed
    assert _no_temp_files(store) == []
