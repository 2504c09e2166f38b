"""The team cache: the home's own store as a local layer in front of a shared store.

With ``ETHEREALFABRIC_STORE`` pointing elsewhere than the home (a bucket, a shared folder),
a run's store is a :class:`LayeredStore`: the home's own folder (``objects/`` next to the
journal; trusted, it is your disk) in front of the shared store (untrusted: records signed,
bytes verified, see ``store/_trust.py``)::

    read an object:   local layer ──hit──> bytes
                           │ miss
                           └──> shared store ──> verify ──> local layer (filled) ──> bytes
    write an object:  local layer ──> shared store (mode read-write)
    action records:   the shared store (the journal is their local index: run/_cache.py)
    checkpoints:      local layer, and the shared store (mode read-write)

So a second run on the same machine downloads nothing: every object it needs is local.

**Modes** (``ETHEREALFABRIC_STORE_MODE``). ``read-write`` (the default) writes objects, records
and checkpoints to both layers. ``read-only`` and ``push-on-demand`` never write the shared
store during a run: no object, record, checkpoint or lease (a reader waits for a teammate's
lease, but takes none: nobody else could see its result); results stay in the local layer and
the journal until ``etherealfabric cache push`` uploads them. The two differ in what a run
says: ``push-on-demand`` ends each run by saying how many results are waiting to be pushed;
``read-only`` is for machines that only read (a laptop that CI writes for) and says nothing.

**An unreachable store** (a connection error or a timeout: a
:class:`~etherealfabric.errors.StoreUnreachableError`, bounded by ``ETHEREALFABRIC_STORE_TIMEOUT``)
is warned about once; from then on, for the rest of the run, the store is not asked again:
lookups are misses (the journal and the local layer still serve hits), writes are skipped.
Nothing is queued: ``etherealfabric cache push --dry-run`` compares the journal with the store
and lists every result that is not there.

**A store that refuses writes** (read-only credentials or bucket policy, in mode ``read-write``:
a ``WriteRefusedError``) is warned about once; the run then goes on as in mode ``read-only``
(nothing of it is lost: ``cache push`` uploads it later with credentials that may write).

**A damaged shared copy** (its bytes do not hash to its digest: found when a small output is
read, or when an object is downloaded) is remembered (:attr:`LayeredStore.damaged`, which
travels to worker processes): the recomputed bytes then replace it, whatever its size (a
write otherwise skips an object of the right size already there, to spare an upload).

**The budget** (``ETHEREALFABRIC_LOCAL_CACHE_SIZE``) is enforced by ``store/_budget.py`` at
the end of each run and by ``cache gc``: least recently used objects first (a cache hit, a fill and a write
refresh an object's time), never one used since the oldest run still going began, and only
objects that the shared store holds too (so evicting costs at most a download later, never a
result). A run itself never evicts, so what a running node needs is never taken away.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

from ..config import ENV, INLINE_LIMIT, STORE_MODES
from ..errors import ArtifactMissingError, ConfigError, CorruptArtifactError, StoreUnreachableError
from ..hashing._files import file_digest
from ._base import EntryInfo, Store, check_digest, object_name
from ._local import LocalStore
from ._remoteerrors import WriteRefusedError
from ._writer import remove_quietly

__all__ = ["LayeredStore"]

log = logging.getLogger("etherealfabric.store")
_T = TypeVar("_T")
_MODE_ENV = ENV["store_mode"]


class LayeredStore(Store):
    """``local`` (the home's own store) in front of ``remote`` (a shared store); see the module.

    Picklable (it travels to worker processes with its layers); whether the shared store was
    found unreachable travels too, so workers do not wait for it again.
    """

    def __init__(self, local: LocalStore, remote: Store, *, mode: str = "read-write") -> None:
        if mode not in STORE_MODES:
            raise ConfigError(
                f"unknown store mode {mode!r}; use one of {', '.join(STORE_MODES)}",
                setting="ETHEREALFABRIC_STORE_MODE",
            )
        self.local = local
        self.remote = remote
        self.mode = mode
        self.url = remote.url
        #: why the shared store is not asked any more (it did not answer); None while it is
        self.offline: str | None = None
        #: digests whose copy in the shared store was found damaged: a write replaces them
        self.damaged: set[str] = set()
        #: this home's id in the shared store (:meth:`stamped`), read when first needed
        self.home: str | None = None
        self._init_process()

    def _init_process(self) -> None:
        self._lock = threading.Lock()
        self._filling: dict[str, threading.Lock] = {}
        self.fills = 0  # objects downloaded into the local layer by this process
        self.filled_bytes = 0

    def __getstate__(self) -> dict[str, Any]:
        state = {k: self.__dict__[k] for k in ("local", "remote", "mode", "url", "offline", "home")}
        with self._lock:
            state["damaged"] = set(self.damaged)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_process()

    @property
    def writes_remote(self) -> bool:
        """True when runs write the shared store (mode ``read-write``)."""
        return self.mode == "read-write"

    @property
    def signed(self) -> bool:
        return bool(getattr(self.remote, "signed", False))

    @property
    def key_id(self) -> str | None:
        return getattr(self.remote, "key_id", None)

    # -- the shared store, asked with care -----------------------------------------------------
    def ask(self, call: Callable[..., _T], *args: Any, default: _T) -> _T:
        """``call(*args)`` on the shared store; ``default`` once it is found unreachable."""
        if self.offline is not None:
            return default
        try:
            return call(*args)
        except StoreUnreachableError as exc:
            self.went_offline(exc)
            return default
        except WriteRefusedError as exc:  # read-only credentials: go on as mode read-only
            with self._lock:
                said, self.mode = self.mode == "read-only", "read-only"
            if not said:
                log.warning(
                    "the shared store %s refuses writes, so this run goes on as with %s=read-only "
                    "(results stay in this home; `etherealfabric cache push` uploads them with "
                    "credentials that may write; set %s=read-only to not try): %s",
                    self.remote.url, _MODE_ENV, _MODE_ENV, exc,
                )  # fmt: skip
            return default

    def went_offline(self, exc: BaseException) -> None:
        """Stop asking the shared store for the rest of this run; warn once."""
        with self._lock:
            if self.offline is not None:
                return
            self.offline = str(exc)
        log.warning(
            "the shared store %s is unreachable, so this goes on with the local layer %s "
            "only (nothing is uploaded; `etherealfabric cache push --dry-run` lists a run's "
            "results, `etherealfabric cache push` uploads them later): %s",
            self.remote.url,
            self.local.root,
            exc,
        )

    def _write_remote(self, call: Callable[..., Any], *args: Any) -> None:
        if self.writes_remote:
            self.ask(call, *args, default=None)

    # -- entries (leases and anything else by name): the shared store ---------------------------
    def open_entry(self, name: str) -> BinaryIO:
        if self.offline is not None:
            raise FileNotFoundError(name)
        try:
            return self.remote.open_entry(name)
        except StoreUnreachableError as exc:
            self.went_offline(exc)
            raise FileNotFoundError(name) from exc

    def read_entry(self, name: str) -> bytes:
        with self.open_entry(name) as fp:
            return fp.read()

    def read_head(self, name: str, size: int) -> bytes:
        """The first ``size`` bytes of the shared store's entry (a ranged GET, not all of it)."""
        if self.offline is not None:
            raise FileNotFoundError(name)
        try:
            return self.remote.read_head(name, size)
        except StoreUnreachableError as exc:
            self.went_offline(exc)
            raise FileNotFoundError(name) from exc

    def write_entry(self, name: str, *parts: bytes) -> None:
        self._write_remote(self.remote.write_entry, name, *parts)

    def create_entry(self, name: str, data: bytes) -> bool:
        """Exclusive create in the shared store; a run that does not write it (or cannot reach
        it) creates nothing and is told it did: its leases are its own (nobody waits for it)."""
        if not self.writes_remote:
            return True
        return self.ask(self.remote.create_entry, name, data, default=True)

    def entry_info(self, name: str) -> EntryInfo | None:
        return self.ask(self.remote.entry_info, name, default=None)

    def delete_entry(self, name: str) -> None:
        self._write_remote(self.remote.delete_entry, name)

    def list_entries(self, kind: str) -> Iterator[tuple[str, str]]:
        empty: list[tuple[str, str]] = []
        return iter(self.ask(lambda: list(self.remote.list_entries(kind)), default=empty))

    def entry_location(self, name: str) -> str:
        return self.remote.entry_location(name)

    # -- objects: the local layer first --------------------------------------------------------
    def object_info(self, digest: str) -> EntryInfo | None:
        found = self.local.object_info(digest)
        if found is None:
            found = self.ask(self.remote.object_info, digest, default=None)
        return found

    def refresh_object(self, digest: str) -> None:
        """Mark the local copy as just used (least recently used objects are evicted first)."""
        self.local.refresh_object(digest)

    def location(self, digest: str) -> str:
        if self.local.object_info(digest) is not None:
            return self.local.location(digest)
        return self.remote.location(digest)

    def object_path(self, digest: str) -> str:
        """The object's file in the local layer, downloaded first if it is not there."""
        if self.local.object_info(digest) is None:
            self.fill(digest)
        return self.local.object_path(digest)

    def open_object(self, digest: str, *, verify: bool = True) -> BinaryIO:
        if self.local.object_info(digest) is not None:
            try:
                return self.local.open_object(digest, verify=verify)
            except (ArtifactMissingError, CorruptArtifactError) as exc:
                self._drop_local(digest, exc)  # damaged or gone here: the team's copy serves
        self.fill(digest)
        return self.local.open_object(digest, verify=False)  # checked as it was filled

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        if self.local.object_info(digest) is not None:
            try:
                return self.local.read_bytes(digest, verify=verify)
            except (ArtifactMissingError, CorruptArtifactError) as exc:
                self._drop_local(digest, exc)
        info = self.ask(self.remote.object_info, digest, default=None)
        if info is not None and info.size <= INLINE_LIMIT:  # small: the journal keeps them
            try:
                return self.remote.read_bytes(digest)
            except CorruptArtifactError:
                self.found_damaged(digest)
                raise
        self.fill(digest)
        return self.local.read_bytes(digest, verify=False)

    def found_damaged(self, digest: str) -> None:
        """Remember that the shared store's copy of ``digest`` is damaged: the next write of
        these bytes replaces it (see the module)."""
        with self._lock:
            self.damaged.add(digest)

    def _repaired(self, digest: str) -> None:
        with self._lock:
            self.damaged.discard(digest)

    def _drop_local(self, digest: str, exc: Exception) -> None:
        log.warning("the local copy of object %s is unusable (%s); fetching it again", digest, exc)
        self.local.delete_object(digest)

    def fill(self, digest: str, size: int | None = None) -> None:
        """Download the object into the local layer, checked against its digest (and, given
        its ``size`` by the record naming it, refused without being copied whole when the
        shared store's copy is larger: a planted huge file never fills this disk)."""
        with self._lock:
            lock = self._filling.setdefault(digest, threading.Lock())
        with lock:  # one download per object, whatever the number of threads needing it
            if self.local.object_info(digest) is None:
                self._download(digest, size)
        with self._lock:
            self._filling.pop(digest, None)

    def _download(self, digest: str, expected: int | None = None) -> None:
        name = object_name(digest)
        fp, temp = self.local.open_temp()
        fp.close()
        try:
            try:
                if self.offline is not None:
                    raise StoreUnreachableError(self.offline)
                size = self.remote.get_file(name, temp, expected)
            except FileNotFoundError:
                raise self._missing(digest, "") from None
            except StoreUnreachableError as exc:
                self.went_offline(exc)
                raise self._missing(digest, " (it is unreachable)") from exc
            try:
                if expected is not None and size != expected:
                    more = "more than " if size > expected else ""
                    raise CorruptArtifactError(
                        f"object {digest} at {self.remote.location(digest)} is {more}{size} "
                        f"bytes instead of {expected}",
                        path=self.remote.location(digest),
                        digest=digest,
                    )
                check_digest(file_digest(temp), digest, self.remote.location(digest))
            except CorruptArtifactError:
                self.found_damaged(digest)
                raise
            self.local.put_file(name, temp, size)
            self.fills += 1
            self.filled_bytes += size
        finally:
            remove_quietly(temp)

    def _missing(self, digest: str, why: str) -> ArtifactMissingError:
        where = self.remote.location(digest)
        return ArtifactMissingError(
            f"object {digest} is neither in the local layer {self.local.root} nor in the "
            f"shared store {self.remote.url}{why}; the outputs that use it must be recomputed",
            path=where,
            digest=digest,
        )

    def put_bytes(self, data: bytes) -> str:
        digest = self.local.put_bytes(data)
        if digest in self.damaged:  # found damaged there: replaced, whatever its size
            self._write_remote(self._replace, digest, data)
        else:
            self._write_remote(self.remote.put_bytes, data)
        return digest

    def _replace(self, digest: str, data: bytes) -> None:
        self.remote.write_entry(object_name(digest), data)  # atomic: never absent meanwhile
        self._repaired(digest)

    def open_temp(self) -> tuple[BinaryIO, str]:
        return self.local.open_temp()  # in the local layer: a new object is renamed in place

    def _publish(self, temp_path: str, digest: str, size: int) -> None:
        name = object_name(digest)
        try:
            self.local.put_file(name, temp_path, size)
        finally:
            remove_quietly(temp_path)
        self._write_remote(self.upload, digest)

    def upload(self, digest: str) -> bool:
        """Copy the local layer's object to the shared store unless it is there; True if sent.

        Raises :class:`StoreUnreachableError` when the store does not answer (``cache push``
        reports it; a run goes offline through :meth:`ask`).
        """
        import shutil  # here: a run that uploads nothing never imports it

        name = object_name(digest)
        path = self.local.object_path(digest)
        size = os.stat(path).st_size
        damaged = digest in self.damaged
        if damaged:  # the copy there has the size, not the bytes: put_file would keep it
            self.remote.delete_object(digest)
        info = None if damaged else self.remote.entry_info(name)
        if info is not None and info.size == size:
            self.remote.refresh_entry(name)
            return False
        if isinstance(self.remote, LocalStore):  # its put_file renames: give it a copy
            fp, temp = self.remote.open_temp()
            try:
                with fp, open(path, "rb") as src:
                    shutil.copyfileobj(src, fp, 1024 * 1024)
                self.remote.put_file(name, temp, size)
            finally:
                remove_quietly(temp)
        else:
            self.remote.put_file(name, path, size)
        self._repaired(digest)
        return True

    def delete_object(self, digest: str) -> None:
        self.local.delete_object(digest)
        self._write_remote(self.remote.delete_object, digest)

    def iter_objects(self) -> Iterator[str]:
        """The objects of the local layer (the shared store's: ``.remote.iter_objects()``)."""
        return self.local.iter_objects()

    def temp_folders(self) -> list[str]:
        return [*self.local.temp_folders(), *self.remote.temp_folders()]

    def local_folders(self) -> list[str]:
        return [*self.local.local_folders(), *self.remote.local_folders()]

    # -- action records: the shared store -------------------------------------------------------
    def get_action(self, key: str) -> dict[str, Any] | None:
        return self.ask(self.remote.get_action, key, default=None)

    def put_action(self, key: str, record: dict[str, Any]) -> None:
        self._write_remote(self.remote.put_action, key, self.stamped(record))

    def stamped(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` as this home publishes it: naming the home (its id, ``home``; signed
        with the rest), so that ``cache forget`` can tell this home's records from a
        teammate's signed with the same key."""
        if self.home is None:
            from ._sharedgc import home_id

            self.home = home_id(self.local.root)
        return {**record, "home": self.home}

    def delete_action(self, key: str) -> None:
        self._write_remote(self.remote.delete_action, key)

    def iter_actions(self) -> Iterator[str]:
        empty: list[str] = []
        return iter(self.ask(lambda: list(self.remote.iter_actions()), default=empty))

    # -- checkpoints: both layers ----------------------------------------------------------------
    def put_checkpoint(self, key: str, data: bytes) -> None:
        self.local.put_checkpoint(key, data)
        self._write_remote(self.remote.put_checkpoint, key, data)

    def get_checkpoint(self, key: str) -> bytes | None:
        found = self.local.get_checkpoint(key)
        if found is None:
            found = self.ask(self.remote.get_checkpoint, key, default=None)
        return found

    def delete_checkpoint(self, key: str) -> None:
        self.local.delete_checkpoint(key)
        self._write_remote(self.remote.delete_checkpoint, key)

    def __repr__(self) -> str:
        return f"<LayeredStore {self.local.root} -> {self.remote.url} ({self.mode})>"
