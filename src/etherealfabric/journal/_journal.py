"""The SQLite run journal: runs, node runs, events, and the local index of the artifact cache.

This is the only module that imports ``sqlite_utils`` and the only writer of the journal file
is the scheduler of a run (one process may host several runs; several processes may share one
home, SQLite's WAL and a busy timeout serialise them). Workers never open it.

Tables (created by the migrations below):

- ``runs``: one row per run (workflow, status, times, host, pid, counts, error).
- ``node_runs``: one row per node attempt (status, cache key, timings, error, traceback).
- ``events``: the run's event stream, as recorded.
- ``actions``: cache key → action record (outputs' digests, serializers, sizes) and the key's
  components (what ``explain`` diffs). A local index of the store's action records.
- ``blobs``: small outputs kept inline instead of as files.
- ``file_digests``: remembered content digests of input files, by (path, size, mtime, inode).

Writes go through :meth:`Journal.write`, a ``BEGIN IMMEDIATE`` transaction retried while the
database is locked by another process, so "database is locked" never reaches the user. (Plain
``BEGIN``, as in ``sqlite_utils.Database.atomic``, can fail with SQLITE_BUSY when two readers
upgrade to writers at once; ``IMMEDIATE`` takes the write lock up front and waits instead.)
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import JournalError, RunNotFoundError

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["STATUSES", "Journal", "RunRow", "is_local_filesystem"]

STATUSES = (
    "pending",
    "running",
    "succeeded",
    "cached",
    "failed",
    "retrying",
    "upstream_failed",
    "interrupted",
    "cancelled",
    "fallback",
    "skipped",
)
RunRow = dict[str, Any]
HOST = socket.gethostname()
_LOCK_WAIT_SECONDS = 120.0


def _m0001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
            started_at REAL NOT NULL, finished_at REAL, host TEXT, pid INTEGER,
            backend TEXT, params TEXT, resumed_from TEXT, nodes INTEGER,
            executed INTEGER, cached INTEGER, failed INTEGER, error TEXT
        );
        CREATE INDEX runs_workflow ON runs(workflow, started_at);
        CREATE TABLE node_runs (
            run_id TEXT NOT NULL, node TEXT NOT NULL, attempt INTEGER NOT NULL,
            status TEXT NOT NULL, cache_key TEXT, components TEXT,
            started_at REAL, finished_at REAL, duration REAL,
            error TEXT, traceback TEXT, host TEXT, pid INTEGER,
            PRIMARY KEY (run_id, node, attempt)
        );
        CREATE INDEX node_runs_node ON node_runs(node, started_at);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, ts REAL NOT NULL,
            kind TEXT NOT NULL, node TEXT, data TEXT
        );
        CREATE INDEX events_run ON events(run_id, id);
        CREATE TABLE actions (
            key TEXT PRIMARY KEY, node TEXT, record TEXT NOT NULL,
            components TEXT, created_at REAL NOT NULL
        );
        CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL);
        CREATE TABLE file_digests (
            path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL, digest TEXT NOT NULL
        );
        """
    )


def _m0002_logs_leases(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        ALTER TABLE node_runs ADD COLUMN output TEXT;
        ALTER TABLE node_runs ADD COLUMN fallback INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE leases (
            key TEXT PRIMARY KEY, node TEXT, run_id TEXT NOT NULL, host TEXT NOT NULL,
            pid INTEGER NOT NULL, acquired_at REAL NOT NULL
        );
        """
    )


def _m0003_process_start(db: sqlite_utils.Database) -> None:
    # pids are reused (quickly, in containers): a process is identified by pid + start time
    db.executescript(
        """
        ALTER TABLE runs ADD COLUMN pid_start INTEGER;
        ALTER TABLE leases ADD COLUMN pid_start INTEGER;
        """
    )


#: The migrations, in order. Append only; the schema version is their count.
MIGRATIONS = [
    ("0001_initial", _m0001_initial),
    ("0002_logs_leases", _m0002_logs_leases),
    ("0003_process_start", _m0003_process_start),
]
SCHEMA_VERSION = len(MIGRATIONS)


def _migrations() -> Any:
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("etherealfabric.journal._journal")
    for name, fn in MIGRATIONS:
        migrations(name=name)(fn)
    return migrations


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


_NETWORK_FS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "afs", "9p", "lustre", "gpfs"}


def is_local_filesystem(path: Path) -> bool:
    """False when ``path`` is on a network file system (where SQLite's WAL is unsafe)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return True
    target = str(path.resolve())
    best, fstype = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and target.startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype not in _NETWORK_FS


class Journal:
    """The run journal at ``path`` (created with its folders on first use)."""

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(
                f"cannot open the journal at {self.path}: {exc}. Check that the folder exists "
                "and is writable, or point ETHEREALFABRIC_HOME elsewhere."
            ) from exc
        self.conn = conn
        self._configure(durable)
        self._migrate()

    @property
    def db(self) -> sqlite_utils.Database:
        """The journal as a ``sqlite_utils.Database`` (imported on first use)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn, execute_plugins=False, recursive_triggers=False)

    # -- set-up ---------------------------------------------------------------------------
    def _configure(self, durable: bool) -> None:
        try:
            self._retry(lambda: self.conn.execute("PRAGMA journal_mode=WAL"))
            self.conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as exc:
            raise JournalError(
                f"{self.path} is not a usable EtherealFabric journal ({exc}); move it aside "
                "and a new one is created on the next run"
            ) from exc

    def _migrate(self) -> None:
        """Apply pending migrations (sqlite-utils), under the write lock, then stamp the version.

        ``PRAGMA user_version`` records the schema version, so an up-to-date journal opens
        without importing sqlite-utils at all.
        """
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal at {self.path} was written by a newer EtherealFabric "
                f"(schema {version}, this version knows {SCHEMA_VERSION}); upgrade etherealfabric"
            )

        def apply() -> None:
            with self.write() as conn:
                migrations = _migrations()
                db = self.db
                if migrations.pending(db):
                    migrations.apply(db)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

        try:
            self._retry(apply)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot set up the journal at {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the connection (the journal stays on disk)."""
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------
    def _retry(self, fn: Any) -> Any:
        """Call ``fn``; while the database is locked by another process, retry (tenacity)."""
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

        for attempt in Retrying(
            retry=retry_if_exception(_is_locked),
            wait=wait_random_exponential(multiplier=0.01, max=0.5),
            stop=stop_after_delay(_LOCK_WAIT_SECONDS),
            reraise=True,
        ):
            with attempt:
                return fn()
        return None  # pragma: no cover - Retrying either returns or raises

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one."""
        with self._lock:
            conn = self.conn
            if conn.in_transaction:
                yield conn
                return
            try:
                self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                self._retry(lambda: conn.execute("COMMIT"))
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise JournalError(
                    f"cannot write the journal {self.path}: {exc}. Nothing was half-written; "
                    "free disk space or fix the folder's permissions, then run again."
                ) from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._retry(lambda: self.conn.execute(sql, params))
            return list(cursor.fetchall())

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only query; rows as dicts (for reports built on the journal)."""
        return self._dicts(sql, params)

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._retry(lambda: self.conn.execute(sql, params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -- runs -----------------------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        *,
        workflow: str,
        backend: str,
        nodes: int,
        params: dict[str, Any] | None = None,
        resumed_from: str | None = None,
    ) -> None:
        """Record a new run as ``running`` (committed at once, so others can see it)."""
        row = (
            run_id, workflow, "running", time.time(), HOST, os.getpid(), PID_START, backend,
            json.dumps(params or {}, default=str), resumed_from, nodes,
        )  # fmt: skip
        with self.write() as conn:
            conn.execute(
                "INSERT INTO runs (id, workflow, status, started_at, host, pid, pid_start, "
                "backend, params, resumed_from, nodes) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )

    def finish_run(
        self, run_id: str, *, status: str, counts: dict[str, int], error: str | None = None
    ) -> None:
        """Mark a run finished with its final status and counts."""
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET status=?, finished_at=?, executed=?, cached=?, failed=?, "
                "error=? WHERE id=?",
                (
                    status, time.time(), counts.get("executed", 0), counts.get("cached", 0),
                    counts.get("failed", 0), error, run_id,
                ),
            )  # fmt: skip

    def get_run(self, run_id: str) -> RunRow:
        """The run row; :class:`RunNotFoundError` when there is none."""
        rows = self._dicts("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            rows = self._dicts("SELECT * FROM runs WHERE id LIKE ?", (run_id + "%",))
            if len(rows) != 1:
                raise RunNotFoundError(run_id)
        return rows[0]

    def list_runs(
        self, *, workflow: str | None = None, status: str | None = None, limit: int = 20
    ) -> list[RunRow]:
        """Most recent runs first, optionally filtered."""
        where, params = [], []
        if workflow:
            where.append("workflow = ?")
            params.append(workflow)
        if status:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT * FROM runs {clause} ORDER BY started_at DESC LIMIT ?"
        return self._dicts(sql, (*params, limit))

    def node_runs(self, run_id: str) -> list[dict[str, Any]]:
        """Every node attempt of a run, in the order they started."""
        return self._dicts(
            "SELECT * FROM node_runs WHERE run_id = ? ORDER BY started_at, node, attempt",
            (run_id,),
        )

    def mark_interrupted(self) -> list[str]:
        """Mark runs of this host whose process is gone ``interrupted``; return their ids."""
        rows = self._query(
            "SELECT id, pid, pid_start FROM runs WHERE status = 'running' AND host = ?", (HOST,)
        )
        dead = [rid for rid, pid, start in rows if not _alive(pid, start)]
        if dead:
            marks = ",".join("?" * len(dead))
            with self.write() as conn:
                conn.execute(
                    f"UPDATE runs SET status='interrupted', finished_at=? WHERE id IN ({marks})",
                    (time.time(), *dead),
                )
                conn.execute(
                    "UPDATE node_runs SET status='interrupted' "
                    f"WHERE status IN ('running', 'retrying') AND run_id IN ({marks})",
                    dead,
                )
        return dead

    # -- batched rows (the scheduler's recorder) -------------------------------------------
    def write_batch(
        self,
        *,
        node_runs: Sequence[tuple[Any, ...]] = (),
        events: Sequence[tuple[Any, ...]] = (),
        actions: Sequence[tuple[str, str, str, str | None, float]] = (),
        blobs: Sequence[tuple[str, bytes]] = (),
        release: Sequence[str] = (),
    ) -> None:
        """Write many rows in one transaction: blobs and actions before the rows naming them.

        ``release`` lists cache keys whose leases end in the same transaction, so another
        process waiting for a key sees its action record as soon as the lease is gone.
        """
        if not (node_runs or events or actions or blobs or release):
            return
        with self.write() as conn:
            if release:
                conn.executemany("DELETE FROM leases WHERE key = ?", [(k,) for k in release])
            if blobs:
                conn.executemany("INSERT OR IGNORE INTO blobs (digest, data) VALUES (?,?)", blobs)
            if actions:
                conn.executemany(
                    "INSERT OR REPLACE INTO actions (key, node, record, components, created_at) "
                    "VALUES (?,?,?,?,?)",
                    actions,
                )
            if node_runs:
                conn.executemany(
                    "INSERT OR REPLACE INTO node_runs (run_id, node, attempt, status, cache_key, "
                    "components, started_at, finished_at, duration, error, traceback, host, pid, "
                    "output, fallback) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    node_runs,
                )
            if events:
                conn.executemany(
                    "INSERT INTO events (run_id, ts, kind, node, data) VALUES (?,?,?,?,?)", events
                )

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The recorded events of a run, in order."""
        return self._dicts("SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,))

    # -- the cache index ------------------------------------------------------------------
    def get_action(self, key: str) -> dict[str, Any] | None:
        """The indexed action record for a cache key, or ``None``."""
        with self._lock:
            row = self.conn.execute("SELECT record FROM actions WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            record: dict[str, Any] = json.loads(row[0])
        except ValueError:
            return None
        return record

    def get_components(self, key: str) -> dict[str, Any] | None:
        """The key components stored with an action record."""
        rows = self._query("SELECT components FROM actions WHERE key = ?", (key,))
        if not rows or rows[0][0] is None:
            return None
        components: dict[str, Any] = json.loads(rows[0][0])
        return components

    def delete_action(self, key: str) -> None:
        """Forget an action record (its objects turned out to be missing or corrupt)."""
        with self.write() as conn:
            conn.execute("DELETE FROM actions WHERE key = ?", (key,))

    def delete_blob(self, digest: str) -> None:
        """Forget a corrupt inline output."""
        with self.write() as conn:
            conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))

    # -- leases: one process computes a key at a time ---------------------------------------
    def acquire_lease(self, key: str, *, node: str, run_id: str) -> bool:
        """Take the lease of ``key`` for ``run_id``; ``False`` while another live run holds it.

        A lease whose holder was a process of this host that is gone is taken over.
        """
        with self.write() as conn:
            row = conn.execute(
                "SELECT run_id, host, pid, pid_start FROM leases WHERE key = ?", (key,)
            ).fetchone()
            if row is not None and row[0] != run_id:
                holder_gone = row[1] == HOST and not _alive(row[2], row[3])
                if not holder_gone:
                    return False
            conn.execute(
                "INSERT OR REPLACE INTO leases (key, node, run_id, host, pid, pid_start, "
                "acquired_at) VALUES (?,?,?,?,?,?,?)",
                (key, node, run_id, HOST, os.getpid(), PID_START, time.time()),
            )
            return True

    def release_leases(self, run_id: str) -> None:
        """Drop every lease a run still holds (at its end, whatever the outcome)."""
        with self.write() as conn:
            conn.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))

    def get_blob(self, digest: str) -> bytes | None:
        """A small output kept inline, or ``None``."""
        with self._lock:
            row = self.conn.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else bytes(row[0])

    # -- remembered file digests (hashing.FileHashCache) -----------------------------------
    def get(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None:
        """A remembered digest for a file whose size, mtime and inode are unchanged."""
        with self._lock:
            row = self.conn.execute(
                "SELECT digest FROM file_digests WHERE path=? AND size=? AND mtime_ns=? AND inode=?",
                (path, size, mtime_ns, inode),
            ).fetchone()
        return None if row is None else str(row[0])

    def put(self, path: str, size: int, mtime_ns: int, inode: int, digest: str) -> None:
        """Remember a file's digest for the fast path of the next run."""
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO file_digests VALUES (?,?,?,?,?)",
                (path, size, mtime_ns, inode, digest),
            )

    def last_node_run(self, node: str, *, before: float, workflow: str) -> dict[str, Any] | None:
        """The latest finished attempt of ``node`` in ``workflow`` that started before ``before``."""
        rows = self._dicts(
            "SELECT nr.* FROM node_runs nr JOIN runs r ON r.id = nr.run_id "
            "WHERE nr.node = ? AND r.workflow = ? AND nr.started_at < ? "
            "AND nr.cache_key IS NOT NULL ORDER BY nr.started_at DESC LIMIT 1",
            (node, workflow, before),
        )
        return rows[0] if rows else None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after it
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


PID_START = process_start(os.getpid())


def _alive(pid: int | None, start: int | None = None) -> bool:
    """Whether the process that wrote a row still runs (a reused pid does not count)."""
    if not pid:
        return False
    if pid == os.getpid():
        return start is None or start == PID_START
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is None:
        return True
    now = process_start(pid)
    return now is None or now == start
