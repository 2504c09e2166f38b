"""Which running node a thread it started works for, so that what it opens counts (run/_audit.py).

A node that reads its files in threads of its own (``ThreadPoolExecutor().map(pd.read_csv,
paths)``, a ``threading.Thread``) opens them in threads whose context the engine never set: the
audit hook heard the opens and gave them to no node, so an edit of such a file was served
stale. While nodes run, an open heard in another thread (not the main thread, nor one of the
engine's, named ``etherealfabric-...``) is given to the running node whose code is on that
thread's stack: its own function (a lambda or nested function in it too), or a user function
or class it reaches (the code fingerprint's traversal, looked up at the first such open). Two
nodes running at once that reach the same helper both get what it opens in a thread. And a
thread started while a node runs, by the node's code or in a thread working for it (the
threads of a ``ThreadPoolExecutor`` it makes), works for that node whatever runs on it: a
library function handed to the pool (``pool.map(pd.read_csv, paths)``) has no user code on
its stack.
"""

from __future__ import annotations

import functools
import threading
import types
import weakref
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ._memoized import reached_functions

__all__ = ["follow_threads", "forget", "owner", "register"]

#: the nodes running in this process: id of their ``opened`` -> (opened, code, its code objects)
_running: dict[int, list[Any]] = {}
_MAX_DEPTH = 200
#: the engine's threads (a pool thread between nodes reads the next one's inputs)
_ENGINE = ("etherealfabric", "ef-")


#: the threads started while nodes ran -> the ``opened`` of those nodes (see the docstring)
_starters: weakref.WeakKeyDictionary[threading.Thread, list[Any]] = weakref.WeakKeyDictionary()


def follow_threads(working_for: Callable[[], list[Any]]) -> None:
    """Have :meth:`threading.Thread.start` note, while nodes run, which of them the starting
    thread works for (``working_for``: their audit dicts): the new thread works for them too.
    Python 3.11 raises no audit event when a thread starts; this wraps ``start`` once."""
    original = threading.Thread.start
    if getattr(original, _FOLLOWING, False):
        return

    @functools.wraps(original)
    def start(self: threading.Thread) -> None:
        if _running and not self.name.startswith(_ENGINE):  # (nothing to do between runs)
            with suppress(Exception):
                for opened in working_for():
                    nodes = _starters.setdefault(self, [])
                    if all(one is not opened for one in nodes):
                        nodes.append(opened)
        original(self)

    setattr(start, _FOLLOWING, True)
    threading.Thread.start = start  # type: ignore[method-assign]


_FOLLOWING = "_etherealfabric_follows"


def register(opened: Any, code: Callable[..., Any] | type | None) -> None:
    """A node starts running with ``opened`` (its audit dict) and ``code``."""
    if code is not None:
        _running[id(opened)] = [opened, code, None]


def forget(opened: Any) -> None:
    """The node of ``opened`` stopped running."""
    _running.pop(id(opened), None)


def owner(frame: types.FrameType | None) -> list[Any]:
    """The ``opened`` of each running node this thread works for: whose code is on the stack
    from ``frame`` up, or that started it; none for the main thread or the engine's."""
    if not _running:
        return []
    thread = threading.current_thread()
    if thread is threading.main_thread() or thread.name.startswith(_ENGINE):
        return []
    stack: set[types.CodeType] = set()
    for _ in range(_MAX_DEPTH):
        if frame is None:
            break
        stack.add(frame.f_code)
        frame = frame.f_back
    found = [one for one in _starters.get(thread, ()) if id(one) in _running]
    if found:  # started by nodes running: theirs (not another node's that shares the helper)
        return found
    for entry in list(_running.values()):
        if entry[2] is None:
            entry[2] = _codes(entry[1])
        if not stack.isdisjoint(entry[2]):
            found.append(entry[0])
    return found


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
