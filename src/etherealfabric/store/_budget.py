"""The local layer's budget (``ETHEREALFABRIC_LOCAL_CACHE_SIZE``): least recently used objects
of a :class:`~etherealfabric.store._layered.LayeredStore`'s local layer are evicted, only those
the shared store holds too (see ``store/_layered.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ._base import Store
from ._layered import LayeredStore
from ._local import LocalStore

__all__ = ["Eviction", "evict", "local_objects", "object_sizes"]


@dataclass
class Eviction:
    """What :func:`evict` did (or, with ``dry_run``, would do)."""

    budget: int
    size_before: int = 0
    size_after: int = 0
    evicted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    #: objects over the budget kept because only this home has them (push them first)
    kept_unshared: int = 0
    #: objects over the budget kept because a run still going may use them
    kept_recent: int = 0


def local_objects(local: LocalStore) -> list[tuple[float, int, str]]:
    """``(modified, size, digest)`` of every object in a local store, least recent first."""
    found = []
    for digest in local.iter_objects():
        info = local.object_info(digest)
        if info is not None:
            found.append((info.modified or 0.0, info.size, digest))
    return sorted(found)


def evict(
    store: LayeredStore, budget: int, *, keep_since: float, dry_run: bool = False
) -> Eviction:
    """Bring the local layer under ``budget`` bytes, least recently used objects first.

    Objects modified (written, filled, or used by a cache hit) at or after ``keep_since`` are
    kept (pass the start of the oldest run still going), and so is every object the shared
    store does not hold (asked per object; nothing is evicted while it is unreachable).
    """
    started = time.time()
    keep_since = min(keep_since, started)
    objects = local_objects(store.local)
    report = Eviction(budget=budget, size_before=sum(size for _, size, _ in objects))
    total = report.size_before
    for modified, size, digest in objects:
        if total <= budget:
            break
        if modified >= keep_since:
            report.kept_recent += 1
            continue
        info = store.ask(store.remote.object_info, digest, default=None)
        if info is None or info.size != size:
            report.kept_unshared += 1
            continue
        now = store.local.object_info(digest)  # used meanwhile: keep it
        if now is None or (now.modified or 0.0) >= keep_since:
            continue
        if not dry_run:
            store.local.delete_object(digest)
        total -= size
        report.evicted.append(digest)
        report.bytes_freed += size
    report.size_after = total
    return report


def object_sizes(store: Store) -> dict[str, int]:
    """``digest -> size`` of every object of ``store`` (of its local layer, for a layered one).

    An object store is listed with sizes in one listing; other stores are asked per object.
    """
    if isinstance(store, LayeredStore):
        store = store.local
    listed = getattr(store, "object_sizes", None)
    if callable(listed):
        return dict(listed())
    found = {}
    for digest in store.iter_objects():
        info = store.object_info(digest)
        if info is not None:
            found[digest] = info.size
    return found
