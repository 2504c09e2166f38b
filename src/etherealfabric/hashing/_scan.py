"""What a function's code reaches beyond plain names: imports in its body, and dynamic look-ups.

- :func:`body_imports`: the ``import`` statements anywhere in a function (nested code too),
  read from its bytecode (``IMPORT_NAME`` with its level and from-list), so they are found with
  or without source: ``import a.b`` → ``(0, "a.b", ())``, ``from .util import g`` →
  ``(1, "util", ("g",))``.
- :func:`dynamic_lookups`: the calls whose target a fingerprint cannot know statically, found in
  the function's source: ``getattr(module, <computed>)``, ``importlib.import_module(<computed>)``,
  ``__import__(<computed>)``, ``eval``, ``exec``, ``globals()`` and reads of environment
  variables (``os.environ[...]``, ``os.environ.get(...)``, ``os.getenv(...)``) (a ``getattr`` on a library
  module is covered by its package's version, and one on any other object by the object's
  class). Each is a :class:`Lookup`
  with its text and ``file:line``. The same calls with constant arguments are not dynamic
  (``getattr(helpers, "double")`` names ``double``; ``import_module("pkg.util")`` imports it):
  they come back as names and modules to follow.

The source is parsed only when the code names one of these functions, so most functions cost
one set intersection here.
"""

from __future__ import annotations

import ast
import dis
import os
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._packages import is_stdlib
from ._source import source_statements
from ._usercode import is_user_module, is_user_top

__all__ = [
    "ENVIRONMENT_READ",
    "Lookup",
    "Lookups",
    "body_imports",
    "display_path",
    "dynamic_lookups",
]

_IMPORT_NAME = dis.opmap["IMPORT_NAME"]
#: how a read of an environment variable is marked among the uncovered constructs
ENVIRONMENT_READ = "(an environment variable)"
_CONST_LOADS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})
_TRIGGERS = frozenset(
    {"getattr", "import_module", "__import__", "eval", "exec", "globals", "environ", "getenv"}
)


@dataclass(frozen=True)
class Lookup:
    """One dynamic construct: what it is (``eval(...)``) and where (``flow.py:12``)."""

    construct: str
    where: str

    def __str__(self) -> str:
        return f"{self.construct} at {self.where}"


@dataclass
class Lookups:
    """What :func:`dynamic_lookups` found in one function."""

    uncovered: list[Lookup] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # getattr(module, "name") constants
    modules: list[str] = field(default_factory=list)  # import_module("constant") arguments


def body_imports(code: types.CodeType) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """``(level, module, fromlist)`` of each import in ``code`` and its nested code."""
    if _IMPORT_NAME in code.co_code[::2]:  # word code: opcodes sit at even offsets
        consts: list[Any] = []
        for ins in dis.get_instructions(code):
            if ins.opname == "IMPORT_NAME":
                level, fromlist = (consts[-2:] if len(consts) >= 2 else [0, None])[:2]
                names = tuple(fromlist) if isinstance(fromlist, tuple) else ()
                yield (level if isinstance(level, int) else 0), str(ins.argval), names
            consts = [*consts[-1:], ins.argval] if ins.opname in _CONST_LOADS else []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from body_imports(const)


def dynamic_lookups(fn: types.FunctionType, code_names: tuple[str, ...]) -> Lookups:
    """The dynamic constructs in ``fn`` (see the module docstring); empty if none is named."""
    found = Lookups()
    if _TRIGGERS.isdisjoint(code_names):
        return found
    parsed = source_statements(fn)
    where = display_path(fn.__code__.co_filename)
    if parsed is None:  # no source: name the construct, at the function's first line
        for name in sorted(_TRIGGERS.intersection(code_names) - {"getattr"}):
            found.uncovered.append(Lookup(f"{name}(...)", f"{where}:{fn.__code__.co_firstlineno}"))
        return found
    statements, first_line = parsed
    nodes = [n for s in statements for n in ast.walk(s)]
    imported = {
        _bound_name(a, n)
        for n in nodes
        if isinstance(n, _IMPORTS) and _maybe_user(n)
        for a in n.names
    }
    namespace = fn.__globals__
    for node in (n for n in nodes if isinstance(n, ast.Call)):
        line = f"{where}:{first_line + node.lineno - 1}"
        _classify(node, namespace, imported, line, found)
    for each in nodes:
        read = _environment_read(each, namespace)
        if read is not None:
            line = f"{where}:{first_line + getattr(each, 'lineno', 1) - 1}"
            found.uncovered.append(Lookup(f"{read} {ENVIRONMENT_READ}", line))
    return found


def _environment_read(node: ast.AST, namespace: dict[str, Any]) -> str | None:
    """``os.environ[X]``, ``os.environ.get(X)``, ``os.getenv(X)`` (or ``environ``/``getenv``
    imported from os) as written, else None: what the node reads there is not in its key."""
    if isinstance(node, ast.Subscript) and _is_environ(node.value, namespace):
        return ast.unparse(node)
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "get"
        and _is_environ(func.value, namespace)
    ):
        return ast.unparse(node)
    if isinstance(func, ast.Attribute) and func.attr == "getenv" and _is_os(func.value, namespace):
        return ast.unparse(node)
    if isinstance(func, ast.Name) and func.id == "getenv":
        return ast.unparse(node) if namespace.get("getenv", os.getenv) is os.getenv else None
    return None


def _is_environ(expr: ast.expr, namespace: dict[str, Any]) -> bool:
    if isinstance(expr, ast.Attribute) and expr.attr == "environ":
        return _is_os(expr.value, namespace)
    return (
        isinstance(expr, ast.Name)
        and expr.id == "environ"
        and namespace.get("environ", os.environ) is os.environ
    )


def _is_os(expr: ast.expr, namespace: dict[str, Any]) -> bool:
    """The name ``os`` (or an alias of it) bound to the os module, or imported in the body."""
    if not isinstance(expr, ast.Name):
        return False
    value = namespace.get(expr.id)
    return value is os or (value is None and expr.id == "os")


_IMPORTS = (ast.Import, ast.ImportFrom)


def _maybe_user(statement: ast.Import | ast.ImportFrom) -> bool:
    """Whether an import may bind a user module (not for the stdlib or a loaded library)."""
    if isinstance(statement, ast.ImportFrom) and statement.level:
        return True
    names = [a.name for a in statement.names] if isinstance(statement, ast.Import) else []
    tops = {n.partition(".")[0] for n in [*names, getattr(statement, "module", None) or ""] if n}
    return any(not is_stdlib(top) and is_user_top(top) for top in tops)


def _bound_name(alias: ast.alias, statement: ast.AST) -> str:
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0] if isinstance(statement, ast.Import) else alias.name


def _classify(
    call: ast.Call, namespace: dict[str, Any], imported: set[str], line: str, found: Lookups
) -> None:
    func, args = call.func, call.args
    name = func.id if isinstance(func, ast.Name) else None
    if name in ("eval", "exec", "globals") and name not in namespace:
        found.uncovered.append(Lookup(f"{name}(...)" if name != "globals" else "globals()", line))
    elif name == "getattr" and len(args) >= 2 and _is_module(args[0], namespace, imported):
        if isinstance(args[1], ast.Constant) and isinstance(args[1].value, str):
            found.names.append(args[1].value)
        else:
            found.uncovered.append(Lookup(f"getattr({ast.unparse(args[0])}, <computed>)", line))
    elif _is_import_call(func, namespace) and args:
        text = "__import__" if name == "__import__" else "importlib.import_module"
        if isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            if not args[0].value.startswith("."):
                found.modules.append(args[0].value)
        else:
            found.uncovered.append(Lookup(f"{text}(<computed>)", line))


def _is_module(expr: ast.expr, namespace: dict[str, Any], imported: set[str]) -> bool:
    """A name bound to a user module in the function's globals, or by an import in its body.

    A library module does not count: its package's version covers all its attributes.
    """
    if not isinstance(expr, ast.Name):
        return False
    value = namespace.get(expr.id)
    if isinstance(value, types.ModuleType):
        return is_user_module(value)
    return expr.id in imported


def _is_import_call(func: ast.expr, namespace: dict[str, Any]) -> bool:
    if isinstance(func, ast.Name):
        if func.id == "__import__":
            return "__import__" not in namespace
        target = namespace.get(func.id)
        return getattr(target, "__name__", None) == "import_module" and _from_importlib(target)
    if isinstance(func, ast.Attribute) and func.attr == "import_module":
        base = func.value
        return (
            isinstance(base, ast.Name)
            and getattr(namespace.get(base.id), "__name__", None) == "importlib"
        )
    return False


def _from_importlib(target: object) -> bool:
    return getattr(target, "__module__", None) == "importlib"


def display_path(path: str) -> str:
    """A file as messages show it: relative to the working folder when under it."""
    if path.startswith("<"):
        return path
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith("..") else relative
