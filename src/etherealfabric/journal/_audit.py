"""The cache audit of ``cache verify``: the journal's action records and the store's objects.

Every object is read and hashed, every record must name bytes that are there and sound, and
entries that are not files or temp files no writer will finish are reported. Nothing here
writes; ``cache verify --fix`` repairs what the audit found (``cli/_cache.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ArtifactMissingError, CorruptArtifactError, StoreError
from ..hashing._digest import digest_bytes
from ..store import Store
from ..store._base import ENTRY_KINDS, object_name
from ..store._sharedgc import SHARED_GRACE
from ..store._signing import record_problem
from ._index import RECORD
from ._journal import Journal
from ._liveness import gone

__all__ = ["CacheAudit", "CacheProblem", "action_rows", "audit_cache", "check_object"]

ORPHAN_AGE = 3600.0  # a temp file this old belongs to no write in progress


@dataclass(frozen=True)
class CacheProblem:
    """One thing wrong with the cache: a corrupt object, or a record naming missing bytes."""

    #: corrupt_object, missing_object, unreadable_object, corrupt_blob, missing_blob, bad_record,
    #: orphan_temp (a temp file a killed writer left: its process is gone, or it is over an hour
    #: old), damaged_entry (a folder, FIFO or link where a store entry belongs: ``entry``),
    #: damaged_journal (SQLite's integrity check failed: ``detail`` says where; no --fix)
    kind: str
    digest: str | None
    key: str | None = None
    node: str | None = None
    output: str | None = None
    path: str | None = None
    #: "store" (an object), "journal" (an action record or inline blob), "local" (this home's
    #: copy of a shared store's object)
    where: str = "store"
    entry: str | None = (
        None  # the store entry's name (objects/ab/<digest>...), when one is at fault
    )
    detail: str | None = None  # what SQLite's integrity check said (damaged_journal)

    def __str__(self) -> str:
        what = self.kind.replace("_", " ")
        parts = [f"{what} {self.digest}" if self.digest else what]
        if self.kind == "damaged_journal":
            return (
                f"damaged journal {self.path}: {self.detail} (move it aside: the next run "
                "creates a new one; its cache index and small outputs are lost with it, the "
                "store's objects are not)"
            )
        if self.kind == "damaged_entry":
            parts.append(f"{self.entry} (not a file: a folder, a FIFO or a symbolic link)")
        if self.node or self.key:
            parts.append(f"(node {self.node or '?'}, output {self.output or '?'}, key {self.key})")
        if self.path:
            parts.append(f"at {self.path}")
        if self.where == "local":
            parts.append("(this home's copy of the shared store's)")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_object(store: Store, digest: str) -> CacheProblem | None:
    """Verify one object's bytes against its digest."""
    try:
        with store.open_object(digest, verify=True):
            return None
    except CorruptArtifactError as exc:
        return CacheProblem("corrupt_object", digest, path=exc.path or store.location(digest))
    except ArtifactMissingError as exc:
        return CacheProblem("missing_object", digest, path=exc.path)
    except StoreError as exc:
        return CacheProblem("unreadable_object", digest, path=exc.path)


def action_rows(journal: Journal) -> list[dict[str, Any]]:
    """Every action record of the journal's index (key, node, record JSON)."""
    return journal._rows(f"SELECT key, node, {RECORD} AS record FROM actions ORDER BY created_at")


@dataclass(frozen=True)
class CacheAudit:
    """What :func:`audit_cache` checked and what it found."""

    objects: int
    records: int
    problems: list[CacheProblem]


def audit_cache(journal: Journal, store: Store, local: Store | None = None) -> CacheAudit:
    """Every problem in the store's objects and the journal's action records.

    Each object is read and hashed; each action record must name present, valid objects (or,
    for small outputs, inline blobs in the journal whose bytes match their digest). Temp files
    that no writer will finish (written by a process of this host that is gone, or older than
    an hour; in a shared store, whose files others write, older than a day) are reported too,
    and so is every entry that is not a file (:meth:`Store.damaged_entries`). ``local``: the
    home's layer in front of a shared ``store``, whose copies are checked the same way (its
    problems say ``where="local"``). A record is sound when its bytes are, in the shared store
    or in this home's layer: a result not pushed yet (``read-only``, ``push-on-demand``), or one
    whose shared copy a teammate or an intruder damaged, still serves this home, and is never
    reported as this home's problem (the damaged shared copy is, as the store's).
    """
    # a shared store's temp files may be a teammate's writes (of another host, whose pids
    # cannot be checked here): judged by age, with the grace `cache gc` gives shared entries
    shared_age = SHARED_GRACE if local is not None else ORPHAN_AGE
    bad, problems, checked = _object_problems(store, "store", shared_age)
    objects = len(checked)
    held: set[str] = set()  # the digests this home's layer holds, sound
    if local is not None:
        bad_here, found, checked = _object_problems(local, "local", ORPHAN_AGE)
        problems += found
        objects += len(checked)
        held = checked - bad_here.keys()
    problems += _journal_problems(journal)
    rows = action_rows(journal)
    named: list[CacheProblem] = []  # of records naming bytes
    for row in rows:
        named += _record_problems(journal, store, row["key"], row["node"], row["record"], bad, held)
    return CacheAudit(objects, len(rows), problems + _confirmed(journal, store, named, bad, held))


def _journal_problems(journal: Journal) -> list[CacheProblem]:
    """SQLite's own check of the journal's pages (``PRAGMA quick_check``): damage in a page no
    query of the audit reads (old runs' rows) fails later commands, so it is reported here."""
    import sqlite3

    try:
        found = [str(row[0]) for row in journal.conn.execute("PRAGMA quick_check(10)")]
    except sqlite3.DatabaseError as exc:
        found = [str(exc)]
    if found == ["ok"]:
        return []
    detail = "; ".join(found)
    return [
        CacheProblem(
            "damaged_journal", None, path=str(journal.path), where="journal", detail=detail
        )
    ]


_MISSING = ("missing_object", "missing_blob")  # what a collection going on may show a record


def _confirmed(
    journal: Journal,
    store: Store,
    found: list[CacheProblem],
    bad: Mapping[str, CacheProblem],
    held: set[str],
) -> list[CacheProblem]:
    """The problems of records naming missing bytes, checked again once a collection going on
    is over: ``cache gc`` deletes objects and blobs inside its write transaction, the records
    naming them still readable until it commits; the write lock waits for that commit, then
    each such record is read again (gone: no problem; still there: checked again)."""
    keys = {p.key for p in found if p.kind in _MISSING and p.key}
    if not keys:
        return found
    kept = [p for p in found if p.key not in keys]
    with contextlib.ExitStack() as locked:
        if not journal.read_only:  # (a read-only home: nothing collects it meanwhile)
            locked.enter_context(journal.write())
        for key, record in journal.get_action_texts(sorted(keys)).items():
            node = next(p.node for p in found if p.key == key)
            kept += _record_problems(journal, store, key, node, record, bad, held)
    return kept


def _object_problems(
    store: Store, where: str, temp_age: float
) -> tuple[dict[str, CacheProblem], list[CacheProblem], set[str]]:
    """The bad objects of ``store`` by digest, every problem of its entries (bad objects,
    entries that are not files, orphaned temp files), and the digests of the objects checked."""
    damaged = [
        CacheProblem(
            "damaged_entry", None, path=store.entry_location(name), entry=name, where=where
        )
        for kind in ENTRY_KINDS
        for name in store.damaged_entries(kind)
    ]
    planted = {p.entry for p in damaged}
    bad: dict[str, CacheProblem] = {}
    checked: set[str] = set()
    for digest in store.iter_objects():
        if object_name(digest) in planted:
            continue  # reported as damaged (and a record naming it: a missing object)
        problem = check_object(store, digest)
        if problem is not None and problem.kind == "missing_object":
            continue  # collected meanwhile
        checked.add(digest)
        if problem is not None:
            bad[digest] = dataclasses.replace(problem, where=where)
    problems = [*bad.values(), *damaged]
    for path, _ in store.stale_temp_files(max_age=temp_age, writer_gone=gone):
        problems.append(CacheProblem("orphan_temp", None, path=path, where=where))
    return bad, problems, checked


def _record_problems(
    journal: Journal,
    store: Store,
    key: str,
    node: str | None,
    record: Any,
    bad: Mapping[str, CacheProblem],
    held: set[str],
) -> list[CacheProblem]:
    try:
        parsed = json.loads(record) if isinstance(record, (str, bytes)) else record
        outputs = dict(parsed["outputs"])
        node = node or parsed.get("node")
    except (ValueError, TypeError, KeyError):
        parsed = None
    if parsed is None or record_problem(parsed):  # of the wrong shape: an edited journal's
        return [CacheProblem("bad_record", None, key=key, node=node, where="journal")]
    found = []
    for output, out in outputs.items():
        digest = out.get("digest") if isinstance(out, Mapping) else None
        kind = _output_problem(journal, store, out, bad, held) if digest else "bad_record"
        if kind is not None:
            path = store.location(digest) if digest and "object" in kind else None
            found.append(CacheProblem(kind, digest, key, node, output, path, "journal"))
    return found


def _output_problem(
    journal: Journal,
    store: Store,
    out: Mapping[str, Any],
    bad: Mapping[str, CacheProblem],
    held: set[str],
) -> str | None:
    digest = str(out["digest"])
    if out.get("inline"):
        data = journal.get_blob(digest)
        if data is None:
            return "missing_blob"
        return None if digest_bytes(data) == digest else "corrupt_blob"
    if digest in held:  # this home's layer has it, sound: the record serves this home
        return None
    if digest in bad:
        return bad[digest].kind
    return None if store.has_object(digest) else "missing_object"
