"""Whether the journal's tables read from their own b-trees: a check of their root pages that
costs a few page reads, made each time a reader opens the journal (the web UI, per request).

SQLite finds the rows of a table from its root page, named in the schema (``sqlite_master``).
Garbage written over a root page is an error SQLite reports itself (a damaged journal). Not so
a root page that is a valid page of *another* b-tree: a schema edited to point ``events`` at
the root of ``node_runs`` (forged), or two tables' root pages swapped, reads the other table's
rows as its own, silently: a run's maps vanish (no ``map_started`` event), its cache records
look like someone else's. So, before a reader trusts the journal:

- every b-tree has a root page of its own, inside the file;
- the first and last rows of ``events`` and of ``actions`` (by rowid: a walk down each edge of
  the b-tree) have the shape of their table: an event's run id is text, its time a number, its
  kind one of :class:`EventKind`; an action's key text, its record a JSON object's text, its
  components text or none, its time a number. No row of another of the journal's tables has
  either shape;
- ``events`` and ``actions`` read rows exactly when their index does (an empty page forged
  over a root page reads as an empty table or index).

:func:`check_roots` raises :class:`DamagedJournalError` naming what is wrong.
"""

from __future__ import annotations

from ..errors import DamagedJournalError
from ..states import EventKind
from ._journal import Journal

__all__ = ["check_roots", "root_problem"]

_KINDS = {k.value for k in EventKind}
_NUMBER = ("integer", "real")
_EDGES = "WHERE rowid IN (SELECT MIN(rowid) FROM {t} UNION SELECT MAX(rowid) FROM {t})"


def root_problem(journal: Journal) -> str | None:
    """What is wrong with the root pages of the journal's tables (None: nothing found)."""
    trees = journal._rows(
        "SELECT type, name, rootpage FROM sqlite_master WHERE type IN ('table', 'index') "
        "AND rootpage IS NOT 0 AND rootpage IS NOT NULL"
    )
    pages = journal._value("PRAGMA page_count")
    owners: dict[object, list[str]] = {}
    for tree in trees:
        root = tree["rootpage"]
        if not isinstance(root, int) or not 1 < root <= (pages or 0):
            return f"the {tree['type']} {tree['name']!r} has its root at page {root!r}, not a page of the file ({pages} pages)"
        owners.setdefault(root, []).append(str(tree["name"]))
    shared = [names for names in owners.values() if len(names) > 1]
    if shared:
        return f"{' and '.join(repr(n) for n in shared[0])} have the same root page: the schema was forged or damaged"
    names = {str(t["name"]) for t in trees}
    if "events" in names:
        for row in journal._rows(
            "SELECT typeof(run_id) AS r, typeof(ts) AS t, kind FROM events " + _EDGES.format(t="events")
        ):  # fmt: skip
            if row["r"] != "text" or row["t"] not in _NUMBER or row["kind"] not in _KINDS:
                return _foreign("events", f"kind {str(row['kind'])[:40]!r}, time a {row['t']}")
    if "actions" in names:
        for row in journal._rows(
            "SELECT typeof(key) AS k, substr(record, 1, 1) AS brace, typeof(record) AS r, "
            "typeof(components) AS c, typeof(created_at) AS t FROM actions "
            + _EDGES.format(t="actions")
        ):
            if (row["k"], row["r"], row["brace"]) != ("text", "text", "{") or (
                row["c"] not in ("text", "null") or row["t"] not in _NUMBER
            ):
                return _foreign("actions", f"key a {row['k']}, record a {row['r']}")
    return _emptied(journal, names)


#: a table and an index of it: both empty or neither (a forged empty root page empties one)
_PAIRS = (("events", "events_run", "run_id"), ("actions", "sqlite_autoindex_actions_1", "key"))


def _emptied(journal: Journal, names: set[str]) -> str | None:
    """A table or its index read from an empty page forged over its root: the table reads no
    row while its index has some (or the reverse). One statement, one snapshot: a run
    committing meanwhile is never taken for damage. (Both emptied is not found: a journal
    without events or cache records is a valid one.)"""
    for table, index, column in _PAIRS:
        if table not in names or index not in names:
            continue
        [row] = journal._rows(
            f"SELECT EXISTS(SELECT 1 FROM {table} NOT INDEXED) AS rows_, "
            f"EXISTS(SELECT {column} FROM {table} INDEXED BY {index} ORDER BY {column}) AS keys"
        )
        if bool(row["rows_"]) != bool(row["keys"]):
            empty, full = (f"table {table!r}", f"index {index!r}")[:: 1 if row["keys"] else -1]
            return f"the {empty} reads no rows while the {full} has some: a root page was emptied"
    return None


def _foreign(table: str, seen: str) -> str:
    return (
        f"the table {table!r} reads rows that are not {table} ({seen}): its root page is "
        "another table's or was overwritten"
    )


def check_roots(journal: Journal) -> None:
    """Raise :class:`DamagedJournalError` (closing ``journal``) when :func:`root_problem`
    finds something wrong."""
    problem = root_problem(journal)
    if problem is None:
        return
    journal.close()
    raise DamagedJournalError(
        f"{journal.path} is not a usable EtherealFabric journal ({problem}): the file is "
        "damaged. Move it aside and a new one is created on the next run (its cache index "
        "and small outputs are lost with it)",
        path=str(journal.path),
    )
