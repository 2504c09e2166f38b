"""Load stored values: where an input lives (:class:`InputHandle`) and how it is read back.

A handle names an output's digest and serializer, and carries the bytes of small outputs
(inline in the journal) so that a worker anywhere needs no journal. Loading verifies digests.
Data that cannot be changed through a consumer is loaded once for the threads of a process
that need it at the same time: read-only arrays, arrow data, and frames, of which every
consumer gets its own frame object (a shallow copy under pandas' copy-on-write), so a node
that adds a column or writes a cell changes nothing for its siblings. Any other value (a
model, a user's object) is loaded for each consumer: a node may change it in place.
A large object (over 64 MiB) of a local store whose serializer can (``npy``, ``arrow``) is
memory-mapped once its digest checked: its pages are read when touched, not copied up front.

**Hand-over.** A value produced in this process can be *held* under its digest
(:func:`hold`, by the run on the threads backend): loads of that digest then get it from
memory and read nothing from the store. Each :func:`take` (a consumer's load) counts one
consumer off, and the value is dropped once every consumer it was held for has taken it, or
when :func:`release` lets go of the rest (the run's end).

**Arrays are read-only.** A numpy array loaded or handed over is one object shared by every
thread of the process that needs it at the same time, so its ``WRITEABLE`` flag is cleared
(memory maps are opened read-only): a node that changed its input in place would change
its siblings' input too. A node that wants to modify one copies it (``array.copy()``).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from ..errors import CorruptArtifactError, StoreError
from ._base import Store
from ._serializers import SerializerRegistry, default_registry
from ._tables import MMAP_BYTES

__all__ = ["InputHandle", "held", "hold", "load_value", "release", "take"]


@dataclass(frozen=True, slots=True)
class InputHandle:
    """Where an input value lives: its digest and serializer, and its bytes when small."""

    digest: str
    serializer: str
    inline: bytes | None = None


_values: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
_loading: dict[str, threading.Lock] = {}
_loading_guard = threading.Lock()
#: values held in memory for consumers in this process: digest -> owner -> [value, consumers]
_held: dict[str, dict[str, list[Any]]] = {}
_held_guard = threading.Lock()


def hold(digest: str, value: Any, consumers: int, *, owner: str) -> None:
    """Keep ``value`` (the object ``digest``) in memory for ``consumers`` more loads, on
    behalf of ``owner`` (a run id)."""
    if consumers <= 0:
        return
    with _held_guard:
        entry = _held.setdefault(digest, {}).setdefault(owner, [value, 0])
        entry[1] += consumers


def take(digest: str) -> Any | None:
    """The value held under ``digest`` for one more consumer (None if none is held); the
    value is dropped from memory once its last consumer took it."""
    with _held_guard:
        owners = _held.get(digest)
        if not owners:
            return None
        owner, entry = next(iter(owners.items()))
        entry[1] -= 1
        if entry[1] <= 0:
            _drop(digest, owner)
        return entry[0]


def release(digest: str, *, owner: str, consumers: int | None = None) -> None:
    """Count ``consumers`` (None: all) off what ``owner`` holds under ``digest``: they will
    never load it."""
    with _held_guard:
        entry = _held.get(digest, {}).get(owner)
        if entry is None:
            return
        entry[1] -= entry[1] if consumers is None else consumers
        if entry[1] <= 0:
            _drop(digest, owner)


def _drop(digest: str, owner: str) -> None:
    owners = _held[digest]
    del owners[owner]
    if not owners:
        del _held[digest]


def held() -> dict[str, int]:
    """The digests held in memory now and how many loads each still waits for."""
    with _held_guard:
        return {d: sum(e[1] for e in owners.values()) for d, owners in _held.items()}


def load_value(
    handle: InputHandle,
    store: Store,
    *,
    verify: bool = True,
    registry: SerializerRegistry = default_registry,
) -> Any:
    """Load an input, sharing one copy between the threads of this process that need it
    (a value held in memory for its consumers first: then nothing is read)."""
    found = take(handle.digest)
    if found is not None:
        return own_copy(found)
    cached = _values.get(handle.digest)
    if cached is not None:
        return own_copy(cached)
    if handle.inline is not None:  # a few bytes at hand: parsed without the load lock (two
        value = read_only(_load(handle, store, verify, registry))  # threads parse twice)
        if not _shareable(value):
            return value
        return own_copy(_values.setdefault(handle.digest, value))
    with _loading_guard:
        lock = _loading.setdefault(handle.digest, threading.Lock())
    with lock:
        cached = _values.get(handle.digest)
        if cached is not None:
            return own_copy(cached)
        value = read_only(_load(handle, store, verify, registry))
        if _shareable(value):
            _values[handle.digest] = value
    with _loading_guard:
        _loading.pop(handle.digest, None)
    return own_copy(value) if _shareable(value) else value


def _shareable(value: Any) -> bool:
    """Whether one loaded ``value`` may serve several consumers: read-only arrays, immutable
    arrow data, and frames, each consumer of which gets its own frame object
    (:func:`own_copy`). Anything else (a model, a user's object) can be changed in place by
    the node that gets it, so each load reads its own."""
    kind = type(value)
    package = kind.__module__.partition(".")[0]
    if package == "builtins":  # (most values: a number, a list, a dict)
        return False
    if package == "numpy":
        return kind.__name__ in ("ndarray", "memmap")
    if package == "pyarrow":
        return kind.__name__ in _ARROW_SHAREABLE or kind.__name__.endswith("Array")
    return _frame_package(value) is not None


_ARROW_SHAREABLE = frozenset({"Table", "RecordBatch", "ChunkedArray"})


def _frame_package(value: Any) -> str | None:
    """``"pandas"`` or ``"polars"`` for a DataFrame or Series of theirs, else None."""
    kind = type(value)
    package = kind.__module__.partition(".")[0]
    if package in ("pandas", "polars") and kind.__name__ in ("DataFrame", "Series"):
        return package
    return None


def own_copy(value: Any) -> Any:
    """A consumer's own frame over a shared one: adding, dropping or assigning columns, or
    writing cells, changes only the consumer's frame. Under pandas' copy-on-write (always on
    from pandas 3) a shallow copy costs nothing; without it, the data is copied. Other values
    are returned as they are (arrays are read-only; arrow data is immutable)."""
    package = _frame_package(value)
    if package is None:
        return value
    # polars' clone shares the immutable columns; its in-place methods touch the clone only
    copy = value.copy(deep=not _copy_on_write()) if package == "pandas" else value.clone()
    # the shared frame lives as long as a consumer's copy does, so that the next consumer
    # finds it (_values holds it weakly) instead of reading it again
    weakref.finalize(copy, _keep, value)
    return copy


def _copy_on_write() -> bool:
    import pandas as pd

    if _pandas_major(pd.__version__) >= 3:
        return True
    return pd.get_option("mode.copy_on_write") is True


@functools.lru_cache(maxsize=4)
def _pandas_major(version: str) -> int:
    return int(version.split(".")[0])


def _keep(value: Any) -> None:
    """Nothing: holding ``value`` in a finalizer's arguments keeps it alive."""


def read_only(value: Any) -> Any:
    """``value``, with its ``WRITEABLE`` flag cleared if it is a numpy array (a value shared
    between consumers must not be changed in place)."""
    flags = getattr(value, "flags", None)
    if getattr(flags, "writeable", None) is True:
        # (a numpy scalar, np.float64...: immutable, numpy refuses to set its flags)
        with contextlib.suppress(ValueError):
            flags.writeable = False  # type: ignore[union-attr]
    return value


def _load(handle: InputHandle, store: Store, verify: bool, registry: SerializerRegistry) -> Any:
    serializer = registry.get(handle.serializer)
    try:
        if handle.inline is not None:
            return serializer.loads(handle.inline)
        path = _mappable(handle, store, serializer)
        with store.open_object(handle.digest, verify=verify) as fp:
            if path is None:
                return serializer.load(fp)
        return serializer.load_path(path)  # type: ignore[attr-defined]  # checked, then mapped
    except (StoreError, ImportError, MemoryError):
        raise
    except Exception as exc:
        from ._signing import UNSIGNED_SERIALIZERS

        if handle.serializer not in UNSIGNED_SERIALIZERS:
            raise
        # bytes that match their digest but are no data of their format: anyone who can write
        # a shared store can put such an unsigned entry there (e.g. JSON holding an integer of
        # 5,000 digits, which json refuses). An unusable input: its producer is recomputed
        raise CorruptArtifactError(
            f"object {handle.digest} is no valid {handle.serializer} data "
            f"({type(exc).__name__}: {exc})",
            digest=handle.digest,
        ) from exc


def _mappable(handle: InputHandle, store: Store, serializer: Any) -> str | None:
    """The object's file, when it is large and the serializer can memory-map it."""
    object_path = getattr(store, "object_path", None)
    if object_path is None or not callable(getattr(serializer, "load_path", None)):
        return None
    if store.always_verify:  # others can write it: the file could change after its check
        return None
    size = store.object_size(handle.digest)
    return str(object_path(handle.digest)) if size is not None and size >= MMAP_BYTES else None
