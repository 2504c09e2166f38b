"""A run's graph for the web UI: each node's latest status and its upstream nodes.

A run records its graph as it starts: its ``run_started`` event names each node's data
upstreams (``upstreams``). That is the graph drawn: every node of the run, those it never
reached included, with its edges, from the run's own record alone (a later run changes
nothing in it).

A run recorded before runs did so (an older journal) has its edges read from the key
components (a node's inputs name ``upstream.output@digest``): a node's own, or, for a cache
hit, its action record's. A node the run blocked (upstream failed, skipped) has no key: its
direct upstreams are in its event (``upstreams``). Nodes the run has not reached yet, and nodes
with neither (a node still running, or cut off by the run's death: its components are written
when it ends), take both from the workflow's previous runs (runs started before it: never from a
later run, which may have completed the same key since).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ..states import NodeStatus, RunStatus
from ._journal import Journal
from ._maps import split_children

__all__ = ["NOT_RUN", "GraphNode", "map_names", "recorded_upstreams", "run_graph", "unstarted"]


#: What a node of a run that ended before it started is shown as (it has no row; ``status``
#: counts it in "(of N)", a map's unstarted items are "not run" too): not a node status
NOT_RUN = "not_run"


def unstarted(run: Mapping[str, Any]) -> str:
    """The status shown for a node the run has not started: ``pending`` while the run goes
    on, :data:`NOT_RUN` once it has ended (``run`` as ``browse.shown`` shows it)."""
    return NodeStatus.PENDING.value if run.get("status") == RunStatus.RUNNING else NOT_RUN


class GraphNode(TypedDict):
    """A node of a run's graph: its latest status and the upstream nodes its key reads."""

    status: str
    ups: list[str]


# -- the graph -------------------------------------------------------------------------------
#: A node's key components (its own, or its action record's for a cached node), reduced in SQL
#: to their ``inputs`` (NULL: no usable components), so Python parses a few bytes per node.
_INPUTS = (
    "CASE WHEN json_valid(comp) THEN CASE WHEN json_type(comp) = 'object' "
    "THEN COALESCE(json_extract(comp, '$.inputs'), '{}') END END AS inputs"
)
_COMPONENTS = "COALESCE(nr.components, a.components) AS comp"
#: ...whose action record is read only for a cache hit: the record the run used. Another row
#: without components of its own (a node running, or cut off by its run's death) is not given
#: those of a record that a later run may have made of its key since (its graph would change)
_HIT_RECORD = (
    f"LEFT JOIN actions a ON a.key = nr.cache_key AND nr.status = '{NodeStatus.CACHED.value}'"
)


def run_graph(journal: Journal, run: Mapping[str, Any]) -> dict[str, GraphNode]:
    """Each node of the run: its latest status (no row: :func:`unstarted`) and its upstreams.

    The graph the run recorded as it started (see the module docstring), or, for a run that
    recorded none, the one its key components, blocked nodes' events and the workflow's earlier
    runs give. Ordering-only edges (``add_dependency``) are not in the journal and not drawn.
    """
    recorded = recorded_upstreams(journal, str(run["id"]))
    if recorded is not None:
        return _recorded_graph(journal, run, recorded)
    rows = journal._rows(
        f"SELECT node, status, {_INPUTS} FROM (SELECT nr.node, nr.status, nr.attempt, "
        f"{_COMPONENTS} FROM node_runs nr {_HIT_RECORD} "
        "WHERE nr.run_id = ?) ORDER BY node, attempt",
        (run["id"],),
    )
    found: dict[str, dict[str, Any]] = {}
    own, _ = split_children(rows, map_names(journal, [run["id"]]))  # a map's items: no nodes
    for row in own:  # attempts in order: the last one wins, the last components known too
        entry = found.setdefault(row["node"], {"status": row["status"], "ups": None})
        entry["status"] = row["status"]
        ups = _upstreams(row["inputs"])
        if ups is not None:
            entry["ups"] = ups
    if any(n["ups"] is None for n in found.values()):
        _blocked_upstreams(journal, run["id"], found)
    missing = (run.get("nodes") or 0) > len(found) or any(n["ups"] is None for n in found.values())
    if missing:
        for name, ups in _previous_graph(journal, run).items():
            if name not in found:
                found[name] = {"status": unstarted(run), "ups": ups}
            elif found[name]["ups"] is None:
                found[name]["ups"] = ups
    return {
        name: {"status": entry["status"], "ups": [u for u in entry["ups"] or [] if u in found]}
        for name, entry in found.items()
    }


def recorded_upstreams(journal: Journal, run_id: str) -> dict[str, list[str]] | None:
    """Each node's data upstreams as run ``run_id`` recorded them when it started (its
    ``run_started`` event), or None when it recorded none (a run of an older version)."""
    text = journal._value(
        "SELECT CASE WHEN json_valid(data) THEN json_extract(data, '$.upstreams') END "
        "FROM events WHERE run_id = ? AND kind = 'run_started' ORDER BY id LIMIT 1",
        (run_id,),
    )
    if not isinstance(text, str):
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    return {
        str(name): [str(u) for u in ups] if isinstance(ups, list) else []
        for name, ups in found.items()
    }


def _recorded_graph(
    journal: Journal, run: Mapping[str, Any], upstreams: dict[str, list[str]]
) -> dict[str, GraphNode]:
    """The graph the run recorded, each node with the status of its last attempt (a node
    without a row: :func:`unstarted`; a row of a node the record lacks is drawn without
    edges)."""
    rows = journal._rows(
        "SELECT node, status FROM node_runs WHERE run_id = ? ORDER BY node, attempt",
        (run["id"],),
    )
    own, _ = split_children(rows, map_names(journal, [run["id"]]))  # a map's items: no nodes
    statuses = {str(r["node"]): str(r["status"]) for r in own}  # (the last attempt wins)
    pending = unstarted(run)
    graph: dict[str, GraphNode] = {
        name: {"status": statuses.get(name, pending), "ups": [u for u in ups if u in upstreams]}
        for name, ups in upstreams.items()
    }
    for name, status in statuses.items():
        if name not in graph:
            graph[name] = {"status": status, "ups": []}
    return graph


def _blocked_upstreams(journal: Journal, run_id: str, found: dict[str, dict[str, Any]]) -> None:
    """Fill in the upstreams of the nodes without key components that the run blocked
    (upstream failed, skipped: their events name their direct upstreams)."""
    rows = journal._rows(
        "SELECT node, CASE WHEN json_valid(data) THEN json_extract(data, '$.upstreams') END "
        "AS ups FROM events WHERE run_id = ? AND kind IN ('node_upstream_failed', "
        "'node_skipped') AND node IS NOT NULL",
        (run_id,),
    )
    for row in rows:
        entry = found.get(str(row["node"]))
        if entry is None or entry["ups"] is not None or not isinstance(row["ups"], str):
            continue
        with contextlib.suppress(ValueError):
            ups = json.loads(row["ups"])
            if isinstance(ups, list):
                entry["ups"] = [str(u) for u in ups]


def _previous_graph(
    journal: Journal, run: Mapping[str, Any], runs: int = 3
) -> dict[str, list[str]]:
    """Node → upstream nodes, from the last few earlier runs of the same workflow."""
    earlier = [
        r["id"]
        for r in journal._rows(
            "SELECT id FROM runs WHERE workflow = ? AND started_at < ? AND id != ? "
            "ORDER BY started_at DESC LIMIT ?",
            (run["workflow"], run["started_at"], run["id"], runs),
        )
    ]
    rows = journal._rows(
        f"SELECT node, {_INPUTS} FROM (SELECT nr.node, nr.started_at, {_COMPONENTS} "
        f"FROM node_runs nr {_HIT_RECORD} WHERE nr.run_id IN "
        f"({', '.join('?' * len(earlier))})) ORDER BY started_at DESC",
        tuple(earlier),
    )
    own, _ = split_children(rows, map_names(journal, [run["id"], *earlier]))
    found: dict[str, list[str]] = {}
    for row in own:
        ups = _upstreams(row["inputs"])
        if ups is not None and row["node"] not in found:
            found[row["node"]] = ups
    return found


def map_names(journal: Journal, run_ids: Iterable[str]) -> set[str]:
    """The names of the maps of these runs (their ``map_started`` events): their items'
    rows (``map[label]``) are attempts of a map, not nodes of the graph."""
    ids = list(run_ids)
    rows = journal._rows(
        "SELECT DISTINCT node FROM events WHERE kind = 'map_started' AND run_id IN "
        f"({', '.join('?' * len(ids))})",
        tuple(ids),
    )
    return {str(r["node"]) for r in rows}


def _upstreams(text: str | None) -> list[str] | None:
    """The upstream node names in a node's key inputs (``None``: no components)."""
    if text is None:
        return None
    try:
        inputs = json.loads(text)
    except ValueError:
        return None
    ups: list[str] = []
    for refs in inputs.values() if isinstance(inputs, dict) else ():
        for ref in refs if isinstance(refs, list) else []:
            source = str(ref).rpartition("@")[0] or str(ref)
            name = source.rpartition(".")[0] or source
            if name not in ups:
                ups.append(name)
    return ups
