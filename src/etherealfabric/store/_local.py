"""A store in a local (or mounted) folder.

Layout under the root::

    objects/ab/<digest>          an object, named by the digest of its bytes
    objects/.tmp/.tmp-<random>   an object being written
    actions/ab/<key>.json        an action record
    actions/.tmp/.tmp-<random>   an action record being written
    checkpoints/ab/<key>         the intra-node checkpoint of a running node (header + bytes)
    checkpoints/.tmp/.tmp-<random>  a checkpoint being written

Temp files live in a ``.tmp`` folder next to the final folders (the digest, hence the final
folder, is only known once the object is written). Keeping them under ``objects/`` means a
rename never crosses file systems, even when ``objects/`` is a symlink to another disk.

Every write is atomic: temp file → (``durable``: flush and ``fsync`` it) → ``os.replace`` →
(``durable``: ``fsync`` the folder, and the parents of folders it created). Without
``durable`` a write survives a killed process but maybe not a power loss; with it, it survives
both. Readers never see a partly written object, record or checkpoint under its final name.

A checkpoint file starts with a header (a magic line and the digest of the bytes that follow,
see :func:`~etherealfabric.store._base.checkpoint_header`); a checkpoint whose bytes do not match
is ignored with a warning.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from ..errors import ArtifactMissingError, CorruptArtifactError, StoreError
from ..hashing._values import digest_bytes, new_hasher
from ._base import (
    CHECKPOINT_HEADER_SIZE,
    DEFAULT_INLINE_LIMIT,
    ObjectWriter,
    Store,
    check_name,
    checkpoint_header,
    checkpoint_payload,
    create_temp_file,
)

__all__ = ["LocalStore"]

log = logging.getLogger("etherealfabric.store")
_T = TypeVar("_T")

_TEMP = ".tmp"
_ABSENT = (FileNotFoundError, NotADirectoryError)  # nothing there (the root may be a file)
_READ_CHUNK = 1024 * 1024


class LocalStore(Store):
    """Objects and action records in a folder; see the module docstring for the layout.

    Folders are created on demand. Picklable: it holds only the root, the ``durable`` flag
    and a cache of the folders known to exist (not pickled).
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = False) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.durable = durable
        self.url = Path(self.root).as_uri()
        self._dirs: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_dirs"]  # a per-process cache
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._dirs = set()

    # -- paths -----------------------------------------------------------------------------------
    def object_path(self, digest: str) -> str:
        """Where the object ``digest`` lives (validated)."""
        check_name(digest)
        return os.path.join(self.root, "objects", digest[:2], digest)

    def action_path(self, key: str) -> str:
        """Where the action record of ``key`` lives (validated)."""
        check_name(key, "cache key")
        return os.path.join(self.root, "actions", key[:2], f"{key}.json")

    def checkpoint_path(self, key: str) -> str:
        """Where the checkpoint of ``key`` lives (validated)."""
        check_name(key, "cache key")
        return os.path.join(self.root, "checkpoints", key[:2], key)

    def _temp_dir(self, kind: str) -> str:
        return os.path.join(self.root, kind, _TEMP)

    # -- writing objects -------------------------------------------------------------------------
    def writer(self, *, inline_limit: int = DEFAULT_INLINE_LIMIT) -> ObjectWriter:
        return ObjectWriter(
            inline_limit=inline_limit,
            open_temp=self._open_object_temp,
            publish=self._publish_object,
            fsync=self.durable,
        )

    def _open_object_temp(self) -> tuple[BinaryIO, str]:
        return self._open_temp("objects")

    def _open_temp(self, kind: str) -> tuple[BinaryIO, str]:
        folder = self._temp_dir(kind)
        try:
            return self._in_folder(folder, lambda: create_temp_file(folder))
        except OSError as exc:
            raise self._unwritable(exc) from exc

    def _publish_object(self, temp_path: str, digest: str, size: int) -> None:
        final = self.object_path(digest)
        try:
            if self._present(final, size):
                os.unlink(temp_path)
            else:
                self._move(temp_path, final)
        except OSError as exc:
            raise self._unwritable(exc) from exc

    def _present(self, final: str, size: int) -> bool:
        """True if ``final`` already holds an object of this size (a wrong size is replaced)."""
        try:
            if os.stat(final).st_size != size:
                return False
        except FileNotFoundError:
            return False
        if self.durable:  # it may come from a non-durable write: make sure it is on disk
            _fsync_path(final)
        return True

    def _move(self, temp_path: str, final: str) -> None:
        """Rename a finished temp file to its final name, creating the folder if needed."""
        folder = os.path.dirname(final)
        self._in_folder(folder, lambda: os.replace(temp_path, final))
        if self.durable:
            _fsync_path(folder)

    def _in_folder(self, folder: str, action: Callable[[], _T]) -> _T:
        """``action()``, after making sure ``folder`` exists (again, if it was removed)."""
        self._ensure_dir(folder)
        try:
            return action()
        except FileNotFoundError:  # removed behind our back since we cached it
            self._dirs.discard(folder)
            self._ensure_dir(folder)
            return action()

    def _ensure_dir(self, folder: str) -> None:
        if folder in self._dirs:
            return
        created = _missing_folders(folder) if self.durable else []
        os.makedirs(folder, exist_ok=True)
        for path in created:
            _fsync_path(os.path.dirname(path))
        self._dirs.add(folder)

    def _unwritable(self, exc: OSError) -> StoreError:
        where = f" ({exc.filename})" if exc.filename else ""
        advice = (
            "Free some disk space, or point the store elsewhere (ETHEREALFABRIC_STORE)."
            if exc.errno == errno.ENOSPC
            else "Make sure this folder (or its parent) exists and is writable by this user, "
            "or point the store elsewhere (ETHEREALFABRIC_STORE)."
        )
        return StoreError(
            f"cannot write to the artifact store at {self.root}: {exc.strerror or exc}{where}. "
            + advice,
            path=self.root,
        )

    # -- reading objects -------------------------------------------------------------------------
    def has_object(self, digest: str) -> bool:
        return os.path.isfile(self.object_path(digest))

    def object_size(self, digest: str) -> int | None:
        try:
            return os.stat(self.object_path(digest)).st_size
        except _ABSENT:
            return None

    def open_object(self, digest: str, *, verify: bool = True) -> BinaryIO:
        path = self.object_path(digest)
        fp = self._open_for_reading(digest, path)
        if verify:
            try:
                self._verify_stream(fp, digest, path)
            except BaseException:
                fp.close()
                raise
        return fp

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        path = self.object_path(digest)
        with self._open_for_reading(digest, path) as fp:
            data = fp.read()
        if verify:
            self._check_digest(digest_bytes(data), digest, path)
        return data

    def _open_for_reading(self, digest: str, path: str) -> BinaryIO:
        try:
            return open(path, "rb")
        except _ABSENT:
            raise ArtifactMissingError(
                f"object {digest} is missing from the store {self.root} (expected at {path}); "
                "the outputs that use it must be recomputed",
                path=path,
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read object {digest} at {path}: {exc}", path=path) from exc

    def _verify_stream(self, fp: BinaryIO, digest: str, path: str) -> None:
        """Hash the whole file, then rewind it: the caller reads bytes already checked."""
        hasher = new_hasher()
        buffer = bytearray(_READ_CHUNK)
        view = memoryview(buffer)
        while count := fp.readinto(view):  # type: ignore[attr-defined]
            hasher.update(view[:count])
        fp.seek(0)
        self._check_digest(hasher.hexdigest(), digest, path)

    @staticmethod
    def _check_digest(actual: str, digest: str, path: str) -> None:
        if actual != digest:
            raise CorruptArtifactError(
                f"object {digest} at {path} is corrupt: its bytes hash to {actual}. "
                "Delete the file; the outputs that use it will be recomputed.",
                path=path,
            )

    def delete_object(self, digest: str) -> None:
        _remove(self.object_path(digest))

    # -- action records --------------------------------------------------------------------------
    def get_action(self, key: str) -> dict[str, Any] | None:
        path = self.action_path(key)
        try:
            with open(path, "rb") as fp:
                data = fp.read()
        except _ABSENT:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read action record {path}: {exc}", path=path) from exc
        return _parse_record(data, path)

    def put_action(self, key: str, record: dict[str, Any]) -> None:
        path = self.action_path(key)
        try:
            text = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"the action record for key {key} is not valid JSON: {exc}") from exc
        self._write_atomic(text.encode(), path, "actions")

    def _write_atomic(self, data: bytes, final: str, kind: str, *, header: bytes = b"") -> None:
        """Write ``header + data`` to ``final`` atomically (without joining the two in memory)."""
        fp, temp_path = self._open_temp(kind)
        try:
            with fp:
                if header:
                    fp.write(header)
                fp.write(data)
                fp.flush()
                if self.durable:
                    os.fsync(fp.fileno())
            self._move(temp_path, final)
        except OSError as exc:
            _remove(temp_path)
            raise self._unwritable(exc) from exc
        except BaseException:
            _remove(temp_path)
            raise

    def delete_action(self, key: str) -> None:
        _remove(self.action_path(key))

    # -- checkpoints -------------------------------------------------------------------------------
    def put_checkpoint(self, key: str, data: bytes) -> None:
        path = self.checkpoint_path(key)
        self._write_atomic(data, path, "checkpoints", header=checkpoint_header(data))

    def get_checkpoint(self, key: str) -> bytes | None:
        path = self.checkpoint_path(key)
        try:
            with open(path, "rb") as fp:
                header = fp.read(CHECKPOINT_HEADER_SIZE)
                payload = fp.read()
        except _ABSENT:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read checkpoint {path}: {exc}", path=path) from exc
        return checkpoint_payload(header, payload, path)

    def delete_checkpoint(self, key: str) -> None:
        _remove(self.checkpoint_path(key))

    # -- maintenance ------------------------------------------------------------------------------
    def list_entries(self, kind: str) -> Iterator[tuple[str, str]]:
        """``(prefix, file name)`` of the files in the two-hex-digit folders of ``kind``."""
        for folder in _entries(os.path.join(self.root, kind)):
            if len(folder.name) == 2 and folder.is_dir() and _is_hex(folder.name):
                for entry in _entries(folder.path):
                    yield folder.name, entry.name

    def cleanup_temp(self, *, max_age: float = 3600.0) -> int:
        """Remove temp files older than ``max_age`` seconds (left by killed writers).

        Returns how many were removed. Younger ones may belong to a write in progress.
        """
        removed = 0
        cutoff = time.time() - max_age
        for kind in ("objects", "actions", "checkpoints"):
            for entry in _entries(self._temp_dir(kind)):
                if entry.name.startswith(".tmp-") and _mtime(entry) < cutoff:
                    _remove(entry.path)
                    removed += 1
        return removed


def _parse_record(data: bytes, path: str) -> dict[str, Any] | None:
    """The record in ``data``, or None (with a warning) if it is not a JSON object."""
    try:
        record = json.loads(data)
    except ValueError as exc:
        log.warning("ignoring the unreadable action record %s (%s)", path, exc)
        return None
    if not isinstance(record, dict):
        log.warning("ignoring the action record %s: not a JSON object", path)
        return None
    return record


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot remove {path}: {exc}", path=path) from exc


def _missing_folders(folder: str) -> list[str]:
    """``folder`` and those of its parents that do not exist yet, outermost first."""
    missing: list[str] = []
    while not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing[::-1]


def _fsync_path(path: str) -> None:
    """Flush a file's or folder's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
