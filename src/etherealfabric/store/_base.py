"""The store protocol: a few primitives over named entries, and everything else derived.

An *object* is a blob named by the xxh3-128 digest of its bytes. An *action record* is a small
JSON dict stored under a cache key. A *checkpoint* is opaque bytes under a cache key. Digests
and keys are 32 lowercase hex characters, validated here before they become entry names:

    objects/ab/<digest>        an object
    actions/ab/<key>.json      an action record
    checkpoints/ab/<key>       a checkpoint (header + bytes, see :func:`checkpoint_header`)

A store implements how entries are read, written, described, listed and deleted (the
abstract methods of :class:`Store`); the base derives objects, records, checkpoints, digest
checks and error messages from them, once for every store.
"""

from __future__ import annotations

import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

from ..config import INLINE_LIMIT
from ..errors import ArtifactMissingError, CorruptArtifactError, StoreError
from ..hashing._digest import digest_bytes, is_digest
from ..hashing._files import stream_digest
from ._checkpoints import (
    CHECKPOINT_HEADER_SIZE,
    checkpoint_header,
    checkpoint_payload,
)
from ._json import parse_json
from ._spill import default_temp_dir, spill_folder
from ._writer import (
    ObjectWriter,
    StoredObject,
    create_temp_file,
    remove_path,
    remove_quietly,
    stale_temp_files,
)

__all__ = [
    "CHECKPOINT_HEADER_SIZE",
    "DEFAULT_INLINE_LIMIT",
    "ENTRY_KINDS",
    "EntryInfo",
    "ObjectWriter",
    "Store",
    "StoredObject",
    "action_name",
    "check_digest",
    "check_name",
    "checkpoint_header",
    "checkpoint_name",
    "checkpoint_payload",
    "create_temp_file",
    "object_name",
]

log = logging.getLogger("etherealfabric.store")
_T = TypeVar("_T")

DEFAULT_INLINE_LIMIT = INLINE_LIMIT
_READ_CHUNK = 1024 * 1024
_ABSENT = (FileNotFoundError, NotADirectoryError)  # nothing there (a local root may be a file)

#: The folders of a store's entries (``<kind>/<two hex>/<name>``): ``objects``, ``actions``,
#: ``checkpoints``, and a shared store's ``leases`` (``_leases.py``) and ``roots``
#: (``_sharedgc.py``).
ENTRY_KINDS = ("objects", "actions", "checkpoints", "leases", "roots")


# -- names ---------------------------------------------------------------------------------------
def check_name(name: object, what: str = "digest") -> str:
    """``name`` if it is a valid digest or cache key, else a :class:`StoreError`."""
    if not isinstance(name, str) or not is_digest(name):
        raise StoreError(
            f"invalid {what} {name!r}: expected 32 lowercase hexadecimal characters "
            "(an xxh3-128 digest)"
        )
    return name


def object_name(digest: str) -> str:
    """The entry name of the object ``digest`` (validated)."""
    check_name(digest)
    return f"objects/{digest[:2]}/{digest}"


def action_name(key: str) -> str:
    """The entry name of the action record of ``key`` (validated)."""
    check_name(key, "cache key")
    return f"actions/{key[:2]}/{key}.json"


def checkpoint_name(key: str) -> str:
    """The entry name of the checkpoint of ``key`` (validated)."""
    check_name(key, "cache key")
    return f"checkpoints/{key[:2]}/{key}"


# -- checks shared by every store ----------------------------------------------------------------
def check_digest(actual: str, digest: str, where: str) -> None:
    """A :class:`CorruptArtifactError` naming ``where`` unless the bytes hash to ``digest``."""
    if actual != digest:
        raise CorruptArtifactError(
            f"object {digest} at {where} is corrupt: its bytes hash to {actual} (changed or "
            "damaged after it was written). Delete it; the outputs that use it will be "
            "recomputed.",
            path=where,
            digest=digest,
        )


@dataclass(frozen=True)
class EntryInfo:
    """What a store knows of an entry without reading it."""

    size: int
    #: When it was last written (seconds since the epoch); None if the store cannot tell.
    modified: float | None = None


class Store(ABC):
    """Content-addressed objects, action records (JSON dicts keyed by cache key) and checkpoints.

        *Checkpoints* are mutable, opaque bytes under a cache key that a long node saves while it
        runs and that are deleted once it succeeds.

        **Writing a store.** Implement the primitives over entry names such as
        ``objects/ab/<digest>`` (already validated, ``/``-separated):

        * :meth:`open_entry` (read, raising ``FileNotFoundError`` when absent),
        * :meth:`write_entry` (atomic: a reader sees the old bytes or the new, never a part),
        * :meth:`entry_info` (size and modification time, or None),
        * :meth:`delete_entry` (no error when absent),
        * :meth:`list_entries` (the ``(two-hex folder, name)`` pairs under ``objects``...),

        and set ``url``. Override :meth:`read_entry`, :meth:`put_file` and :meth:`entry_location`
        to do better than their defaults, ``always_verify`` if the bytes cannot be trusted, and
        ``temp_dir`` to spill large objects elsewhere than the system temp folder. Everything else
        (objects, action records, checkpoints, digest checks, error messages) is derived here.
    Optionally override :meth:`read_head` (the first bytes of an entry, for a ranged read).

    The action records and checkpoints derived here are *trusted* as they are read: right for
    the home's own store. A store that others can write routes them through
    :class:`~etherealfabric.store._trust.UntrustedEntries` instead (signed and verified), as
    :class:`ObjectStore` always does and a shared :class:`LocalStore` does.

        Implementations must be picklable (stores travel to worker processes). Primitives report
        other failures as :class:`StoreError` or ``OSError`` (turned into a :class:`StoreError`).
    """

    url: str
    #: True for stores whose bytes may have been changed by others: ``verify=False`` is ignored.
    always_verify: bool = False
    #: Where large objects are spilled before :meth:`put_file`; None: :func:`default_temp_dir`.
    temp_dir: str | None = None
    #: For a store others can write: the :class:`~etherealfabric.store._trust.UntrustedEntries`
    #: that sign and check its action records and checkpoints (the six methods below defer to
    #: it). None (the default): they are read as they are, as the home's own store's are.
    _untrusted: Any = None

    # -- the primitives ----------------------------------------------------------------------------
    @abstractmethod
    def open_entry(self, name: str) -> BinaryIO:
        """The entry's bytes as a readable, seekable binary stream; ``FileNotFoundError`` if absent."""

    @abstractmethod
    def write_entry(self, name: str, *parts: bytes) -> None:
        """Store the concatenation of ``parts`` as ``name``, atomically replacing any entry."""

    @abstractmethod
    def entry_info(self, name: str) -> EntryInfo | None:
        """The entry's size and modification time; None if it is absent."""

    @abstractmethod
    def delete_entry(self, name: str) -> None:
        """Remove the entry; no error if it is absent."""

    @abstractmethod
    def list_entries(self, kind: str) -> Iterator[tuple[str, str]]:
        """``(two-hex folder, entry name)`` of everything under ``kind`` (objects, actions)."""

    # -- primitives with a default -------------------------------------------------------------
    def read_entry(self, name: str) -> bytes:
        """The entry's bytes; ``FileNotFoundError`` if absent."""
        with self.open_entry(name) as fp:
            return fp.read()

    def read_head(self, name: str, size: int) -> bytes:
        """The first ``size`` bytes of the entry; ``FileNotFoundError`` if absent."""
        with self.open_entry(name) as fp:
            return fp.read(size)

    def get_file(self, name: str, path: str, max_bytes: int | None = None) -> int:
        """Copy the entry into the local file ``path``; its size. ``FileNotFoundError`` if absent.

        ``max_bytes``: the size it should have; an entry found larger is not copied whole (a
        size past ``max_bytes`` is returned, and the caller refuses it): a planted huge file
        never fills this disk."""
        import shutil  # here: a run that copies no entry never imports it

        with self.open_entry(name) as src, open(path, "wb") as dst:
            if max_bytes is None:
                shutil.copyfileobj(src, dst, _READ_CHUNK)
                return dst.tell()
            left = max_bytes + 1  # one byte more tells a larger entry
            while left > 0 and (chunk := src.read(min(_READ_CHUNK, left))):
                dst.write(chunk)
                left -= len(chunk)
            return dst.tell()

    def put_file(self, name: str, path: str, size: int) -> None:
        """Make the finished local file ``path`` (``size`` bytes) the entry ``name``.

        Only objects are published this way, and their names say what they hold: an entry of
        the same size already there may be kept (a damaged copy of another size is replaced).
        The caller removes ``path`` afterwards if it is still there.
        """
        info = self.entry_info(name)
        if info is None or info.size != size:
            with open(path, "rb") as fp:
                self.write_entry(name, fp.read())

    def create_entry(self, name: str, data: bytes) -> bool:
        """Store ``data`` as ``name`` only if no such entry exists: True if this call created it.

        Exclusive, for leases (``store/_leases.py``): of two callers, one gets True. Stores that
        cannot do it raise ``NotImplementedError`` (the default), and leases across homes are
        then off, with a warning.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot create entries exclusively")

    def entry_location(self, name: str) -> str:
        """Where the entry lives (a path or a URL), for messages."""
        return f"{self.url}/{name}"

    def open_temp(self) -> tuple[BinaryIO, str]:
        """A new local temp file for a large object being written, and its path."""
        return create_temp_file(spill_folder(self.temp_dir))

    def temp_folders(self) -> list[str]:
        """The folders where this store's writers keep their temp files."""
        return [self.temp_dir or default_temp_dir()]

    def local_folders(self) -> list[str]:
        """The folders of this machine where the store keeps bytes (its own folder, if it
        has one, and its temp folders): what a node reads there is never its input."""
        return self.temp_folders()

    def stale_temp_files(
        self, *, max_age: float = 3600.0, writer_gone: Callable[[int], bool] | None = None
    ) -> list[tuple[str, int]]:
        """``(path, size)`` of temp files left by killed writers: made by a process of this
        host that ``writer_gone(pid)`` says is gone, or (when their writer is not known) older
        than ``max_age`` seconds."""
        return [
            found
            for folder in self.temp_folders()
            for found in stale_temp_files(folder, max_age, writer_gone)
        ]

    def cleanup_temp(
        self, *, max_age: float = 3600.0, writer_gone: Callable[[int], bool] | None = None
    ) -> int:
        """Remove the :meth:`stale_temp_files`; how many were removed (best effort)."""
        removed = 0
        for path, _ in self.stale_temp_files(max_age=max_age, writer_gone=writer_gone):
            with contextlib.suppress(StoreError):
                removed += self.remove_temp_file(path)
        return removed

    def remove_temp_file(self, path: str) -> bool:
        """Remove ``path``, one of :meth:`stale_temp_files`, or a folder planted under a temp
        file's name (never following a symbolic link); True if removed, False if already gone.
        A :class:`StoreError` naming it if it cannot be removed."""
        try:
            return remove_path(path)
        except OSError as exc:
            raise StoreError(
                f"cannot remove the leftover temp file {path}: {exc.strerror or exc}; remove it "
                "by hand (or make its folder writable by this user)",
                path=path,
            ) from exc

    def damaged_entries(self, kind: str) -> Iterator[str]:
        """The names of the entries under ``kind`` (one of :data:`ENTRY_KINDS`) that are not
        files: a folder, a FIFO, a symbolic link, which no writer of the store makes (someone
        with write access planted it). Reads take them as absent and :meth:`delete_entry`
        removes them. None here: a store whose entries can only be files has none."""
        return iter(())

    def refresh_entry(self, name: str) -> None:
        """Mark the existing entry ``name`` as just written (a write found it already there).

        Garbage collection keeps recent entries, so an object that a run is about to name in
        a record must look recent (as git refreshes a loose object it would have written).
        Stores whose entries are never collected need not override it.
        """
        return None  # nothing to do for stores that are never collected

    # -- objects -----------------------------------------------------------------------------------
    def writer(self, *, inline_limit: int = DEFAULT_INLINE_LIMIT) -> ObjectWriter:
        """A stream for one new object; small ones stay inline (see :class:`ObjectWriter`)."""
        return ObjectWriter(
            inline_limit=inline_limit, open_temp=self.open_temp, publish=self._publish
        )

    def _publish(self, temp_path: str, digest: str, size: int) -> None:
        try:
            self.put_file(object_name(digest), temp_path, size)
        finally:
            remove_quietly(temp_path)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` as an object (always, however small) and return its digest."""
        digest = digest_bytes(data)
        if self.object_size(digest) != len(data):
            self.write_entry(object_name(digest), bytes(data))
        else:
            self.refresh_entry(object_name(digest))
        return digest

    def location(self, digest: str) -> str:
        """Where the object ``digest`` lives (a path or a URL), for messages."""
        return self.entry_location(object_name(digest))

    def object_info(self, digest: str) -> EntryInfo | None:
        """The object's size and modification time (for its age); None if it is absent."""
        return self.entry_info(object_name(digest))

    def refresh_object(self, digest: str) -> None:
        """Mark the object as just used, so that ``cache gc`` keeps it (see refresh_entry)."""
        self.refresh_entry(object_name(digest))

    def object_size(self, digest: str) -> int | None:
        """The object's size in bytes, or None if it is absent."""
        info = self.object_info(digest)
        return None if info is None else info.size

    def has_object(self, digest: str) -> bool:
        """True if an object with this digest is present (its bytes are not checked)."""
        return self.object_info(digest) is not None

    def open_object(self, digest: str, *, verify: bool = True) -> BinaryIO:
        """The object's bytes as a readable stream.

        Raises :class:`ArtifactMissingError` if absent and, with ``verify``, checks the
        digest before returning: :class:`CorruptArtifactError` naming the object's location.
        """
        name = object_name(digest)
        fp = self._read_object(name, digest, self.open_entry)
        if verify or self.always_verify:
            try:
                actual = self._digest_of(fp)
                fp.seek(0)
                check_digest(actual, digest, self.entry_location(name))
            except BaseException:
                fp.close()
                raise
        return fp

    def _digest_of(self, fp: BinaryIO) -> str:
        """The digest of an object's bytes, read from ``fp`` (a store may do better)."""
        return stream_digest(fp)

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        """The object's bytes (errors as :meth:`open_object`)."""
        name = object_name(digest)
        data = self._read_object(name, digest, self.read_entry)
        if verify or self.always_verify:
            check_digest(digest_bytes(data), digest, self.entry_location(name))
        return data

    def _read_object(self, name: str, digest: str, read: Callable[[str], _T]) -> _T:
        found = self._read(name, read)
        if found is None:
            where = self.entry_location(name)
            raise ArtifactMissingError(
                f"object {digest} is missing from the store {self.url} (expected at {where}); "
                "the outputs that use it must be recomputed",
                path=where,
                digest=digest,
            )
        return found

    def _read(self, name: str, read: Callable[[str], _T]) -> _T | None:
        """``read(name)``; None if the entry is absent, a :class:`StoreError` if unreadable."""
        try:
            return read(name)
        except _ABSENT:
            return None
        except OSError as exc:
            where = self.entry_location(name)
            raise StoreError(f"cannot read {where}: {exc}", path=where) from exc

    def delete_object(self, digest: str) -> None:
        """Remove an object (for example a corrupt one); no error if it is absent."""
        self.delete_entry(object_name(digest))

    def iter_objects(self) -> Iterator[str]:
        """The digests of all objects."""
        for prefix, name in self.list_entries("objects"):
            if is_digest(name) and name.startswith(prefix):
                yield name

    # -- action records ----------------------------------------------------------------------------
    def get_action(self, key: str) -> dict[str, Any] | None:
        """The action record of ``key``; None if absent or unreadable (logged)."""
        if self._untrusted is not None:
            return self._untrusted.get_action(self, key)  # type: ignore[no-any-return]
        name = action_name(key)
        data = self._read(name, self.read_entry)
        return None if data is None else _parse_record(data, self.entry_location(name))

    def put_action(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` (JSON-serializable) under ``key``, replacing any previous one."""
        if self._untrusted is not None:
            self._untrusted.put_action(self, key, record)
            return
        name = action_name(key)
        try:
            text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"the action record for key {key} is not valid JSON: {exc}") from exc
        self.write_entry(name, text.encode())

    def delete_action(self, key: str) -> None:
        """Remove the action record of ``key``; no error if it is absent."""
        if self._untrusted is not None:
            self._untrusted.delete_action(self, key)
            return
        self.delete_entry(action_name(key))

    def iter_actions(self) -> Iterator[str]:
        """The keys of all action records."""
        for prefix, name in self.list_entries("actions"):
            key = name.removesuffix(".json")
            if name.endswith(".json") and is_digest(key) and key.startswith(prefix):
                yield key

    # -- checkpoints -------------------------------------------------------------------------------
    def put_checkpoint(self, key: str, data: bytes) -> None:
        """Store a node's intra-node checkpoint under its cache key, replacing any previous one.

        Atomic: a reader sees the previous checkpoint or this one, never a mix. A digest of
        ``data`` is kept with it so that :meth:`get_checkpoint` can detect damage.
        """
        if self._untrusted is not None:
            self._untrusted.put_checkpoint(self, key, data)
            return
        self.write_entry(checkpoint_name(key), checkpoint_header(data), data)

    def get_checkpoint(self, key: str) -> bytes | None:
        """The checkpoint bytes stored under ``key``.

        None if there is none, or if it is damaged (its digest does not match: logged as a
        warning), so a damaged checkpoint costs a fresh start, never wrong state.
        """
        if self._untrusted is not None:
            return self._untrusted.get_checkpoint(self, key)  # type: ignore[no-any-return]
        name = checkpoint_name(key)
        fp = self._read(name, self.open_entry)
        if fp is None:
            return None
        with fp:
            header = fp.read(CHECKPOINT_HEADER_SIZE)
            payload = fp.read()
        return checkpoint_payload(header, payload, self.entry_location(name))

    def delete_checkpoint(self, key: str) -> None:
        """Remove the checkpoint of ``key`` (after the node succeeded); no error if absent."""
        if self._untrusted is not None:
            self._untrusted.delete_checkpoint(self, key)
            return
        self.delete_entry(checkpoint_name(key))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def _parse_record(data: bytes, where: str) -> dict[str, Any] | None:
    """The record in ``data``, or None (with a warning) if it is not a JSON object."""
    try:
        record = parse_json(data)
    except ValueError as exc:
        log.warning("ignoring the unreadable action record %s (%s)", where, exc)
        return None
    if not isinstance(record, dict):
        log.warning("ignoring the action record %s: not a JSON object", where)
        return None
    return record
