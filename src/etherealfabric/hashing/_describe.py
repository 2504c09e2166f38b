"""Short human descriptions of parameter values, for the journal and ``explain``.

A description is for people only and never part of a cache key (that is
:func:`etherealfabric.hashing._values.hash_value`).
"""

from __future__ import annotations

import os
import re
import reprlib
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..define._files import Directory, File
    from ._digest import RefDigest

__all__ = ["describe_value"]

#: an object's address in its repr (a pattern re compiles, and caches, on first use)
_ADDRESS = r" at 0x[0-9a-fA-F]+"
#: types whose short values reprlib describes by their plain ``repr``
_PLAIN = frozenset((int, bool, float, str, type(None)))


class _Describer(reprlib.Repr):
    """``reprlib`` with short forms for arrays, frames, files and upstream digests."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxstring = self.maxother = max(limit, 8)
        self.maxlevel = 3

    def repr_ndarray(self, x: Any, level: int) -> str:
        return f"ndarray {x.dtype} {tuple(x.shape)}"

    def repr_DataFrame(self, x: Any, level: int) -> str:
        return f"DataFrame {tuple(x.shape)}"

    def repr_Series(self, x: Any, level: int) -> str:
        return f"Series {x.dtype} ({len(x)},)"

    def repr_File(self, x: File, level: int) -> str:
        return f"File {_short_path(x.path)}{_stat_text(x.path, size=True)}"

    def repr_Directory(self, x: Directory, level: int) -> str:
        return f"Directory {_short_path(x.path)}{_stat_text(x.path, size=False)}"

    def repr_RefDigest(self, x: RefDigest, level: int) -> str:
        return f"<{x.serializer} {x.digest[:12]}>"

    def repr_instance(self, x: Any, level: int) -> str:
        return re.sub(_ADDRESS, "", super().repr_instance(x, level))


def describe_value(value: object, limit: int = 80) -> str:
    """A short human description for the journal and ``explain`` (never part of a key)."""
    if type(value) in _PLAIN and (type(value) is not str or len(value) <= limit):
        text = repr(value)  # what reprlib gives a short one (a parameter per node, cold)
        if len(text) <= min(limit, 40):  # (reprlib shortens an int's repr over 40)
            return text
    try:
        text = _Describer(limit).repr(value)
    except Exception:  # a broken __repr__ must not break a run
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def _stat_text(path: str, *, size: bool) -> str:
    """`` (1,234 B, modified 2026-12-01 15:30:48)``; `` (missing)`` when it is not there."""
    try:
        info = os.stat(path)
    except OSError:
        return " (missing)"
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.st_mtime))
    return f" ({info.st_size:,} B, modified {when})" if size else f" (modified {when})"


def _short_path(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative
