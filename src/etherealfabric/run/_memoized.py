"""Files read by memoized helpers, for every node that calls them (run/_reads.py).

A helper decorated with ``functools.lru_cache`` or ``functools.cache`` (any wrapper with a
``cache_clear``) that reads a file (``pd.read_csv("rates.csv")``) reads it once per process:
in the first node that calls it. A second node gets the table from the cache, so it opens
nothing, and its record would not list the file: an edit there would leave it a stale hit.
So the audit hook (run/_audit.py) notes, for each file a watched node reads, the memoized user
functions on the stack (:func:`note`), and a node's ``reads`` include what was read in this
process by each memoized function its code reaches (:func:`memoized_reads`, through the code
fingerprint's traversal: a helper of a helper counts). A cache filled outside any node (at
import time) or in another process is not seen.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

from ..hashing._fingerprint import reached
from ..hashing._source import member_functions, wrapper_chain
from ..hashing._usercode import is_user_code

__all__ = ["memoized_reads", "note"]

#: the code of each memoized user function -> the files read under it (as run/_audit.py notes)
_READS: dict[types.CodeType, dict[str, bool | None]] = {}
#: whether a code object is that of a memoized user function (decided once)
_MEMOIZED: dict[types.CodeType, bool] = {}
_MAX_DEPTH = 200


def note(path: str, how: bool | None, frame: types.FrameType | None) -> None:
    """Note a file read (``how``: False, or None in an untracked block) under each memoized
    user function on the stack from ``frame`` up."""
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return
        code = frame.f_code
        memoized = _MEMOIZED.get(code)
        if memoized is None:
            memoized = _MEMOIZED[code] = _is_memoized(code, frame.f_globals)
        if memoized:
            _READS.setdefault(code, {}).setdefault(path, how)
        frame = frame.f_back


def _is_memoized(code: types.CodeType, namespace: dict[str, Any]) -> bool:
    """Whether ``code`` is that of a user function behind a cache wrapper, found by its
    qualified name in its module (a method of a class too; a nested function is not)."""
    qualname = getattr(code, "co_qualname", code.co_name)  # Python 3.10 has no co_qualname
    if "<" in qualname:
        return False
    obj: object = namespace
    try:
        for part in qualname.split("."):
            obj = obj.get(part) if isinstance(obj, dict) else inspect.getattr_static(obj, part)
    except AttributeError:
        return False
    candidates = [obj, *(getattr(obj, a, None) for a in ("__func__", "func"))]
    for candidate in candidates:
        if candidate is None or not callable(getattr(candidate, "cache_clear", None)):
            continue
        chain = wrapper_chain(candidate)
        if any(getattr(f, "__code__", None) is code and is_user_code(f) for f in chain):
            return True
    return False


def memoized_reads(node_code: Callable[..., Any] | type) -> dict[str, bool | None]:
    """The files read in this process by the memoized functions ``node_code`` reaches."""
    if not _READS:
        return {}
    found: dict[str, bool | None] = {}
    for piece in reached(node_code):
        for fn in member_functions(piece) if not isinstance(piece, type) else _methods(piece):
            for path, how in _READS.get(fn.__code__, {}).items():
                found.setdefault(path, how)
    return found


def _methods(cls: type) -> list[types.FunctionType]:
    return [fn for member in vars(cls).values() for fn in member_functions(member)]


def reset() -> None:
    """Forget what was noted (tests)."""
    _READS.clear()
    _MEMOIZED.clear()
