"""Whether a map's record found under its own key may serve a whole-map hit.

A warm run of a map is one lookup of its own key (``run/_mapping.py``); its record holds the
collected outputs and names the stored index of its children (``plan/_maps.py``). A child's
record may list data files it read (``reads``, checked before each of its hits,
``run/_reads.py``) and files it wrote (``files``, restored on each of its hits): a hit of the
whole map must do the same for every child, or an edited file would go unnoticed and a
deleted output would not come back. So the map's record says how many of its children have
reads or files (``checks``): with none, the hit is the one lookup; with some, the children's
records are read in bulk and those with reads or files are checked as their own hits would
be (:meth:`ArtifactCache.usable`: read checks, file restores, missing objects); the
whole-map hit is used only if each of them is usable. (The others' records are not needed:
the map's record holds the collected outputs.) Otherwise the map runs: only the children whose lookup failed run again (the records
found usable are handed to it, :func:`checked_records`, not looked up a second time).

A map record without ``checks`` was written before they were counted: it is not used (the
map's children are looked up, and the map's record is written again, with ``checks``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..errors import StoreError
from ..journal import Journal
from ..plan._maps import read_children_index
from ..store import Store

__all__ = ["checked_records", "whole_map_refused"]

log = logging.getLogger("etherealfabric.cache")


class _Cache(Protocol):
    """What is used of the :class:`~._cache.ArtifactCache` (which imports this module)."""

    journal: Journal
    store: Store
    refused: dict[str, str]
    checked_children: dict[str, dict[str, dict[str, Any]]]

    def lookup_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def usable(self, key: str, record: dict[str, Any]) -> dict[str, Any] | None: ...


def whole_map_refused(cache: _Cache, key: str, record: Mapping[str, Any]) -> bool:
    """Whether the map record ``record`` of ``key`` cannot serve a hit: one of its children's
    records is not a usable hit now (a file it read changed, a file it wrote cannot be put
    back, an output is gone), or the record predates ``checks``. :attr:`ArtifactCache.refused`
    then says why, for the map's start event and ``plan``, when a child's read changed."""
    if key in cache.checked_children:  # refused already (looked up again once leased)
        return True
    checks = record.get("checks")
    if isinstance(checks, bool) or not isinstance(checks, int):
        log.debug("map record %s predates its children's checks: looking them up", key)
        return True
    if checks == 0:
        return False
    children = record.get("children")
    digest = children.get("digest") if isinstance(children, Mapping) else None
    if not isinstance(digest, str):
        return True
    try:
        index = read_children_index(cache.store.read_bytes(digest))
    except (StoreError, OSError, UnicodeDecodeError) as exc:
        log.info("the index of the children of map record %s is unusable (%s)", key, exc)
        return True
    keys = [child for child, _ in index]
    found = cache.journal.get_actions(keys)
    checked = [k for k in keys if k in found and _checked(found[k])]
    if len(checked) < checks:  # not all indexed here (a teammate's, in the shared store)
        usable = {k: r for k, r in cache.lookup_many(keys).items() if _checked(r)}
        checked = keys
    else:  # only these: the others' records have nothing to check
        usable = {}
        for child in checked:
            if (hit := cache.usable(child, found[child])) is not None:
                usable[child] = hit
    bad = [child for child in checked if child not in usable]
    if not bad:
        return False
    names = dict(index)
    why = next((cache.refused[c] for c in bad if c in cache.refused), None)
    if why is not None and key not in cache.refused:
        child = next(c for c in bad if c in cache.refused)
        cache.refused[key] = f"item {names.get(child) or child}: {why}"
    cache.checked_children[key] = usable  # the map's run takes them (checked_records)
    return True


def _checked(record: Mapping[str, Any]) -> bool:
    """Whether a child's hit checks something: files it read, files it wrote."""
    return bool(record.get("reads") or record.get("files"))


def checked_records(cache: _Cache, key: str, children: Sequence[str]) -> dict[str, Any]:
    """The records of ``children`` that the refused whole-map hit of ``key`` found usable
    (each child is looked up once per run, not once more when its map runs)."""
    usable = cache.checked_children.pop(key, None)
    if not usable:
        return {}
    return {child: usable[child] for child in children if child in usable}
