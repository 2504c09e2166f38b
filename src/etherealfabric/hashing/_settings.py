"""Library settings made at the top level of a user module: part of the keys of its code.

A workflow file or a helper module often sets a library up once, as it is imported::

    np.random.seed(SEED)
    pd.set_option("display.precision", 3)
    pd.options.mode.copy_on_write = True

What a node of that module computes then depends on a statement that is in no function: an
edit of it (``SEED = 2``) was a stale hit. So the statements at a module's top level that call,
or assign into, something of a library (an installed package or the standard library: the
first name of the statement is bound to one) count, in order, as the part
``module.<settings>`` of every piece of code defined in that module, with the values of the
module's globals they name (``SEED``). Left out, as they do not change what nodes compute:
calls of builtins (``print``), of ``logging``, ``warnings`` and ``sys`` (``sys.path``), and of
EtherealFabric; statements of user code (``setup()``: its own code is not followed here), and
anything under ``if __name__ == "__main__":`` or in a ``with`` block (the workflow's).

Read from the module's file (once per file version), so ``python flow.py``, ``etherealfabric
run flow.py`` and a worker see the same statements; a module without a file (a notebook) has
none.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
import types
from collections.abc import Mapping
from typing import Any

from ._astform import canonical_text
from ._builtins import hash_plain
from ._source import is_constant
from ._usercode import defined_in, is_user_code, is_user_module, module_label

__all__ = ["module_settings"]

#: libraries whose module-level calls set up the program, not what nodes compute
_QUIET = frozenset({"builtins", "logging", "warnings", "sys", "etherealfabric"})
#: (file, mtime_ns, size) -> the settings of the module in that file
_SEEN: dict[tuple[str, int, int], tuple[ast.stmt, ...]] = {}


def module_settings(obj: Any) -> tuple[tuple[str, str], ...]:
    """The part ``(module.<settings>, digest)`` of the module ``obj`` (a user function or
    class) is defined in, when that module's top level makes library settings; else none."""
    namespace = _namespace(obj)
    if namespace is None:
        return ()
    path = namespace.get("__file__")
    if not isinstance(path, str) or not path.endswith(".py"):
        return ()
    statements = _statements(path)
    if not statements:
        return ()
    found = [s for s in statements if _is_setting(s, namespace)]
    if not found:
        return ()
    values = sorted(
        (name, _value_digest(namespace[name]))
        for name in {n.id for s in found for n in ast.walk(s) if isinstance(n, ast.Name)}
        if name in namespace and is_constant(namespace[name])
    )
    label = module_label(str(namespace.get("__name__", "?")), namespace)
    digest = hash_plain(("settings", canonical_text(found), tuple(values)))
    return ((f"{label}.<settings>", digest),)


def _namespace(obj: Any) -> Mapping[str, Any] | None:
    found = defined_in(obj)
    if found is None and isinstance(obj, type):
        module = sys.modules.get(obj.__module__)
        found = vars(module) if module is not None else None
    return found


def _statements(path: str) -> tuple[ast.stmt, ...]:
    """The top-level expression statements and assignments of the module at ``path``."""
    try:
        info = os.stat(path)
        key = (path, info.st_mtime_ns, info.st_size)
        if key not in _SEEN:
            # through linecache, as the code's own source is read: a node's read tracking
            # takes its file for code, not for data the node read (a worker process)
            linecache.checkcache(path)
            tree = ast.parse("".join(linecache.getlines(path)), path)
            kept = tuple(
                s for s in tree.body if isinstance(s, (ast.Expr, ast.Assign, ast.AugAssign))
            )
            _SEEN[key] = kept
        return _SEEN[key]
    except (OSError, SyntaxError, ValueError):
        return ()


def _is_setting(statement: ast.stmt, namespace: Mapping[str, Any]) -> bool:
    """A call of a library's (``np.random.seed(1)``), or an assignment into one
    (``pd.options.display.precision = 3``, ``os.environ["MODE"] = "x"``)."""
    if isinstance(statement, ast.Expr):
        if not isinstance(statement.value, ast.Call):
            return False
        roots = {_root_name(statement.value.func)}
    else:
        targets = (
            statement.targets
            if isinstance(statement, ast.Assign)
            else [statement.target]
            if isinstance(statement, ast.AugAssign)
            else []
        )
        if not targets or any(
            isinstance(t, ast.Name) for t in targets
        ):  # a global of the module: a value
            return False
        roots = {_root_name(t) for t in targets}
    return any(r is not None and r in namespace and _is_library(namespace[r]) for r in roots)


def _root_name(node: ast.expr) -> str | None:
    """The first name of ``a.b(c).d[e]``: ``a``."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_library(value: object) -> bool:
    """Whether ``value`` (a module, function, class or other object) belongs to a library whose
    settings count: not user code, nor one of :data:`_QUIET`."""
    module: object
    if isinstance(value, types.ModuleType):
        if is_user_module(value):
            return False
        module = value.__name__
    else:
        owner = value if isinstance(value, (type, types.FunctionType)) else type(value)
        if is_user_code(owner) or is_user_code(value):
            return False
        module = getattr(value, "__module__", None) or getattr(owner, "__module__", None)
    return isinstance(module, str) and module.partition(".")[0] not in _QUIET


def _value_digest(value: object) -> str:
    try:
        return hash_plain(value)
    except Exception:  # a constant with no plain encoding: its type
        return type(value).__qualname__
