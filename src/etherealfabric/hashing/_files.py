"""Reading file and folder content for hashing: what a ``File`` or ``Directory`` digest covers.

:func:`file_digest` is the xxh3-128 of a file's bytes (equal to ``digest_bytes`` of the content),
streamed in 1 MiB chunks, with the :class:`FileHashCache` fast path (a digest remembered by path,
size, mtime, inode and ctime: the ctime changes on every write and cannot be set back, so a
rewrite whose mtime was restored with ``os.utime`` is read again, as git's index does);
:func:`tree_entries` lists what a folder's digest covers: every entry below it in sorted order,
folders by relative path (so empty ones count), files by relative path and content digest (so an
added, removed or renamed file changes it). Symlinks are followed, for
files and folders; a symlink loop or a broken link is an error; sockets and FIFOs count by name
only. A file modified less than two seconds ago is read every time and never remembered: a
same-size rewrite within the file system's timestamp granularity would otherwise hit a stale
digest. (Like git, the racy check looks at the mtime only: a file rewritten, its mtime put back,
in the same clock tick as it was hashed would still be missed; any later rewrite is seen.)

The user-facing ``File`` and ``Directory`` values are defined in
:mod:`etherealfabric.define._files`; their encoding is in :mod:`etherealfabric.hashing._builtins`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from typing import BinaryIO, Protocol

from ..errors import HashingError
from ._digest import new_hasher

__all__ = ["FileHashCache", "file_digest", "mapped_digest", "stream_digest", "tree_entries"]

CHUNK_SIZE = 1 << 20
RACY_NS = 2_000_000_000  # files modified more recently than this are not remembered


class FileHashCache(Protocol):
    """Remembered file digests, by path and stat (the journal implements it)."""

    def get(self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str | None: ...

    def put(
        self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int, digest: str
    ) -> None: ...


def file_digest(path: str, *, file_cache: FileHashCache | None = None) -> str:
    """The xxh3-128 digest of a file's bytes, from ``file_cache`` when its stat is unchanged."""
    before = _stat_file(path)
    key = _signature(path, before)
    if file_cache is not None:
        remembered = file_cache.get(*key)
        if remembered is not None:
            return remembered
    digest = _read_digest(path)
    if file_cache is not None and _settled(path, before):
        file_cache.put(*key, digest)
    return digest


def _signature(path: str, info: os.stat_result) -> tuple[str, int, int, int, int]:
    return (path, info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns)


def _stat_file(path: str) -> os.stat_result:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise HashingError(
            f"input file {path} does not exist (File inputs are hashed by content: create it "
            "before the run, or fix the path)"
        ) from None
    except OSError as exc:
        raise HashingError(f"cannot read input file {path}: {exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise HashingError(f"{path} is a folder; pass it as Directory(...), not File(...)")
    if not stat.S_ISREG(info.st_mode):
        raise HashingError(f"{path} is not a regular file; File inputs must be regular files")
    return info


def _read_digest(path: str) -> str:
    try:
        with open(path, "rb", buffering=0) as fh:
            return stream_digest(fh)
    except OSError as exc:
        raise HashingError(f"cannot read input file {path}: {exc}") from exc


def stream_digest(fh: BinaryIO) -> str:
    """The digest of what is left to read in the open binary file ``fh``."""
    hasher = new_hasher()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    while size := fh.readinto(buffer):  # type: ignore[attr-defined]
        hasher.update(view[:size])
    return hasher.hexdigest()


def mapped_digest(path: str | BinaryIO) -> str:
    """The digest of a file that is never rewritten in place (a store's objects: written to a
    temp file, renamed, only ever unlinked), given by path or as an open file, hashed straight
    from the page cache through a read-only memory map: half the CPU of reading it into a
    buffer (no copy); read where the file system cannot map it. Never for a user's file: a
    truncation while it is mapped would kill the process (SIGBUS)."""
    import mmap

    try:
        with contextlib.ExitStack() as stack:
            fh = path if not isinstance(path, str) else stack.enter_context(open(path, "rb"))
            try:
                mapped = stack.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
            except ValueError:  # an empty file cannot be mapped
                return new_hasher().hexdigest()
            except OSError:  # a file system that cannot map files
                fh.seek(0)
                return stream_digest(fh)
            hasher = new_hasher()
            hasher.update(mapped)
            return hasher.hexdigest()
    except OSError as exc:
        name = path if isinstance(path, str) else getattr(path, "name", "?")
        raise HashingError(f"cannot read {name}: {exc}") from exc


def _settled(path: str, before: os.stat_result) -> bool:
    """True if the file did not change while read and is old enough to be remembered."""
    try:
        after = os.stat(path)
    except OSError:
        return False
    same = _signature(path, after) == _signature(path, before)
    return same and time.time_ns() - after.st_mtime_ns >= RACY_NS


def tree_entries(
    root: str, *, file_cache: FileHashCache | None = None
) -> list[tuple[str, str, str]]:
    """(kind, relative posix path, file digest) of everything below ``root``, in sorted order.

    ``kind`` is ``"dir"`` (so empty folders count), ``"file"`` or ``"other"``.
    """
    if not os.path.isdir(root):
        what = "does not exist" if not os.path.exists(root) else "is not a folder"
        raise HashingError(f"input folder {root} {what} (Directory inputs are hashed by content)")
    entries: list[tuple[str, str, str]] = []
    try:
        _walk(root, "", frozenset(), entries, file_cache)
    except OSError as exc:
        raise HashingError(f"cannot read input folder {root}: {exc}") from exc
    return entries


def _walk(
    root: str,
    relative: str,
    ancestors: frozenset[tuple[int, int]],
    entries: list[tuple[str, str, str]],
    file_cache: FileHashCache | None,
) -> None:
    folder = os.path.join(root, relative) if relative else root
    info = os.stat(folder)
    here = (info.st_dev, info.st_ino)
    if here in ancestors:
        raise HashingError(f"input folder {root} contains a symlink loop at {relative}")
    with os.scandir(folder) as scan:
        children = sorted(scan, key=lambda entry: entry.name)
    for child in children:
        name = f"{relative}/{child.name}" if relative else child.name
        entries.append(_entry(child, name, file_cache))
        if entries[-1][0] == "dir":
            _walk(root, name, ancestors | {here}, entries, file_cache)


def _entry(
    child: os.DirEntry[str], name: str, file_cache: FileHashCache | None
) -> tuple[str, str, str]:
    if child.is_dir():
        return ("dir", name, "")
    if child.is_file():
        return ("file", name, file_digest(child.path, file_cache=file_cache))
    if child.is_symlink():
        raise HashingError(f"broken symlink in an input folder: {child.path}")
    return ("other", name, "")
