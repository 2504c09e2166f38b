"""What a run whose process died left: its counts, from the node rows it committed
(:func:`committed_counts`), and when it was last known alive (:func:`last_seen`). What
:meth:`~._journal.Journal.mark_interrupted` writes, and what readers show before that mark."""

from __future__ import annotations

import sqlite3
import time

from ..states import NodeStatus
from ._leases import LEASE_SECONDS

__all__ = ["committed_counts", "last_seen"]


def committed_counts(conn: sqlite3.Connection, run_id: str) -> tuple[int, int, int]:
    """(executed, cached, failed) of a run that died, from the node rows it committed, counted
    as a run that ends counts them: by each node's last attempt, leaving out a map's children
    (``map[label]``, as ``_maps.split_children`` does); executed is succeeded, or failed once
    started (a key computed)."""
    maps = tuple(
        f"{row[0]}["
        for row in conn.execute(
            "SELECT DISTINCT node FROM events WHERE run_id = ? AND kind = 'map_started'", (run_id,)
        )
    )
    last: dict[str, tuple[str, bool]] = {}
    for node, status, key in conn.execute(
        "SELECT node, status, cache_key FROM node_runs WHERE run_id = ? ORDER BY attempt",
        (run_id,),
    ):
        if not (maps and node.endswith("]") and node.startswith(maps)):
            last[node] = (status, bool(key))
    executed = sum(
        1
        for status, keyed in last.values()
        if status == NodeStatus.SUCCEEDED or (status == NodeStatus.FAILED and keyed)
    )
    cached = sum(1 for status, _ in last.values() if status == NodeStatus.CACHED)
    failed = sum(1 for status, _ in last.values() if status == NodeStatus.FAILED)
    return executed, cached, failed


def last_seen(conn: sqlite3.Connection, run_id: str, started_at: float) -> float:
    """When a run whose process died was last known alive: its latest node row or event, or
    the last renewal of a lease it held (every few seconds while a node runs), never before it
    began nor after now. The end a dead run is given, instead of the moment it was found dead
    (whenever a later command looked)."""
    row = conn.execute(
        "SELECT MAX("
        "(SELECT MAX(COALESCE(MAX(started_at), 0), COALESCE(MAX(finished_at), 0)) "
        "FROM node_runs WHERE run_id = ?1), "
        "(SELECT COALESCE(MAX(ts), 0) FROM events WHERE run_id = ?1), "
        "(SELECT COALESCE(MAX(expires_at) - ?2, 0) FROM leases WHERE run_id = ?1))",
        (run_id, LEASE_SECONDS),
    ).fetchone()
    seen = row[0] if row is not None and isinstance(row[0], (int, float)) else 0.0
    return min(max(float(started_at), seen), time.time())
