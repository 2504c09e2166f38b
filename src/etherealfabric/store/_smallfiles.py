"""The engine's small files (a home's id, its pins, memos, the workflow-import shim), written
whole or not at all."""

from __future__ import annotations

import os

from ._writer import remove_quietly

__all__ = ["write_small_file"]


def write_small_file(path: str | os.PathLike[str], text: str, *, replace: bool = True) -> bool:
    """Write ``text`` to ``path`` atomically: into a temp file beside it, then renamed (or,
    with ``replace=False``, hard-linked: a file already there is kept, whoever made it), so
    that readers and concurrent writers see a whole file, never part of one. Whether ``path``
    now holds this call's ``text``."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    temp = os.path.join(folder, f".{name}.{os.getpid()}-{os.urandom(6).hex()}")
    try:
        with open(temp, "x", encoding="utf-8") as f:
            f.write(text)
        if replace:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
        except FileExistsError:
            return False  # another writer's file is in place: it is the one
        return True
    finally:
        remove_quietly(temp)
