"""Load stored values: where an input lives (:class:`InputHandle`) and how it is read back.

A handle names an output's digest and serializer, and carries the bytes of small outputs
(inline in the journal) so that a worker anywhere needs no journal. Loading verifies digests and
shares one copy of a value between the threads of a process that need it at the same time.
A large object (over 64 MiB) of a local store whose serializer can (``npy``, ``arrow``) is
memory-mapped once its digest checked: its pages are read when touched, not copied up front.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from ._base import Store
from ._serializers import SerializerRegistry, default_registry
from ._tables import MMAP_BYTES

__all__ = ["InputHandle", "load_value"]


@dataclass(frozen=True, slots=True)
class InputHandle:
    """Where an input value lives: its digest and serializer, and its bytes when small."""

    digest: str
    serializer: str
    inline: bytes | None = None


_values: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_loading: dict[str, threading.Lock] = {}
_loading_guard = threading.Lock()


def load_value(
    handle: InputHandle,
    store: Store,
    *,
    verify: bool = True,
    registry: SerializerRegistry = default_registry,
) -> Any:
    """Load an input, sharing one copy between the threads of this process that need it."""
    cached = _values.get(handle.digest)
    if cached is not None:
        return cached
    with _loading_guard:
        lock = _loading.setdefault(handle.digest, threading.Lock())
    with lock:
        cached = _values.get(handle.digest)
        if cached is not None:
            return cached
        value = _load(handle, store, verify, registry)
        with contextlib.suppress(TypeError):  # ints, lists...: no weak references; cheap to reload
            _values[handle.digest] = value
    with _loading_guard:
        _loading.pop(handle.digest, None)
    return value


def _load(handle: InputHandle, store: Store, verify: bool, registry: SerializerRegistry) -> Any:
    serializer = registry.get(handle.serializer)
    if handle.inline is not None:
        return serializer.loads(handle.inline)
    path = _mappable(handle, store, serializer)
    with store.open_object(handle.digest, verify=verify) as fp:
        if path is None:
            return serializer.load(fp)
    return serializer.load_path(path)  # type: ignore[attr-defined]  # checked, then mapped


def _mappable(handle: InputHandle, store: Store, serializer: Any) -> str | None:
    """The object's file, when it is large and the serializer can memory-map it."""
    object_path = getattr(store, "object_path", None)
    if object_path is None or not callable(getattr(serializer, "load_path", None)):
        return None
    if store.always_verify:  # others can write it: the file could change after its check
        return None
    size = store.object_size(handle.digest)
    return str(object_path(handle.digest)) if size is not None and size >= MMAP_BYTES else None
