"""The journal's schema: its tables, the migrations that make them, the rows the recorder writes.

Tables (created by the migrations below):

- ``runs``: one row per run (workflow, status, times, host, pid, counts, error).
- ``node_runs``: one row per node attempt (status, cache key, timings, error, traceback), and
  what the attempt's outputs were *in that run*: ``outputs`` (the action record a node's
  execution made, the text of its ``actions`` row, for a row that made or fetched one) and
  ``record_at`` (the ``created_at`` of the ``actions`` row it made or used, a cache hit's
  taken at its commit):
  a key's record is replaced when the node runs again under the same key (a file it read
  changed, ``--force``), and a past run still shows its own results (``journal/_runoutputs.py``).
- ``events``: the run's event stream, as recorded.
- ``actions``: cache key → action record (outputs' digests, serializers, sizes) and the key's
  components (what ``explain`` diffs). A local index of the store's action records.
- ``blobs``: small outputs kept inline instead of as files.
- ``file_digests``: remembered content digests of input files, by (path, size, mtime, inode,
  ctime): the ctime changes on every write, even one whose mtime was put back (as git's index).
- ``leases``: which run computes a cache key right now, until when (``expires_at``, renewed by
  the holder's heartbeat).

``PRAGMA user_version`` records the schema version, so an up-to-date journal opens without
importing sqlite-utils at all, and a new or older one is migrated without it too
(:func:`migrate`: plain SQL through sqlite3, recorded in sqlite-utils' own bookkeeping table
and format, so ``sqlite_utils.migrations.Migrations`` sees the same state). Opening the file
and its transactions: ``_connection.py``.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import JournalError
from ._connection import retry, transaction

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "CACHED_ROW",
    "MIGRATIONS",
    "MIGRATION_SCRIPTS",
    "NODE_RUN_ROW",
    "SCHEMA_VERSION",
    "create_schema",
    "database",
    "migrate",
    "sqlite_utils_migrations",
]

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
#: the insert of node rows of all 17 columns (``_connection.insert_rows``, which adds the
#: ``VALUES``)
NODE_RUN_ROW = (
    "INSERT OR REPLACE INTO node_runs (run_id, node, attempt, status, cache_key, components, "
    "started_at, finished_at, duration, error, traceback, host, pid, output, fallback, "
    "outputs, record_at)"
)
#: the values of a cache hit's row, from five (run, node, key, time, host): attempt 1, started
#: and finished at once, no components, error or output (a warm run writes one per node);
#: ``record_at`` names the version of the key's record the hit used (the one in place when the
#: row is committed: a seek of the key in ``actions``, inside the same statement)
CACHED_ROW = (
    "(?1, ?2, 1, 'cached', ?3, NULL, ?4, ?4, 0.0, NULL, NULL, ?5, NULL, NULL, 0, NULL, "
    "(SELECT created_at FROM actions WHERE key = ?3))"
)

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

# what a node's outputs were in each run (not only in the key's latest record, which a later
# execution of the same key replaces): see the module docstring and journal/_runoutputs.py
_M0008_RUN_OUTPUTS = """
    ALTER TABLE node_runs ADD COLUMN outputs TEXT;
    ALTER TABLE node_runs ADD COLUMN record_at REAL;
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
    ("0008_run_outputs", _M0008_RUN_OUTPUTS),
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


#: The schema the first :data:`_FRESH_VERSION` migrations make, as one script: a new journal is
#: made from it (``journal/_create.py``), not by replaying them (each ``ALTER TABLE`` and
#: ``DROP INDEX`` re-reads the whole schema: 1-4 ms of CPU on every first run in a new home);
#: migrations appended later are then applied as to any older journal. Never edit it but to
#: bring it up to the migrations; tests/test_journal_create.py checks it makes what they make.
_FRESH_VERSION = 8
_FRESH = """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL,
        started_at REAL NOT NULL, finished_at REAL, host TEXT, pid INTEGER,
        backend TEXT, params TEXT, resumed_from TEXT, nodes INTEGER,
        executed INTEGER, cached INTEGER, failed INTEGER, error TEXT, pid_start INTEGER
    );
    CREATE INDEX runs_workflow ON runs(workflow, started_at);
    CREATE TABLE node_runs (
        run_id TEXT NOT NULL, node TEXT NOT NULL, attempt INTEGER NOT NULL,
        status TEXT NOT NULL, cache_key TEXT, components TEXT,
        started_at REAL, finished_at REAL, duration REAL,
        error TEXT, traceback TEXT, host TEXT, pid INTEGER,
        output TEXT, fallback INTEGER NOT NULL DEFAULT 0, outputs TEXT, record_at REAL,
        PRIMARY KEY (run_id, node, attempt)
    );
    CREATE INDEX node_runs_key_succeeded ON node_runs(cache_key) WHERE status = 'succeeded';
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
        inode INTEGER NOT NULL, digest TEXT NOT NULL, ctime_ns INTEGER
    );
    CREATE TABLE leases (
        key TEXT PRIMARY KEY, node TEXT, run_id TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, acquired_at REAL NOT NULL, pid_start INTEGER, expires_at REAL
    );
"""


def create_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Make the schema of the new, empty journal ``path`` in one transaction (:data:`_FRESH`,
    recorded as the migrations it stands for), then apply any later migration."""
    if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise JournalError(f"{path} is not empty: its schema is made by migrate()")
    with transaction(conn, path):
        for statement in (*_BOOKKEEPING, *_FRESH.split(";")):
            if statement.strip():
                conn.execute(statement)
        now = str(datetime.datetime.now(datetime.timezone.utc))
        conn.executemany(
            'INSERT INTO "_sqlite_migrations" (migration_set, name, applied_at) VALUES (?, ?, ?)',
            [(_MIGRATION_SET, name, now) for name, _ in MIGRATION_SCRIPTS[:_FRESH_VERSION]],
        )
        conn.execute(f"PRAGMA user_version={_FRESH_VERSION}")
    migrate(conn, path)


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
