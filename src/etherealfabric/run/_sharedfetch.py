"""Records and objects fetched from a shared store (``ArtifactCache``'s part for it).

A lookup that misses the local index asks the shared store (:meth:`SharedFetch._fetch`): a
record is used only if well formed (``store/_signing.record_problem``) and its small outputs
and, with a layered store, its objects can be had; else it is a miss with one warning naming
the key. :meth:`SharedFetch.prefetch` asks for many keys at once, in a few threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from ..config import INLINE_LIMIT
from ..errors import ArtifactMissingError, CorruptArtifactError
from ..journal import Journal
from ..store import Store

if TYPE_CHECKING:
    from ..store._layered import LayeredStore

__all__ = ["CacheWriter", "SharedFetch"]

log = logging.getLogger("etherealfabric.cache")
_PREFETCH_THREADS = 16


class CacheWriter(Protocol):
    """The journal writes the cache makes (the run's :class:`JournalRecorder` does them)."""

    def index_action(
        self, key: str, record: Mapping[str, Any], blobs: Sequence[tuple[str, bytes]]
    ) -> None: ...
    def drop_action(self, key: str) -> None: ...
    def drop_blob(self, digest: str) -> None: ...
    # remembered file digests (FileHashCache): restoring skips files already in place
    def get(self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str | None: ...
    def put(
        self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int, digest: str
    ) -> None: ...


class SharedFetch:
    """Fetching from the shared store, mixed into ``ArtifactCache`` (which sets these)."""

    journal: Journal
    store: Store
    shared: bool
    layered: bool
    read_only: bool
    _writer: CacheWriter | None
    _absent: set[str]
    _unusable: set[str]
    _rejected: set[str]
    fetched: set[str]

    def prefetch(self, keys: Sequence[str]) -> None:
        """Fetch the records of ``keys`` that the journal lacks from the shared store at once
        (in a few threads: a new teammate's first run of a wide graph), indexing those found;
        the lookup of a key found absent then skips its request once.

        Errors are left to the lookups (a key that failed is simply asked again).
        """
        if not self.shared or self._writer is None:
            return
        from ..journal._team import indexed_keys  # (a shared store's only: not on every run)

        indexed = indexed_keys(self.journal, keys)
        todo = [k for k in dict.fromkeys(keys) if k not in indexed]
        if len(todo) < 2:
            return
        from concurrent.futures import ThreadPoolExecutor  # (a shared store's only)

        with ThreadPoolExecutor(_PREFETCH_THREADS) as pool:
            found = list(pool.map(self._try_fetch, todo))
        for key, got in zip(todo, found, strict=True):
            if got is None:
                self._absent.add(key)
            elif isinstance(got, tuple):
                self._writer.index_action(key, *got)
                self.fetched.add(key)

    def _try_fetch(self, key: str) -> tuple[dict[str, Any], list[tuple[str, bytes]]] | bool | None:
        try:
            return self._fetch(key)
        except Exception:  # the lookup asks again and reports it
            return False

    def _fetch(self, key: str) -> tuple[dict[str, Any], list[tuple[str, bytes]]] | None:
        """A usable record of ``key`` in the shared store, with its small outputs' bytes."""
        record = self.store.get_action(key)
        if record is None:
            return None
        from ..store._signing import record_problem  # a shared store's: loaded with it

        problem = record_problem(record)
        if problem:
            self._reject(key, problem)
            return None
        record = _small_inline(record)
        blobs = []
        for name, out in record["outputs"].items():
            if out.get("inline") and self.read_only:
                if not self.store.has_object(out["digest"]):
                    return None
            elif out.get("inline"):
                try:
                    data = self.store.read_bytes(out["digest"])
                except (ArtifactMissingError, CorruptArtifactError) as exc:
                    self._say_unusable(key, exc)
                    return None
                if len(data) != out["size"]:
                    self._reject(
                        key, f"output {name!r} has {len(data)} bytes, not its {out['size']}"
                    )
                    return None
                blobs.append((out["digest"], data))
        if not self.read_only and not self._fill(key, record):
            return None
        return record, blobs

    def _fill(self, key: str, record: Mapping[str, Any]) -> bool:
        """On a hit from the shared store, copy the record's objects into the local layer
        (verified), so that the next run here asks the shared store nothing; False (a miss,
        warned) if one cannot be had. Folders' files come when they are restored."""
        if not self.layered:
            return True
        store = cast("LayeredStore", self.store)
        entries = [o for o in record["outputs"].values() if not o.get("inline")]
        entries += list(record.get("files", {}).values())
        try:
            for entry in entries:  # (a copy larger than its record says is never fetched)
                size = entry.get("size")
                store.fill(entry["digest"], size if isinstance(size, int) else None)
        except (ArtifactMissingError, CorruptArtifactError) as exc:
            self._say_unusable(key, exc)
            if isinstance(exc, CorruptArtifactError) and exc.digest:
                store.delete_object(exc.digest)  # so that the recomputed bytes replace it
            return False
        return True

    def _say_unusable(self, key: str, exc: Exception) -> None:
        """Warn that the shared entry of ``key`` is unusable, once per run and key (a key is
        looked up again once its lease is taken, and would say it twice)."""
        if key not in self._unusable:
            self._unusable.add(key)
            log.warning("shared cache entry %s is unusable (%s); recomputing", key, exc)

    def _reject(self, key: str, problem: str) -> None:
        if key not in self._rejected:
            self._rejected.add(key)
            log.warning(
                "ignoring the action record for cache key %s in the shared store %s "
                "(a cache miss: the node runs again): %s",
                key,
                self.store.url,
                problem,
            )


def _small_inline(record: dict[str, Any]) -> dict[str, Any]:
    """``record``, its outputs marked inline but larger than :data:`INLINE_LIMIT` made plain
    stored objects: the journal keeps only small bytes, whatever a shared record says (a
    forged unsigned one made every teammate copy 60 MB into their journal, and more each)."""
    outputs = record["outputs"]
    if not any(o.get("inline") and o["size"] > INLINE_LIMIT for o in outputs.values()):
        return record
    plain = {
        name: {k: v for k, v in out.items() if k != "inline"} if out["size"] > INLINE_LIMIT else out
        for name, out in outputs.items()
    }
    return {**record, "outputs": plain}
