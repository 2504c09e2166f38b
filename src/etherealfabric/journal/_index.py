"""The journal's index of the artifact cache: action records by cache key, inline outputs.

Mixed into :class:`~etherealfabric.journal.Journal` (its reads and the few writes that forget
an entry); the recorder writes new records with the run's rows (``Journal.write_batch``).
A warm run reads the records it needs in bulk up front (:meth:`ActionIndex.recent_actions`),
a run's ready nodes in batches (:meth:`ActionIndex.get_action_texts`).
"""

from __future__ import annotations

import fnmatch
import json
import math
import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..states import NodeStatus
from ._connection import retry

__all__ = ["DATA", "RECORD", "ActionIndex", "as_text"]

#: a record or a blob as SQLite holds it, whatever the type of its value (a hand-edited row may
#: hold TEXT where BLOB belongs, or text that is not UTF-8, which Python cannot fetch as text):
#: always bytes (or NULL), judged by their content like any damaged value
RECORD = "CAST(record AS BLOB)"
DATA = "CAST(data AS BLOB)"
_SUCCEEDED = NodeStatus.SUCCEEDED.value
_BATCH = 500  # values per IN (...) query (SQLite's limit on parameters is 999 on old builds)
#: the primary key (run_id, node, attempt) of node_runs: SQLite names it after the table
_NODE_RUNS_KEY = "sqlite_autoindex_node_runs_1"
#: the action records of one run's nodes (see Journal.recent_actions): a range of the primary
#: key, then a condition on the node
_RUN_ROWS = (
    f"SELECT n.node, a.key, {RECORD} FROM node_runs AS n INDEXED BY {_NODE_RUNS_KEY} "
    "JOIN actions AS a ON a.key = n.cache_key WHERE n.run_id = ?1 AND n.cache_key IS NOT NULL "
)
#: every node's; a map's children (``map[label]``) are skipped unless named in the JSON list ``?2``
_RUN_ACTIONS = (
    _RUN_ROWS + "AND (instr(n.node, '[') = 0 OR n.node IN (SELECT value FROM json_each(?2)))"
)
#: ...and of the nodes named in the JSON list ``?2`` only: one seek per (run, node) pair
_RUN_NODE_ACTIONS = _RUN_ROWS + "AND n.node IN (SELECT value FROM json_each(?2))"


def as_text(value: Any) -> str:
    """A record fetched as bytes (:data:`RECORD`) as text; "" (no JSON: a miss) when it is
    not UTF-8."""
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode()
    except (TypeError, ValueError):
        return ""


class ActionIndex:
    """Action records and inline outputs in the journal (mixed into ``Journal``)."""

    conn: sqlite3.Connection
    path: Path
    _lock: threading.RLock

    def write(self) -> AbstractContextManager[sqlite3.Connection]:  # pragma: no cover
        raise NotImplementedError  # Journal.write

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:  # pragma: no cover
        raise NotImplementedError  # Journal._value

    def get_action(self, key: str) -> dict[str, Any] | None:
        """The indexed action record for a cache key, or ``None``."""
        text = self._value(f"SELECT {RECORD} FROM actions WHERE key = ?", (key,))
        if text is None:
            return None
        try:
            record = json.loads(text)
        except (ValueError, TypeError):
            return None
        return record if isinstance(record, dict) else None  # (an edited row: a miss)

    def get_actions(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The indexed action records of many keys at once (a map's children): key -> record."""
        found: dict[str, dict[str, Any]] = {}
        for rows in self._in_batches(f"SELECT key, {RECORD} FROM actions WHERE key IN", keys):
            for key, text in rows:
                try:
                    record = json.loads(text)
                except (ValueError, TypeError):
                    continue
                if isinstance(record, dict):
                    found[str(key)] = record
        return found

    def get_action_texts(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The indexed action records of many keys, as UTF-8 JSON (decoded when used)."""
        found: dict[str, bytes] = {}
        for rows in self._in_batches(f"SELECT key, {RECORD} FROM actions WHERE key IN", keys):
            found.update((str(key), text) for key, text in rows if text is not None)
        return found

    def recent_actions(
        self, workflow: str, nodes: Collection[str], runs: int = 2
    ) -> list[tuple[str, str, bytes]]:
        """(node, key, record as UTF-8 JSON) of the action records the workflow's last ``runs``
        runs used or made for ``nodes``: a warm run's lookups, read in bulk up front.

        The last run is read first, in one pass over its rows (a range of the primary key,
        joined with ``actions``): a warm run repeats the run before it, whose rows name every
        node. Only the nodes it lacks (a run of some targets, one that failed early) are looked
        for in the run before, one seek of the primary key per (run, node) pair. Rows of a
        map's children (``map[label]``, 100,000 of them) are left out in SQL (a map's lookup
        reads them in bulk), as are nodes no longer in the graph."""
        wanted = set(nodes)
        ids = [
            str(row[0])
            for row in self._fetch(
                "SELECT id FROM runs WHERE workflow = ? ORDER BY started_at DESC LIMIT ?",
                (workflow, runs),
            )
        ]
        found: list[tuple[str, str, bytes]] = []
        for i, run_id in enumerate(ids):
            if i == 0:  # the whole run but a map's children (a graph node may have a "[")
                bracketed = json.dumps([n for n in wanted if "[" in n])
                rows = self._fetch(_RUN_ACTIONS, (run_id, bracketed))
            else:
                rows = self._fetch(_RUN_NODE_ACTIONS, (run_id, json.dumps(sorted(wanted))))
            got = [row for row in rows if row[0] in wanted]  # (TEXT columns: str)
            found += got
            wanted.difference_update([row[0] for row in got])
            if not wanted:
                break
        return found

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self._lock:
            return retry(lambda: self.conn.execute(sql, params).fetchall(), self.path)

    def get_blobs(self, digests: Sequence[str]) -> dict[str, bytes]:
        """Many small outputs kept inline at once: digest -> bytes (those found)."""
        found: dict[str, bytes] = {}
        for rows in self._in_batches(f"SELECT digest, {DATA} FROM blobs WHERE digest IN", digests):
            found.update((str(digest), data) for digest, data in rows if data is not None)
        return found

    def _in_batches(self, sql: str, values: Sequence[str]) -> Iterator[list[Any]]:
        """The rows of ``sql (?, ?, ...)`` for ``values``, in batches SQLite accepts."""
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), _BATCH):
            batch = unique[start : start + _BATCH]
            query = f"{sql} ({','.join('?' * len(batch))})"

            def fetch(query: str = query, batch: list[str] = batch) -> list[Any]:
                with self._lock:
                    return self.conn.execute(query, batch).fetchall()

            yield retry(fetch, self.path)

    def forget_nodes(self, patterns: Sequence[str]) -> list[str]:
        """Delete the action records of nodes whose name matches a glob; their keys."""
        with self.write() as conn:
            keys = _matching(conn.execute("SELECT key, node FROM actions").fetchall(), patterns)
            conn.executemany("DELETE FROM actions WHERE key = ?", [(k,) for k in keys])
        return keys

    def node_keys(self, patterns: Sequence[str]) -> list[str]:
        """The keys of the action records of nodes whose name matches a glob."""
        return _matching(self._fetch("SELECT key, node FROM actions", ()), patterns)

    def node_names(self, *, cached: bool = False) -> list[str]:
        """Every node name the journal knows: of a cache record, or of a run's node row
        (``cached``: of a cache record only)."""
        sql = "SELECT DISTINCT node FROM actions"
        rows = self._fetch(sql if cached else f"{sql} UNION SELECT node FROM node_runs", ())
        return sorted(str(node) for (node,) in rows if node is not None)

    def key_known(self, key: str) -> bool:
        """Whether a cache record has ``key``, or some run's node had it."""
        sql = (
            "SELECT 1 FROM actions WHERE key = ? UNION ALL "
            "SELECT 1 FROM node_runs WHERE cache_key = ? LIMIT 1"
        )
        return bool(self._fetch(sql, (key, key)))

    def last_successes(self, keys: Sequence[str]) -> dict[str, float]:
        """When the latest succeeded execution of each of ``keys`` finished (keys that never
        succeeded are left out): searches of the partial index of succeeded rows, a batch of
        keys at a time (asked before nodes and a map's children execute: ``run/_checkpoint``)."""
        found: dict[str, float] = {}
        sql = (  # the status written out: only then may SQLite use that index
            f"SELECT cache_key, finished_at FROM node_runs WHERE status = '{_SUCCEEDED}' "
            "AND finished_at IS NOT NULL AND cache_key IN"
        )
        for rows in self._in_batches(sql, keys):
            for key, finished in rows:
                try:
                    when = float(finished)
                except (TypeError, ValueError):  # a damaged row: no proof of a success
                    continue
                if math.isfinite(when):
                    found[str(key)] = max(when, found.get(str(key), float("-inf")))
        return found

    def delete_action(self, key: str) -> bool:
        """Forget an action record (its objects turned out to be missing or corrupt, or
        ``cache forget``); whether there was one."""
        with self.write() as conn:
            return conn.execute("DELETE FROM actions WHERE key = ?", (key,)).rowcount > 0

    def get_blob(self, digest: str) -> bytes | None:
        """A small output kept inline, or ``None``."""
        data = self._value(f"SELECT {DATA} FROM blobs WHERE digest = ?", (digest,))
        return None if data is None else bytes(data)

    def delete_blob(self, digest: str) -> None:
        """Forget a corrupt inline output."""
        with self.write() as conn:
            conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))


def _matching(rows: Sequence[Sequence[object]], patterns: Sequence[str]) -> list[str]:
    """The keys of ``(key, node)`` rows whose node matches one of the globs ``patterns``."""
    return [
        str(key) for key, node in rows if any(fnmatch.fnmatchcase(str(node), p) for p in patterns)
    ]
