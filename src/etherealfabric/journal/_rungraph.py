"""A run's graph for the web UI: each node's latest status and its upstream nodes.

The edges come from the key components (a node's inputs name ``upstream.output@digest``); a
cached node's components are its action record's. A node the run blocked (upstream failed,
skipped) has no key: its direct upstreams are in its event (``upstreams``). Nodes the run has
not reached yet, and nodes with neither, take both from the workflow's previous runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ..states import NodeStatus
from ._journal import Journal
from ._maps import split_children

__all__ = ["GraphNode", "map_names", "run_graph"]


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


def run_graph(journal: Journal, run: Mapping[str, Any]) -> dict[str, GraphNode]:
    """Each node of the run: its latest status and the upstream nodes its key reads.

    The edges come from the key components (a node's inputs name ``upstream.output@digest``);
    a cached node's components are its action record's; a node the run blocked (upstream
    failed, skipped) takes its direct upstreams from its event. Nodes the run has not reached
    yet, and nodes without either (failed before their key), take both from the workflow's
    previous runs, so a live run shows its whole graph with those nodes ``pending``.
    Ordering-only edges (``add_dependency``) are not in the journal and are not drawn.
    """
    rows = journal._rows(
        f"SELECT node, status, {_INPUTS} FROM (SELECT nr.node, nr.status, nr.attempt, "
        f"{_COMPONENTS} FROM node_runs nr LEFT JOIN actions a ON a.key = nr.cache_key "
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
                found[name] = {"status": NodeStatus.PENDING.value, "ups": ups}
            elif found[name]["ups"] is None:
                found[name]["ups"] = ups
    return {
        name: {"status": entry["status"], "ups": [u for u in entry["ups"] or [] if u in found]}
        for name, entry in found.items()
    }


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
        "FROM node_runs nr LEFT JOIN actions a ON a.key = nr.cache_key WHERE nr.run_id IN "
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
