"""Symbolic links on the way to a file output: refused, never followed to delete or write.

A node's file outputs (declared with ``writes=``, a returned ``File``/``Directory``, or one
held inside an output) live at root-relative paths. The engine empties them before an
attempt, stores them after it, and puts them back on a cache hit: it deletes and writes below
those paths. Were the path itself, or a folder on the way to it *below the workflow's root*, a
symbolic link, each of these would act on what the link points to: another folder of the
project, a home folder, anything a link committed to a repository names. So such a path is
refused (:func:`refuse_links` raises :class:`LinkedOutputError`, naming the link and the fix:
remove it); the link and what it points to are left as they are. A link *above* the root (or
the root itself) is followed: that is where the project lives, so outputs kept on another
disk mean a root on that disk.

Inside a declared folder, entries are the node's own: a link there is stored as what it
pointed to when the node ran (a read), removed (the link, not its target) before an attempt,
and replaced by the recorded file or folder on a hit (:func:`real_folders` with
``replace_links=True``; ``os.replace`` over a link replaces the link).

Each check is an ``lstat`` made right before the operation it guards; a link planted between
the two by another process is not defended against (no one else writes below the root while
the engine restores there).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Sequence

from ..errors import OutputError, StoreError

__all__ = ["LinkedOutputError", "linked_component", "real_folders", "refuse_links"]

log = logging.getLogger("etherealfabric")


class LinkedOutputError(OutputError):
    """A file output's path, or a folder on the way to it below the root, is a symbolic link."""

    def __init__(self, message: str, *, node: str = "", link: str = "") -> None:
        super().__init__(message, node=node)
        self.link = link


def linked_component(root: str, relative: str) -> str | None:
    """The first path on the way from ``root`` to ``root/relative`` (that path included, the
    root not) that is a symbolic link, or None. Stops at the first missing name."""
    path = root
    for name in relative.rstrip("/").split("/"):
        path = os.path.join(path, name)
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat.S_ISLNK(mode):
            return path
        if not stat.S_ISDIR(mode):
            return None  # a file: nothing can lie below it
    return None


def refuse_links(root: str, relative: str, *, node: str = "") -> None:
    """Raise :class:`LinkedOutputError` if a symbolic link lies on the way to the output
    ``relative`` (the output itself, or a folder above it below ``root``)."""
    link = linked_component(root, relative)
    if link is None:
        return
    target = "?"
    with contextlib.suppress(OSError):
        target = os.readlink(link)
    where = "is" if link == os.path.join(root, *relative.rstrip("/").split("/")) else "lies in"
    prefix = f"node {node!r}: " if node else ""
    raise LinkedOutputError(
        f"{prefix}the file output {relative!r} {where} the symbolic link {link} (pointing to "
        f"{target}): outputs are emptied, stored and restored only in real folders below the "
        "workflow's root, never through a link, which would delete or overwrite what it points "
        f"to; the link and its target were left alone. Remove the link (rm {link}; what it "
        "points to stays) and run again; to keep outputs on another disk, put the workflow's "
        "root there (a link above the root is followed)",
        node=node,
        link=link,
    )


def real_folders(base: str, names: Sequence[str], *, replace_links: bool) -> str:
    """Make ``base/names...`` a chain of real folders (``base`` must be one already) and return
    its path. A symbolic link among them is replaced by an empty folder (``replace_links``:
    the link goes, never what it points to) or refused (:class:`StoreError`); a file there is
    a :class:`StoreError`."""
    path = base
    for name in names:
        path = os.path.join(path, name)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
                os.mkdir(path)
            mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode) and replace_links:
            os.unlink(path)
            os.mkdir(path)
            log.info("replaced the symbolic link %s by the recorded folder", path)
            continue
        if stat.S_ISLNK(mode):
            raise StoreError(f"cannot restore the folder {path}: it is a symbolic link", path=path)
        if not stat.S_ISDIR(mode):
            raise StoreError(
                f"cannot restore the folder {path}: something else is there", path=path
            )
    return path
