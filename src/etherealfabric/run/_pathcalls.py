"""The bare words a node's code makes paths (run/_texts.py): ``Path("data")``,
``os.listdir("data")``.

A bare word (``"data"``: no ``/``, no ``.``) is never taken for a path where it stands alone: it
is a key, a label, a column far more often than a folder. But a word pathlib holds is a path
whatever its text (``Path("./data")`` is ``Path("data")``, whose text is ``data``), and so is one
the code hands to a function that takes a path: its string constant (or the text of a global it
reads) passed first to a ``pathlib`` class (``Path("data").glob("*.parquet")``), or to a
function that lists a folder: ``os.listdir``, ``os.scandir``, ``os.walk``, ``glob.glob`` or
``glob.iglob`` (or the same imported by name, ``from os import listdir``). Found in the
bytecode (any Python version, with or without source), the callee resolved through the
function's globals, so a method of the same name (``tree.walk("data")``) is no path. Each is
given as :func:`path_text` makes it: ``./data``, a path relative to the working folder.

Not a word a path is only built from (``os.path.join("data", name)``, ``base / "data"``): a
node that builds a path (to return it, to write there) need not read it, and its base may be
anything (``Path(__file__).parent``); a path built at run time and read natively is not seen
(docs/concepts.md: pass it as a ``File``/``Directory`` argument).
"""

from __future__ import annotations

import dis
import os
import sys
from collections.abc import Iterator
from pathlib import PurePath
from types import CodeType, FunctionType, ModuleType
from typing import Any

from ..hashing._usercode import is_user_code

__all__ = ["path_arguments", "path_text"]


def path_text(path: PurePath | str) -> str:
    """The text of a path as :func:`etherealfabric.run._reads.named_paths` takes it: a bare word
    (``Path("./data")`` is ``data``, which pathlib normalizes) gets ``./`` before it, so it is
    a path (a bare word in any other text, ``"data"``, is not)."""
    text = os.fspath(path)
    if text and "." not in text and os.sep not in text and not (os.altsep and os.altsep in text):
        return os.curdir + os.sep + text
    return text


#: the functions whose first argument is a path (a ``pathlib`` class too: :func:`_takes_path`;
#: ``glob``'s, when imported: not here, a rare module a warm run need not import)
_PATH_TAKERS = (os.listdir, os.scandir, os.walk)
_GLOBS = ("glob", "iglob")
#: instructions between a callee's load and its first argument's (none on most versions)
_BETWEEN = frozenset({"PUSH_NULL", "NOP", "CACHE", "EXTENDED_ARG"})
_NAME_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_ATTR_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_NOTHING = object()


def path_arguments(code: Any) -> Iterator[str]:
    """The bare words ``code`` (a function, or a class node: its methods) makes paths (see the
    module docstring), each as :func:`path_text` gives it; its nested code (comprehensions,
    inner functions) too."""
    for fn in _functions(code):
        namespace = getattr(fn, "__globals__", None)
        if not isinstance(namespace, dict) or not isinstance(fn.__code__, CodeType):
            continue
        stack = [fn.__code__]
        while stack:
            current = stack.pop()
            stack += [c for c in current.co_consts if isinstance(c, CodeType)]
            yield from _scan(current, namespace)


def _functions(code: Any) -> list[FunctionType]:
    """``code`` itself, or a class node's methods (of its user classes: through its bases)."""
    if isinstance(code, FunctionType):
        return [code]
    if not isinstance(code, type):
        return []
    members = [
        getattr(member, "__func__", member)  # a staticmethod's, a classmethod's
        for klass in code.__mro__
        if klass is code or is_user_code(klass)
        for member in vars(klass).values()
    ]
    return [m for m in members if isinstance(m, FunctionType)]


def _scan(code: CodeType, namespace: dict[str, Any]) -> Iterator[str]:
    callee: Any = _NOTHING  # what the loads just before evaluate to, when known
    for ins in dis.get_instructions(code):
        op = ins.opname
        if op in _BETWEEN:
            continue
        text: str | None = None
        if op == "LOAD_CONST" and isinstance(ins.argval, str):
            text = ins.argval
        elif op in _NAME_LOADS and isinstance(ins.argval, str):
            value = _global(namespace, ins.argval)
            text = value if isinstance(value, str) else None
        if (
            text is not None
            and callee is not _NOTHING
            and _takes_path(callee)
            and (made := path_text(text)) != text
        ):
            yield made  # ``Path("data")``, ``os.listdir(DATA)`` with ``DATA = "data"``
        if op in _NAME_LOADS and isinstance(ins.argval, str):
            callee = _global(namespace, ins.argval)
        elif op in _ATTR_LOADS and isinstance(callee, ModuleType):
            callee = getattr(callee, str(ins.argval), _NOTHING)  # ``pathlib.Path``
        else:
            callee = _NOTHING


def _global(namespace: dict[str, Any], name: str) -> Any:
    if name in namespace:
        return namespace[name]
    builtins = namespace.get("__builtins__")
    if isinstance(builtins, ModuleType):
        builtins = vars(builtins)
    return builtins.get(name, _NOTHING) if isinstance(builtins, dict) else _NOTHING


def _takes_path(callee: Any) -> bool:
    if isinstance(callee, type):
        return issubclass(callee, PurePath)
    if any(callee is f for f in _PATH_TAKERS):
        return True
    module = sys.modules.get("glob")  # (the code reads it: imported already)
    return module is not None and any(callee is getattr(module, n, None) for n in _GLOBS)
