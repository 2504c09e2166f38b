"""The store protocol: content-addressed objects plus action records, and the streaming writer.

An *object* is a blob named by the xxh3-128 digest of its bytes. An *action record* is a small
JSON dict stored under a cache key. Both names are 32 lowercase hex characters, validated
before they become paths or object names.

Outputs are written through an :class:`ObjectWriter`: it hashes everything written to it,
keeps small outputs in memory (they are returned inline and never stored as files) and
spills larger ones to a temporary file that :meth:`ObjectWriter.commit` publishes under the
digest. A store only implements how a finished temp file is published.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import StoreError
from ..hashing._values import digest_bytes, is_digest, new_hasher

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = [
    "CHECKPOINT_HEADER_SIZE",
    "ObjectWriter",
    "Store",
    "StoredObject",
    "check_name",
    "checkpoint_header",
    "checkpoint_payload",
    "create_temp_file",
]

log = logging.getLogger("etherealfabric.store")

DEFAULT_INLINE_LIMIT = 64 * 1024
_FILE_BUFFER = 256 * 1024

#: First line of a stored checkpoint; the second is the digest of the bytes that follow.
CHECKPOINT_MAGIC = b"EFCHECKPOINT1\n"
#: Length of the magic line plus the digest line.
CHECKPOINT_HEADER_SIZE = len(CHECKPOINT_MAGIC) + 33


@dataclass(frozen=True)
class StoredObject:
    """What a write produced: the digest and size, and the bytes when kept inline."""

    digest: str
    size: int
    inline: bytes | None = None


def check_name(name: object, what: str = "digest") -> str:
    """``name`` if it is a valid digest or cache key, else a :class:`StoreError`."""
    if not isinstance(name, str) or not is_digest(name):
        raise StoreError(
            f"invalid {what} {name!r}: expected 32 lowercase hexadecimal characters "
            "(an xxh3-128 digest)"
        )
    return name


def create_temp_file(folder: str) -> tuple[BinaryIO, str]:
    """A new, uniquely named ``.tmp-*`` file in ``folder``, open for writing, and its path.

    Created with ``O_EXCL`` and the usual permissions (``0o666`` minus the umask), so that
    published objects are as readable as any other file the user creates.
    """
    path = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    return os.fdopen(fd, "wb", buffering=_FILE_BUFFER), path


def checkpoint_header(data: bytes) -> bytes:
    """What a store writes before a checkpoint's bytes: a magic line and their digest line.

    Stores share this format (``header + data``) so that a checkpoint moves between them
    unchanged and damage is always detected by :func:`checkpoint_payload`.
    """
    return CHECKPOINT_MAGIC + digest_bytes(data).encode("ascii") + b"\n"


def checkpoint_payload(header: bytes, payload: bytes, where: str) -> bytes | None:
    """``payload`` if ``header`` is a checkpoint header whose digest matches it, else None.

    A mismatch is logged as a warning naming ``where`` (the checkpoint's location).
    """
    if (
        len(header) != CHECKPOINT_HEADER_SIZE
        or not header.startswith(CHECKPOINT_MAGIC)
        or not header.endswith(b"\n")
    ):
        log.warning(
            "ignoring the damaged checkpoint %s: it does not start with a checkpoint header "
            "(the node starts from the beginning)",
            where,
        )
        return None
    expected = header[len(CHECKPOINT_MAGIC) : -1].decode("ascii", "replace")
    actual = digest_bytes(payload)
    if actual != expected:
        log.warning(
            "ignoring the damaged checkpoint %s: its bytes hash to %s, not %s "
            "(the node starts from the beginning)",
            where,
            actual,
            expected,
        )
        return None
    return payload


#: ``publish(temp_path, digest, size)``: move a complete temp file to its final name.
Publish = Callable[[str, str, int], None]
#: ``open_temp()``: a new temp file in the store, and its path.
OpenTemp = Callable[[], tuple[BinaryIO, str]]


class ObjectWriter(io.RawIOBase, BinaryIO):
    """A write-only binary stream that becomes one object of a store.

    Everything written is hashed. Up to ``inline_limit`` bytes stay in memory; beyond that
    the bytes go to a temp file made by ``open_temp`` (in the store, on the same file system
    as the final objects). :meth:`commit` returns a :class:`StoredObject`: the inline bytes,
    or the digest under which ``publish`` placed the temp file. :meth:`abort` drops
    everything. As a context manager it aborts unless :meth:`commit` was called, so an
    exception inside ``with store.writer(...) as w:`` leaves nothing behind.

    A negative ``inline_limit`` stores every object, however small. With ``fsync`` the temp
    file is flushed to disk before it is published.
    """

    def __init__(
        self, *, inline_limit: int, open_temp: OpenTemp, publish: Publish, fsync: bool = False
    ) -> None:
        super().__init__()
        self.inline_limit = inline_limit
        self._open_temp = open_temp
        self._publish = publish
        self._fsync = fsync
        self._hasher = new_hasher()
        self._buffer: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self._temp_path: str | None = None
        self._size = 0
        self._result: StoredObject | None = None

    # -- stream protocol -----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "wb"

    @property
    def name(self) -> str:
        return self._temp_path or "<object writer>"

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data: ReadableBuffer, /) -> int:
        """Hash and keep ``data``; returns its length in bytes."""
        if self.closed:
            raise ValueError("write to a committed or aborted ObjectWriter")
        view = _byte_view(data)
        size = view.nbytes
        self._hasher.update(view)
        self._size += size
        if self._buffer is not None and self._size > self.inline_limit:
            self._spill()
        if self._buffer is not None:
            self._buffer += view
        else:
            self._write_file(view)
        return size

    def _spill(self) -> None:
        """Move the buffered bytes to a new temp file; from now on writes go to the file."""
        try:
            self._file, self._temp_path = self._open_temp()
        except OSError as exc:
            raise _store_error("cannot create a temporary file for an object", exc) from exc
        buffered, self._buffer = self._buffer, None
        if buffered:
            self._write_file(memoryview(buffered))

    def _write_file(self, view: memoryview) -> None:
        if self._file is None:
            raise ValueError("ObjectWriter has no temp file")
        try:
            self._file.write(view)
        except OSError as exc:
            raise _store_error(f"cannot write the temporary file {self._temp_path}", exc) from exc

    # -- outcome -----------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def commit(self) -> StoredObject:
        """Finish the object; it is inline or published when this returns."""
        if self._result is not None:
            return self._result
        if self.closed:
            raise ValueError("commit() of an aborted ObjectWriter")
        if self._buffer is not None and self._size > self.inline_limit:
            self._spill()  # nothing was written, and inline_limit < 0 asks for a stored object
        digest = self._hasher.hexdigest()
        if self._buffer is not None:
            self._result = StoredObject(digest, self._size, bytes(self._buffer))
        else:
            self._finish_file()
            self._publish_temp(digest)
            self._result = StoredObject(digest, self._size, None)
        self._release()
        return self._result

    def _finish_file(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.flush()
            if self._fsync:
                os.fsync(file.fileno())
        except OSError as exc:
            raise _store_error(f"cannot write the temporary file {self._temp_path}", exc) from exc
        finally:
            file.close()

    def _publish_temp(self, digest: str) -> None:
        if self._temp_path is None:
            raise ValueError("ObjectWriter has no temp file")
        try:
            self._publish(self._temp_path, digest, self._size)
        except OSError as exc:
            raise _store_error(f"cannot store object {digest}", exc) from exc
        self._temp_path = None  # published: the path is no longer ours to remove

    def abort(self) -> None:
        """Drop everything written; removes the temp file. Safe to call more than once."""
        if self._result is None:
            self._release()

    def _release(self) -> None:
        file, self._file = self._file, None
        path, self._temp_path = self._temp_path, None
        self._buffer = None
        if file is not None:
            file.close()
        if path is not None:
            _remove_quietly(path)
        super().close()

    def close(self) -> None:
        """Same as :meth:`abort` unless committed: an unfinished object is never kept."""
        if not self.closed:
            self.abort()

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()


def _byte_view(data: ReadableBuffer) -> memoryview:
    """``data`` as a flat view of bytes (copied only if it is not contiguous)."""
    view = memoryview(data)
    if view.format == "B" and view.c_contiguous:
        return view
    try:
        return view.cast("B")
    except TypeError:
        return memoryview(view.tobytes())


def _remove_quietly(path: str) -> None:
    """Best effort: a leftover temp file is removed later by the store's clean-up."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _store_error(what: str, exc: OSError) -> StoreError:
    path = exc.filename if isinstance(exc.filename, str) else None
    reason = exc.strerror or str(exc)
    hint = " Free some disk space or move the store." if exc.errno == errno.ENOSPC else ""
    return StoreError(f"{what}: {reason}.{hint}", path=path)


class Store(ABC):
    """Content-addressed objects plus action records (JSON dicts keyed by cache key).

    Stores also keep *checkpoints*: mutable, opaque bytes under a cache key that a long node
    saves while it runs and that are deleted once it succeeds (see ``etherealfabric.run._checkpoint``).

    Implementations must be picklable (stores travel to worker processes) and must never
    expose a partly written object or record under its final name.
    """

    url: str

    @abstractmethod
    def writer(self, *, inline_limit: int = DEFAULT_INLINE_LIMIT) -> ObjectWriter:
        """A stream for one new object; small ones stay inline (see :class:`ObjectWriter`)."""

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` as an object (always, however small) and return its digest."""
        digest = digest_bytes(data)
        if self.object_size(digest) == len(data):
            return digest
        with self.writer(inline_limit=-1) as writer:
            writer.write(data)
            return writer.commit().digest

    @abstractmethod
    def has_object(self, digest: str) -> bool:
        """True if an object with this digest is present (its bytes are not checked)."""

    @abstractmethod
    def open_object(self, digest: str, *, verify: bool = True) -> BinaryIO:
        """The object's bytes as a readable stream.

        Raises :class:`ArtifactMissingError` if absent and, with ``verify``, checks the
        digest before returning: :class:`CorruptArtifactError` naming the object's location.
        """

    @abstractmethod
    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        """The object's bytes (errors as :meth:`open_object`)."""

    @abstractmethod
    def object_size(self, digest: str) -> int | None:
        """The object's size in bytes, or None if it is absent."""

    @abstractmethod
    def delete_object(self, digest: str) -> None:
        """Remove an object (for example a corrupt one); no error if it is absent."""

    @abstractmethod
    def get_action(self, key: str) -> dict[str, Any] | None:
        """The action record of ``key``; None if absent or unreadable (logged)."""

    @abstractmethod
    def put_action(self, key: str, record: dict[str, Any]) -> None:
        """Store ``record`` (JSON-serializable) under ``key``, replacing any previous one."""

    @abstractmethod
    def delete_action(self, key: str) -> None:
        """Remove the action record of ``key``; no error if it is absent."""

    @abstractmethod
    def put_checkpoint(self, key: str, data: bytes) -> None:
        """Store a node's intra-node checkpoint under its cache key, replacing any previous one.

        Atomic: a reader sees the previous checkpoint or this one, never a mix. The store keeps
        a digest of ``data`` with it so that :meth:`get_checkpoint` can detect damage.
        """

    @abstractmethod
    def get_checkpoint(self, key: str) -> bytes | None:
        """The checkpoint bytes stored under ``key``.

        None if there is none, or if it is damaged (its digest does not match: logged as a
        warning), so a damaged checkpoint costs a fresh start, never wrong state.
        """

    @abstractmethod
    def delete_checkpoint(self, key: str) -> None:
        """Remove the checkpoint of ``key`` (after the node succeeded); no error if absent."""

    @abstractmethod
    def list_entries(self, kind: str) -> Iterator[tuple[str, str]]:
        """``(two-hex folder, entry name)`` of everything under ``kind`` (objects, actions)."""

    def iter_objects(self) -> Iterator[str]:
        """The digests of all objects."""
        for prefix, name in self.list_entries("objects"):
            if is_digest(name) and name.startswith(prefix):
                yield name

    def iter_actions(self) -> Iterator[str]:
        """The keys of all action records."""
        for prefix, name in self.list_entries("actions"):
            key = name.removesuffix(".json")
            if name.endswith(".json") and is_digest(key) and key.startswith(prefix):
                yield key

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"
