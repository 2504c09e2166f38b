"""Checkpoints of the journal's write-ahead log, in a background thread while a run writes.

In WAL mode a commit appends pages to the ``-wal`` file; a *checkpoint* copies them back
into the database file and syncs both. SQLite runs one automatically in the committing
connection once the log holds 1,000 pages: on a cold run of trivial nodes that was a
third of the time of every commit (10-20 µs of each node's share), spent by the scheduler
while no node could be started or recorded. While a run writes, :class:`Checkpointer` turns
the automatic checkpoint off on the run's connection and runs a ``PASSIVE`` checkpoint every
:data:`EVERY_SECONDS` on a connection of its own, in a daemon thread (SQLite releases the GIL
while it copies and syncs). A passive checkpoint never blocks the writer nor waits for it;
once the log outgrows :data:`RESTART_BYTES` the checkpoint is a ``RESTART`` one, which the
writer waits for, so that the log is written from its start again and stays that small.

Nothing about durability changes: a checkpoint only copies what is committed, and a log that
a kill leaves behind is replayed by the next connection, as before. When the run stops the
thread, the automatic checkpoint is put back on the run's connection.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["EVERY_SECONDS", "Checkpointer"]

log = logging.getLogger("etherealfabric.journal")

#: How often the background thread checkpoints the log.
EVERY_SECONDS = 0.2
#: A log grown beyond this is checkpointed with ``RESTART``: the writer waits for the end
#: of that checkpoint (the pages passive ones copied already are not copied again) and then
#: writes the log from its start again. Passive checkpoints alone let it grow without end
#: under a run that commits faster than they finish (1.6 GB for 100,000 nodes).
RESTART_BYTES = 16 * 1024 * 1024
#: How long a RESTART checkpoint waits for the writer's transaction and for readers (another
#: process's long read keeps the log in use): the writer is held up at most this long plus the
#: copy; a checkpoint that times out is tried again at the next tick.
RESTART_WAIT_SECONDS = 0.25
_AUTOMATIC = 1000  # SQLite's default wal_autocheckpoint (pages)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Checkpointer:
    """A daemon thread checkpointing the journal at ``path`` while ``writer`` commits."""

    def __init__(self, path: Path, writer: sqlite3.Connection) -> None:
        self.path = path
        self._writer = writer
        self._stop = threading.Event()
        writer.execute("PRAGMA wal_autocheckpoint=0")
        self._thread = threading.Thread(
            target=self._run, name="etherealfabric-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        # the connection is opened at the first tick: a run shorter than one (most short
        # runs) opens none, and its open (two syncs of a new journal) never delays the run
        if self._stop.wait(EVERY_SECONDS):
            return
        try:
            conn = sqlite3.connect(str(self.path), timeout=0, isolation_level=None)
        except sqlite3.Error as exc:  # the writer's automatic checkpoint is not back yet:
            log.debug("no background checkpoints of %s: %s", self.path, exc)  # close() does it
            return
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            conn.execute(f"PRAGMA busy_timeout={int(RESTART_WAIT_SECONDS * 1000)}")
            while True:
                try:
                    mode = "RESTART" if _size(wal) > RESTART_BYTES else "PASSIVE"
                    conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
                except sqlite3.Error as exc:  # busy or locked: the next one will do
                    log.debug("background checkpoint of %s: %s", self.path, exc)
                if self._stop.wait(EVERY_SECONDS):
                    break
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (it finishes the checkpoint it is in) and give the writer its
        automatic checkpoint back. Call it with the writer's lock held (no write runs)."""
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(sqlite3.Error):  # a closed connection: nothing to give back
            self._writer.execute(f"PRAGMA wal_autocheckpoint={_AUTOMATIC}")
