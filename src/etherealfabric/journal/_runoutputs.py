"""What a node's outputs were *in one run*, not in the latest record of its cache key.

A key's action record (``actions``) is replaced when its node runs again under the same key:
a file it read by path changed (the key stays, the ``reads`` check sends it to run again),
``--force``, a recompute after its object was lost. A past run must still show the results it
produced, so each ``node_runs`` row that made or fetched a record keeps that record (the same
JSON text as its ``actions`` row, in the row's ``outputs`` column: encoded once per node) and
the ``created_at`` of the ``actions`` row it wrote (``record_at``). A cache hit's row (a warm
run writes one per node, so it stays short) keeps ``record_at`` only: the ``created_at`` of
the key's row when the hit was committed (``_schema.CACHED_ROW``), which names the version it
used.

:func:`run_records` reads them back: a row's own outputs; for a hit, the key's record while it
is still that version, else the outputs of the row that made the version (a search of the
partial index of succeeded rows; a version fetched from a shared store is looked for among the
other rows, unindexed: rare), else nothing (a later run replaced it and no row says what it
was). A row recorded before this was (an older journal: no ``record_at``), or a map's own row
(its record comes with ``map_finished``), has the key's latest record, as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..states import NodeStatus
from ._index import RECORD, as_text

if TYPE_CHECKING:
    from ._journal import Journal

__all__ = ["run_records"]

_HAS_OUTPUTS = (NodeStatus.SUCCEEDED.value, NodeStatus.CACHED.value)
_SUCCEEDED = NodeStatus.SUCCEEDED.value
_CACHED = NodeStatus.CACHED.value


def _parsed(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        record = json.loads(as_text(text))
    except (ValueError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def run_records(journal: Journal, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
    """For each of ``rows`` (``node_runs`` rows of any runs), the record of the outputs its
    node had in its run: ``None`` for a row without outputs (not succeeded or cached, no key)
    and for one whose outputs nothing says any more (see the module docstring). The records
    are not checked (a caller that loads from them checks their shape)."""
    found: list[dict[str, Any] | None] = [None] * len(rows)
    pending: list[int] = []
    for i, row in enumerate(rows):
        if not row.get("cache_key") or row.get("status") not in _HAS_OUTPUTS:
            continue
        own = _parsed(row.get("outputs"))
        if own is not None:
            found[i] = own
        else:
            pending.append(i)
    if not pending:
        return found
    current = _current(journal, [str(rows[i]["cache_key"]) for i in pending])
    made: dict[tuple[str, Any], dict[str, Any] | None] = {}
    for i in pending:
        key, at = str(rows[i]["cache_key"]), rows[i].get("record_at")
        latest = current.get(key)
        if at is None:  # recorded before runs kept their outputs, or a map's own row
            found[i] = latest[1] if latest else None
        elif latest is not None and latest[0] == at:
            found[i] = latest[1]
        else:
            if (key, at) not in made:
                made[key, at] = _made(journal, key, at)
            found[i] = made[key, at]
    return found


def _current(journal: Journal, keys: Sequence[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """key -> (``created_at`` of its ``actions`` row, its record), for those with a record."""
    found: dict[str, tuple[Any, dict[str, Any]]] = {}
    sql = f"SELECT key, created_at, {RECORD} FROM actions WHERE key IN"
    for rows in journal._in_batches(sql, keys):
        for key, created, text in rows:
            record = _parsed(text)
            if record is not None:
                found[str(key)] = (created, record)
    return found


def _made(journal: Journal, key: str, at: Any) -> dict[str, Any] | None:
    """The outputs of the row that made version ``at`` of ``key``'s record (an execution,
    through the partial index of succeeded rows; else a hit that fetched it from a shared
    store), or None."""
    for status in (_SUCCEEDED, _CACHED):  # (the status literal: SQLite then uses that index)
        text = journal._value(
            f"SELECT outputs FROM node_runs WHERE status = '{status}' AND cache_key = ? "
            "AND record_at = ? AND outputs IS NOT NULL LIMIT 1",
            (key, at),
        )
        record = _parsed(text)
        if record is not None:
            return record
    return None
