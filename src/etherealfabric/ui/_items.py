"""A map's items for the web UI: the children that ran (a page of journal rows) followed by the
ones the run took from the cache, as ``show RUN MAP --items`` lists them.

A cached child has no row of its own: it is listed from the map's stored index of its children
(``journal._maps.list_cached``, read from the run's store), with the status ``cached`` and its
key, after the children that ran (numbered on from them). A warm run that took the whole map
from the cache lists every item so. The listing of a map's cached children is kept per (run,
map, index, number of children that ran): paging through a map of thousands of items reads
the index once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..journal import Journal, _maps
from ..states import NodeStatus, RunStatus
from . import _queries as q
from ._graphs import Kept

__all__ = ["map_page"]

CACHED = NodeStatus.CACHED.value
PENDING = NodeStatus.PENDING.value
#: what the items a run ended before starting are called (no status: they have no row)
NOT_RUN = "not run"
#: (cached rows, note) by (run id, map, index digest, children that ran)
_LISTED: Kept[tuple[str, str, str | None, int], tuple[list[dict[str, Any]], str | None]] = Kept(8)


def map_page(
    journal: Journal,
    run: Mapping[str, Any],
    node: str,
    settings: Settings | None,
    *,
    offset: int,
    limit: int,
    status: str | None,
) -> dict[str, Any]:
    """A page of the items of the map ``node``: ``total`` (matching ``status``), ``counts`` by
    status (cached ones included), ``items`` (``index``, ``item``, ``node``, ``attempts``,
    ``status``, ``cache_key``, ``started_at``, ``duration``, ``error``), ``cached`` (how many
    came from the cache), ``note`` (why the cached ones cannot be listed, if so), ``size``
    (how many items its ``map_started`` recorded, None when it did not) and ``unstarted`` (of
    those, how many neither have a row nor came from the cache), called ``unstarted_as``:
    ``pending`` while the run goes on, ``not run`` once it has ended.
    Without ``settings`` (no store to read), cached items are counted but not listed."""
    found = q.map_items(journal, run["id"], node, offset=offset, limit=limit, status=status)
    ran_counts = found["counts"]  # (of the items that ran: one read gives the page and these)
    ran = sum(ran_counts.values())
    recorded = _maps.map_events(journal, run["id"]).get(node) or {}
    cached, note = _cached(journal, run, node, recorded, settings, ran)
    counts = dict(ran_counts)
    # the cached ones are counted even when they cannot be listed (yet): as many as it recorded
    came = int(recorded.get("cached") or 0) if note else len(cached)
    if came:
        counts[CACHED] = counts.get(CACHED, 0) + came
    # its items are those its map_started recorded (distinct ones: an item given twice is one
    # child), not only those that have a row yet: the others have not started (or never will)
    size = recorded.get("children", recorded.get("items"))
    size = size if isinstance(size, int) else None
    unstarted = max(0, size - ran - came) if size is not None else 0
    shown = found["total"]  # rows that ran, matching ``status``
    extra = cached if status in (None, CACHED) else []
    rows: list[Any] = list(found["items"])
    start = max(0, offset - shown)
    prefix = len(node) + 1
    for place, row in enumerate(extra[start : start + limit - len(rows)], start=ran + start + 1):
        rows.append({"index": place, "item": str(row["node"])[prefix:-1], "node": row["node"],
                     "attempts": 0, "status": CACHED, "cache_key": row["cache_key"],
                     "started_at": None, "duration": None, "error": None})  # fmt: skip
    return {"total": shown + len(extra), "counts": counts, "offset": offset, "items": rows,
            "limit": limit, "cached": recorded.get("cached"), "note": note, "size": size,
            "unstarted": unstarted,
            "unstarted_as": PENDING if run["status"] == RunStatus.RUNNING else NOT_RUN}  # fmt: skip


def _cached(
    journal: Journal,
    run: Mapping[str, Any],
    node: str,
    recorded: Mapping[str, Any],
    settings: Settings | None,
    ran: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """The map's children the run took from the cache (rows), and a note when not listable."""
    if not recorded.get("cached"):
        return [], None  # no child came from the cache (so far)
    digest = _maps.index_digest(journal, run["id"], node, recorded)
    if digest is None and run["status"] == RunStatus.RUNNING:  # its index is stored at its end
        return [], "they are listed once the map has finished"
    if settings is None:
        return [], "its cached items are not listed here: `etherealfabric show --items` lists them"
    key = (str(run["id"]), node, digest, ran)
    return _LISTED.get_or(
        key,
        lambda: _maps.list_cached(
            node, _maps.child_names(journal, run["id"], node), digest, settings
        ),
    )
