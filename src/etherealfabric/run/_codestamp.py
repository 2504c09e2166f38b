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

The same goes for the data the key read in such modules (``config.THRESHOLD``): a worker
process imports ``config`` afresh, so a value the driver set (``config.THRESHOLD = 0.9`` at the
top of the workflow file, which workers do not run) was keyed while the node computed with
the module's own (0.5), a wrong result cached for every backend. Its digest is in the stamp.
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

from ..backends._taskpickle import by_name, module_by_name
from ..errors import StaleCodeError
from ..hashing._fingerprint import generation, reached, read_bindings
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
    for binding in read_bindings(code):
        entry = _value_entry(binding.namespace, binding.name, binding.value())
        if entry is not None:
            entries.append(entry)
    stamp: Stamp = (sys.version_info[:2], tuple(sorted(set(entries))))
    with contextlib.suppress(TypeError):  # (not weak-referenceable: computed each time)
        _STAMPS[code] = (gen, stamp)
    return stamp


def check_code_stamp(stamp: Stamp | None, node: str) -> None:
    """Raise :class:`StaleCodeError` if this process's copies differ from ``stamp``'s."""
    if not stamp or stamp[0] != sys.version_info[:2]:
        return
    differ, values = [], []
    for module, qualname, digest in stamp[1]:
        if digest.startswith(_VALUE):  # data the key read in a module (see the docstring)
            found = _lookup(module, qualname)
            if _value_digest(found) != digest:
                values.append(f"{module}.{qualname}")
            continue
        obj = _lookup(module, qualname)
        if obj is None or _digest(obj) != digest:
            differ.append(f"{module}.{qualname}")
    if values:
        raise StaleCodeError(
            f"node {node!r}: {', '.join(values)} in this worker process is not the value the "
            "run keyed: the driver set it (at the top of the workflow file, say), which a "
            "worker process, importing the module afresh, does not do; the node was not run. "
            "Set it in the module itself, or pass it to the node as a parameter"
        )
    if differ:
        raise StaleCodeError(
            f"node {node!r}: this worker's copy of {', '.join(differ)} is not the code the run "
            "keyed (its module was edited after the worker imported it, or the worker's machine "
            "has another version of it); the node was not run. Restart the workers with the "
            "run's code (etherealfabric celery-worker, dask worker) and run again"
        )


_VALUE = "value:"
#: the values stamped: settings (THRESHOLD = 0.5, PATHS = ("a", "b")), not containers a
#: process fills as it goes (a cache, a counter: they differ between processes by design)
_SETTINGS = (bool, int, float, complex, str, bytes, type(None), tuple, frozenset)


def _value_entry(
    namespace: dict[str, Any], name: str, value: object
) -> tuple[str, str, str] | None:
    """``(module, name, digest)`` of a module global the key read, when the module travels by
    name (a worker has its own copy) and the value is data (code is stamped as code)."""
    module = namespace.get("__name__")
    if not isinstance(module, str) or not isinstance(value, _SETTINGS):
        return None  # (a dict, a list: often state a helper fills, a cache, a counter)
    found = sys.modules.get(module)
    if found is None or vars(found) is not namespace or not module_by_name(module):
        return None
    digest = _value_digest(value)
    return None if digest is None else (module, name, digest)


def _value_digest(value: object) -> str | None:
    from ..hashing._values import hash_value  # (a run that sends no task away never needs it)

    try:
        return _VALUE + hash_value(value)
    except Exception:  # a value that cannot be hashed: not stamped
        return None


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
