"""Files read by memoized helpers, for every node that calls them (run/_reads.py).

A helper decorated with ``functools.lru_cache`` or ``functools.cache`` (any wrapper with a
``cache_clear``) that reads a file (``pd.read_csv("rates.csv")``) reads it once per process:
in the first node that calls it. A second node gets the table from the cache, so it opens
nothing, and its record would not list the file: an edit there would leave it a stale hit.
So when a node starts, the memoized user functions its code reaches are looked up
(:func:`memoized_codes`, through the code fingerprint's traversal: a helper of a helper
counts; at the node's first file read); for each file it reads, the audit hook
(run/_audit.py) notes those of them on the stack (:func:`note`; a node that reaches none, or
opens no file, costs nothing more), and a node's ``reads``
include what was read in this process under each memoized function it reaches
(:func:`memoized_reads`). A cache filled outside any node (at
import time) or in another process is not seen.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ..hashing._fingerprint import reached
from ..hashing._source import member_functions, wrapper_chain
from ..hashing._usercode import is_user_code

__all__ = ["Reaching", "memoized_codes", "memoized_reads", "note", "reached_functions"]

#: the code of each memoized user function -> the files read under it (as run/_audit.py notes)
_READS: dict[types.CodeType, dict[str, bool | None]] = {}
#: whether a code object is that of a memoized user function (decided once)
_MEMOIZED: dict[types.CodeType, bool] = {}
_MAX_DEPTH = 200


def memoized_codes(node_code: Callable[..., Any] | type | None) -> frozenset[types.CodeType]:
    """The code of each memoized user function ``node_code`` reaches (what :func:`note` looks
    for on the stack; empty, so the stack is never walked, for a node that reaches none)."""
    if node_code is None:
        return frozenset()
    found: set[types.CodeType] = set()
    with suppress(Exception):  # code a fingerprint cannot read: nothing to look for
        for fn in _functions(reached(node_code)):
            code = fn.__code__
            memoized = _MEMOIZED.get(code)
            if memoized is None:
                memoized = _MEMOIZED[code] = _is_memoized(code, fn.__globals__)
            if memoized:
                found.add(code)
    return frozenset(found)


class Reaching:
    """The memoized functions a watched node reaches, looked up at its first file read (a node
    that opens no file never looks)."""

    __slots__ = ("_codes", "code")

    def __init__(self, code: Callable[..., Any] | type) -> None:
        self.code = code
        self._codes: frozenset[types.CodeType] | None = None

    def codes(self) -> frozenset[types.CodeType]:
        if self._codes is None:
            self._codes = frozenset()  # the source files read while looking: not looked again
            self._codes = memoized_codes(self.code)
        return self._codes


def note(
    path: str, how: bool | None, frame: types.FrameType | None, codes: frozenset[types.CodeType]
) -> None:
    """Note a file read (``how``: False, or None in an untracked block) under each memoized
    function of ``codes`` on the stack from ``frame`` up."""
    for _ in range(_MAX_DEPTH):
        if frame is None:
            return
        if frame.f_code in codes:
            _READS.setdefault(frame.f_code, {}).setdefault(path, how)
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
    for fn in _functions(reached(node_code)):
        for path, how in _READS.get(fn.__code__, {}).items():
            found.setdefault(path, how)
    return found


def reached_functions(node_code: Callable[..., Any] | type) -> list[types.FunctionType]:
    """The user functions ``node_code`` is or reaches (a class's methods), as its code
    fingerprint's traversal finds them."""
    return _functions((node_code, *reached(node_code)))


def _functions(pieces: tuple[Any, ...]) -> list[types.FunctionType]:
    """The functions of fingerprint pieces: a function, a class's methods."""
    members = (m for p in pieces for m in (vars(p).values() if isinstance(p, type) else [p]))
    return [fn for member in members for fn in member_functions(member)]


def reset() -> None:
    """Forget what was noted (tests)."""
    _READS.clear()
    _MEMOIZED.clear()
