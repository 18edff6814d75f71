"""The store on disk: run folders, the last-known-outcome index, pointers, retention.

Every file is replaced atomically (temp file in the same folder, then `os.replace`), and every
read-modify-write of shared state holds `store.lock` (filelock), never while tests run. A file
that cannot be read or has the wrong shape is moved aside as `<name>.corrupt-<stamp>` and
reported through `on_warning`; readers then carry on with the default.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from llmharness import index
from llmharness.index import INDEX_FILE, Entry, IndexBroken, Known

__all__ = [
    "INDEX_FILE",
    "SCHEMA",
    "IndexBroken",
    "Known",
    "Store",
    "StoreError",
    "find_store",
    "new_run_id",
]

SCHEMA = 1
BASELINE_FILE = "baseline.json"
COLLECTION_FILE = "collection.json"
RESULTS_FILE = "results.jsonl"
RESULTS_GZ = "results.jsonl.gz"
LOCK_TIMEOUT_S = 60.0
_RUN_ID = re.compile(r"^\d{8}T\d{6}\.\d{3}-[0-9a-f]{6}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class StoreError(Exception):
    """The store cannot serve a request; the message says which file or run and why."""


def new_run_id(now: float | None = None) -> str:
    """A run id that sorts by start time and is unique among concurrent runs."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}.{int(now * 1000) % 1000:03d}-{secrets.token_hex(3)}"


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID.match(text))


def safe_name(text: str) -> str:
    """A file name for `text` (e.g. an agent id) that cannot leave its folder."""
    if _SAFE_NAME.match(text):
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:32].strip("._") or "x"
    return f"{slug}-{digest}"


def find_store(start: Path, name: str = ".llmharness") -> Path | None:
    """The nearest store folder at or above `start`, as git finds a repository."""
    here = start.resolve()
    for folder in (here, *here.parents):
        candidate = folder / name
        if (candidate / "runs").is_dir():
            return candidate
    return None


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write_chunks(path, (data,))


def _atomic_write_chunks(path: Path, chunks: Iterable[bytes]) -> None:
    """Write `chunks` to a temp file, fsync it and move it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); store files get the usual mode instead.
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON; readers see the old file or the new, never half."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    _atomic_write_bytes(path, text.encode("utf-8", "surrogatepass"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class Store:
    """One store folder and the operations on it."""

    def __init__(
        self,
        root: Path,
        on_warning: Callable[[str], None] | None = None,
        readonly: bool = False,
    ) -> None:
        self.root = root
        self.readonly = readonly
        self.runs_dir = root / "runs"
        self._warn = on_warning or (lambda message: None)
        self._lock: Any = None  # a filelock.FileLock, made on first use

    # -- layout ------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the store folders if missing (a `.gitignore` keeps them out of commits)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        ignore = self.root / ".gitignore"
        if not ignore.exists():
            with contextlib.suppress(OSError):
                ignore.write_text("# written by llmharness\n*\n", encoding="utf-8")

    def run_dir(self, run_id: str) -> Path:
        if not is_run_id(run_id):
            raise StoreError(f"not a run id: {run_id!r}")
        return self.runs_dir / run_id

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock; raise StoreError if another process holds it too long."""
        # Imported here, never while tests run: its logger alone would cost every test, as
        # pytest's log capture visits every logger in each phase.
        import filelock

        if self._lock is None:
            self._lock = filelock.FileLock(str(self.root / "store.lock"), timeout=LOCK_TIMEOUT_S)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise StoreError(
                f"{self.root / 'store.lock'}: still locked after {LOCK_TIMEOUT_S:.0f}s"
            ) from None
        except OSError as exc:
            raise StoreError(
                f"{self.root / 'store.lock'}: cannot lock ({exc.strerror or exc}); not updated"
            ) from None
        try:
            yield
        finally:
            self._lock.release()

    # -- robust JSON -------------------------------------------------------------------
    def set_aside(self, path: Path, why: str) -> None:
        """Move a bad file out of the way (never delete it) and say so in one line."""
        if self.readonly:
            self._warn(f"{path}: {why}; ignoring it")
            return
        stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        target = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            os.replace(path, target)
            self._warn(f"{path}: {why}; moved aside to {target.name}")
        except OSError as exc:
            self._warn(f"{path}: {why}; could not move it aside ({exc})")

    def read_json(self, path: Path, check: Callable[[Any], bool]) -> Any | None:
        """Parse `path`; None if missing. A corrupt or misshapen file is set aside."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._warn(f"{path}: cannot read ({exc.strerror or exc}); ignoring it")
            return None
        try:
            data = json.loads(raw.decode("utf-8", "surrogatepass"))
        except (ValueError, UnicodeDecodeError) as exc:
            what = "empty file" if not raw.strip() else f"not valid JSON ({exc})"
            self.set_aside(path, what)
            return None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or not check(data):
            schema = data.get("schema") if isinstance(data, dict) else None
            if isinstance(schema, int) and schema > SCHEMA:
                why = f"written by a newer llmharness (schema {schema}, this one reads {SCHEMA})"
            else:
                why = "not in the expected format"
            self.set_aside(path, why)
            return None
        return data

    def write_json(self, path: Path, data: Any) -> bool:
        """Atomically write; on failure (disk full, read-only) warn and keep the old file."""
        try:
            atomic_write_json(path, data)
        except OSError as exc:
            self._warn(f"{path}: could not write ({exc.strerror or exc}); previous data kept")
            return False
        return True

    # -- the last-known-outcome index --------------------------------------------------
    def index_entries(self) -> Iterator[Entry]:
        """Each test's last known outcome, streamed (see `llmharness.index`). Raises IndexBroken
        when the file turns out broken partway: the entries given so far are then not to be
        trusted, and `load_index` (which reports the file and sets it aside) is the way on."""
        path = self.root / INDEX_FILE
        dropped: list[str] = []
        try:
            yield from index.read_entries(path, dropped)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise IndexBroken(f"{path}: {exc.strerror or exc}") from None
        except ValueError as exc:  # not text at all
            raise IndexBroken(f"{path}: {exc}") from None
        if dropped:
            self.set_aside(path, f"{len(dropped)} malformed entries")

    def load_index(self) -> dict[str, Known]:
        """The whole index in memory, whatever its layout; a broken file is set aside."""
        with contextlib.suppress(IndexBroken):
            return {entry.nodeid: entry.known for entry in self.index_entries()}
        path = self.root / INDEX_FILE
        data = self.read_json(path, lambda d: isinstance(d.get("tests"), dict))
        dropped: list[str] = []
        entries = index.read_whole(data, dropped) or {}
        if dropped:
            self.set_aside(path, f"{len(dropped)} malformed entries")
        return entries

    def save_index(self, entries: Mapping[str, Known] | Iterable[Entry]) -> bool:
        """Write the index atomically from its entries, streamed as they come."""
        if isinstance(entries, Mapping):
            entries = (Entry(nodeid, known) for nodeid, known in entries.items())
        path = self.root / INDEX_FILE
        try:
            _atomic_write_chunks(path, index.encode(entries))
        except OSError as exc:
            self._warn(f"{path}: could not write ({exc.strerror or exc}); previous data kept")
            return False
        return True

    # -- the pinned baseline -----------------------------------------------------------
    def load_baseline(self) -> dict[str, Any] | None:
        return self.read_json(
            self.root / BASELINE_FILE,
            lambda d: isinstance(d.get("outcomes"), dict) and isinstance(d.get("run_id"), str),
        )

    def save_baseline(self, run_id: str, outcomes: dict[str, str]) -> bool:
        data = {"schema": SCHEMA, "run_id": run_id, "pinned_at": time.time(), "outcomes": outcomes}
        return self.write_json(self.root / BASELINE_FILE, data)

    # -- the collection cache ----------------------------------------------------------
    def load_collection(self) -> dict[str, Any]:
        """The collection cache: {"env": key, "files": {rel path: entry}} (see collectcache)."""
        data = self.read_json(
            self.root / COLLECTION_FILE,
            lambda d: isinstance(d.get("files"), dict) and isinstance(d.get("env"), str),
        )
        return {"env": "", "files": {}} if data is None else data

    def save_collection(self, env: str, files: dict[str, Any]) -> bool:
        data = {"schema": SCHEMA, "env": env, "files": files}
        return self.write_json(self.root / COLLECTION_FILE, data)

    # -- runs --------------------------------------------------------------------------
    def list_runs(self) -> list[str]:
        """Run ids present in the store, oldest first."""
        try:
            names = os.listdir(self.runs_dir)
        except OSError:
            return []
        return sorted(name for name in names if is_run_id(name))

    def read_run_file(self, run_id: str, name: str) -> dict[str, Any] | None:
        def ok(d: dict[str, Any]) -> bool:
            counts = d.get("counts", {})
            return (
                isinstance(d.get("run_id"), str)
                and isinstance(counts, dict)
                and all(type(v) is int for v in counts.values())
                and isinstance(d.get("sample", {}), dict)
            )

        return self.read_json(self.run_dir(run_id) / name, ok)

    def run_status(self, run_id: str) -> tuple[str, dict[str, Any] | None]:
        """(status, summary): `complete`, `interrupted`, ..., or `running`/`incomplete`."""
        summary = self.read_run_file(run_id, "summary.json")
        if summary is not None:
            return str(summary.get("status", "complete")), summary
        meta = self.read_run_file(run_id, "meta.json")
        if meta is None:
            return "incomplete", None
        pid = meta.get("pid")
        same_host = meta.get("host") == os.uname().nodename
        if isinstance(pid, int) and same_host and pid_alive(pid):
            return "running", meta
        return "incomplete", meta

    def latest_run(self, agent_id: str | None = None, finished: bool = True) -> str | None:
        """The newest run (of one agent when given) that wrote its summary."""
        if agent_id is not None:
            pointer = self.root / "agents" / safe_name(agent_id)
            run_id = self._read_pointer(pointer)
            if run_id:
                return run_id
        pointer_id = self._read_pointer(self.root / "last")
        if pointer_id and (self.runs_dir / pointer_id / "summary.json").exists():
            return pointer_id
        for run_id in reversed(self.list_runs()):
            if not finished or (self.runs_dir / run_id / "summary.json").exists():
                return run_id
        return None

    def _read_pointer(self, path: Path) -> str | None:
        try:
            target = os.readlink(path)
        except OSError:
            text_path = path.with_name(path.name + ".txt")
            try:
                raw = text_path.read_bytes()
            except OSError:
                return None
            try:
                target = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                target = ""
            if not is_run_id(Path(target).name):
                self.set_aside(text_path, "not a run pointer")
                return None
        name = Path(target).name
        return name if is_run_id(name) and (self.runs_dir / name).is_dir() else None

    def point_to(self, run_id: str, agent_id: str | None) -> None:
        """Make `last` (and `agents/<agent>`) point at a run, atomically."""
        self._point(self.root / "last", Path("runs") / run_id)
        if agent_id is not None:
            agents = self.root / "agents"
            agents.mkdir(exist_ok=True)
            self._point(agents / safe_name(agent_id), Path("..") / "runs" / run_id)

    def _point(self, link: Path, target: Path) -> None:
        tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.symlink(target, tmp)
            os.replace(tmp, link)
        except OSError:
            # No symlinks here (some filesystems, Windows without privilege): a text pointer.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            try:
                _atomic_write_bytes(link.with_name(link.name + ".txt"), target.name.encode())
            except OSError as exc:
                self._warn(f"{link}: could not update the pointer ({exc.strerror or exc})")

    def pointed_to(self) -> set[str]:
        """The runs `last` and each agent's pointer name: the ones agents read first."""
        pointers = {self.root / "last"}
        agents = self.root / "agents"
        with contextlib.suppress(OSError):
            # A pointer is a symlink, or a .txt file where there are no symlinks.
            pointers |= {agents / name.removesuffix(".txt") for name in os.listdir(agents)}
        found = {self._read_pointer(path) for path in pointers}
        return {run_id for run_id in found if run_id is not None}

    def compress_results(self, keep: set[str]) -> None:
        """Gzip the results of finished runs nobody points to (results.jsonl -> .gz): about a
        tenth of the room. The runs in `keep` and the pointed-to ones stay plain, for grep."""
        keep = keep | self.pointed_to()
        for run_id in self.list_runs():
            folder = self.runs_dir / run_id
            plain = folder / RESULTS_FILE
            if run_id in keep or not (folder / "summary.json").exists() or not plain.exists():
                continue
            try:
                _atomic_write_chunks(folder / RESULTS_GZ, _gzipped(plain))
                plain.unlink()
            except FileNotFoundError:
                continue  # another process compressed it first
            except OSError as exc:
                self._warn(f"{plain}: could not compress ({exc.strerror or exc}); kept as is")
                return

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        """Delete the oldest finished runs beyond `keep`; never a protected or running one."""
        runs = self.list_runs()
        removed = []
        for run_id in runs[: max(len(runs) - keep, 0)]:
            if run_id in protect or self.run_status(run_id)[0] == "running":
                continue
            shutil.rmtree(self.runs_dir / run_id, ignore_errors=True)
            removed.append(run_id)
        return removed


def gzip_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """`chunks` gzip-compressed as they come, never held whole."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip format
    for chunk in chunks:
        yield compressor.compress(chunk)
    yield compressor.flush()


def _gzipped(path: Path) -> Iterator[bytes]:
    """The file's content, gzip-compressed, a chunk at a time."""
    with open(path, "rb") as handle:
        yield from gzip_chunks(iter(lambda: handle.read(1 << 20), b""))


def open_results(folder: Path) -> IO[str] | None:
    """A run's results, plain or compressed, as text; None when it has none."""
    for _ in range(2):  # a finished run's file may be compressed between the two looks
        with contextlib.suppress(FileNotFoundError):
            return open(folder / RESULTS_FILE, encoding="utf-8", errors="surrogatepass")
        with contextlib.suppress(FileNotFoundError):
            return gzip.open(folder / RESULTS_GZ, "rt", encoding="utf-8", errors="surrogatepass")
    return None


UNFINISHED = frozenset({"incomplete", "interrupted", "internal-error"})


def unfinished_before(store: Store, run_id: str) -> list[tuple[str, str]]:
    """(run id, status) of the runs since the last finished one before `run_id` that did not
    finish (killed, crashed, interrupted); runs still going are passed over."""
    found = []
    for other in reversed([r for r in store.list_runs() if r < run_id]):
        status = store.run_status(other)[0]
        if status in UNFINISHED:
            found.append((other, status))
        elif status != "running":
            break
    return found[::-1]


def unfinished_note(store: Store, run_id: str, status: str) -> str:
    """One line on a run that did not finish: what it was doing when it ended, if it says."""
    from llmharness.crashes import describe

    what = describe(store.runs_dir / run_id) if status == "incomplete" else None
    if what is None:
        return f"run {run_id} did not finish ({status})"
    return f"run {run_id} {what}"
