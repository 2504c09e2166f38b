"""``File`` and ``Directory``: inputs that are hashed by their content, not their path.

Pass ``File("data.csv")`` (or ``Directory("images/")``) as a node input and the node's cache key
follows the bytes on disk: editing the file re-runs the node, touching or moving it does not.
Inside ``run()`` the input is still the ``File`` object, usable wherever a path is::

    with open(f) as fh: ...          pathlib.Path(f)          pandas.read_csv(f)

The path is made absolute (``os.path.abspath``, symlinks kept) when the object is created, so a
worker running in another folder opens the same file. The path itself is *not* part of the
cache key (see :mod:`etherealfabric.hashing._values`): two checkouts in different folders share results.
Nothing is checked when the object is created; a missing path is reported when it is hashed.

This module also reads their content for :mod:`etherealfabric.hashing._values`: :func:`file_digest`
(the xxh3-128 of a file's bytes, streamed in 1 MiB chunks, with the :class:`FileHashCache` fast
path) and :func:`tree_entries` (what a folder's digest covers). Symlinks are followed, for files
and folders; a symlink loop or a broken link is an error; sockets and FIFOs count by name only.
A file modified less than two seconds ago is read every time and never remembered: a same-size
rewrite within the file system's timestamp granularity would otherwise hit a stale digest.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any, Protocol

from ..errors import HashingError

__all__ = ["Directory", "File", "FileHashCache", "file_digest", "tree_entries"]

CHUNK_SIZE = 1 << 20
RACY_NS = 2_000_000_000  # files modified more recently than this are not remembered


class _PathValue(os.PathLike[str]):
    """An immutable absolute path, compared and hashed by its class and path."""

    __slots__ = ("_path",)
    _path: str

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise TypeError(f"{type(self).__name__} needs a non-empty str path; got {path!r}")
        object.__setattr__(self, "_path", os.path.abspath(text))

    @property
    def path(self) -> str:
        """The absolute path (symlinks are not resolved)."""
        return self._path

    @property
    def name(self) -> str:
        """The last component of the path."""
        return os.path.basename(self._path)

    def __fspath__(self) -> str:
        return self._path

    def __str__(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._path!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._path == other._path

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._path))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self._path,)


class File(_PathValue):
    """A file input, hashed by its content (streamed; symlinks are followed)."""

    __slots__ = ()


class Directory(_PathValue):
    """A folder input, hashed by its whole content: every relative path and file's bytes."""

    __slots__ = ()


# -- reading content (for hashing) ---------------------------------------------------------


class FileHashCache(Protocol):
    """Remembered file digests, by path and stat (the journal implements it)."""

    def get(self, path: str, size: int, mtime_ns: int, inode: int) -> str | None: ...

    def put(self, path: str, size: int, mtime_ns: int, inode: int, digest: str) -> None: ...


def file_digest(path: str, *, file_cache: FileHashCache | None = None) -> str:
    """The xxh3-128 digest of a file's bytes, from ``file_cache`` when its stat is unchanged."""
    before = _stat_file(path)
    key = (path, before.st_size, before.st_mtime_ns, before.st_ino)
    if file_cache is not None:
        remembered = file_cache.get(*key)
        if remembered is not None:
            return remembered
    digest = _read_digest(path)
    if file_cache is not None and _settled(path, before):
        file_cache.put(*key, digest)
    return digest


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
    from ._values import new_hasher  # the one xxhash importer; loaded only when hashing

    hasher = new_hasher()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as fh:
            while size := fh.readinto(buffer):
                hasher.update(view[:size])
    except OSError as exc:
        raise HashingError(f"cannot read input file {path}: {exc}") from exc
    return hasher.hexdigest()


def _settled(path: str, before: os.stat_result) -> bool:
    """True if the file did not change while read and is old enough to be remembered."""
    try:
        after = os.stat(path)
    except OSError:
        return False
    same = (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
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
