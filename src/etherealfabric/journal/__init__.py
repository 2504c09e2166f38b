"""The journal layer: all of the package's SQL lives here, and nowhere else.

- ``_connection``: the journal file as SQLite connections: set-up (WAL, pragmas), read-only
  opening, write transactions retried while another process holds the lock.
- ``_schema``: the tables, their migrations, and the node rows the recorder writes.
- ``_liveness``: whether the process that wrote a run or lease row still runs (host, pid and
  the pid's start time).
- ``_journal``: :class:`Journal`, the journal's reads and writes: runs, node runs, events,
  leases, remembered file digests.
- ``_index``: the cache index mixed into :class:`Journal`: action records and inline outputs,
  read one by one, in batches, or (a warm run) the records of the last run's nodes in bulk.
- ``_leases``: the home lease, which a run alone in its home takes instead of a lease per
  node, and gives up as soon as another run wants to compute.
- ``_history``: read-only questions about past runs (``explain``, ``status``, ``logs``).
- ``_audit``: the audit of ``cache verify``: the action records against the store's objects.
- ``_gc``: garbage collection of the local cache (``cache gc``).
- ``_browse`` (public as ``journal.browse``): read-only bulk questions of a browser of the
  journal (the web UI): a run's attempts, state, graph and version stamp, cache sizes.

To read the journal from Python::

    from etherealfabric.journal import Journal

    with Journal(".etherealfabric/journal.db") as journal:
        print(journal.list_runs(limit=5))

``Journal(path, read_only=True)`` reads a journal without writing anything beside it (a
read-only home); ``read_only=None`` writes when the home is writable and reads otherwise.

Importing this package does not import sqlite-utils (only opening an out-of-date journal does),
nor ``browse`` until it is used (a run never does: a millisecond of its first start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._journal import LEASE_SECONDS, AmbiguousRunError, Journal, ReadOnlyJournalError

if TYPE_CHECKING:
    from . import _browse as browse

__all__ = ["LEASE_SECONDS", "AmbiguousRunError", "Journal", "ReadOnlyJournalError", "browse"]


def __getattr__(name: str) -> Any:
    """``browse`` is imported on first use: a run never needs it (the web UI does)."""
    if name == "browse":
        from . import _browse

        return _browse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
