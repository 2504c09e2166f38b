"""Which running node a thread it started works for, so that what it opens counts (run/_audit.py).

A node that reads its files in threads of its own (``ThreadPoolExecutor().map(pd.read_csv,
paths)``, a ``threading.Thread``) opens them in threads whose context the engine never set: the
audit hook heard the opens and gave them to no node, so an edit of such a file was served
stale. While nodes run, an open heard in another thread (not the main thread, nor one of the
engine's, named ``etherealfabric-...``) is given to the running node whose code is on that
thread's stack: its own function (a lambda or nested function in it too), or a user function
or class it reaches (the code fingerprint's traversal, looked up at the first such open). Two
nodes running at once that reach the same helper both get what it opens in a thread.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ._memoized import reached_functions

__all__ = ["forget", "owner", "register"]

#: the nodes running in this process: id of their ``opened`` -> (opened, code, its code objects)
_running: dict[int, list[Any]] = {}
_MAX_DEPTH = 200
#: the engine's threads (a pool thread between nodes reads the next one's inputs)
_ENGINE = ("etherealfabric", "ef-")


def register(opened: Any, code: Callable[..., Any] | type | None) -> None:
    """A node starts running with ``opened`` (its audit dict) and ``code``."""
    if code is not None:
        _running[id(opened)] = [opened, code, None]


def forget(opened: Any) -> None:
    """The node of ``opened`` stopped running."""
    _running.pop(id(opened), None)


def owner(frame: types.FrameType | None) -> Any | None:
    """The ``opened`` of the running node whose code is on the stack from ``frame`` up, in a
    thread the node started; None for the main thread, the engine's, or no such node."""
    if not _running:
        return None
    thread = threading.current_thread()
    if thread is threading.main_thread() or thread.name.startswith(_ENGINE):
        return None
    stack: set[types.CodeType] = set()
    for _ in range(_MAX_DEPTH):
        if frame is None:
            break
        stack.add(frame.f_code)
        frame = frame.f_back
    for entry in list(_running.values()):
        if entry[2] is None:
            entry[2] = _codes(entry[1])
        if not stack.isdisjoint(entry[2]):
            return entry[0]
    return None


def _codes(code: Callable[..., Any] | type) -> frozenset[types.CodeType]:
    """The code objects of ``code`` and of what it reaches, nested code (lambdas) included."""
    found: set[types.CodeType] = set()
    with suppress(Exception):  # code a fingerprint cannot read: its threads are not followed
        todo = [fn.__code__ for fn in reached_functions(code)]
        while todo:
            one = todo.pop()
            if one not in found:
                found.add(one)
                todo += [c for c in one.co_consts if isinstance(c, types.CodeType)]
    return frozenset(found)
