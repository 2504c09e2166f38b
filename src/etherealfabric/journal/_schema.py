"""The journal file: connection set-up, the schema and its migrations, write transactions.

Tables (created by the migrations below):

- ``runs``: one row per run (workflow, status, times, host, pid, counts, error).
- ``node_runs``: one row per node attempt (status, cache key, timings, error, traceback).
- ``events``: the run's event stream, as recorded.
- ``actions``: cache key → action record (outputs' digests, serializers, sizes) and the key's
  components (what ``explain`` diffs). A local index of the store's action records.
- ``blobs``: small outputs kept inline instead of as files.
- ``file_digests``: remembered content digests of input files, by (path, size, mtime, inode,
  ctime): the ctime changes on every write, even one whose mtime was put back (as git's index).
- ``leases``: which run computes a cache key right now, until when (``expires_at``, renewed by
  the holder's heartbeat).

The journal runs in WAL mode. Writes are ``BEGIN IMMEDIATE`` transactions (:func:`transaction`)
retried while the database is locked by another process, so "database is locked" never reaches
the user. (Plain ``BEGIN``, as in ``sqlite_utils.Database.atomic``, can fail with SQLITE_BUSY
when two readers upgrade to writers at once; ``IMMEDIATE`` takes the write lock up front and
waits instead.) ``PRAGMA user_version`` records the schema version, so an up-to-date journal
opens without importing sqlite-utils at all, and a new or older one is migrated without it
too (:func:`migrate`: plain SQL through sqlite3, recorded in sqlite-utils' own bookkeeping
table and format, so ``sqlite_utils.migrations.Migrations`` sees the same state).

A read-only home (a read-only mount, a folder the user may not write) is opened read-only
(:func:`connect_read_only`): SQLite's ``mode=ro`` reads a WAL journal when its ``-shm`` and
``-wal`` files exist; when they do not (the last writer closed cleanly) the file is complete
and is opened ``immutable``; when a ``-wal`` file with unmerged commits exists but no ``-shm``,
the two files are copied to a temporary folder and the copy is read. Opening a read-only home
for writing is an error that says so (:class:`ReadOnlyJournalError`). Only a file that SQLite
itself calls damaged or not a database is called that; no other message advises moving the
journal aside (it holds the cache index and the small outputs).
"""

from __future__ import annotations

import datetime
import errno
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from ..errors import DamagedJournalError, JournalError
from ..store._writer import filesystem_type

if TYPE_CHECKING:
    import tempfile

    import sqlite_utils

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "ReadOnlyJournalError",
    "connect",
    "connect_read_only",
    "database",
    "home_writable",
    "is_local_filesystem",
    "migrate",
    "retry",
    "transaction",
]

T = TypeVar("T")
_LOCK_WAIT_SECONDS = 120.0
#: The page cache of the writing connection, at most (SQLite's default is 2 MiB). A run of
#: 100,000 nodes inserts as many node rows into indexes keyed at random (cache key, node name)
#: of a journal holding many runs: with 2 MiB most inserts read their page back from the OS;
#: with 64 MiB, inserting 500,000 node rows into a 300 MB journal took 4.1 s of CPU instead
#: of 5.9 s and 5.5 s instead of 11 s of wall time. Memory is taken only as pages are read.
CACHE_KIB = 64 * 1024
#: The name the migrations are recorded under in ``_sqlite_migrations`` (never change it:
#: a journal of an older schema would otherwise run its first migration again).
_MIGRATION_SET = "etherealfabric.journal"


_M0001_INITIAL = """
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
#: a node_runs row, all its columns (the journal recorder's rows)
NODE_RUN_ROW = (
    "INSERT OR REPLACE INTO node_runs (run_id, node, attempt, status, cache_key, components, "
    "started_at, finished_at, duration, error, traceback, host, pid, output, fallback) "
)
#: the row of a cache hit, from five values (run, node, key, time, host): attempt 1, started
#: and finished at once, no components, error or output (a warm run writes one per node)
CACHED_ROW = (
    NODE_RUN_ROW
    + "VALUES (?1, ?2, 1, 'cached', ?3, NULL, ?4, ?4, 0.0, NULL, NULL, ?5, NULL, NULL, 0)"
)
NODE_RUN_ROW += "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

_M0002_LOGS_LEASES = """
    ALTER TABLE node_runs ADD COLUMN output TEXT;
    ALTER TABLE node_runs ADD COLUMN fallback INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE leases (
        key TEXT PRIMARY KEY, node TEXT, run_id TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, acquired_at REAL NOT NULL
    );
"""
# pids are reused (quickly, in containers): a process is identified by pid + start time
_M0003_PROCESS_START = """
    ALTER TABLE runs ADD COLUMN pid_start INTEGER;
    ALTER TABLE leases ADD COLUMN pid_start INTEGER;
"""
# a lease expires unless its holder renews it (a holder on another host, frozen or gone in a
# way liveness cannot see); a remembered file digest also needs the file's ctime
_M0004_LEASE_EXPIRY_CTIME = """
    ALTER TABLE leases ADD COLUMN expires_at REAL;
    ALTER TABLE file_digests ADD COLUMN ctime_ns INTEGER;
    DELETE FROM file_digests;
"""
# the node run that computed a key (`plan`, `explain`, rewinds) without reading every row
_M0005_NODE_RUNS_KEY = """
    CREATE INDEX node_runs_key ON node_runs(cache_key);
"""

# that index for the rows that computed a key only (the question it answers): a cache hit's row
# (a warm run writes one per node) stays out of it. A random-keyed index costs 10-13 us of CPU
# per row it takes at 100,000 nodes. A query must say ``status = 'succeeded'`` literally for
# SQLite to use a partial index (journal/_history.producer_of)
_M0006_NODE_RUNS_KEY_SUCCEEDED = """
    DROP INDEX node_runs_key;
    CREATE INDEX node_runs_key_succeeded ON node_runs(cache_key) WHERE status = 'succeeded';
"""

# no index of node_runs by node: a warm run writes a row per node, and their entries, spread
# over that index, made most of the journal's cost of a warm 10,000-node run (28 of 67 ms of
# inserts, 26 of 28 ms of commit); the one query by node (history.previous_keyed_run) walks
# the workflow's runs newest first instead
_M0007_NO_NODE_INDEX = """
    DROP INDEX IF EXISTS node_runs_node;
"""

#: The migrations, in order: (name, SQL script). Append only; the schema version is their
#: count. Plain SQL (no triggers, so ``;`` only ends statements).
MIGRATION_SCRIPTS = [
    ("0001_initial", _M0001_INITIAL),
    ("0002_logs_leases", _M0002_LOGS_LEASES),
    ("0003_process_start", _M0003_PROCESS_START),
    ("0004_lease_expiry_ctime", _M0004_LEASE_EXPIRY_CTIME),
    ("0005_node_runs_key", _M0005_NODE_RUNS_KEY),
    ("0006_node_runs_key_succeeded", _M0006_NODE_RUNS_KEY_SUCCEEDED),
    ("0007_no_node_index", _M0007_NO_NODE_INDEX),
]


def _script_migration(name: str, script: str) -> Callable[[sqlite_utils.Database], None]:
    def apply(db: sqlite_utils.Database) -> None:
        db.executescript(script)

    apply.__name__ = f"_m{name}"
    return apply


#: The same migrations as functions of a ``sqlite_utils.Database``, for sqlite-utils'
#: ``Migrations`` (see :func:`sqlite_utils_migrations`).
MIGRATIONS = [(name, _script_migration(name, script)) for name, script in MIGRATION_SCRIPTS]
SCHEMA_VERSION = len(MIGRATIONS)


def sqlite_utils_migrations() -> Any:
    """The journal's migrations as a ``sqlite_utils.migrations.Migrations`` set (imports
    sqlite-utils): what sqlite-utils' own tools see; :func:`migrate` records in its format."""
    from sqlite_utils.migrations import Migrations

    migrations = Migrations(_MIGRATION_SET)
    for name, fn in MIGRATIONS:
        migrations(name=name)(fn)
    return migrations


def database(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """``conn`` as a ``sqlite_utils.Database`` (sqlite-utils is imported on first use)."""
    import sqlite_utils

    return sqlite_utils.Database(conn, execute_plugins=False, recursive_triggers=False)


class ReadOnlyJournalError(JournalError):
    """The journal's home cannot be written (a read-only mount or folder)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"the home {path.parent} is read-only, so the journal {path.name} cannot be "
            "written; read-only commands (runs, show, explain, plan, cache verify) still "
            "work there; to run, use a writable home (--home or ETHEREALFABRIC_HOME)"
        )
        self.path = path


def home_writable(path: Path) -> bool:
    """Whether the journal at ``path`` (and the files SQLite keeps beside it) can be written."""
    if str(path) == ":memory:":
        return True
    if path.exists() and not os.access(path, os.W_OK):
        return False
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders are created on first use
    return os.access(folder, os.W_OK)


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


_READONLY, _CORRUPT, _CANTOPEN, _NOTADB = 8, 11, 14, 26


def _open_error(path: Path, exc: BaseException) -> JournalError:
    """The error for a journal that could not be opened: damaged only when SQLite says so."""
    if _code(exc) in (_CORRUPT, _NOTADB):
        return DamagedJournalError(
            f"{path} is not a usable EtherealFabric journal ({exc}): the file is damaged. "
            "Move it aside and a new one is created on the next run (its cache index and "
            "small outputs are lost with it)",
            path=str(path),
        )
    if _code(exc) in (_READONLY, _CANTOPEN) and not home_writable(path):
        return ReadOnlyJournalError(path)
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES):
        return ReadOnlyJournalError(path)
    return JournalError(
        f"cannot open the journal at {path}: {exc}. Check that the folder exists, is "
        "readable and writable and its disk is not full, or point ETHEREALFABRIC_HOME elsewhere."
    )


# -- locks and transactions ----------------------------------------------------------------
def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def retry(fn: Callable[[], T], path: Path | None = None) -> T:
    """Call ``fn``; while the database is locked by another process, retry (tenacity).

    With the journal's ``path``, damage SQLite finds only now (a page past the schema that a
    query reads) is the :class:`JournalError` of a damaged journal, naming it."""
    try:
        return _retry(fn)
    except sqlite3.DatabaseError as exc:
        if path is not None and _code(exc) in (_CORRUPT, _NOTADB):
            raise _open_error(path, exc) from exc
        raise


def _retry(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except sqlite3.OperationalError as exc:
        if not _is_locked(exc):
            raise
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

    retrying = Retrying(
        retry=retry_if_exception(_is_locked),
        wait=wait_random_exponential(multiplier=0.01, max=0.5),
        stop=stop_after_delay(_LOCK_WAIT_SECONDS),
        reraise=True,
    )
    return retrying(fn)


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``); inside another one, join it."""
    if conn.in_transaction:
        yield conn
        return
    try:
        try:
            retry(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            retry(lambda: conn.execute("COMMIT"))
        except BaseException:
            # an interrupt (Ctrl-C) may land between BEGIN and the block, or in COMMIT: never
            # leave a transaction open that later writes would join and nobody would commit
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if _code(exc) in (_CORRUPT, _NOTADB):  # a damaged page met by this transaction
            raise _open_error(path, exc) from exc
        if not isinstance(exc, sqlite3.OperationalError):
            raise
        if _code(exc) == _READONLY and not home_writable(path):
            raise ReadOnlyJournalError(path) from exc
        if _is_locked(exc):  # still, after the wait for it
            raise JournalError(
                f"cannot write the journal {path}: it stayed locked by another process for "
                f"over {_LOCK_WAIT_SECONDS:.0f} s ({exc}). Nothing was written; let that "
                "process finish, or stop it (`fuser` names it), then run again."
            ) from exc
        raise JournalError(
            f"cannot write the journal {path}: {exc}. Nothing was half-written; "
            "free disk space or fix the folder's permissions, then run again."
        ) from exc


# -- opening -------------------------------------------------------------------------------
def connect(path: Path, *, durable: bool = False) -> sqlite3.Connection:
    """Open (creating it and its folders if needed) the journal file in WAL mode, for writing.

    ``durable`` syncs every commit to disk (``synchronous=FULL``) instead of at checkpoints.
    A home that cannot be written raises :class:`ReadOnlyJournalError`.
    """
    if not home_writable(path):
        raise ReadOnlyJournalError(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as exc:
        raise _open_error(path, exc) from exc
    try:
        # synchronous first: a new journal's switch to WAL then syncs as the journal does
        # (one sync fewer than SQLite's default FULL); an existing one is in WAL already
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # see CACHE_KIB
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _open_error(path, exc) from exc
    return conn


def _open_uri(path: Path, options: str) -> sqlite3.Connection:
    uri = f"file:{quote(str(path.absolute()))}?{options}"
    conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None,
                           check_same_thread=False)  # fmt: skip
    try:
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA busy_timeout=30000")
        retry(lambda: conn.execute("SELECT count(*) FROM sqlite_master").fetchone())
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read_only(
    path: Path,
) -> tuple[sqlite3.Connection, tempfile.TemporaryDirectory[str] | None]:
    """Open the journal at ``path`` for reading only, writing nothing beside it.

    Returns the connection and, when the journal had to be copied to be read (a ``-wal`` file
    with commits but no ``-shm`` on a read-only folder), the temporary folder of the copy,
    to clean up after closing the connection.
    """
    import shutil  # (and tempfile) here: a run that only writes its journal never needs them
    import tempfile

    if not path.exists():
        raise JournalError(f"no journal at {path}")
    try:
        return _open_uri(path, "mode=ro"), None
    except sqlite3.DatabaseError as exc:
        if _code(exc) != _CANTOPEN:
            raise _open_error(path, exc) from exc
    wal = path.with_name(path.name + "-wal")
    try:
        if not wal.exists() or wal.stat().st_size == 0:
            # no commits outside the main file (the last writer closed cleanly): complete
            return _open_uri(path, "immutable=1"), None
        snapshot = tempfile.TemporaryDirectory(prefix="etherealfabric-journal-")
        try:
            copy = Path(snapshot.name) / path.name
            shutil.copyfile(path, copy)
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            return _open_uri(copy, "mode=ro"), snapshot
        except BaseException:
            snapshot.cleanup()
            raise
    except (OSError, sqlite3.DatabaseError) as exc:
        raise _open_error(path, exc) from exc


#: ``_sqlite_migrations`` exactly as sqlite-utils' ``Migrations.ensure_migrations_table``
#: creates it (table and unique index), so its ``applied()``/``pending()`` read our rows.
_BOOKKEEPING = (
    'CREATE TABLE "_sqlite_migrations" (\n   "id" INTEGER PRIMARY KEY,\n'
    '   "migration_set" TEXT,\n   "name" TEXT,\n   "applied_at" TEXT\n)',
    'CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"\n'
    '    ON "_sqlite_migrations" ("migration_set", "name")',
)


def _apply_migrations(conn: sqlite3.Connection) -> None:
    """Apply the pending :data:`MIGRATION_SCRIPTS` with sqlite3 alone, inside the caller's
    transaction, recording each in ``_sqlite_migrations`` as sqlite-utils does.

    sqlite-utils is not imported: ``sqlite_utils.db`` imports pandas, numpy and pyarrow when
    they are installed (half a second before a process's first run). A bookkeeping table in
    another shape (written by some other tool) is left to sqlite-utils' own ``Migrations``,
    which knows how to convert it.
    """
    columns = [
        (row[1], row[5])  # name, position in the primary key
        for row in conn.execute('PRAGMA table_info("_sqlite_migrations")')
    ]
    if not columns:
        for statement in _BOOKKEEPING:
            conn.execute(statement)
    elif ("id", 1) not in columns or "applied_at" not in dict(columns):
        migrations = sqlite_utils_migrations()
        db = database(conn)
        if migrations.pending(db):
            migrations.apply(db)
        return
    applied = {
        row[0]
        for row in conn.execute(
            'SELECT name FROM "_sqlite_migrations" WHERE migration_set = ?', (_MIGRATION_SET,)
        )
    }
    for name, script in MIGRATION_SCRIPTS:
        if name in applied:
            continue
        for statement in script.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(
            'INSERT INTO "_sqlite_migrations" (migration_set, name, applied_at) VALUES (?, ?, ?)',
            (_MIGRATION_SET, name, str(datetime.datetime.now(datetime.timezone.utc))),
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply pending migrations under the write lock, then stamp the version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal at {path} was written by a newer EtherealFabric "
            f"(schema {version}, this version knows {SCHEMA_VERSION}); upgrade etherealfabric"
        )

    def apply() -> None:
        with transaction(conn, path):
            _apply_migrations(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    try:
        retry(apply)
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"cannot set up the journal at {path}: {exc}") from exc


_NETWORK_FS = {"nfs", "nfs4", "cifs", "smbfs", "smb3", "fuse.sshfs", "afs", "9p", "lustre", "gpfs"}


def is_local_filesystem(path: Path) -> bool:
    """False when ``path`` is on a network file system (where SQLite's WAL is unsafe)."""
    return filesystem_type(path) not in _NETWORK_FS
