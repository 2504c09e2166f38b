"""Files read in processes a node starts *afresh* with multiprocessing (``spawn``, the default
on macOS and Windows and torch's choice; ``forkserver``, Python 3.14's default on Linux): noted
in the child, handed back to the node's audit as a forked child's are (run/_forked.py).

Such a child is a new interpreter: nothing of the node's audit is in it. But multiprocessing
sends it the process object it is to run, pickled in the thread that starts it. While a node
runs, that object (of multiprocessing's own process classes: those of its pools, of a
``ProcessPoolExecutor``, ``multiprocessing.Process``) is pickled as a call (:func:`_reduce`)
that in the child first installs the audit with a spill file in the node's spill folder, then
rebuilds the object; from then on the child notes what it opens (and what its own children
do), and the node collects it when it ends. A subclass of ``Process`` the user defines, a pool
made before the node ran, ``subprocess`` and joblib's loky are not followed
(``docs/concepts.md``).

The pickler learns this as soon as multiprocessing is loaded (:func:`follow_spawns`: when a
run's audit starts, or on the import audit event that the first ``Pool`` or start of a process
raises), so a node that imports multiprocessing itself is followed too.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

from ._forked import spill_folder

__all__ = ["follow_spawns", "rebuild"]

#: multiprocessing's classes of the processes it starts afresh (those it pickles)
_CLASSES = ("Process", "SpawnProcess", "ForkServerProcess")

_current: Callable[[], Any] = lambda: None  # noqa: E731  (the running node's Opened, or None)
_adopt: Callable[[str, str], None] | None = None
_following = False


def follow_spawns(current: Callable[[], Any], adopt: Callable[[str, str], None]) -> bool:
    """Have multiprocessing pickle its processes for following, if it is loaded (once per
    process; True when it is done). ``current`` gives the ``Opened`` of the node this thread
    works for; ``adopt(folder, cwd)`` (a module's function: pickled by name), in the child,
    installs the audit noting into ``folder`` with ``./`` paths from ``cwd``."""
    global _current, _adopt, _following
    _current, _adopt = current, adopt
    if _following:
        return True
    context = sys.modules.get("multiprocessing.context")
    reduction = sys.modules.get("multiprocessing.reduction")
    if context is None or reduction is None or not hasattr(reduction, "ForkingPickler"):
        return False
    for name in _CLASSES:
        cls = getattr(context, name, None)
        if isinstance(cls, type):
            reduction.ForkingPickler.register(cls, _reduce)
    _following = True
    return True


def _reduce(process: Any) -> tuple[Any, ...]:
    """How multiprocessing pickles a process object: as pickle would, unless it is starting
    one for a running node (then :func:`rebuild` installs the audit in the child first)."""
    reduced = process.__reduce_ex__(4)
    try:
        from multiprocessing.context import get_spawning_popen

        opened: Any = _current() if get_spawning_popen() is not None else None
        folder = spill_folder(opened) if opened is not None else None
        if folder is not None:
            return rebuild, (_adopt, folder, opened.cwd, reduced)
    except Exception:  # never fail the start of the process over its audit
        pass
    return reduced  # type: ignore[no-any-return]


def rebuild(
    adopt: Callable[[str, str], None], folder: str, cwd: str, reduced: tuple[Any, ...]
) -> Any:
    """In a process a node started afresh: follow what it opens (``adopt``, into the node's
    spill ``folder``), then the process object, as pickle would have made it."""
    with contextlib.suppress(Exception):  # never fail the child's start over its audit
        adopt(folder, cwd)
    make, args, state = reduced[0], reduced[1], reduced[2] if len(reduced) > 2 else None
    obj = make(*args)
    if state:
        setstate = getattr(obj, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            obj.__dict__.update(state)
    return obj
