"""Creating a new journal: built whole beside its final path, then linked into place.

A journal made in place (``sqlite3.connect`` on the missing path, then the migrations) pays
SQLite's syncs of every step: the switch to WAL, the migrations' commit, the checkpoint on
close. A home's first run builds it instead in a *side file* beside it,
``.journal.db.new-<pid>-<pid start>-<thread>``, with ``synchronous=OFF`` and no rollback
journal (nothing else can see that file), switches it to WAL, closes it, syncs it once, and
hard-links it to ``journal.db`` (:func:`create_journal`). ``os.link`` never replaces a file:
of concurrent creators (threads or processes) the first link wins and the others open the
winner's journal. Either way the side file is removed.

Killed at any moment, a creator leaves either no ``journal.db`` (the next run builds one) or
a complete one (synced before it was linked), never half a journal under the real name. What
it leaves beside is a side file (and its ``-wal``/``-shm``), named after its process: the next
creator removes those of processes that are gone (:func:`stale_side_files`), and so does
``cache gc``. Nothing opens a side file but its builder (its name starts with a dot and does not
start ``journal.db``). SQLite's own directory sync, when it first syncs the new journal's
``-wal`` file, makes the link durable before anything is committed durably in it.

Where the link cannot be made (a file system without hard links) or the build fails (a full
disk), the journal is created in place as before, which also reports the error.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from pathlib import Path

from ..errors import JournalError
from ._connection import home_writable
from ._liveness import PID_START, alive
from ._schema import create_schema

__all__ = ["create_journal", "remove_stale_side_files", "side_file", "stale_side_files"]

#: the files SQLite may keep beside a database file
_SUFFIXES = ("", "-wal", "-shm", "-journal")


def side_file(path: Path) -> Path:
    """The side file this thread builds the journal ``path`` in."""
    owner = f"{os.getpid()}-{PID_START or 0}-{threading.get_ident()}"
    return path.with_name(f".{path.name}.new-{owner}")


def _pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(path.name)}\.new-(\d+)-(\d+)-\d+(?:-wal|-shm|-journal)?")


def stale_side_files(path: Path) -> list[tuple[Path, int]]:
    """The side files (with their sizes) of creators of the journal ``path`` that are gone.

    A side file of a live process is left alone: it may be building the journal now."""
    prefix = f".{path.name}.new-"
    try:
        entries = [e for e in os.scandir(path.parent) if e.name.startswith(prefix)]
    except OSError:
        return []
    pattern = _pattern(path) if entries else None  # (a home without any: no regex compiled)
    stale = []
    for entry in entries:
        found = pattern.fullmatch(entry.name) if pattern is not None else None
        if found is None:
            continue
        pid, start = int(found[1]), int(found[2])
        if alive(pid, start or None):
            continue
        try:
            stale.append((Path(entry.path), entry.stat(follow_symlinks=False).st_size))
        except OSError:
            continue  # removed meanwhile (by another creator)
    return stale


def remove_stale_side_files(path: Path) -> list[tuple[Path, int]]:
    """Remove :func:`stale_side_files` of ``path``; the ones removed (by this call)."""
    removed = []
    for side, size in stale_side_files(path):
        with contextlib.suppress(FileNotFoundError):
            side.unlink()
            removed.append((side, size))
    return removed


def _remove(side: Path) -> None:
    for suffix in _SUFFIXES:
        with contextlib.suppress(FileNotFoundError):
            side.with_name(side.name + suffix).unlink()


def _build(side: Path) -> None:
    """The journal's schema in a new file ``side``, in WAL mode, synced to disk."""
    conn = sqlite3.connect(str(side), isolation_level=None)
    try:
        # nobody else opens this file, and a build that does not finish is thrown away:
        # no rollback journal and no syncs while building, one sync of the finished file
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA journal_mode=OFF")
        create_schema(conn, side)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"journal_mode stayed {mode}")
    finally:
        conn.close()  # WAL with no commits: its -wal and -shm files go with the connection
    fd = os.open(side, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_journal(path: Path) -> bool:
    """Create the journal ``path`` whole if it does not exist; whether this call made it.

    ``False`` when a journal is there (another creator linked its own first), and when it
    could not be built this way: the caller then opens (or creates) ``path`` in place.
    """
    if str(path) == ":memory:" or path.exists() or not home_writable(path):
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_side_files(path)
    except OSError:
        return False
    side = side_file(path)
    try:
        _remove(side)  # never build on what an earlier failed attempt of this thread left
        _build(side)
        os.link(side, path)
    except FileExistsError:
        return False  # another creator's journal is in place: it is the one
    except (OSError, sqlite3.Error, JournalError):
        return False  # no hard links here, a full disk...: made in place, which says why
    finally:
        with contextlib.suppress(OSError):
            _remove(side)
    return True
