"""Is the source on disk the code that runs? A file edited after its module was loaded.

A key is made from a function's source, read from its file when the key is computed. A file
edited while a run goes on (the next node's key is computed later), or in a notebook after
``import helpers`` (the kernel runs the imported code), gave the key of the new source to a
result of the old code: the next process, running the new code, was served the old result.

The check is cheap where nothing was edited: only a file modified since this process started
is looked at, and then the file as it is now is compiled (once) and the definition at the
function's qualified name (each own method of a class) compared with the code object that runs
(bytecode, constants, names: not line numbers).
A function whose source no longer compiles to its code is keyed by its bytecode instead (the
code that runs), with a warning saying to restart or reload.
"""

from __future__ import annotations

import functools
import importlib.machinery
import os
import sys
import time
import types
from typing import Any

__all__ = ["edited_since_loaded"]


def _process_started() -> float:
    """When this process started (seconds since the epoch): from /proc where there is one,
    else now (when this module is imported: the engine is imported before any workflow)."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            ticks = int(fh.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK") - 1.0  # (btime is whole seconds)
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


_STARTED = _process_started()
#: the loaders of a module run as its file is (a script's, an import's, the CLI's)
_PLAIN_LOADERS = (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)


def edited_since_loaded(obj: Any) -> bool:
    """Whether the code of the function or class ``obj`` that runs is not what its file holds
    now: the file was modified since this process started, and compiled as it is now it has
    no definition at the same place (qualified name) that compiles to the same code (each own
    method of a class; code made elsewhere, as a dataclass's ``__init__``, is not looked at)."""
    for fn in _own_functions(obj):
        path = fn.__code__.co_filename
        mtime_ns, size = _stamp(path)  # (one stat: modified since the process started?)
        if mtime_ns and mtime_ns >= _STARTED * 1e9 and _compiled_as_written(fn):
            compiled = _compiled(path, mtime_ns, size)
            if compiled is None or not _defined_alike(compiled, fn):
                return True
    return False


def _compiled_as_written(fn: types.FunctionType) -> bool:
    """Whether ``fn``'s module ran its file as Python compiles it: not through an import hook
    that rewrites the code (pytest compiles test modules with its assertions rewritten: their
    bytecode never matches the file's, edited or not). Such a module is judged by its source,
    as before this check."""
    loader = getattr(sys.modules.get(fn.__module__), "__loader__", None)
    return loader is None or isinstance(loader, _PLAIN_LOADERS)


def _stamp(path: str) -> tuple[int, int]:
    if not os.path.isabs(path):  # "<string>", "<stdin>": no file
        return 0, 0
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return 0, 0
    return found.st_mtime_ns, found.st_size


@functools.lru_cache(maxsize=64)
def _compiled(path: str, mtime_ns: int, size: int) -> types.CodeType | None:
    """The module code of the file ``path`` as it is now (None: unreadable, or no longer
    valid Python), with the compiler's context of an import: its own ``__future__`` imports,
    which names are imported modules, how private names mangle."""
    try:
        with open(path, "rb") as fh:
            return compile(fh.read(), path, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError):
        return None


def _own_functions(obj: Any) -> list[types.FunctionType]:
    """``obj`` (a function), or the methods written in the body of the class ``obj``: not
    lambdas (found by position), nor what a decorator made (a ``functools.wraps`` wrapper, a
    dataclass's ``__init__``: their code is not at their name)."""
    values = vars(obj).values() if isinstance(obj, type) else [obj]
    return [
        fn
        for fn in map(_unwrapped, values)
        if isinstance(fn, types.FunctionType)
        and fn.__module__ == obj.__module__
        and fn.__code__.co_name == fn.__qualname__.rsplit(".", 1)[-1] != "<lambda>"
    ]


def _unwrapped(value: Any) -> Any:
    value = getattr(value, "__func__", value)  # (a classmethod, staticmethod)
    for _ in range(100):
        inner = getattr(value, "__wrapped__", None)
        if inner is None:
            break
        value = inner
    return value


def _defined_alike(module: types.CodeType, fn: types.FunctionType) -> bool:
    """Whether a definition at ``fn``'s qualified name in ``module`` compiles to its code."""
    path = [part for part in fn.__qualname__.split(".") if part != "<locals>"]
    found = [module]
    for name in path:
        found = [
            const
            for code in found
            for const in code.co_consts
            if isinstance(const, types.CodeType) and const.co_name == name
        ]
        if not found:
            return False
    shape = _shape(fn.__code__)
    return any(_shape(code) == shape for code in found)


def _shape(code: types.CodeType) -> tuple[Any, ...]:
    """What a code object does, without where it is (line numbers, file, position)."""
    consts = tuple(
        _shape(c) if isinstance(c, types.CodeType) else repr(c) if isinstance(c, float) else c
        for c in code.co_consts
    )
    return (code.co_code, consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_cellvars, code.co_argcount, code.co_kwonlyargcount, code.co_flags)  # fmt: skip
