"""The drift of a node's file inputs while it ran.

:func:`snapshot` takes the size, mtime and ctime of every ``File`` and of every
file below every ``Directory`` among a node's inputs when its task is built (after its key
hashed their content; one whose ctime is not before ``KeyInfo.hashed_at`` changed since: a
node keyed ahead, a map's child waiting for its chunk); :func:`drifted` compares them after
the node ran. A changed input means the outputs may mix old and new content: they are used
by this run, but not published to the cache, and the node is recorded as ``drifted``. So is
a node with a data file it read by path that changed while it ran (:func:`changed_since`).
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..define._files import Directory, path_values

__all__ = ["CHANGED", "Stat", "changed_since", "drifted", "snapshot"]

Stat = tuple[int, int, int]  # size, mtime_ns, ctime_ns

_ATOMS: frozenset[type] = frozenset({int, float, str, bytes, bool, type(None)})


@functools.cache
def _no_files() -> frozenset[type]:
    """The types of task arguments that hold no ``File``: atoms, and the handle of an upstream
    output's stored value (an upstream ``File`` output travels as the ``File`` itself). Made
    on first use: the store's loading module is imported only where a node runs."""
    from ..store._loading import InputHandle

    return _ATOMS | {InputHandle}


CHANGED: Stat = (-1, -1, -1)  # a file changed since its key's digest: equal to no real stat


def snapshot(values: Sequence[Any], since: float | None = None) -> dict[str, Stat]:
    """The stat of every file among (or below a folder among) ``values``, by path; given
    ``since`` (when the key began to hash them), :data:`CHANGED` for one changed since."""
    seen: dict[str, Stat] = {}
    no_files = _no_files()
    for value in values:
        kind = type(value)
        if kind in no_files or (  # most inputs: a number, a name or an upstream output,
            kind in (list, tuple) and all(type(v) in no_files for v in value)  # or a list
        ):  # of them (a gather's), without a generator and ABC checks per item
            continue
        for item in path_values(value):
            if isinstance(item, Directory):
                seen.update(_folder_stats(item.path))
            else:
                stat = _stat(item.path)
                if stat is not None:
                    seen[item.path] = stat
    if since is not None and seen:
        now = time.time_ns()
        return {p: CHANGED if _since(s[2], since, now) else s for p, s in seen.items()}
    return seen


def _since(ctime_ns: int, since: float, now_ns: int) -> bool:
    """Whether a ctime is not before ``since`` (seconds) nor after now (a file system whose
    clock is ahead of ours: that tells nothing; the stat comparison still does)."""
    return since * 1e9 <= ctime_ns <= now_ns


def drifted(before: Mapping[str, Stat]) -> list[str]:
    """The paths of ``before`` whose size, mtime or ctime changed (or that are gone)."""
    return [path for path, stat in before.items() if _stat(path) != stat]


def changed_since(path: str, before: os.stat_result, since: float) -> bool:
    """Whether the file at ``path`` (``before``: its stat before it was hashed) changed since
    ``since`` (seconds): by its ctime (set by every write and ``utime``, never put back), or
    its stat moved while it was hashed. Recorded, it would be a stale hit."""
    try:
        after = os.stat(path)
    except OSError:
        return True
    moved = (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns)
    ctime = after.st_ctime_ns
    return moved or ctime != before.st_ctime_ns or _since(ctime, since, time.time_ns())


def _stat(path: str) -> Stat | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def _folder_stats(folder: str) -> Iterator[tuple[str, Stat]]:
    stat = _stat(folder)
    if stat is None:
        return
    yield folder, stat  # an added or removed entry changes the folder's mtime
    for parent, dirs, names in os.walk(folder):
        for name in (*dirs, *names):
            path = os.path.join(parent, name)
            found = _stat(path)
            if found is not None:
                yield path, found
