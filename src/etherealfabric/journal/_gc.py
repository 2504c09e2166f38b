"""Garbage collection of the local cache: forget what recent runs no longer use.

Cache entries never expire on their own (an old key stays valid: revert an edit and it hits
again), so a home grows with every change. :func:`collect_garbage` keeps the entries that the
last ``keep_runs`` finished runs of each workflow used (executed or cached), those of runs still going,
and anything younger than ``older_than`` seconds (a run in another process may be about to
commit it); it drops the other action records, the inline outputs only they named, and the
stored objects nothing kept refers to, the temp files of writers that were killed (and the
side files of killed journal creators, ``journal/_create.py``), and entries that are not
files (a folder where an object belongs: ``store/_sharedgc.py``).
Checkpoints are kept (a crashed training run may be resumed days later), but for those that
finished executions left behind: saved before a later committed success of their key, held by
no live run (``journal/_gccheckpoints.py``).

**Runs may go on meanwhile.** The store is listed first; the decision is then taken again
inside a journal write transaction (which commits of runs wait for) that drops the records and
commits; a second one reads the digests that the remaining records name (those committed in
between too) and deletes the objects, each stat'ed again right before it is deleted. A gc
killed in the middle leaves objects no record names, never a record naming deleted bytes. An
object is kept if any record names it, or it was modified (written, found already there by a
writer, or used by a cache hit: both refresh its mtime) after the oldest run still going
began, or after the collection started. A run commits a
record only if every object it names is still present, checked in its own commit transaction
(see ``run/_recorder.py``), so a committed record never names a collected object.

The outputs an ``on_error`` fallback supplied in a kept run (named by its ``node_fallback``
event, not by a record) are kept too: ``cat`` and ``open_run`` give them. So are the outputs
each node of a kept run had in that run (``journal/_runoutputs.py``), which are not its key's
record's any more once a later execution of the key replaced it (a file the node read changed):
a kept run's results stay loadable; a run no longer kept loses them (``cat`` says so).

A record's stored file outputs (``files``: each file's object, each folder's manifest and
the files the manifest lists) are kept with it, like its outputs. A mapped node's record names
an object listing its children's keys (``children``): the children's records are kept with
it, so a map whose warm runs are one lookup keeps every item it would need again.

Only a home's own store is collected: a shared store (another folder or a bucket) holds
records of teammates that this journal knows nothing about.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError, StoreError
from ..plan._maps import read_children_index
from ..states import RunStatus
from ..store import Store
from ..store._sharedgc import collect_damaged
from ..store._trees import entry_objects, manifest_objects
from ._create import remove_stale_side_files, stale_side_files
from ._gccheckpoints import collect_finished_checkpoints
from ._history import fallback_outputs
from ._index import RECORD
from ._journal import Journal
from ._liveness import gone
from ._runoutputs import run_records
from ._team import kept_runs

__all__ = ["GcReport", "collect_garbage"]


@dataclass
class GcReport:
    """What a collection removed (or, with ``dry_run``, would remove)."""

    dry_run: bool
    records_kept: int = 0
    records_removed: int = 0
    blobs_removed: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0
    objects_too_recent: int = 0
    temp_files_removed: int = 0
    removed_keys: list[str] = field(default_factory=list)
    #: keys of checkpoints a finished execution left behind (``journal/_gccheckpoints.py``)
    checkpoints_removed: list[str] = field(default_factory=list)
    #: entries that are not files (a folder where an object belongs), removed at any age
    removed_damaged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collect_garbage(
    journal: Journal,
    store: Store,
    *,
    keep_runs: int = 5,
    older_than: float = 3600.0,
    dry_run: bool = False,
    shared: bool = False,
    pinned: Sequence[str] = (),
) -> GcReport:
    """Drop cache entries not used by the last ``keep_runs`` runs of each workflow (nor by
    the ``pinned`` runs)."""
    if shared:
        raise ConfigError(
            "collect_garbage works on a home's own store only: a shared store holds other "
            "people's records (`etherealfabric cache gc` collects it with "
            "store._sharedgc.collect_shared, driven by every home's roots).",
            setting="ETHEREALFABRIC_STORE",
        )
    if keep_runs < 1:
        raise ConfigError("keep_runs must be at least 1", setting="keep_runs")
    cutoff = time.time() - older_than
    journal.mark_interrupted()  # runs of dead processes protect nothing
    listed = list(store.iter_objects())
    report = GcReport(dry_run=dry_run)
    if dry_run:
        blobs, referenced = _decide(journal, store, keep_runs, cutoff, report, pinned)
        _collectable_objects(store, listed, referenced, _oldest_live_run(journal, cutoff), report)
    else:
        with journal.write() as conn:  # records first: a record never points at bytes that are gone
            blobs, _ = _decide(journal, store, keep_runs, cutoff, report, pinned)
            conn.executemany(
                "DELETE FROM actions WHERE key = ? AND created_at < ?",
                [(k, cutoff) for k in report.removed_keys],
            )
            conn.executemany("DELETE FROM blobs WHERE digest = ?", [(d,) for d in blobs])
        # committed: killed from here on, it leaves objects that no record names (collected by
        # the next gc), never a record naming deleted bytes (the rollback brought them back)
        with journal.write():  # runs wait to commit until the objects are gone
            referenced = _named(journal, store, _runs_in_use(journal, keep_runs, pinned))
            since = _oldest_live_run(journal, cutoff)
            for digest in _collectable_objects(store, listed, referenced, since, report):
                store.delete_object(digest)
    report.checkpoints_removed, freed = collect_finished_checkpoints(
        journal, store, cutoff=cutoff, dry_run=dry_run
    )
    report.bytes_freed += freed
    stale = store.stale_temp_files(max_age=max(older_than, 0.0), writer_gone=gone)
    report.temp_files_removed = len(stale)
    report.bytes_freed += sum(size for _, size in stale)
    if not dry_run:
        store.cleanup_temp(max_age=max(older_than, 0.0), writer_gone=gone)
    # side files of killed journal creators (journal/_create.py), at any age: gone writers
    sides = stale_side_files(journal.path) if str(journal.path) != ":memory:" else []
    if not dry_run and sides:
        sides = remove_stale_side_files(journal.path)
    report.temp_files_removed += len(sides)
    report.bytes_freed += sum(size for _, size in sides)
    report.removed_damaged = collect_damaged(store, dry_run=dry_run)
    return report


def _oldest_live_run(journal: Journal, cutoff: float) -> float:
    """``cutoff``, or the start of the oldest run still going if that is earlier.

    A live run may have written an object (or found it there, which refreshes its mtime) and
    not committed the record naming it yet, or found it through a cache hit: every object
    modified since that run began is kept.
    """
    started = _rows(
        journal, "SELECT MIN(started_at) FROM runs WHERE status = ?", (RunStatus.RUNNING,)
    )
    oldest = started[0][0] if started else None
    return cutoff if oldest is None else min(cutoff, float(oldest))


def _decide(
    journal: Journal,
    store: Store,
    keep_runs: int,
    cutoff: float,
    report: GcReport,
    pinned: Sequence[str] = (),
) -> tuple[list[str], set[str]]:
    """Which records and blobs to drop (into ``report``), and the digests kept records name."""
    runs = _runs_in_use(journal, keep_runs, pinned)
    kept = _keys_in_use(journal, runs) | _recent_keys(journal, cutoff)
    actions = _actions(journal)
    kept |= _children_of(store, [r for k, r in actions if k in kept])
    referenced = _runs_outputs(journal, store, runs)
    for key, record in actions:
        if key in kept:
            report.records_kept += 1
            referenced |= _digests(record)
            referenced |= manifest_objects(store, record.get("files"))
        else:
            report.removed_keys.append(key)
    report.records_removed = len(report.removed_keys)
    blobs = [d for (d,) in _rows(journal, "SELECT digest FROM blobs") if d not in referenced]
    report.blobs_removed = len(blobs)
    return blobs, referenced


def _named(journal: Journal, store: Store, runs: Sequence[str]) -> set[str]:
    """The digests every record of the journal names (those kept, and those committed since
    the decision), and those the nodes of ``runs`` had in them (:func:`_runs_outputs`)."""
    named = _runs_outputs(journal, store, runs)
    for _, record in _actions(journal):
        named |= _digests(record) | manifest_objects(store, record.get("files"))
    return named


def _runs_outputs(journal: Journal, store: Store, runs: Sequence[str]) -> set[str]:
    """The digests of the outputs the nodes of ``runs`` had in those runs: their records as
    each run recorded them (named by no record once a later execution replaced the key's), and
    the outputs their ``on_error`` fallbacks supplied (named by no record at all)."""
    named: set[str] = set()
    seen: set[str] = set()
    for run_id in runs:
        for outputs in fallback_outputs(journal, run_id).values():
            named |= _digests({"outputs": outputs})
        for record in run_records(journal, journal.node_runs(run_id)):
            if record is None:
                continue
            named |= _digests(record)
            files = json.dumps(record.get("files"), sort_keys=True)
            if files not in seen:  # (each record's manifests read once, not once a run)
                seen.add(files)
                named |= manifest_objects(store, record.get("files"))
    return named


def _children_of(store: Store, records: list[dict[str, Any]]) -> set[str]:
    """The keys of the children of the maps among ``records`` (their stored index)."""
    keys: set[str] = set()
    for record in records:
        digest = _children_digest(record)
        if digest is None:
            continue
        try:
            keys.update(key for key, _ in read_children_index(store.read_bytes(digest)))
        except (StoreError, UnicodeDecodeError):
            continue  # gone or damaged: its children are kept only if something else uses them
    return keys


def _children_digest(record: dict[str, Any]) -> str | None:
    children = record.get("children")
    digest = children.get("digest") if isinstance(children, dict) else None
    return digest if isinstance(digest, str) else None


def _digests(record: dict[str, Any]) -> set[str]:
    outputs = record.get("outputs")
    files = record.get("files")
    named = set(entry_objects(files)) if isinstance(files, dict) else set()
    index = _children_digest(record)
    if index is not None:
        named.add(index)
    if not isinstance(outputs, dict):
        return named
    return named | {
        str(out["digest"]) for out in outputs.values() if isinstance(out, dict) and "digest" in out
    }


def _rows(journal: Journal, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in journal._rows(sql, params)]


def _runs_in_use(journal: Journal, keep_runs: int, pinned: Sequence[str] = ()) -> list[str]:
    """The runs whose results are kept: the last ``keep_runs`` finished runs of each workflow
    (a run still going is not one of them: the runs before it hold what it is about to find
    cached), the runs still going, the ``pinned`` ones."""
    kept, params = kept_runs(keep_runs)
    runs = journal._rows(f"SELECT id FROM runs WHERE {kept}", params)
    return [run["id"] for run in runs] + [journal.get_run(r)["id"] for r in pinned]


def _keys_in_use(journal: Journal, runs: Sequence[str]) -> set[str]:
    keys: set[str] = set()
    for run_id in runs:
        keys |= {
            k
            for (k,) in _rows(
                journal,
                "SELECT cache_key FROM node_runs WHERE run_id = ? AND cache_key IS NOT NULL",
                (run_id,),
            )
        }
    return keys


def _recent_keys(journal: Journal, cutoff: float) -> set[str]:
    return {
        k for (k,) in _rows(journal, "SELECT key FROM actions WHERE created_at >= ?", (cutoff,))
    }


def _actions(journal: Journal) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for key, text in _rows(journal, f"SELECT key, {RECORD} FROM actions"):
        try:
            found.append((key, json.loads(text)))
        except (ValueError, TypeError):  # (a damaged row: NULL, or not JSON)
            found.append((key, {}))  # unreadable: nothing it names is kept for it
    return found


def _collectable_objects(
    store: Store, listed: list[str], referenced: set[str], cutoff: float, report: GcReport
) -> list[str]:
    collectable = []
    for digest in listed:
        if digest in referenced:
            continue
        info = store.object_info(digest)
        if info is None:
            continue
        if info.modified is not None and info.modified >= cutoff:
            report.objects_too_recent += 1  # perhaps written by a run about to commit it
            continue
        collectable.append(digest)
        report.bytes_freed += info.size
    report.objects_removed = len(collectable)
    return collectable
