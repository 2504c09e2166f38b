"""Mapped nodes in the journal: their children's rows grouped under them, or listed.

A map's children have ``node_runs`` rows of their own, named ``map[label]`` (only the ones
that ran: cached children are counted, not listed); the run's ``map_started`` and
``map_finished`` events name its maps and hold their counts. ``show`` and ``status`` print one
row per map with counts and duration percentiles (:func:`split_children`,
:func:`summarize`); ``show RUN NODE --items`` lists the children (:func:`map_items`): the rows
of those that ran, and the cached ones from the map's stored index of its children
(:func:`index_digest`; ``plan/_maps.py``), which a warm run that took the whole map from the
cache finds through the map's record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..states import NodeStatus
from ._journal import Journal

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "cached_items",
    "child_names",
    "index_digest",
    "item_hint",
    "last_map",
    "list_cached",
    "map_events",
    "map_items",
    "percentile",
    "split_children",
    "summarize",
]


def map_events(journal: Journal, run_id: str) -> dict[str, dict[str, Any]]:
    """The maps of a run, by name: the data of their ``map_started`` and ``map_finished``."""
    found: dict[str, dict[str, Any]] = {}
    rows = journal._rows(
        "SELECT kind, node, data FROM events WHERE run_id = ? "
        "AND kind IN ('map_started', 'map_finished') ORDER BY id",
        (run_id,),
    )
    for row in rows:
        try:
            data = json.loads(row["data"] or "{}")
        except ValueError:
            data = {}
        found.setdefault(row["node"], {}).update(data if isinstance(data, dict) else {})
    return found


def split_children(
    rows: Iterable[Mapping[str, Any]], maps: Iterable[str]
) -> tuple[list[Mapping[str, Any]], dict[str, list[Mapping[str, Any]]]]:
    """``rows`` without the children of ``maps``, and those children by map."""
    prefixes = {f"{name}[": name for name in maps}
    own: list[Mapping[str, Any]] = []
    children: dict[str, list[Mapping[str, Any]]] = {name: [] for name in prefixes.values()}
    for row in rows:
        node = str(row["node"])
        cut = node.find("[")
        parent = prefixes.get(node[: cut + 1]) if cut > 0 and node.endswith("]") else None
        if parent is None:
            own.append(row)
        else:
            children[parent].append(row)
    return own, children


def summarize(rows: Iterable[Mapping[str, Any]], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """One map's counts (by the last attempt of each child) and its children's durations."""
    last: dict[str, Mapping[str, Any]] = {}
    retries = 0
    for row in rows:
        if row["status"] == NodeStatus.RETRYING:
            retries += 1
        seen = last.get(row["node"])
        if seen is None or row["attempt"] > seen["attempt"]:
            last[row["node"]] = row
    counts: dict[str, int] = {}
    for row in last.values():
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    durations = sorted(float(r["duration"]) for r in last.values() if r["duration"] is not None)
    return {
        "items": recorded.get("items"),
        "children": recorded.get("children"),
        "cached": recorded.get("cached", 0),
        "counts": counts,
        "retried": retries,
        "collected": recorded.get("collected"),
        "failed_items": [n for n, r in last.items() if r["status"] == NodeStatus.FAILED][:10],
        "p50": percentile(durations, 0.5),
        "p90": percentile(durations, 0.9),
        "max": durations[-1] if durations else None,
    }


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The value below which ``fraction`` of the sorted ``ordered`` lie (nearest rank)."""
    if not ordered:
        return None
    index = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def map_items(journal: Journal, run_id: str, node: str) -> list[dict[str, Any]]:
    """The rows of a map's children in a run (every attempt), in the order they ended."""
    prefix = f"{node}["
    return journal._rows(
        "SELECT * FROM node_runs WHERE run_id = ? AND substr(node, 1, ?) = ? "
        "ORDER BY COALESCE(finished_at, started_at), node, attempt",
        (run_id, len(prefix), prefix),
    )


def child_names(journal: Journal, run_id: str, node: str) -> list[dict[str, Any]]:
    """The children of the map ``node`` that ran in a run (one ``{"node": name}`` each): all a
    listing of its cached children needs to leave them out ("map[" <= name < "map\\")."""
    return journal._rows(
        "SELECT DISTINCT node FROM node_runs WHERE run_id = ? AND node >= ? AND node < ?",
        (run_id, f"{node}[", f"{node}\\"),
    )


def index_digest(
    journal: Journal, run_id: str, node: str, recorded: Mapping[str, Any] | None
) -> str | None:
    """The stored index of the children of the map ``node`` in a run: the one its
    ``map_finished`` names, else the one of the record its row used (a whole cached map)."""
    if recorded and recorded.get("index"):
        return str(recorded["index"])
    rows = journal._rows(
        "SELECT cache_key FROM node_runs WHERE run_id = ? AND node = ? AND cache_key IS NOT NULL "
        "ORDER BY attempt DESC LIMIT 1",
        (run_id, node),
    )
    record = journal.get_action(rows[0]["cache_key"]) if rows else None
    children = (record or {}).get("children")
    digest = children.get("digest") if isinstance(children, dict) else None
    return digest if isinstance(digest, str) else None


def cached_items(
    node: str, index: Iterable[tuple[str, str | None]], ran: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Rows, shaped as ``node_runs`` rows, for the children in ``index`` that did not run."""
    seen = {str(row["node"]) for row in ran}
    rows = []
    for key, name in index:
        child = name or f"{node}[{key[:10]}]"
        if child not in seen:
            rows.append({"node": child, "attempt": None, "status": NodeStatus.CACHED.value,
                         "duration": None, "cache_key": key, "error": None})  # fmt: skip
    return rows


def list_cached(
    node: str, ran: Iterable[Mapping[str, Any]], digest: str | None, settings: Settings
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows (:func:`cached_items`) for the children of the map ``node`` that a run took from
    the cache, read from the map's stored index of its children (``digest``, see
    :func:`index_digest`) in the store of ``settings``; and a note when they cannot be listed
    (the run ended before the map did, the index is gone or unreadable). ``ran``: the rows
    of the children that ran. ``show RUN NODE --items`` and the web UI both list them so."""
    from ..errors import EtherealFabricError
    from ..plan._maps import read_children_index
    from ..store import open_run_store

    if digest is None:
        return [], "the run ended before the map did: its cached items are not known"
    try:
        index = read_children_index(open_run_store(settings).read_bytes(digest))
    except (EtherealFabricError, OSError, UnicodeDecodeError) as exc:
        return (
            [],
            f"its cached items cannot be listed: the index of its items is unreadable ({exc})",
        )
    return cached_items(node, index, ran), None


def last_map(journal: Journal, workflow: str, node: str) -> dict[str, Any] | None:
    """The counts of the last run of the map ``node`` in ``workflow`` that finished its items
    (``map_finished`` data, with ``run_id``), or None."""
    rows = journal._rows(
        "SELECT e.run_id, e.data FROM events e JOIN runs r ON r.id = e.run_id "
        "WHERE r.workflow = ? AND e.node = ? AND e.kind = 'map_finished' "
        "ORDER BY e.id DESC LIMIT 1",
        (workflow, node),
    )
    if not rows:
        return None
    try:
        data = json.loads(rows[0]["data"] or "{}")
    except ValueError:
        return None
    return {**data, "run_id": rows[0]["run_id"]} if isinstance(data, dict) else None


def item_hint(run_id: str, node: str, known: Iterable[str]) -> str:
    """For ``map[label]`` where ``map`` is one of ``known``: where its items are listed."""
    cut = node.find("[")
    parent = node[:cut] if cut > 0 and node.endswith("]") else None
    if parent is None or parent not in known:
        return ""
    return (f" ({parent!r} is a map and no item {node!r} of it ran in this run; an item taken "
            f"from the cache has no row of its own: list its items with "
            f"`etherealfabric show {run_id} {parent} --items`)")  # fmt: skip
