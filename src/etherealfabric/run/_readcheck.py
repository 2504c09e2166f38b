"""A record's ``reads`` checked before a hit (or a checkpoint's before it is resumed): the
files its node read by path, hashed again (run/_reads.py says what is recorded, and why)."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

from ..errors import HashingError
from ..hashing._files import FileHashCache, file_digest
from ..journal._liveness import HOST
from ._audit import HERE
from ._folders import field, folder_changed, read_path, wal_digest
from ._reads import MAX_FOLDER_BYTES
from ._texts import MAX_READS

__all__ = ["changed_read"]


def changed_read(
    record: Mapping[str, Any], *, root: str | None, file_cache: FileHashCache | None
) -> str | None:
    """The path (as recorded) of a file ``record``'s node read that now holds something else
    (or of a folder whose tree or listing changed), or that is gone from the machine that read
    it; None when each is as it was, or not here and read elsewhere: a teammate sharing the
    store without the raw data, or a cluster's worker that had files of its own, still gets
    the result (so does a ``./path`` checked from another working folder)."""
    reads = record.get("reads")
    if not isinstance(reads, Mapping):
        return None
    base = root if root is not None else os.getcwd()
    here = record.get("read_on") == HOST  # read on this machine: a file gone is a change
    cwd = record.get("read_in") == os.getcwd()  # (./paths: read from this folder too)
    for relative, entry in reads.items():
        relative = str(relative)
        path = read_path(relative, base)
        if field(entry, "missing"):  # not there when it ran: one stat
            if os.path.lexists(path):
                return relative
            continue
        if relative.endswith(os.sep):  # a folder it named (its tree) or listed (its names)
            if folder_changed(path, entry, file_cache, MAX_READS, MAX_FOLDER_BYTES):
                return relative
            continue
        try:  # a regular file only (a record naming a FIFO or a device is no reason to wait)
            digest = (
                None
                if _size(path) != field(entry, "size")
                else file_digest(path, file_cache=file_cache)
            )
        except (OSError, HashingError):  # not here (or unreadable): nothing to compare, but
            if (  # (not an absolute path: /tmp files one node hands another, then removes)
                here
                and not os.path.isabs(relative)
                and (cwd or not relative.startswith(HERE))
                and not os.path.lexists(path)
            ):
                return relative  # gone from where it was read: deleted since
            continue
        if digest is None or digest != field(entry, "digest"):
            return relative
        wal = field(entry, "wal")  # a SQLite database's -wal file: "" when it had none
        if wal is not None and wal_digest(path, file_cache) != wal:
            return relative
    return None


def _size(path: str) -> int:
    """The size of the regular file at ``path`` (OSError if it is not one)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file")
    return info.st_size
