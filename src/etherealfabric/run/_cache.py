"""The artifact cache: action records and small outputs, the journal's index in front of the store.

By default the store *is* the home folder and the journal's ``actions`` and ``blobs`` tables
are the authoritative action cache (one SQLite transaction per batch, not a file per output).
With a shared store (a folder or a bucket) workers also publish every record and object to it,
and a lookup that misses the local index asks the store, then indexes what it found.

"Complete" means an action record whose objects are present (else it is forgotten: a miss).

A shared store is untrusted (docs/stores.md): a shared folder is opened as such (a
:class:`LocalStore` given with ``shared=True`` is switched to its signed, verifying mode), its
records are checked by the store (signatures) and here (:func:`record_problem`, the record's
shape), and a record that fails either check is a miss with one warning naming the key.

**File outputs.** A record may name stored files and folders (``files``, see
``store/_trees.py``). A hit is usable only once they are back where the node wrote them,
under the workflow's ``root``: :meth:`ArtifactCache.lookup` restores every one that is
missing or differs from its recorded digest (a dry run, ``read_only``, never writes); one
that cannot be restored makes the hit a miss, with a warning, like a missing object; a
symbolic link on its way refuses the hit, naming the link, but keeps the record
(``store/_links.py``). A returned ``File``/``Directory`` output reaches downstream nodes
and ``Results`` as a ``File``/``Directory`` of that path (:meth:`ArtifactCache.input_for`).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from ..define._files import activate_root
from ..errors import ArtifactMissingError, CorruptArtifactError, OutputError, StoreError
from ..hashing._digest import digest_bytes
from ..hashing._files import FileHashCache
from ..journal import Journal
from ..store import LocalStore, Store
from ..store._links import LinkedOutputError, refuse_links
from ._files import file_value, restore_output, unwritten_changed
from ._folders import read_changed, read_path
from ._readcheck import changed_read
from ._records import (
    decode_record,
    decode_records,
    inline_known,
    malformed,
    plain_hit,
    serializer_problem,
)
from ._sharedfetch import CacheWriter, SharedFetch

if TYPE_CHECKING:
    from ..store._layered import LayeredStore
    from ..store._loading import InputHandle

__all__ = ["ArtifactCache", "CacheWriter"]

log = logging.getLogger("etherealfabric.cache")
OutputRecord = Mapping[str, Any]


class ArtifactCache(SharedFetch):
    """Looks up action records and loads outputs for one home and store."""

    def __init__(
        self,
        journal: Journal,
        store: Store,
        *,
        shared: bool,
        writer: CacheWriter | None = None,
        verify: bool = True,
        root: str | None = None,
        file_cache: FileHashCache | None = None,
    ) -> None:
        self.journal = journal  # read only: every write goes through ``writer``
        if shared and isinstance(store, LocalStore):
            store = store.as_shared()  # never read a folder others write as trusted
        self.store = store
        self.shared = shared
        #: the home's store in front of a shared one (store/_layered.py)
        self.layered = _is_layered(store)
        self.verify = verify
        self._writer = writer
        #: remembered file digests: the writer's (the journal's), or a dry run's read-only view
        self._file_cache: FileHashCache | None = writer if file_cache is None else file_cache
        #: without a writer (a dry run), lookups never drop stale records nor index the shared
        #: store's
        self.read_only = writer is None
        self._pending_blobs: dict[str, bytes] = {}  # produced this run, maybe not yet committed
        #: those of them verified against their digest: the very bytes object (immutable),
        #: not hashed again for each of its consumers (a fan-out's one input, once per node)
        self._verified: dict[str, bytes] = {}
        self._rejected: set[str] = set()  # keys of malformed shared records, warned once
        self._unusable: set[str] = set()  # keys of shared entries found unusable, warned once
        self._absent: set[str] = set()  # keys prefetch() found absent from the shared store
        self.fetched: set[str] = set()  # keys found in the shared store (scheduler._cached)
        #: the workflow's root folder: where file outputs are restored (None: the current one)
        self.root = root
        self.restored = 0  # files written back by cache hits (for tests and benchmarks)
        #: records read in bulk before the run (:meth:`preload`), by key: each serves one lookup
        self._preloaded: dict[str, dict[str, Any] | str | bytes] = {}  # (text: decoded when used)
        #: keys :meth:`read_ahead` found unindexed: their next lookup misses without a query
        self._unindexed: set[str] = set()
        #: keys whose record was refused because a data file its node read changed (or it
        #: names a serializer this process does not know), and why
        self.refused: dict[str, str] = {}
        self.linked: dict[str, LinkedOutputError] = {}  # hits refused for a symbolic link
        #: maps whose whole-map hit was refused: their usable children's records (_mapcheck)
        self.checked_children: dict[str, dict[str, dict[str, Any]]] = {}

    def preload(self, workflow: str, nodes: Collection[str]) -> int:
        """Read, in one query, the records of ``nodes`` the workflow's last runs used or made,
        so a warm run's lookups need no query each (issue 14). Only a hint: a key not found
        here is looked up in the journal as before. Returns how many were read."""
        self._preloaded = decode_records(self.journal.recent_actions(workflow, nodes))
        return len(self._preloaded)

    @property
    def publishes(self) -> bool:
        """Whether workers publish records and small outputs to the shared store (a shared
        store in mode read-write; the others publish on ``cache push``)."""
        store = self.store
        return self.shared and (not self.layered or cast("LayeredStore", store).writes_remote)

    def lookup(self, key: str, *, whole_map: bool = True) -> dict[str, Any] | None:
        """The action record of ``key`` if its outputs are all available, else ``None``.

        A map's record (it names its ``children``) is a hit only if each child's would be
        (run/_mapcheck.py); ``whole_map=False`` (a map's collection) skips that."""
        found = self._preloaded.pop(key, None)
        if isinstance(found, (str, bytes)):  # (decoded up front unless one was malformed)
            record = decode_record(found)
        elif (record := found) is not None:
            try:
                if plain_hit(record):  # nothing to check: usable() would return it as it is
                    return record
            except (AttributeError, KeyError, TypeError, ValueError):
                pass  # (the wrong shape: usable() says so)
        if record is None:
            if key in self._unindexed:
                self._unindexed.discard(key)
            else:
                record = self.journal.get_action(key)
        if record is None and self.shared:
            record = self._from_store(key)
        if record is None:
            return None
        return self.usable(key, record, whole_map)

    def usable(
        self, key: str, record: dict[str, Any], whole_map: bool = True
    ) -> dict[str, Any] | None:
        """``record`` of ``key`` if a hit may use it (its files put back), else None. One of
        the wrong shape (an edited journal's) is forgotten with a warning: a miss."""
        try:
            found = self._usable(key, record, whole_map)
            if found is None and record.get("files") and key not in self.linked:
                self._refuse_links(key, record["files"])
            return found
        except (AttributeError, KeyError, TypeError, ValueError, StoreError) as exc:
            if not malformed(key, record, exc):
                raise
            if self._writer is not None:
                self._writer.drop_action(key)
            return None

    def _usable(self, key: str, record: dict[str, Any], whole_map: bool) -> dict[str, Any] | None:
        if (record.get("reads") or record.get("files")) and self._read_changed(key, record):
            return None
        problem = self._incomplete(record)
        if problem is None and record.get("files") and not self.read_only:
            try:
                problem = self._restore(record)
            except LinkedOutputError as exc:  # the record is kept; the node fails, naming
                self.linked[key] = exc  # the link, and never runs (run/_tasks.py, _mapping.py)
                self.refused.setdefault(key, str(exc))
                return None
        if problem is not None:
            if problem == serializer_problem(record):  # kept, yet unusable here: plan and
                self.refused.setdefault(key, problem)  # explain say why (not "gone")
            if self._writer is not None:
                log.warning("%s; recomputing it (cache key %s)", problem, key)
                self._writer.drop_action(key)
            return None
        if whole_map and "children" in record:
            from ._mapcheck import whole_map_refused  # (a map's: imported with the maps)

            if whole_map_refused(self, key, record):
                return None
        return record

    def _refuse_links(self, key: str, files: Mapping[str, Any]) -> None:
        """A record a hit may not use names file outputs: were one now through a symbolic
        link, the node would write through it and fail once it ran (its outputs are never
        stored through a link), so it fails before it runs instead (:attr:`linked`)."""
        root = self.root if self.root is not None else os.getcwd()
        for relative in files:
            try:
                refuse_links(root, relative)
            except LinkedOutputError as exc:
                self.linked[key] = exc
                return

    def _read_changed(self, key: str, record: Mapping[str, Any]) -> bool:
        """Whether a file the node read (run/_reads.py) or returned unwritten (run/_files.py)
        now holds something else: the hit is refused, :attr:`refused` says why (explain)."""
        path = changed_read(record, root=self.root, file_cache=self._file_cache)
        why = None if path else unwritten_changed(self.store, record, self.root, self._file_cache)
        if path is None and why is None:
            return False
        if key not in self.refused:  # (a lookup again once the lease is taken: said once)
            gone = path is not None and not os.path.lexists(
                read_path(path, self.root if self.root is not None else os.getcwd())
            )
            self.refused[key] = why or read_changed(str(path), record["reads"].get(path), gone=gone)
            log.info("node %r: %s: running it again", record.get("node", "?"), self.refused[key])
        return True

    def lookup_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """:meth:`lookup` of many keys (a map's children): the usable records found, by key.

        The local index is read in a few queries; what it lacks is asked one key at a time
        (of a shared store, or to restore file outputs), as :meth:`lookup` would.
        """
        found = self.journal.get_actions(keys)
        usable: dict[str, dict[str, Any]] = {}
        for key in keys:
            record = found.get(key)
            if record is None:
                if not self.shared:
                    continue
                record = self.lookup(key)  # the whole path: shared store, restores, warnings
            elif record.get("reads") or record.get("files") or self._incomplete(record):
                record = self.usable(key, record)  # read checks, restores, warnings
            if record is not None:
                usable[key] = record
        return usable

    def prefetch_inline(self, records: Sequence[OutputRecord]) -> None:
        """Read the inline bytes of many outputs in one go (a map's collection needs them)."""
        wanted = [
            r["digest"]
            for r in records
            if r.get("inline") and r["digest"] not in self._pending_blobs
        ]
        if wanted:
            self._pending_blobs.update(self.journal.get_blobs(wanted))

    def _restore(self, record: Mapping[str, Any]) -> str | None:
        """Put the record's file outputs back under the root; why not, or None once done."""
        root = self.root if self.root is not None else os.getcwd()
        for relative in record["files"]:  # all first: a refused hit puts no file back
            refuse_links(root, relative)  # (LinkedOutputError, naming the link)
        file_cache, swept = self._file_cache, set[str]()
        for relative, entry in record["files"].items():
            try:
                self.restored += restore_output(
                    self.store, root, relative, entry, verify=self.verify,
                    file_cache=file_cache, swept=swept,
                )  # fmt: skip
            except (StoreError, OSError) as exc:
                if isinstance(exc, CorruptArtifactError) and exc.digest and not self.shared:
                    self.store.delete_object(exc.digest)
                return f"the file output {relative!r} of node {record.get('node', '?')!r} cannot be restored ({exc})"
        return None

    def _incomplete(self, record: Mapping[str, Any]) -> str | None:
        """Why a record's outputs are unusable (an object gone or of the wrong size), or None.

        A size check is one ``stat``; the bytes themselves are verified when loaded.
        """
        files = record.get("files")
        if not files and inline_known(record):  # (most records; inline: checked when read)
            return None
        problem = serializer_problem(record)  # an edited record's: a miss, never a crash
        if problem is not None:
            return problem
        stored = [(f"file {p!r}", e) for p, e in files.items()] if files else ()
        seen: set[str] = set()  # (a returned File is an output and a file of one object)
        for name, out in [*record["outputs"].items(), *stored]:
            if out.get("inline") or out["digest"] in seen:  # (inline: checked when read)
                continue
            seen.add(out["digest"])
            if not self.read_only and (not self.shared or self.layered):
                # a hit uses the object: gc keeps objects used since the oldest live run began,
                # and the local layer's budget evicts the least recently used first
                self.store.refresh_object(out["digest"])
            size = self.store.object_size(out["digest"])
            if size != out.get("size", size):
                what = "missing" if size is None else f"{size} bytes instead of {out['size']}"
                return (
                    f"output {name!r} of node {record.get('node', '?')!r} is {what} at "
                    f"{self.location(out['digest'])}"
                )
        return None

    def _check_size(self, record: OutputRecord) -> None:
        """An object of another size than its record says is corrupt: one ``stat``, before
        its bytes are hashed (a planted sparse file of 20 GB was read through first)."""
        digest, wanted = record["digest"], record.get("size")
        size = self.store.object_size(digest)
        if size is not None and isinstance(wanted, int) and size != wanted:
            where = self.location(digest)
            raise CorruptArtifactError(
                f"object {digest} at {where} is {size} bytes instead of {wanted}",
                path=where,
                digest=digest,
            )

    def location(self, digest: str) -> str:
        """Where an object lives, for messages."""
        return self.store.location(digest)

    def _from_store(self, key: str) -> dict[str, Any] | None:
        """A record from the shared store if it is well formed and usable, else None (a miss)."""
        if key in self._absent:  # just asked by prefetch(); a second lookup asks again
            self._absent.discard(key)
            return None
        found = self._fetch(key)
        if found is None:
            return None
        if self._writer is not None:
            self._writer.index_action(key, *found)
        self.fetched.add(key)
        return found[0]

    def read_ahead(self, keys: Sequence[str]) -> None:
        """Read the records of many keys about to be looked up (ready nodes) in one query
        per 500 keys instead of one each (issue 14); with a shared store, :meth:`prefetch`.

        Only a hint, like :meth:`preload`: each serves one lookup. A key found absent may be
        committed by another run before its lookup, which then misses it and computes the
        node again (the lease taken before computing reads the journal once more)."""
        if self.shared:
            self.prefetch(keys)
            return
        wanted = [k for k in keys if k not in self._preloaded]
        texts = self.journal.get_action_texts(wanted)
        self._preloaded.update(texts)
        self._unindexed.update(k for k in wanted if k not in texts)

    def remember_inline(self, blobs: Mapping[str, bytes]) -> None:
        """Small outputs produced this run, readable before their journal rows are committed."""
        self._pending_blobs.update(blobs)

    def inline_bytes(self, digest: str) -> bytes | None:
        """The bytes of a small output: produced this run, indexed, or from the shared store."""
        data = self._pending_blobs.get(digest)
        if data is None:
            data = self.journal.get_blob(digest)
        if data is None and self.shared:
            data = self.store.read_bytes(digest)
        return data

    def read_bytes(self, record: OutputRecord) -> bytes:
        """An output's stored (serialized) bytes, verified against its digest."""
        handle = self.handle(record)
        if handle.inline is not None:
            return handle.inline
        return self.store.read_bytes(handle.digest)

    def handle(self, record: OutputRecord) -> InputHandle:
        """How a worker finds this output: inline bytes for small ones, the digest otherwise.

        Inline bytes are verified here (cheap: they are small); a mismatch or a missing blob
        raises with ``.digest`` set, so the scheduler can recompute the node that made it.
        """
        InputHandle = _input_handle()  # (the class, its module imported once)
        digest = record["digest"]
        if not record.get("inline"):
            return InputHandle(digest, record["serializer"], None)
        inline = self.inline_bytes(digest)
        if inline is None:
            error: StoreError = ArtifactMissingError(
                f"the inline output {digest} is missing from the journal {self.journal.path}",
                path=str(self.journal.path),
            )
        elif self._verified.get(digest) is not inline and digest_bytes(inline) != digest:
            error = CorruptArtifactError(
                f"the inline output {digest} in the journal {self.journal.path} does not match "
                "its digest",
                path=str(self.journal.path),
            )
        else:
            if inline is self._pending_blobs.get(digest):  # (held for the run anyway)
                self._verified[digest] = inline
            return InputHandle(digest, record["serializer"], inline)
        error.digest = digest
        raise error

    def forget(self, key: str | None, record: Mapping[str, OutputRecord]) -> None:
        """Drop a cache entry whose outputs turned out missing or corrupt, and the bytes of
        each of its outputs that do not match their digest. Bytes that do are kept: content
        addressed, they may be another record's output too (a forged record naming another
        node's object under the wrong serializer made that node's valid object go)."""
        if self._writer is None:
            raise RuntimeError("a read-only artifact cache cannot forget entries")
        if key:
            self._preloaded.pop(key, None)
            self._writer.drop_action(key)
            if self.shared:
                self.store.delete_action(key)
        for out in record.values():
            digest = out["digest"]
            self._pending_blobs.pop(digest, None)
            self._verified.pop(digest, None)
            if out.get("inline"):
                blob = self.journal.get_blob(digest)  # (a shared store's copy: verified alone)
                if blob is not None and digest_bytes(blob) != digest:
                    self._writer.drop_blob(digest)
            elif not self._intact(digest):
                self.store.delete_object(digest)

    def _intact(self, digest: str) -> bool:
        """Whether the object is present, readable, and matches its digest."""
        try:
            with self.store.open_object(digest, verify=True):
                return True
        except (StoreError, OSError):
            return False

    def input_for(self, record: OutputRecord) -> Any:
        """What a worker gets for an output: a ``File``/``Directory`` for a file output (at
        its path under the root), else a :meth:`handle` of its stored bytes."""
        try:
            found = file_value(record, self.root)
        except OutputError as exc:
            raise CorruptArtifactError(str(exc), digest=record.get("digest")) from None
        return found if found is not None else self.handle(record)

    def load(self, record: OutputRecord) -> Any:
        """Load an output's value (verifying its digest); a file output is its ``File``."""
        from ..store._loading import InputHandle, load_value

        found = self.input_for(record)
        if not isinstance(found, InputHandle):
            return found
        if found.inline is None:
            self._check_size(record)
        with activate_root(self.root):  # a File stored inside a value is found under the root
            return load_value(found, self.store, verify=self.verify)


@functools.cache
def _input_handle() -> type[InputHandle]:
    """:class:`InputHandle`, its module imported on first use (a warm run that loads nothing:
    not at all) and once: an import statement per call cost 3% of a cold fan-out's CPU."""
    from ..store._loading import InputHandle

    return InputHandle


def _is_layered(store: Store) -> bool:
    """Whether ``store`` is a :class:`LayeredStore`, without importing its module: none can
    exist before it is imported (a run on the home's own store never imports it)."""
    layered = sys.modules.get("etherealfabric.store._layered")
    return layered is not None and isinstance(store, layered.LayeredStore)
