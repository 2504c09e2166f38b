"""The run journal: runs, node runs, events, and the local index of the artifact cache.

The only writer of the journal file is the scheduler of a run (one process may host several
runs; several processes may share one home, SQLite's WAL and a busy timeout serialise them).
Workers never open it. The tables and their migrations are in ``_schema.py``, the connection
set-up and the transactions in ``_connection.py``; every write is one ``BEGIN IMMEDIATE``
transaction (:meth:`Journal.write`).

A journal opened read-only (``read_only=True``, or ``read_only=None`` on a home that cannot be
written) answers every read; a write raises :class:`ReadOnlyJournalError`, except the ones
that only tidy up (marking dead runs interrupted, remembering a file digest), which it skips.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import JournalError, RunNotFoundError
from ..states import NodeStatus, RunStatus
from ._checkpoint import Checkpointer
from ._connection import (
    ReadOnlyJournalError,
    connect,
    connect_read_only,
    home_writable,
    insert_rows,
    is_local_filesystem,
    retry,
    transaction,
    valid_text,
)
from ._create import create_journal
from ._deadruns import committed_counts, last_seen
from ._index import ActionIndex
from ._leases import LEASE_SECONDS, LeaseClaims, holder_gone
from ._liveness import HOST, PID_START, alive
from ._schema import CACHED_ROW, NODE_RUN_ROW, SCHEMA_VERSION, database, migrate
from ._sweeps import sweep_needed

if TYPE_CHECKING:
    import sqlite_utils

# HOST and is_local_filesystem are re-exported for run/ (the recorder and the session)
__all__ = [
    "HOST",
    "LEASE_SECONDS",
    "AmbiguousRunError",
    "Journal",
    "ReadOnlyJournalError",
    "RunRow",
    "is_local_filesystem",
]

RunRow = dict[str, Any]

# node rows of attempts that had not ended when their run did: running, or (rows of older
# versions) about to retry; a ``retrying`` row with an end is an attempt that failed and was
# retried, and stays so
_UNFINISHED = "(status = ? OR (status = ? AND finished_at IS NULL))"
_UNFINISHED_ARGS = (NodeStatus.RUNNING.value, NodeStatus.RETRYING.value)


class AmbiguousRunError(RunNotFoundError):
    """A run id prefix that matches more than one run."""

    def __init__(self, prefix: str, matches: Sequence[str]) -> None:
        shown = ", ".join(matches[:10]) + (
            f" and {len(matches) - 10} more" if len(matches) > 10 else ""
        )
        JournalError.__init__(
            self, f"run id {prefix!r} is ambiguous: it starts {len(matches)} runs ({shown}); "
            "give more of the id"
        )  # fmt: skip
        self.run_id = prefix
        self.matches = list(matches)


#: a blob written again: its row is rewritten only if it differs (the bytes a digest names)
_SAME_BLOB = (
    "ON CONFLICT (digest) DO UPDATE SET data = excluded.data WHERE blobs.data IS NOT excluded.data"
)


class Journal(ActionIndex, LeaseClaims):
    """The run journal at ``path`` (created with its folders on first use).

    ``durable`` syncs every commit to disk, not only at WAL checkpoints. ``read_only``: ``False``
    opens for writing (a read-only home raises :class:`ReadOnlyJournalError`), ``True`` for
    reading only, ``None`` for writing when the home can be written and reading otherwise.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durable: bool = False,
        read_only: bool | None = False,
    ) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._snapshot: Any = None
        self._checkpointer: Checkpointer | None = None
        if read_only is None:
            read_only = not home_writable(self.path)
        self.read_only = read_only
        if read_only:
            self.conn, self._snapshot = connect_read_only(self.path)
        else:
            create_journal(self.path)  # a new journal is built whole, then linked in place
            self.conn = connect(self.path, durable=durable)
        try:
            if read_only:
                self.schema = self._check_version()
            else:
                migrate(self.conn, self.path)
                self.schema = SCHEMA_VERSION
        except BaseException:
            self.close()
            raise

    def _check_version(self) -> int:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"the journal at {self.path} was written by a newer EtherealFabric "
                f"(schema {version}, this version knows {SCHEMA_VERSION}); upgrade etherealfabric"
            )
        return version  # an older one is read as it is (it cannot be migrated read-only)

    @property
    def db(self) -> sqlite_utils.Database:
        """The journal as a ``sqlite_utils.Database`` (imported on first use)."""
        return database(self.conn)

    def close(self) -> None:
        """Close the connection (the journal stays on disk)."""
        with self._lock:
            self.stop_checkpoints()
            self.conn.close()
            if self._snapshot is not None:
                self._snapshot.cleanup()
                self._snapshot = None

    def start_checkpoints(self) -> None:
        """Checkpoint the log in a background thread until :meth:`stop_checkpoints` (a run
        that writes many commits; see ``_checkpoint.py``). Once: later calls do nothing."""
        if self._checkpointer is None and not self.read_only:
            with self._lock:
                self._checkpointer = Checkpointer(self.path, self.conn)

    def stop_checkpoints(self) -> None:
        """Stop the background checkpoints; the connection checkpoints by itself again."""
        with self._lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions and reads -------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one."""
        if self.read_only:
            raise ReadOnlyJournalError(self.path)
        with self._lock, transaction(self.conn, self.path) as conn:
            yield conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts (for this package's journal/ modules only)."""
        with self._lock:

            def read() -> list[dict[str, Any]]:  # every row inside the retry: a lock or damage
                cursor = self.conn.execute(sql, params)  # met past the first row is caught too
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            return retry(read, self.path)

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row of a query, or ``None`` when there is no row."""
        with self._lock:
            try:  # (the common case without retry's calls: a cold chain asks once a node)
                row = self.conn.execute(sql, params).fetchone()
            except sqlite3.DatabaseError:  # locked (waited out) or damaged (named): as _rows
                row = retry(lambda: self.conn.execute(sql, params).fetchone(), self.path)
        return None if row is None else row[0]

    def last_seen(self, run_id: str, started_at: float) -> float:
        """:func:`last_seen` of a run, read as :meth:`committed_counts` reads."""
        with self._lock:
            return retry(lambda: last_seen(self.conn, run_id, started_at), self.path)

    def committed_counts(self, run_id: str) -> tuple[int, int, int]:
        """:func:`committed_counts` of a run, read as :meth:`_rows` reads (waiting out a lock;
        damage is the error of a damaged journal, naming it)."""
        with self._lock:
            return retry(lambda: committed_counts(self.conn, run_id), self.path)

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
            run_id, workflow, RunStatus.RUNNING, time.time(), HOST, os.getpid(), PID_START,
            backend, json.dumps(params or {}, default=str), resumed_from, nodes,
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
        """Mark a run finished with its final status and counts.

        A run that did not succeed may end while a node's row still says it runs (a Ctrl-C
        landing between a node's end and its row): that node was cancelled with the run, its
        key and start kept. Attempts that ended (``retrying``: failed, then retried) stay as
        they are."""
        with self.write() as conn:
            conn.execute(
                "UPDATE runs SET status=?, finished_at=?, executed=?, cached=?, failed=?, "
                "error=? WHERE id=?",
                (
                    status, time.time(), counts.get("executed", 0), counts.get("cached", 0),
                    counts.get("failed", 0), None if error is None else valid_text(error),
                    run_id,
                ),
            )  # fmt: skip
            if status != RunStatus.SUCCEEDED:
                now = time.time()
                conn.execute(
                    "UPDATE node_runs SET status=?, finished_at=?, duration=? - started_at "
                    f"WHERE run_id=? AND {_UNFINISHED}",
                    (NodeStatus.CANCELLED, now, now, run_id, *_UNFINISHED_ARGS),
                )

    def get_run(self, run_id: str) -> RunRow:
        """The run row, by id or unique id prefix (``latest``: the newest run);
        :class:`RunNotFoundError` when there is none.

        The id is matched literally (``%`` and ``_`` are characters, not wildcards); a prefix
        of several runs raises :class:`AmbiguousRunError`, which names them.
        """
        if run_id == "latest":
            rows = self._rows("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1")
            if rows:
                return rows[0]
        rows = self._rows("SELECT * FROM runs WHERE id = ?", (run_id,))
        if rows:
            return rows[0]
        if run_id:
            rows = self._rows(
                "SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY started_at DESC",
                (len(run_id), run_id),
            )
        if not rows:
            raise RunNotFoundError(run_id)
        if len(rows) > 1:
            raise AmbiguousRunError(run_id, [r["id"] for r in rows])
        return rows[0]

    def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        since: float | None = None,
        limit: int = 20,
        before: float | tuple[float, str] | None = None,
    ) -> list[RunRow]:
        """Runs newest first (by start time, then id), optionally of one workflow, with one
        status, started after ``since``. ``before``, the next page of a list: the last run
        listed, as its ``(started_at, id)`` (runs started at the same time come once each), or
        a time (runs started before then; the older cursor, which skipped runs started at the
        very time of the last one listed)."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (("workflow = ?", workflow), ("status = ?", status)):
            if value:
                where.append(clause)
                params.append(value)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if isinstance(before, tuple):
            where.append("(started_at < ? OR (started_at = ? AND id < ?))")
            params += [before[0], before[0], before[1]]
        elif before is not None:
            where.append("started_at < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._rows(
            f"SELECT * FROM runs {clause} ORDER BY started_at DESC, id DESC LIMIT ?",
            (*params, limit),
        )

    def node_runs(self, run_id: str) -> list[dict[str, Any]]:
        """Every node attempt of a run, in the order they started."""
        return self._rows(
            "SELECT * FROM node_runs WHERE run_id = ? ORDER BY started_at, node, attempt",
            (run_id,),
        )

    def mark_interrupted(self) -> list[str]:
        """Mark runs of this host whose process is gone ``interrupted``; return their ids.

        Their node attempts still running are ``interrupted`` too (attempts that ended stay), and
        their counts are those of the node rows they committed (:func:`committed_counts`). A
        read-only journal is left as it is (nothing is marked).
        """
        if self.read_only:
            return []
        rows = self._rows(
            "SELECT id, pid, pid_start FROM runs WHERE status = ? AND host = ?",
            (RunStatus.RUNNING, HOST),
        )
        dead = [r["id"] for r in rows if not alive(r["pid"], r["pid_start"])]
        if dead:
            marks = ",".join("?" * len(dead))
            with self.write() as conn:
                for run_id, started_at in conn.execute(
                    f"SELECT id, started_at FROM runs WHERE id IN ({marks})", dead
                ).fetchall():
                    conn.execute(
                        "UPDATE runs SET status=?, finished_at=? WHERE id=?",
                        (RunStatus.INTERRUPTED, last_seen(conn, run_id, started_at), run_id),
                    )
                conn.execute(
                    f"UPDATE node_runs SET status=? WHERE {_UNFINISHED} AND run_id IN ({marks})",
                    (NodeStatus.INTERRUPTED, *_UNFINISHED_ARGS, *dead),
                )
                for run_id in dead:
                    conn.execute(
                        "UPDATE runs SET executed=?, cached=?, failed=? WHERE id=?",
                        (*committed_counts(conn, run_id), run_id),
                    )
            if str(self.path) != ":memory:":
                sweep_needed(self.path.parent)  # the next run removes its temp files
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
        A ``node_runs`` row is all 15 columns, or a cache hit's five (``_schema.CACHED_ROW``).
        Rows go in multi-row statements (``_connection.insert_rows``), not one step per row.
        """
        if not (node_runs or events or actions or blobs or release):
            return
        with self.write() as conn:
            if release:
                conn.executemany("DELETE FROM leases WHERE key = ?", [(k,) for k in release])
            if blobs:
                # a row there already is kept unless a hand edit or damage changed its bytes:
                # the node computed again replaces them (its digest names what they must be)
                insert_rows(conn, "INSERT INTO blobs (digest, data)", blobs, tail=_SAME_BLOB)
            if actions:
                insert_rows(
                    conn,
                    "INSERT OR REPLACE INTO actions (key, node, record, components, created_at)",
                    actions,
                )
            if node_runs:
                if full := [row for row in node_runs if len(row) != 5]:
                    insert_rows(conn, NODE_RUN_ROW, full)
                if len(full) < len(node_runs):  # cache hits: (run, node, key, ts, host)
                    hits = [row for row in node_runs if len(row) == 5]
                    insert_rows(conn, NODE_RUN_ROW, hits, CACHED_ROW)
            if events:
                insert_rows(conn, "INSERT INTO events (run_id, ts, kind, node, data)", events)

    # -- leases: one process computes a key at a time ---------------------------------------
    def acquire_lease(
        self, key: str, *, node: str, run_id: str, ttl: float = LEASE_SECONDS
    ) -> bool:
        """Take the lease of ``key`` for ``run_id``; ``False`` while another live run holds it.

        The lease lasts ``ttl`` seconds unless renewed (:meth:`renew_leases`). A lease is taken
        over when it expired (whoever held it: another host, a frozen process) or when its
        holder was a process of this host that is gone (exited, a zombie, its pid reused).
        """
        now = time.time()
        with self.write() as conn:
            row = conn.execute(
                "SELECT run_id, host, pid, pid_start, acquired_at, expires_at FROM leases "
                "WHERE key = ?",
                (key,),
            ).fetchone()
            if (row is not None and row[0] != run_id
                    and not holder_gone((key, *row), now, LEASE_SECONDS)):  # fmt: skip
                return False
            conn.execute(
                "INSERT OR REPLACE INTO leases (key, node, run_id, host, pid, pid_start, "
                "acquired_at, expires_at) VALUES (?,?,?,?,?,?,?,?)",
                (key, node, run_id, HOST, os.getpid(), PID_START, now, now + ttl),
            )
            return True

    def renew_leases(self, run_id: str, *, ttl: float = LEASE_SECONDS) -> int:
        """Extend every lease ``run_id`` holds by ``ttl`` seconds from now (the heartbeat).

        Returns how many leases it still holds (one taken over meanwhile is not renewed).
        """
        with self.write() as conn:
            cursor = conn.execute(
                "UPDATE leases SET expires_at = ? WHERE run_id = ? AND host = ? AND pid = ?",
                (time.time() + ttl, run_id, HOST, os.getpid()),
            )
            return int(cursor.rowcount)

    def release_leases(self, run_id: str) -> None:
        """Drop every lease a run still holds (at its end, whatever the outcome)."""
        with self.write() as conn:
            conn.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))

    # -- remembered file digests (hashing.FileHashCache) -----------------------------------
    def get(self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str | None:
        """A remembered digest for a file whose size, mtime, inode and ctime are unchanged."""
        if self.schema < SCHEMA_VERSION:  # read-only, not migrated: no ctimes remembered
            return None
        if valid_text(path) != path:  # a name that is not UTF-8: never remembered
            return None
        digest = self._value(
            "SELECT digest FROM file_digests "
            "WHERE path=? AND size=? AND mtime_ns=? AND inode=? AND ctime_ns=?",
            (path, size, mtime_ns, inode, ctime_ns),
        )
        return None if digest is None else str(digest)

    def put(
        self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int, digest: str
    ) -> None:
        """Remember a file's digest for the fast path of the next run (not when read-only,
        nor for a name that is not UTF-8, which no row can hold)."""
        if self.read_only or valid_text(path) != path:
            return
        with self.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO file_digests "
                "(path, size, mtime_ns, inode, ctime_ns, digest) VALUES (?,?,?,?,?,?)",
                (path, size, mtime_ns, inode, ctime_ns, digest),
            )
