"""Garbage collection of a shared store, driven by the journals of the homes that use it.

A shared store holds the records of every teammate, and no single journal knows them all. So
each home that writes the store publishes its *roots*: the cache keys its last runs (5 per
workflow by default), its runs still going and its pinned runs used::

    roots/<hh>/<home id>.json   {"home", "host", "updated_at", "keys": [...]}

(published at the end of every read-write run when they changed, and by ``cache gc``). Roots
come once a run ends, so a read-write run that computes something also marks itself as going,
from just before its first node runs until it ends (:func:`mark_run`)::

    roots/<hh>/<home id>.run-<digest of the run id>.json
        {"home", "host", "run", "started_at", "updated_at", "keys": []}

rewritten every :data:`RUN_MARK_REFRESH` seconds (on the run's lease heartbeat) and deleted
when it ends; a mark not rewritten for :data:`RUN_MARK_EXPIRY` seconds is a dead run's, and
the collection removes it. While a fresh mark is there, every entry written since its run
began (less a minute for clocks that differ) is kept, whatever ``grace`` says: the records a
running job already finished, and the objects it uploaded. A warm run (every node cached)
writes no mark. :func:`collect_shared` keeps every record whose key some home's roots name, and every record,
object and lease younger than ``grace`` seconds (a teammate's job that is running has written
objects whose record is not there yet, or has just written a record); it deletes the other
records (every signer's copy), then the objects no kept record names (a kept record's folder
manifests are read for the files they list; a map's record names the index of its children),
then stale leases. Checkpoints are never touched. An object is judged by its own name only:
anything else under ``objects/`` (a folder marker, a junk name, ``objects/zz/x/<digest>``
planted by a bucket writer) is not an object, neither collected nor taken for the object
whose digest its name ends with.
An entry that is not a file (a folder, a FIFO, a symbolic link: planted, as no writer makes
one; :func:`collect_damaged`) is removed whatever its age, with a warning naming it.

Roots are not signed: a forged one naming more keys makes the collection keep more, one
naming fewer (``"keys": []``) or a deleted one makes it remove that home's results once older
than ``grace``. That is what whoever can write the store can do anyway by deleting records and
objects, and costs recomputation, never a wrong result (records are verified, objects checked
against their digests): docs/stores.md says so, and signing roots would not change it. A home
that never published roots (a reader, a home that never ran in read-write mode) protects
nothing but its entries' grace period: run ``cache gc`` from it before a collection. A record read
to find what it names is read as JSON, unverified: any digest it claims is kept (keeping is
always safe).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..hashing._digest import digest_bytes, is_digest
from ._base import ENTRY_KINDS, EntryInfo, Store, check_name
from ._json import parse_json
from ._signing import record_digests
from ._smallfiles import write_small_file
from ._trees import entry_objects, read_manifest
from ._trust import MAX_RECORD_BYTES

__all__ = [
    "SHARED_GRACE",
    "SharedGcReport",
    "collect_damaged",
    "collect_shared",
    "home_id",
    "mark_run",
    "publish_roots",
    "read_roots",
    "roots_name",
    "run_mark_name",
]

log = logging.getLogger("etherealfabric.store")

#: The default grace period of a shared store's collection (``cache gc --grace``), also the age
#: from which ``cache verify`` takes a temp file of another host in a shared folder as a leftover.
SHARED_GRACE = 86400.0
#: A run's mark (:func:`mark_run`) is rewritten this often while the run goes...
RUN_MARK_REFRESH = 60.0
#: ...and a mark not rewritten for this long is a dead run's (killed, or its machine lost).
RUN_MARK_EXPIRY = 900.0
#: Clocks of the machines sharing a store may differ this much (a run's start is compared with
#: the store's times of the entries it wrote).
_CLOCK_SLACK = 60.0
#: A lease entry is stale this long after it was last written (its holder renews every 5 s).
_LEASE_STALE_SECONDS = 3600.0
_THREADS = 16


def home_id(home: str | os.PathLike[str]) -> str:
    """The id of the home ``home`` in a shared store (made on first use, kept in its file
    ``home-id``): it names the home's roots, and the records it publishes carry it (``home``),
    so that ``cache forget`` drops only those. Threads and processes asking at once get the
    same id (the file is created exclusively)."""
    path = os.path.join(home, "home-id")
    found = _read_id(path)
    if found:
        return found
    new = os.urandom(16).hex()  # 32 hex digits, as a uuid4's (uuid is not imported for it)
    # a missing file is made unless another maker is first (then theirs is the id); a
    # malformed one (damaged by hand) is replaced, if it is still malformed
    replace = found == "" and _read_id(path) == ""
    write_small_file(path, new + "\n", replace=replace)
    return _read_id(path) or new


def _read_id(path: str) -> str | None:
    """The home id in the file ``path``; None if it is absent, "" if it is malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            found = f.read().strip()
    except FileNotFoundError:
        return None
    return found if len(found) == 32 and all(c in "0123456789abcdef" for c in found) else ""


def roots_name(home: str) -> str:
    """The entry of the roots of the home ``home`` (a 32-hex id)."""
    check_name(home, "home id")
    return f"roots/{home[:2]}/{home}.json"


def run_mark_name(home: str, run_id: str) -> str:
    """The entry saying that the run ``run_id`` of the home ``home`` is going (in ``roots/``,
    next to the home's roots; a version that does not know it reads it as roots naming no
    key)."""
    return f"{roots_name(home).removesuffix('.json')}.run-{digest_bytes(run_id.encode())}.json"


def mark_run(store: Store, home: str, run_id: str, started_at: float, *, host: str) -> None:
    """Say (again) that run ``run_id`` of ``home``, begun at ``started_at``, is going: while
    the mark is fresh (:data:`RUN_MARK_EXPIRY`), a collection keeps everything written since
    that run began."""
    body = {
        "home": home,
        "host": host,
        "run": run_id,
        "started_at": started_at,
        "updated_at": time.time(),
        "keys": [],
    }
    store.write_entry(run_mark_name(home, run_id), json.dumps(body, separators=(",", ":")).encode())


def publish_roots(store: Store, home: str, keys: Iterable[str], *, host: str) -> bool:
    """Write the roots of ``home`` unless the store has them already; True if written."""
    wanted = sorted(set(keys))
    name = roots_name(home)
    current = _read_json(store, name)
    if isinstance(current, dict) and current.get("keys") == wanted:
        return False
    body = {"home": home, "host": host, "updated_at": time.time(), "keys": wanted}
    store.write_entry(name, json.dumps(body, separators=(",", ":")).encode())
    return True


def read_roots(store: Store) -> list[dict[str, Any]]:
    """Every home's roots (malformed ones are skipped with a warning; runs' marks are not
    roots)."""
    return [body for body in _roots_by_entry(store).values() if "run" not in body]


def _runs_going(by_entry: dict[str, dict[str, Any]], now: float) -> tuple[list[float], list[str]]:
    """Take the runs' marks out of ``by_entry``: the start times of the runs going (a mark
    rewritten within :data:`RUN_MARK_EXPIRY`), and the entries of the dead runs' marks."""
    starts, dead = [], []
    for entry in [e for e, body in by_entry.items() if "run" in body]:
        body = by_entry.pop(entry)
        updated, started = _time(body.get("updated_at")), _time(body.get("started_at"))
        if updated is not None and started is not None and updated >= now - RUN_MARK_EXPIRY:
            starts.append(started)
        else:
            dead.append(entry)
    return starts, dead


def _roots_by_entry(store: Store) -> dict[str, dict[str, Any]]:
    """Every home's well-formed roots, by entry name."""
    found = {}
    for folder, name in store.list_entries("roots"):
        entry = f"roots/{folder}/{name}"
        if store.entry_info(entry) is None:
            continue  # gone, or not a file (collect_damaged says so)
        body = _read_json(store, entry)
        keys = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            log.warning("ignoring the malformed roots entry %s", entry)
            continue
        found[entry] = body
    return found


def _time(value: object) -> float | None:
    """``value`` as a time (a finite JSON number), or None (an integer no float holds, too)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


@dataclass
class SharedGcReport:
    """What a collection of a shared store removed (or, with ``dry_run``, would remove)."""

    store: str
    dry_run: bool
    homes: int = 0
    #: runs going (a fresh mark): everything written since the oldest began is kept
    runs_going: int = 0
    records_kept: int = 0
    records_removed: int = 0
    objects_kept: int = 0
    objects_removed: int = 0
    objects_too_recent: int = 0
    leases_removed: int = 0
    bytes_freed: int = 0
    removed_records: list[str] = field(default_factory=list)
    removed_objects: list[str] = field(default_factory=list)
    #: entries that are not files (folders... planted where a file belongs), removed at any age
    removed_damaged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_shared(
    store: Store,
    *,
    grace: float = SHARED_GRACE,
    dry_run: bool = False,
    now: float | None = None,
    own: tuple[str, Iterable[str]] | None = None,
) -> SharedGcReport:
    """Delete what no home's roots keep and is older than ``grace`` seconds; see the module.

    ``own``: ``(home id, keys)``, the roots the collecting home publishes before collecting,
    taken instead of what the store holds for it (so that a dry run, which publishes
    nothing, reports what the collection would remove).
    """
    now = time.time() if now is None else now
    cutoff = now - grace
    by_entry = _roots_by_entry(store)
    starts, dead_marks = _runs_going(by_entry, now)
    if starts:  # a run going keeps what it wrote so far (its roots come when it ends)
        cutoff = min(cutoff, min(starts) - _CLOCK_SLACK)
    if own is not None:
        by_entry[roots_name(own[0])] = {"home": own[0], "keys": sorted(set(own[1]))}
    roots = list(by_entry.values())
    kept_keys = {k for body in roots for k in body["keys"]}
    report = SharedGcReport(store.url, dry_run, homes=len(roots), runs_going=len(starts))
    records = _listing(store, "actions")
    keep: list[str] = []
    drop: list[str] = []
    for name, info in records.items():
        key = name.rsplit("/", 1)[-1].split(".", 1)[0]
        young = info.modified is None or info.modified >= cutoff
        (keep if key in kept_keys or young or not is_digest(key) else drop).append(name)
    with ThreadPoolExecutor(_THREADS) as pool:
        named = set().union(*pool.map(lambda n: _named(store, n), keep), set())
    report.records_kept, report.records_removed = len(keep), len(drop)
    report.removed_records = sorted(drop)
    objects = _listing(store, "objects")
    for name, info in objects.items():
        digest = name.rsplit("/", 1)[-1]
        if not is_digest(digest) or name != f"objects/{digest[:2]}/{digest}":
            continue  # not an object (planted: `objects/ab/`, `objects/zz/x/<d>`): never judged
        if digest in named:
            report.objects_kept += 1
        elif info.modified is None or info.modified >= cutoff:
            report.objects_too_recent += 1
        else:
            report.removed_objects.append(digest)
            report.bytes_freed += info.size
    report.objects_removed = len(report.removed_objects)
    leases = [
        name
        for name, info in _listing(store, "leases").items()
        if info.modified is not None
        and info.modified < min(cutoff, time.time() - _LEASE_STALE_SECONDS)
    ]
    leases += dead_marks  # (counted with the leases: the same kind of leftover)
    report.leases_removed = len(leases)
    report.removed_damaged = collect_damaged(store, dry_run=dry_run)
    if not dry_run:
        with ThreadPoolExecutor(_THREADS) as pool:  # records first: none names a deleted object
            list(pool.map(store.delete_entry, drop))
            list(pool.map(store.delete_object, report.removed_objects))
            list(pool.map(store.delete_entry, leases))
    return report


def collect_damaged(store: Store, *, dry_run: bool = False) -> list[str]:
    """Remove (unless ``dry_run``) every entry of ``store`` that is not a file
    (:meth:`Store.damaged_entries`), each with a warning; their names, sorted."""
    found = sorted(name for kind in ENTRY_KINDS for name in store.damaged_entries(kind))
    for name in found:
        log.warning(
            "cache gc: %s %s: it is not a file (a folder, a FIFO or a symbolic link where a "
            "store entry belongs, which no EtherealFabric process makes)",
            "would remove" if dry_run else "removing",
            store.entry_location(name),
        )
        if not dry_run:
            store.delete_entry(name)
    return found


def _listing(store: Store, kind: str) -> dict[str, EntryInfo]:
    """``entry name -> info`` of everything under ``kind`` (one listing where possible)."""
    listed = getattr(store, "list_infos", None)
    if callable(listed):
        return dict(listed(kind))
    found = {}
    for folder, name in store.list_entries(kind):
        entry = f"{kind}/{folder}/{name}"
        info = store.entry_info(entry)
        if info is not None:
            found[entry] = info
    return found


def _named(store: Store, name: str) -> set[str]:
    """The digests the record ``name`` names (unverified): its outputs, its files (folder
    manifests' files included) and, for a map, the index of its children."""
    record = _read_json(store, name)
    if not isinstance(record, dict):
        return set()
    files = record.get("files") if isinstance(record.get("files"), dict) else None
    named = set(record_digests(record)) | set(entry_objects(files))
    children = record.get("children")  # a map's: the index of its children's keys
    if isinstance(children, dict) and isinstance(children.get("digest"), str):
        named.add(children["digest"])
    for entry in (files or {}).values():
        if isinstance(entry, dict) and entry.get("kind") == "dir":
            try:
                named.update(
                    e[2] for e in read_manifest(store, str(entry["digest"])) if e[1] != "dir"
                )
            except Exception as exc:  # an unreadable manifest protects nothing more
                log.debug("cannot read the manifest of %s: %s", name, exc)
    return named


def _read_json(store: Store, name: str) -> Any:
    """The JSON in the entry ``name``; None if it is absent, not JSON or unreadable."""
    try:
        data = store.read_head(name, MAX_RECORD_BYTES + 1)  # (a planted huge entry: not whole)
        return parse_json(data) if len(data) <= MAX_RECORD_BYTES else None
    except (FileNotFoundError, ValueError):
        return None
    except OSError as exc:  # (unreadable: a folder or FIFO there is absent already)
        log.warning("cannot read %s: %s", store.entry_location(name), exc)
        return None
