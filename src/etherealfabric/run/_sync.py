"""``cache push`` and ``cache pull``: move results between the local layer and the shared store.

A *result* is a cache key with its action record (in the journal, the local index) and the
objects the record names: its large outputs, its stored files and folder manifests, the files
those manifests list (small outputs live inline in the journal and travel as objects).

**Push** sends what the shared store lacks, objects first and the record last (so a record
there never names missing bytes), for the results a run (or every run of a workflow, or the
whole journal) produced. A result whose record is already there, verified with our key, is
skipped, unless bytes it names are missing there (collected, deleted): those are sent again.
Pushing twice sends nothing the second time. ``dry_run`` lists what would go, which is
how ``cache push --dry-run`` shows everything a read-only run, a ``push-on-demand`` run or a
run without the network left local.

**Pull** brings into the local layer and the journal every object and record needed to load a
run's results and to run it again offline (each object verified as it arrives).

Both are idempotent, send one result at a time in a few threads, report each result's outcome
(:class:`SyncItem`), and call ``progress(done)`` as results finish. An unreachable store stops
them with a :class:`~etherealfabric.errors.StoreUnreachableError` naming what was done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import StoreError, StoreUnreachableError
from ..journal import Journal
from ..store import LayeredStore
from ..store._signing import encode_record, record_digests, record_problem, unsigned_problem
from ..store._trees import entry_objects, manifest_objects
from ._recorder import JournalRecorder

__all__ = ["SyncItem", "SyncReport", "pull", "push", "stored_objects"]

_THREADS = 8


@dataclass
class SyncItem:
    """One result: what was (or would be) done with it."""

    key: str
    node: str
    #: ``pushed``/``pulled`` (done), ``to push``/``to pull`` (a dry run), ``present`` (nothing
    #: to do), ``refused`` or ``missing`` (cannot be done: ``reason`` says why)
    status: str
    objects: int = 0
    bytes: int = 0
    reason: str = ""


@dataclass
class SyncReport:
    """What a push or a pull did (or, with ``dry_run``, would do)."""

    direction: str
    dry_run: bool
    store: str
    items: list[SyncItem] = field(default_factory=list)

    def count(self, *statuses: str) -> int:
        return sum(1 for item in self.items if item.status in statuses)

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "dry_run": self.dry_run,
            "store": self.store,
            "items": [asdict(item) for item in self.items],
            "bytes": self.bytes,
        }


def stored_objects(store: LayeredStore, record: Mapping[str, Any]) -> list[str]:
    """Every object ``record`` names that is not inline: outputs, files, manifests and the
    files the manifests list (read through ``store``)."""
    found = [o["digest"] for o in record.get("outputs", {}).values() if not o.get("inline")]
    files = record.get("files")
    found += entry_objects(files)
    found += sorted(manifest_objects(store, files))
    return list(dict.fromkeys(found))


def _inline(record: Mapping[str, Any]) -> list[str]:
    return [o["digest"] for o in record.get("outputs", {}).values() if o.get("inline")]


def _run_all(
    work: Callable[[str, str], SyncItem],
    keys: Mapping[str, str],
    report: SyncReport,
    progress: Callable[[int], None] | None,
) -> SyncReport:
    with ThreadPoolExecutor(_THREADS) as pool:
        futures = [pool.submit(work, key, node) for key, node in keys.items()]
        try:
            for future in futures:
                report.items.append(future.result())
                if progress is not None:
                    progress(1)
        except StoreUnreachableError as exc:
            for future in futures:
                future.cancel()
            done = report.count("pushed", "pulled")
            raise StoreUnreachableError(
                f"{exc} ({done} of {len(keys)} result(s) were {report.direction}ed before; "
                f"run `etherealfabric cache {report.direction}` again once it answers)",
                path=exc.path,
            ) from exc
    return report


# -- push ------------------------------------------------------------------------------------------
def push(
    journal: Journal,
    store: LayeredStore,
    keys: Mapping[str, str],
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SyncReport:
    """Send the results ``keys`` (key -> node) that the shared store lacks; see the module."""
    report = SyncReport("push", dry_run, store.remote.url)
    return _run_all(lambda k, n: _push_one(journal, store, k, n, dry_run), keys, report, progress)


def _push_one(
    journal: Journal, store: LayeredStore, key: str, node: str, dry_run: bool
) -> SyncItem:
    record = journal.get_action(key)
    if record is None:
        return SyncItem(key, node, "missing", reason="no longer in the journal (collected)")
    there = store.remote.get_action(key)
    # the same record there is not enough: its bytes may be gone (a collection, a teammate's
    # or an intruder's deletion), and then this home's copies are what brings them back
    present = there is not None and _same(there, record)
    if not present and not store.signed:
        problem = unsigned_problem(encode_record(key, record, None))
        if problem:
            return SyncItem(key, node, "refused", reason=problem)
    inline = [(d, journal.get_blob(d)) for d in _inline(record)]
    absent_inline = [d for d, data in inline if data is None]
    if absent_inline:
        return SyncItem(key, node, "missing", reason=f"inline output {absent_inline[0]} is gone")
    to_send: list[tuple[str, int]] = []
    for digest in stored_objects(store, record):
        local = store.local.object_info(digest)
        remote = store.remote.object_info(digest)
        if remote is not None and (local is None or remote.size == local.size):
            continue
        if local is None:
            return SyncItem(key, node, "missing", reason=f"object {digest} is in neither store")
        to_send.append((digest, local.size))
    absent = [d for d, _ in inline if store.remote.object_info(d) is None]
    blobs = [(d, data) for d, data in inline if d in absent and data is not None]
    if present and not to_send and not blobs:
        return SyncItem(key, node, "present")
    item = SyncItem(key, node, "to push" if dry_run else "pushed", len(to_send) + len(blobs))
    item.bytes = sum(size for _, size in to_send) + sum(len(data) for _, data in blobs)
    if dry_run:
        return item
    for digest, _ in to_send:
        store.upload(digest)
    for _, data in blobs:
        store.remote.put_bytes(data)
    if not present:  # objects first: a record never names missing bytes; it names this home
        store.remote.put_action(key, store.stamped(record))
    return item


def _same(there: Mapping[str, Any], ours: Mapping[str, Any]) -> bool:
    """True if the store's record names the same bytes as ours."""
    files = {k: v.get("digest") for k, v in (there.get("files") or {}).items()}
    mine = {k: v.get("digest") for k, v in (ours.get("files") or {}).items()}
    return record_digests(there) == record_digests(ours) and files == mine


# -- pull ------------------------------------------------------------------------------------------
def pull(
    journal: Journal,
    store: LayeredStore,
    keys: Mapping[str, str],
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SyncReport:
    """Fetch what the local layer and the journal lack to load and re-run ``keys`` offline."""
    report = SyncReport("pull", dry_run, store.remote.url)
    recorder = None if dry_run else JournalRecorder(journal)
    return _run_all(lambda k, n: _pull_one(journal, store, recorder, k, n), keys, report, progress)


def _pull_one(
    journal: Journal,
    store: LayeredStore,
    recorder: JournalRecorder | None,
    key: str,
    node: str,
) -> SyncItem:
    record = journal.get_action(key)
    indexed = record is not None
    if record is None:
        record = store.remote.get_action(key)
        if record is None:
            return SyncItem(key, node, "missing", reason="no usable record in the shared store")
        problem = record_problem(record)
        if problem:
            return SyncItem(key, node, "refused", reason=problem)
    blobs: list[tuple[str, bytes]] = []
    item = SyncItem(key, node, "to pull" if recorder is None else "pulled")
    try:
        for digest in _inline(record):
            if journal.get_blob(digest) is None:
                data = store.remote.read_bytes(digest) if recorder is not None else b""
                blobs.append((digest, data))
        for digest in stored_objects(store, record):  # manifests come before their files
            if store.local.object_info(digest) is not None:
                continue
            info = store.remote.object_info(digest)
            if info is None:
                return SyncItem(key, node, "missing", reason=f"object {digest} is not there")
            if recorder is not None:
                store.fill(digest)
            item.objects += 1
            item.bytes += info.size
    except StoreUnreachableError:
        raise
    except StoreError as exc:
        return SyncItem(key, node, "missing", reason=str(exc))
    if recorder is not None and (blobs or not indexed):
        recorder.index_action(key, record, blobs)
    if not (blobs or item.objects or not indexed):
        item.status = "present"
    return item
