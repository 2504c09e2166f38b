"""The home lease: a run alone in its home computes without one lease transaction per node.

Single flight between the runs of one home rests on the ``leases`` table: a run computes a key
only under its lease. Taking one lease per executed node is a write transaction per node, so
a run that finds no other live lease holder in its home takes the **home lease** instead (a
row under the key :data:`HOME_LEASE`): it covers every key the run computes from then on, and
the run takes no per-key lease while it holds it.

Another run that wants to compute meanwhile (:meth:`LeaseClaims.claim_lease`) finds the home
lease, leaves a *presence* row (``*run:<its id>``) and waits, as for a key leased elsewhere.
The holder looks for such rows in every commit of its group window and at least every
:data:`~etherealfabric.run._scheduler.LEASE_POLL_SECONDS` while it waits
(:meth:`LeaseClaims.lease_contended`), and then gives the home lease up in one transaction
(:meth:`LeaseClaims.share_home`): one per-key lease for each key it is still computing, its own
presence row, the home lease deleted. From then on both runs lease key by key as before, and
their presence rows keep either from taking the home lease again until the other run ended
(:meth:`~etherealfabric.journal.Journal.release_leases` drops all of a run's rows).

A home lease or presence row of a process that is gone, or past its expiry, counts for nothing
and is deleted by the next claim, like any lease of a dead holder.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ._liveness import HOST, PID_START, alive

__all__ = ["HOME_LEASE", "LEASE_SECONDS", "LeaseClaims", "holder_gone"]

#: How long a lease lasts unless its holder renews it (the scheduler renews its leases every
#: few seconds): a holder gone in a way liveness cannot see (another host, frozen) loses its
#: leases after this long.
LEASE_SECONDS = 60.0
#: The key of the home lease in the ``leases`` table (no cache key starts with ``*``).
HOME_LEASE = "*home"
_PRESENCE = "*run:"
_COLUMNS = "key, run_id, host, pid, pid_start, acquired_at, expires_at"
_INSERT = (
    "INSERT OR REPLACE INTO leases (key, node, run_id, host, pid, pid_start, acquired_at, "
    "expires_at) VALUES (?,?,?,?,?,?,?,?)"
)


def holder_gone(row: Sequence[Any], now: float, ttl: float) -> bool:
    """Whether a lease row (``_COLUMNS``) is expired or held by a dead process of this host."""
    _key, _run, host, pid, start, acquired, expires = row
    until = _time(expires)
    if until is None:  # none (an old row), or damaged: from when it was taken, if known
        taken = _time(acquired)
        until = taken + ttl if taken is not None else -math.inf  # damaged: expired
    return bool(until < now or (host == HOST and not alive(pid, start)))


def _time(value: Any) -> float | None:
    """A lease row's time as a number; None if absent or not a number (an edited journal's
    text or blob: it never breaks the check of every lease)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
        return float(value)
    return None


class LeaseClaims:
    """The journal's claims of leases for a run (mixed into :class:`~etherealfabric.journal.Journal`)."""

    conn: sqlite3.Connection

    def write(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover
        raise NotImplementedError  # Journal.write

    def _others(
        self, conn: sqlite3.Connection, run_id: str, now: float, ttl: float
    ) -> Iterator[tuple[Any, ...]]:
        """The live lease rows of other runs (rows of gone holders are deleted on the way)."""
        rows = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE run_id != ?", (run_id,))
        dead = []
        for row in rows.fetchall():
            if holder_gone(row, now, ttl):
                dead.append((row[0], row[1]))
            else:
                yield row
        if dead and conn.in_transaction:
            conn.executemany("DELETE FROM leases WHERE key = ? AND run_id = ?", dead)

    def claim_lease(self, key: str, *, node: str, run_id: str, ttl: float = LEASE_SECONDS) -> str:
        """Lease ``key`` for ``run_id``: ``"home"`` (no other live holder: the home lease was
        taken, it covers this key and the next ones), ``"key"`` (this key's lease), or ``""``
        while another live run holds the key or the home lease (a presence row is left so
        that the home lease's holder gives it up)."""
        now = time.time()
        me = (HOST, os.getpid(), PID_START, now, now + ttl)
        with self.write() as conn:
            live = list(self._others(conn, run_id, now, ttl))
            if not live:
                conn.execute(_INSERT, (HOME_LEASE, None, run_id, *me))
                return "home"
            conn.execute(_INSERT, (_PRESENCE + run_id, None, run_id, *me))
            if any(row[0] in (HOME_LEASE, key) for row in live):
                return ""
            conn.execute(_INSERT, (key, node, run_id, *me))
            return "key"

    def claim_leases(
        self, keys: Sequence[str], *, node: str, run_id: str, ttl: float = LEASE_SECONDS
    ) -> tuple[str, set[str]]:
        """:meth:`claim_lease` of many keys in one transaction (a chunk of the map ``node``'s
        children): ``("home", keys)``, ``("key", the keys no other live run holds)``, or
        ``("", set())`` while another live run holds the home lease."""
        now = time.time()
        me = (HOST, os.getpid(), PID_START, now, now + ttl)
        with self.write() as conn:
            busy = {row[0] for row in self._others(conn, run_id, now, ttl)}
            if not busy:
                conn.execute(_INSERT, (HOME_LEASE, None, run_id, *me))
                return "home", set(keys)
            conn.execute(_INSERT, (_PRESENCE + run_id, None, run_id, *me))
            if HOME_LEASE in busy:
                return "", set()
            taken = [key for key in dict.fromkeys(keys) if key not in busy]
            conn.executemany(_INSERT, [(key, node, run_id, *me) for key in taken])
            return "key", set(taken)

    def lease_contended(self, run_id: str, *, ttl: float = LEASE_SECONDS) -> bool:
        """Whether another live run holds a lease or waits for one (a read, unless inside a
        write transaction, where the rows of gone holders are deleted too)."""
        for _row in self._others(self.conn, run_id, time.time(), ttl):
            return True
        return False

    def live_leases(self, *, ttl: float = LEASE_SECONDS) -> set[str]:
        """The keys that live runs hold leases on (:data:`HOME_LEASE` among them while a run
        holds the home lease: it covers every key that run computes). Inside a write
        transaction, no run can take a new one until it ends (``cache gc``)."""
        return {str(row[0]) for row in self._others(self.conn, "", time.time(), ttl)}

    def share_home(
        self, run_id: str, held: Mapping[str, str], *, ttl: float = LEASE_SECONDS
    ) -> None:
        """Give the home lease up: lease each key of ``held`` (key -> node) still computed, in
        the same transaction, and leave a presence row."""
        now = time.time()
        me = (HOST, os.getpid(), PID_START, now, now + ttl)
        with self.write() as conn:
            conn.executemany(_INSERT, [(key, node, run_id, *me) for key, node in held.items()])
            conn.execute(_INSERT, (_PRESENCE + run_id, None, run_id, *me))
            conn.execute("DELETE FROM leases WHERE key = ? AND run_id = ?", (HOME_LEASE, run_id))
