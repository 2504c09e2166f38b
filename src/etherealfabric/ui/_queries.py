"""What the web UI reads from the journal: read-only queries, each answered in one or two SQL
statements so that a journal of 10,000 runs and a run of 5,000 nodes stay fast.

Every function takes a :class:`~etherealfabric.journal.Journal` opened read-only (see
:func:`open_journal`) and returns JSON-ready values. The questions the CLI also asks (explain,
a node's attempts, a run's live state, ``--since``) come from ``journal._history`` and
``observe._explain``; the SQL here is only what the CLI never needed (a run's nodes with their
key components in bulk, a version stamp for polling, cache sizes), read through the journal's
own read helper, never a write.

A run recorded ``running`` whose process (on this host) is gone is shown ``interrupted``, as
the CLI would mark it; the UI never writes the mark itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..journal import Journal
from ..journal._liveness import HOST, alive
from ..states import NodeStatus, RunStatus

__all__ = [
    "attempts_light",
    "cache_stats",
    "effective",
    "failures",
    "graph_rows",
    "hit_rates",
    "open_journal",
    "output_records",
    "run_params",
    "run_version",
    "workflows",
]

#: Columns of a node attempt that the run page needs (no logs, no traceback, no components).
_LIGHT = "node, attempt, status, cache_key, started_at, finished_at, duration, error, fallback"


def open_journal(path: Path) -> Journal | None:
    """The journal at ``path`` opened read-only (``None`` when there is none yet)."""
    if not path.exists():
        return None
    journal = Journal(path, read_only=True)
    if journal.schema == 0:  # the first run is creating it right now: nothing to read yet
        journal.close()
        return None
    return journal


def effective(run: Mapping[str, Any]) -> dict[str, Any]:
    """The run row as a dict, ``interrupted`` when it says running but its process is gone."""
    row = dict(run)
    if (
        row.get("status") == RunStatus.RUNNING
        and row.get("host") == HOST
        and not alive(row.get("pid"), row.get("pid_start"))
    ):
        row["status"] = RunStatus.INTERRUPTED.value
    return row


def run_params(run: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a run recorded (``target``, ``backend``, ...), ``{}`` when none."""
    try:
        params = json.loads(run.get("params") or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def workflows(journal: Journal) -> list[str]:
    """The names of the workflows with runs, sorted."""
    rows = journal._rows("SELECT DISTINCT workflow FROM runs ORDER BY workflow")
    return [r["workflow"] for r in rows]


def run_version(journal: Journal, run_id: str) -> str:
    """A stamp that changes whenever the run's rows change (for cheap polling)."""
    rows = journal._rows(
        "SELECT (SELECT MAX(id) FROM events WHERE run_id = ?) AS ev, "
        "(SELECT COUNT(*) FROM node_runs WHERE run_id = ?) AS nr, "
        "(SELECT status || COALESCE(finished_at, '') FROM runs WHERE id = ?) AS st",
        (run_id, run_id, run_id),
    )
    row = rows[0]
    return f"{row['ev'] or 0}-{row['nr']}-{row['st']}"


def attempts_light(journal: Journal, run_id: str) -> list[dict[str, Any]]:
    """Every attempt of a run, without logs, tracebacks or components, in start order."""
    return journal._rows(
        f"SELECT {_LIGHT} FROM node_runs WHERE run_id = ? "
        "ORDER BY COALESCE(started_at, 1e300), node, attempt",
        (run_id,),
    )


def failures(journal: Journal, run_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The failed attempts of a run (node, attempt, error, traceback), first first."""
    return journal._rows(
        "SELECT node, attempt, error, traceback FROM node_runs WHERE run_id = ? AND status = ? "
        "ORDER BY started_at LIMIT ?",
        (run_id, NodeStatus.FAILED.value, limit),
    )


def graph_rows(journal: Journal, run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each node of the run: its latest status and the upstream nodes its key reads.

    The edges come from the key components (a node's inputs name ``upstream.output@digest``);
    a cached node's components are its action record's. Nodes the run has not reached yet, and
    nodes without components (failed before their key, upstream failed), take both from the
    workflow's previous runs, so a live run shows its whole graph with those nodes ``pending``.
    Ordering-only edges (``add_dependency``) are not in the journal and are not drawn.
    """
    rows = journal._rows(
        "SELECT nr.node, nr.status, nr.attempt, COALESCE(nr.components, a.components) AS comp "
        "FROM node_runs nr LEFT JOIN actions a ON a.key = nr.cache_key "
        "WHERE nr.run_id = ? ORDER BY nr.node, nr.attempt",
        (run["id"],),
    )
    nodes: dict[str, dict[str, Any]] = {}
    for row in rows:  # attempts in order: the last one wins, the last components known too
        found = nodes.setdefault(row["node"], {"status": row["status"], "ups": None})
        found["status"] = row["status"]
        ups = _upstreams(row["comp"])
        if ups is not None:
            found["ups"] = ups
    missing = (run.get("nodes") or 0) > len(nodes) or any(n["ups"] is None for n in nodes.values())
    if missing:
        for name, ups in _previous_graph(journal, run).items():
            if name not in nodes:
                nodes[name] = {"status": NodeStatus.PENDING.value, "ups": ups}
            elif nodes[name]["ups"] is None:
                nodes[name]["ups"] = ups
    for found in nodes.values():
        found["ups"] = [u for u in found["ups"] or [] if u in nodes]
    return nodes


def _previous_graph(
    journal: Journal, run: Mapping[str, Any], runs: int = 3
) -> dict[str, list[str]]:
    """Node → upstream nodes, from the last few earlier runs of the same workflow."""
    rows = journal._rows(
        "SELECT nr.node, COALESCE(nr.components, a.components) AS comp FROM node_runs nr "
        "LEFT JOIN actions a ON a.key = nr.cache_key WHERE nr.run_id IN "
        "(SELECT id FROM runs WHERE workflow = ? AND started_at < ? AND id != ? "
        "ORDER BY started_at DESC LIMIT ?) ORDER BY nr.started_at DESC",
        (run["workflow"], run["started_at"], run["id"], runs),
    )
    found: dict[str, list[str]] = {}
    for row in rows:
        ups = _upstreams(row["comp"])
        if ups is not None and row["node"] not in found:
            found[row["node"]] = ups
    return found


def _upstreams(text: str | None) -> list[str] | None:
    """The upstream node names in a node's key components (``None``: no components)."""
    if not text:
        return None
    try:
        components = json.loads(text)
        inputs = components.get("inputs") or {}
    except (ValueError, AttributeError):
        return None
    ups: list[str] = []
    for refs in inputs.values():
        for ref in refs if isinstance(refs, list) else []:
            source = str(ref).rpartition("@")[0] or str(ref)
            name = source.rpartition(".")[0] or source
            if name not in ups:
                ups.append(name)
    return ups


def output_records(journal: Journal, key: str | None) -> list[dict[str, Any]]:
    """The outputs an action record names: name, serializer, size, type, digest, inline."""
    record = journal.get_action(key) if key else None
    if not record:
        return []
    outputs = record.get("outputs") or {}
    return [
        {
            "name": name,
            **{k: out.get(k) for k in ("serializer", "size", "type", "digest", "inline")},
        }
        for name, out in outputs.items()
        if isinstance(out, Mapping)
    ]


def cache_stats(journal: Journal) -> dict[str, Any]:
    """Bytes of the cache index by workflow and by node, and how many records there are.

    A record counts toward every workflow one of whose runs used its key (executed or cached).
    """
    actions = journal._rows("SELECT key, node, record FROM actions")
    sizes: dict[str, int] = {}
    by_node: dict[str, dict[str, int]] = {}
    inline = stored = 0
    for row in actions:
        total, small = _record_size(row["record"])
        sizes[row["key"]] = total
        inline += small
        stored += total - small
        entry = by_node.setdefault(row["node"] or "?", {"bytes": 0, "records": 0})
        entry["bytes"] += total
        entry["records"] += 1
    uses = journal._rows(
        "SELECT DISTINCT r.workflow, nr.cache_key FROM node_runs nr JOIN runs r ON r.id = nr.run_id "
        "WHERE nr.cache_key IS NOT NULL AND nr.status IN ('succeeded', 'cached')"
    )
    by_workflow: dict[str, dict[str, int]] = {}
    for row in uses:
        if row["cache_key"] in sizes:
            entry = by_workflow.setdefault(row["workflow"], {"bytes": 0, "records": 0})
            entry["bytes"] += sizes[row["cache_key"]]
            entry["records"] += 1
    return {
        "records": len(actions),
        "bytes": inline + stored,
        "inline_bytes": inline,
        "stored_bytes": stored,
        "by_workflow": _ranked(by_workflow.items(), "workflow"),
        "by_node": _ranked(by_node.items(), "node"),
    }


def _record_size(text: str) -> tuple[int, int]:
    """(all bytes, inline bytes) of one action record's outputs."""
    try:
        outputs = json.loads(text).get("outputs") or {}
    except (ValueError, AttributeError):
        return 0, 0
    total = small = 0
    for out in outputs.values():
        size = int(out.get("size") or 0) if isinstance(out, Mapping) else 0
        total += size
        small += size if isinstance(out, Mapping) and out.get("inline") else 0
    return total, small


def _ranked(items: Iterable[tuple[str, dict[str, int]]], label: str) -> list[dict[str, Any]]:
    return sorted(({label: k, **v} for k, v in items), key=lambda e: (-e["bytes"], e[label]))


def hit_rates(
    journal: Journal, *, workflow: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
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
    return rows[::-1]
