"""Refuse to run a node on a worker whose code is not the code the run keyed (a stale worker).

A task's node travels with cloudpickle: code from ``__main__`` or a workflow file travels by
value, but a function or class of an importable module (``helpers.py`` beside the workflow, a
package of the project) travels by *name*, and the worker runs its own copy of that module:
the one it imported when it first needed it. A long-lived Celery worker or Dask cluster keeps
that copy after the file is edited, and a worker on another machine may have another version
of the project. The run keys the node by the code it sees, so running the worker's copy would
store a result computed by other code under the new key: a wrong cached result for every later
run, on every backend.

So the scheduler puts in each out-of-process task a *stamp* (:func:`code_stamp`): the bytecode
digest of each function and class the node's key covers that travels by name, and the worker
compares it with its own copies before the node runs (:func:`check_code_stamp`); a difference
fails the node with :class:`StaleCodeError`, naming what differs, and nothing is stored.
Bytecode is what runs (an edited file on disk is not), and it is compared only between equal
Python versions (``major.minor``), whose compilers agree.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types
import weakref
from collections.abc import Callable
from typing import Any

from ..backends._taskpickle import by_name
from ..errors import StaleCodeError
from ..hashing._fingerprint import generation, reached
from ..hashing._source import class_bytecode, code_digest

__all__ = ["check_code_stamp", "code_stamp"]

#: ((python major, minor), ((module, qualname, digest), ...))
Stamp = tuple[tuple[int, int], tuple[tuple[str, str, str], ...]]

_STAMPS: weakref.WeakKeyDictionary[Any, tuple[int, Stamp]] = weakref.WeakKeyDictionary()


def code_stamp(code: Callable[..., Any] | type) -> Stamp:
    """The stamp of a node's code, as the scheduler sees it (memoized per binding generation)."""
    gen = generation()
    try:
        found = _STAMPS.get(code)
    except TypeError:
        found = None
    if found is not None and found[0] == gen:
        return found[1]
    entries = []
    for piece in reached(code):
        where = by_name(piece)
        if where is not None:
            entries.append((*where, _digest(piece)))
    stamp: Stamp = (sys.version_info[:2], tuple(sorted(set(entries))))
    with contextlib.suppress(TypeError):  # (not weak-referenceable: computed each time)
        _STAMPS[code] = (gen, stamp)
    return stamp


def check_code_stamp(stamp: Stamp | None, node: str) -> None:
    """Raise :class:`StaleCodeError` if this process's copies differ from ``stamp``'s."""
    if not stamp or stamp[0] != sys.version_info[:2]:
        return
    differ = []
    for module, qualname, digest in stamp[1]:
        obj = _lookup(module, qualname)
        if obj is None or _digest(obj) != digest:
            differ.append(f"{module}.{qualname}")
    if differ:
        raise StaleCodeError(
            f"node {node!r}: this worker's copy of {', '.join(differ)} is not the code the run "
            "keyed (its module was edited after the worker imported it, or the worker's machine "
            "has another version of it); the node was not run. Restart the workers with the "
            "run's code (etherealfabric celery-worker, dask worker) and run again"
        )


def _lookup(module: str, qualname: str) -> Any:
    try:
        obj: Any = sys.modules.get(module) or importlib.import_module(module)
        for name in qualname.split("."):
            obj = getattr(obj, name)
    except Exception:
        return None
    return obj


#: object -> (its code object, or None for a class; its digest): a worker checks the same
#: functions for every task it runs, and hashes each once (again if its code is replaced)
_DIGESTS: weakref.WeakKeyDictionary[Any, tuple[object, str]] = weakref.WeakKeyDictionary()


def _digest(obj: Any) -> str:
    code = None if isinstance(obj, type) else getattr(obj, "__code__", None)
    try:
        found = _DIGESTS.get(obj)
    except TypeError:  # (not weak-referenceable)
        found = None
    if found is not None and found[0] is code:
        return found[1]
    if isinstance(obj, type):
        digest = class_bytecode(obj)
    elif isinstance(code, types.CodeType):
        digest = code_digest(code)
    else:
        return ""
    with contextlib.suppress(TypeError):
        _DIGESTS[obj] = (code, digest)
    return digest
