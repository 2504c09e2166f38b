"""Read-only questions of the team cache (``cache push``, ``pull``, ``ls``, ``du``, ``gc``).

Which cache keys a run or a workflow used, which runs are still going, which keys the last runs
of every workflow need (what a shared store's garbage collection must keep for this home), and
the indexed action records with their node and workflows, for listing and sizing the cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import RunNotFoundError
from ..states import NodeStatus, RunStatus
from ._index import RECORD
from ._journal import Journal

__all__ = [
    "cache_entries",
    "indexed_keys",
    "kept_runs",
    "keys_in_use",
    "latest_run",
    "oldest_live_run",
    "run_keys",
    "workflow_keys",
]

#: Node attempts whose key names a usable result: executed, or found in the cache.
_DONE = (NodeStatus.SUCCEEDED, NodeStatus.CACHED)


def kept_runs(keep_runs: int) -> tuple[str, tuple[Any, ...]]:
    """The runs whose results a collection keeps, as a ``WHERE`` clause on ``runs`` and its
    parameters: the last ``keep_runs`` finished runs of each workflow, and the runs still
    going (a run going is not one of those: the runs before it hold what it is about to find
    cached, and a nightly ``gc --keep-runs 1`` overlapping today's run removed them)."""
    clause = (
        "(id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY workflow "
        "ORDER BY started_at DESC) AS n FROM runs WHERE status != ?) WHERE n <= ?) "
        "OR status = ?)"
    )
    return clause, (RunStatus.RUNNING, keep_runs, RunStatus.RUNNING)


def oldest_live_run(journal: Journal) -> float | None:
    """When the oldest run still going began; None if none is."""
    rows = journal._rows(
        "SELECT MIN(started_at) AS t FROM runs WHERE status = ?", (RunStatus.RUNNING,)
    )
    value = rows[0]["t"] if rows else None
    return None if value is None else float(value)


def latest_run(journal: Journal, workflow: str) -> str:
    """The id of the last run of ``workflow``; a :class:`RunNotFoundError` if it never ran."""
    rows = journal._rows(
        "SELECT id FROM runs WHERE workflow = ? ORDER BY started_at DESC LIMIT 1", (workflow,)
    )
    if not rows:
        known = [r["workflow"] for r in journal._rows("SELECT DISTINCT workflow FROM runs")]
        error = RunNotFoundError(workflow)
        error.args = (
            f"no run of a workflow named {workflow!r} in the journal"
            + (f"; workflows that ran: {', '.join(sorted(known))}" if known else ""),
        )
        raise error
    return str(rows[0]["id"])


def run_keys(journal: Journal, run_id: str, *, executed_only: bool = False) -> dict[str, str]:
    """``key -> node`` of a run's results (executed, and unless ``executed_only`` cached)."""
    run = journal.get_run(run_id)  # RunNotFoundError, or the full id of a prefix
    statuses = (NodeStatus.SUCCEEDED,) if executed_only else _DONE
    marks = ",".join("?" * len(statuses))
    rows = journal._rows(
        f"SELECT cache_key, node FROM node_runs WHERE run_id = ? AND status IN ({marks}) "
        "AND cache_key IS NOT NULL ORDER BY started_at",
        (run["id"], *statuses),
    )
    return {str(r["cache_key"]): str(r["node"]) for r in rows}


def workflow_keys(journal: Journal, workflow: str) -> dict[str, str]:
    """``key -> node`` of every result any run of ``workflow`` executed or found cached."""
    marks = ",".join("?" * len(_DONE))
    rows = journal._rows(
        "SELECT DISTINCT n.cache_key, n.node FROM node_runs n JOIN runs r ON r.id = n.run_id "
        f"WHERE r.workflow = ? AND n.status IN ({marks}) AND n.cache_key IS NOT NULL",
        (workflow, *_DONE),
    )
    return {str(r["cache_key"]): str(r["node"]) for r in rows}


def keys_in_use(journal: Journal, keep_runs: int, pinned: Iterable[str] = ()) -> set[str]:
    """The keys of the last ``keep_runs`` finished runs of each workflow, of runs still going and of the
    ``pinned`` runs: what a collection must keep for this home (one query)."""
    pins = [str(journal.get_run(run)["id"]) for run in pinned]
    marks = ",".join("?" * len(_DONE))
    kept, params = kept_runs(keep_runs)
    rows = journal._rows(
        "SELECT DISTINCT cache_key FROM node_runs WHERE cache_key IS NOT NULL AND status IN "
        f"({marks}) AND run_id IN (SELECT id FROM runs WHERE {kept} "
        f"OR id IN ({','.join('?' * len(pins))}))",
        (*_DONE, *params, *pins),
    )
    return {str(r["cache_key"]) for r in rows}


def indexed_keys(journal: Journal, keys: Sequence[str]) -> set[str]:
    """Those of ``keys`` whose action record the journal holds (records are not read)."""
    return {
        str(row[0])
        for rows in journal._in_batches("SELECT key FROM actions WHERE key IN", keys)
        for row in rows
    }


def cache_entries(journal: Journal, workflow: str | None = None) -> list[dict[str, Any]]:
    """Every indexed action record (of ``workflow``'s runs only, if given), oldest first:
    ``key``, ``node``, ``created_at``, ``workflows`` (that used it) and ``record``."""
    used: dict[str, set[str]] = {}
    for row in journal._rows(
        "SELECT DISTINCT n.cache_key AS key, r.workflow FROM node_runs n "
        "JOIN runs r ON r.id = n.run_id WHERE n.cache_key IS NOT NULL"
    ):
        used.setdefault(str(row["key"]), set()).add(str(row["workflow"]))
    entries = []
    for row in journal._rows(
        f"SELECT key, node, {RECORD} AS record, created_at FROM actions ORDER BY created_at"
    ):
        workflows = sorted(used.get(str(row["key"]), ()))
        if workflow is not None and workflow not in workflows:
            continue
        try:
            record = json.loads(row["record"])
        except (ValueError, TypeError):
            record = {}
        entries.append(
            {
                "key": str(row["key"]),
                "node": row["node"] or record.get("node", "?"),
                "created_at": float(row["created_at"]),
                "workflows": workflows,
                "record": record if isinstance(record, dict) else {},
            }
        )
    return entries
