"""Read-only questions a browser of the journal asks (the web UI): bulk, and cheap.

The CLI asks about one run or one node at a time (``_history``); a page that lists 10,000 runs
or draws a run of 5,000 nodes needs the same facts in bulk, each answer in one or two SQL
statements that read only the columns it needs:

- :func:`open_reader`: the journal opened read-only (``mode=ro``), or ``None`` before one exists;
- :func:`shown`: a run row as a reader should show it (``interrupted`` when its process is gone);
- :func:`run_stamp`: a version stamp of a run's rows, for cheap polling;
- :func:`run_attempts` and :func:`run_state`: every attempt of a run without logs, tracebacks or
  components, and the counts, running nodes and statuses derived from them in the same read;
- :func:`failed_attempts`: the failed attempts with their tracebacks (the nodes' own first),
  and :func:`failure_count`, how many there are;
- :func:`run_graph`: each node's status and the upstream nodes its key components read;
- :func:`map_items`: a page of a map's items (its children that ran), each by its last attempt;
- :func:`workflow_names`, :func:`cache_sizes`, :func:`hit_rates`: the lists and the cache page.

Every function only reads (``SELECT``), and is meant for a :class:`Journal` opened by
:func:`open_reader`, which cannot write even by mistake. A run recorded ``running`` whose
process on this host is gone is *shown* ``interrupted`` (:func:`shown`), as
:meth:`Journal.mark_interrupted` would mark it, but nothing here writes the mark.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from ..states import NodeStatus, RunStatus
from ._index import RECORD
from ._journal import Journal
from ._liveness import HOST, alive
from ._maps import split_children
from ._roots import check_roots
from ._rungraph import NOT_RUN, GraphNode, map_names, run_graph, unstarted

__all__ = [
    "NOT_RUN",
    "Attempt",
    "BrowseError",
    "CacheSizes",
    "Failure",
    "GraphNode",
    "HitRate",
    "RunState",
    "cache_sizes",
    "failed_attempts",
    "failure_count",
    "hit_rates",
    "interrupted_attempts",
    "map_items",
    "map_names",
    "open_reader",
    "run_attempts",
    "run_graph",
    "run_stamp",
    "run_state",
    "shown",
    "workflow_names",
]

#: What a read of the journal raises when the database itself fails (a journal being created
#: or migrated right now, a damaged file): SQLite's own error, so that callers outside this
#: layer need not import SQLite.
BrowseError = sqlite3.Error


class Attempt(TypedDict):
    """One node attempt, without its logs, traceback or key components."""

    node: str
    attempt: int
    status: str
    cache_key: str | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    error: str | None
    fallback: int


class Failure(TypedDict):
    """A failed attempt, with its error and traceback."""

    node: str
    attempt: int
    error: str | None
    traceback: str | None


class HitRate(TypedDict):
    """A finished run's executed and cached counts, and cached / (executed + cached)."""

    id: str
    workflow: str
    status: str
    started_at: float
    executed: int | None
    cached: int | None
    hit_rate: float | None


class MapItem(TypedDict):
    """One item of a map (a child that ran), by its last attempt; ``index``: its place, from
    1, in the order the run started the items; ``item``: its label (``map[label]``)."""

    index: int
    item: str
    node: str
    attempts: int
    status: str
    cache_key: str | None
    started_at: float | None
    duration: float | None
    error: str | None


class MapItems(TypedDict):
    """A page of a map's items: ``total`` items match, ``counts`` of all its items by status."""

    total: int
    counts: dict[str, int]
    offset: int
    items: list[MapItem]


class CacheSizes(TypedDict):
    """Bytes of the cache index, in all, inline, stored, by workflow and by node."""

    records: int
    bytes: int
    inline_bytes: int
    stored_bytes: int
    by_workflow: list[dict[str, Any]]
    by_node: list[dict[str, Any]]


@dataclass(frozen=True)
class RunState:
    """A run's live state, from one read of its attempts.

    ``counts``: nodes per status of their latest attempt (nodes without a row: ``pending``
    while the run goes on, :data:`NOT_RUN` once it has ended); ``running``: the running nodes
    (node, attempt, started_at, elapsed);
    ``statuses``: each node's latest status; ``attempts``: every attempt, in start order. A
    map's items (``map[label]``) are attempts, not nodes: they are in ``attempts`` only.
    """

    counts: dict[str, int]
    running: list[dict[str, Any]]
    statuses: dict[str, str]
    attempts: list[Attempt]
    now: float


#: Columns of an :class:`Attempt`.
_LIGHT = "node, attempt, status, cache_key, started_at, finished_at, duration, error, fallback"


def open_reader(path: Path) -> Journal | None:
    """The journal at ``path`` opened read-only (``None`` when there is none, or not yet)."""
    if not path.exists():
        return None
    journal = Journal(path, read_only=True)
    if journal.schema == 0:  # the first run is creating it right now: nothing to read yet
        journal.close()
        return None
    check_roots(journal)  # tables read from another's root page (forged): damaged, said so
    return journal


def shown(run: Mapping[str, Any], journal: Journal | None = None) -> dict[str, Any]:
    """The run row as a dict, ``interrupted`` when it says running but its process is gone;
    with ``journal``, such a run's counts are those of the node rows it committed, and its end
    when it was last seen alive (as :meth:`Journal.mark_interrupted` would write them)."""
    row = dict(run)
    if (
        row.get("status") == RunStatus.RUNNING
        and row.get("host") == HOST
        and not alive(row.get("pid"), row.get("pid_start"))
    ):
        row["status"] = RunStatus.INTERRUPTED.value
        if journal is not None and row.get("executed") is None:
            row["executed"], row["cached"], row["failed"] = journal.committed_counts(str(row["id"]))
        if journal is not None and row.get("finished_at") is None:
            row["finished_at"] = journal.last_seen(str(row["id"]), float(row["started_at"]))
    return row


def workflow_names(journal: Journal) -> list[str]:
    """The names of the workflows with runs, sorted."""
    rows = journal._rows("SELECT DISTINCT workflow FROM runs ORDER BY workflow")
    return [r["workflow"] for r in rows]


def run_stamp(journal: Journal, run_id: str) -> str:
    """A stamp that changes whenever the run's rows change: its last event, its number of node
    rows, its status and end (three index look-ups, whatever the run's size)."""
    rows = journal._rows(
        "SELECT (SELECT MAX(id) FROM events WHERE run_id = ?) AS ev, "
        "(SELECT COUNT(*) FROM node_runs WHERE run_id = ?) AS nr, "
        "(SELECT status || COALESCE(finished_at, '') FROM runs WHERE id = ?) AS st",
        (run_id, run_id, run_id),
    )
    row = rows[0]
    return f"{row['ev'] or 0}-{row['nr']}-{row['st']}"


def run_attempts(journal: Journal, run_id: str) -> list[Attempt]:
    """Every attempt of a run, without logs, tracebacks or components, in start order."""
    rows = journal._rows(
        f"SELECT {_LIGHT} FROM node_runs WHERE run_id = ? "
        "ORDER BY COALESCE(started_at, 1e300), node, attempt",
        (run_id,),
    )
    return cast(list[Attempt], rows)


def attempts_as_shown(run: Mapping[str, Any], attempts: list[Any]) -> list[Any]:
    """A run's node rows as :func:`shown` shows the run: those of a run whose process died
    unmarked (a read-only home, a full disk) ``interrupted``, not running for good."""
    dead = run.get("status") == RunStatus.INTERRUPTED.value
    return interrupted_attempts(attempts) if dead else attempts


def interrupted_attempts(attempts: list[Any]) -> list[Any]:
    """``attempts`` (rows as dicts) as :meth:`Journal.mark_interrupted` would leave them: an
    attempt still running (or retrying, unfinished) is ``interrupted``; the rows are copies."""
    unfinished = (NodeStatus.RUNNING.value, NodeStatus.RETRYING.value)
    return [
        {**row, "status": NodeStatus.INTERRUPTED.value}
        if row["status"] == unfinished[0]
        or (row["status"] == unfinished[1] and row.get("finished_at") is None)
        else row
        for row in attempts
    ]


def run_state(journal: Journal, run: Mapping[str, Any], *, now: float | None = None) -> RunState:
    """The run's counts, running nodes and statuses, and its attempts, in one read; a run
    shown ``interrupted`` (:func:`shown`) has its unfinished attempts shown interrupted too."""
    now = time.time() if now is None else now
    attempts = run_attempts(journal, run["id"])
    if run.get("status") == RunStatus.INTERRUPTED:
        attempts = cast(list[Attempt], interrupted_attempts(attempts))
    latest: dict[str, Attempt] = {}
    own, _ = split_children(attempts, map_names(journal, [run["id"]]))
    for row in cast(list[Attempt], own):  # a map counts once, as `status` has it: not its items
        kept = latest.get(row["node"])
        if kept is None or row["attempt"] >= kept["attempt"]:
            latest[row["node"]] = row
    counts: dict[str, int] = {}
    running = []
    for row in sorted(latest.values(), key=lambda r: (r["started_at"] or 1e300, r["node"])):
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] == NodeStatus.RUNNING:
            started = row["started_at"] or now
            running.append(
                {"node": row["node"], "attempt": row["attempt"], "started_at": started,
                 "elapsed": max(0.0, now - started)}
            )  # fmt: skip
    pending = (run.get("nodes") or 0) - len(latest)
    if pending > 0:  # not started yet; once the run has ended, never: `status` says "(of N)"
        counts[unstarted(run)] = pending
    statuses = {name: row["status"] for name, row in latest.items()}
    return RunState(counts, running, statuses, attempts, now)


def failed_attempts(journal: Journal, run_id: str, limit: int = 50) -> list[Failure]:
    """The failed attempts of a run (node, attempt, error, traceback), at most ``limit``: the
    nodes' own failures first (those that failed the run), then the failed items of its maps
    (which a map's ``max_failures`` may have allowed), each in start order. A run whose 60
    tolerated items failed before its node ``report`` did lists ``report`` first, not 50
    items. :func:`failure_count` says how many there are in all."""
    maps = sorted(map_names(journal, [run_id]))
    if maps:  # exactly the rows split_children calls a map's children: map[label]
        item = (
            "(instr(node, '[') > 1 AND node LIKE '%]' AND "
            f"substr(node, 1, instr(node, '[') - 1) IN ({', '.join('?' * len(maps))})), "
        )
    else:
        item = ""  # (a bare 0 would be read as a column number)
    rows = journal._rows(
        "SELECT node, attempt, error, traceback FROM node_runs WHERE run_id = ? AND status = ? "
        f"ORDER BY {item}COALESCE(started_at, 1e300), node, attempt LIMIT ?",
        (run_id, NodeStatus.FAILED.value, *maps, limit),
    )
    return cast(list[Failure], rows)


def failure_count(journal: Journal, run_id: str) -> int:
    """How many failed attempts a run has (:func:`failed_attempts` lists the first of them)."""
    rows = journal._rows(
        "SELECT COUNT(*) AS n FROM node_runs WHERE run_id = ? AND status = ?",
        (run_id, NodeStatus.FAILED.value),
    )
    return int(rows[0]["n"])


#: Each child of a map (``map[label]``) by its last attempt (SQLite takes the bare columns of
#: a MAX() group from the row of the maximum); "map[" <= node < "map\\" is exactly map[...]
_LAST = (
    "WITH g AS (SELECT node, MAX(attempt) AS attempt, status, cache_key, started_at, duration, "
    "error FROM node_runs WHERE run_id = ?1 AND node >= ?2 AND node < ?3 GROUP BY node) "
)
#: ... and each one's place, by the start of its first attempt
_PLACED = (
    f"{_LAST}, last AS (SELECT g.*, ROW_NUMBER() OVER (ORDER BY f.started_at IS NULL, "
    "f.started_at, g.node) AS place FROM g LEFT JOIN node_runs f "
    "ON f.run_id = ?1 AND f.node = g.node AND f.attempt = 1) "
)


def map_items(
    journal: Journal,
    run_id: str,
    node: str,
    *,
    offset: int = 0,
    limit: int = 100,
    status: str | None = None,
) -> MapItems:
    """A page of the items of the map ``node`` in a run: its children that ran, each by its
    last attempt, in the order the run started them (``status``: only those whose last attempt
    ended so). Items the run took from the cache without running have no row: their number is
    in the map's ``map_finished`` event (``show RUN NODE --items`` lists them from the store).
    Two statements, whatever the size of the map: the page, and the counts by status."""
    bounds = (run_id, f"{node}[", f"{node}\\")
    counts = {
        str(r["status"]): int(r["n"])
        for r in journal._rows(
            f"{_LAST}SELECT status, COUNT(*) AS n FROM g GROUP BY status", bounds
        )
    }
    where = "WHERE status = ?6 " if status else ""
    rows = journal._rows(
        f"{_PLACED}SELECT node, attempt, status, cache_key, started_at, duration, error, "
        f"place FROM last {where}ORDER BY place LIMIT ?4 OFFSET ?5",
        (*bounds, limit, offset, *([status] if status else [])),
    )
    total = sum(counts.values()) if not status else counts.get(status, 0)
    prefix = len(node) + 1
    items: list[MapItem] = [
        {"index": int(r["place"]), "item": str(r["node"])[prefix:-1], "node": str(r["node"]),
         "attempts": int(r["attempt"]), "status": str(r["status"]), "cache_key": r["cache_key"],
         "started_at": r["started_at"], "duration": r["duration"], "error": r["error"]}
        for r in rows
    ]  # fmt: skip
    return {"total": total, "counts": counts, "offset": offset, "items": items}


# -- the cache -------------------------------------------------------------------------------
def cache_sizes(journal: Journal) -> CacheSizes:
    """Bytes of the cache index by workflow and by node, and how many records there are.

    A record counts toward every workflow one of whose runs used its key (executed or cached),
    and so does it by node: ``by_node`` has a row per workflow and node (nodes of the same name
    in two workflows are two rows); a record no run in the journal used has workflow ``None``.
    """
    actions = journal._rows(f"SELECT key, node, {RECORD} AS record FROM actions")
    uses = journal._rows(  # only keys with a record: a few rows, not one per node run
        "SELECT DISTINCT r.workflow, nr.cache_key FROM node_runs nr "
        "JOIN actions a ON a.key = nr.cache_key JOIN runs r ON r.id = nr.run_id "
        "WHERE nr.status IN (?, ?)",
        (NodeStatus.SUCCEEDED.value, NodeStatus.CACHED.value),
    )
    used: dict[str, list[str]] = {}
    for row in uses:
        used.setdefault(row["cache_key"], []).append(row["workflow"])
    by_workflow: dict[str, dict[str, int]] = {}
    by_node: dict[tuple[str | None, str], dict[str, int]] = {}
    inline = stored = 0
    for row in actions:
        total, small = _record_size(row["record"])
        inline += small
        stored += total - small
        workflows = used.get(row["key"], [])
        for workflow in workflows:
            entry = by_workflow.setdefault(workflow, {"bytes": 0, "records": 0})
            entry["bytes"] += total
            entry["records"] += 1
        named: list[str | None] = [*sorted(set(workflows))] or [None]  # None: no run used it
        for name in named:
            entry = by_node.setdefault((name, row["node"] or "?"), {"bytes": 0, "records": 0})
            entry["bytes"] += total
            entry["records"] += 1
    nodes = [{"workflow": w, "node": n, **v} for (w, n), v in by_node.items()]
    return {
        "records": len(actions),
        "bytes": inline + stored,
        "inline_bytes": inline,
        "stored_bytes": stored,
        "by_workflow": _ranked(by_workflow.items(), "workflow"),
        "by_node": sorted(nodes, key=lambda e: (-e["bytes"], e["node"], e["workflow"] or "")),
    }


def _record_size(text: bytes | None) -> tuple[int, int]:
    """(all bytes, inline bytes) of one action record's outputs."""
    try:
        outputs = json.loads(text).get("outputs") or {}  # type: ignore[arg-type]
    except (ValueError, AttributeError, TypeError):
        return 0, 0
    total = small = 0
    for out in outputs.values() if isinstance(outputs, dict) else ():
        size = int(out.get("size") or 0) if isinstance(out, Mapping) else 0
        total += size
        small += size if isinstance(out, Mapping) and out.get("inline") else 0
    return total, small


def _ranked(items: Iterable[tuple[str, dict[str, int]]], label: str) -> list[dict[str, Any]]:
    return sorted(({label: k, **v} for k, v in items), key=lambda e: (-e["bytes"], e[label]))


def hit_rates(journal: Journal, *, workflow: str | None = None, limit: int = 200) -> list[HitRate]:
    """Per finished run, oldest first: executed, cached and the hit rate (cached / both)."""
    where, params = ("AND workflow = ?", (workflow,)) if workflow else ("", ())
    rows = journal._rows(
        "SELECT id, workflow, status, started_at, executed, cached FROM runs "
        f"WHERE finished_at IS NOT NULL {where} ORDER BY started_at DESC LIMIT ?",
        (*params, limit),
    )
    for row in rows:
        done = (row["executed"] or 0) + (row["cached"] or 0)
        row["hit_rate"] = (row["cached"] or 0) / done if done else None
    return cast(list[HitRate], rows[::-1])
