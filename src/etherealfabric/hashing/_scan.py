"""What a function's code reaches beyond plain names: imports in its body, and dynamic look-ups.

- :func:`body_imports`: the ``import`` statements anywhere in a function (nested code too),
  read from its bytecode (``IMPORT_NAME`` with its level and from-list), so they are found with
  or without source: ``import a.b`` → ``(0, "a.b", ())``, ``from .util import g`` →
  ``(1, "util", ("g",))``.
- :func:`expression_names`: the names a pandas expression string reads as ``@name``
  (``df.query("a > @LIMIT")``), to be followed like the names the code looks up.
- :func:`dynamic_lookups`: the calls whose target a fingerprint cannot know statically, found in
  the function's source: ``getattr(module, <computed>)``, ``importlib.import_module(<computed>)``,
  ``__import__(<computed>)``, ``eval``, ``exec``, ``globals()`` and reads of environment
  variables (any use of ``os.environ``, ``os.getenv`` or ``os.path.expandvars``, under any name bound to them:
  ``os.environ[...]``, ``.get(...)``, ``dict(os.environ)``, ``.items()``...) (a ``getattr`` on a
  library module is covered by its package's version, and one on any other object by the
  object's class). The module of a ``getattr`` may also be ``sys.modules[__name__]``,
  ``sys.modules["pkg"]`` or ``__import__("pkg")``. Each is a :class:`Lookup`
  with its text and ``file:line``. The same calls with constant arguments are not dynamic
  (``getattr(helpers, "double")`` or ``getattr(helpers, NAME)`` with a global ``NAME = "double"``
  names ``double``; ``import_module("pkg.util")`` imports it): they come back as names and
  modules to follow. The other ways of reading a module's attribute by its name are read as
  ``getattr`` is: ``module.__getattribute__(name)``, ``module.__dict__[name]`` and
  ``vars(module)[name]`` (and their ``.get(name)``), ``operator.attrgetter(name)(module)`` and
  ``operator.methodcaller(name)(module)``; a module's namespace used whole
  (``vars(module).items()``) is uncovered, and so is ``sys.modules[<computed>].NAME``, while
  ``sys.modules["pkg"]`` anywhere is followed as the module ``pkg``. The names an
  ``attrgetter``/``methodcaller`` held by a global, a closure cell or a default reads (``GET =
  operator.attrgetter("FACTOR")``) come back as names to follow too.

The source is parsed only when the code names one of these functions, so most functions cost
one set intersection (and one pass over the globals it names) here.
"""

from __future__ import annotations

import ast
import contextlib
import dis
import operator
import os
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

from ._modreads import (
    Lookup,
    Lookups,
    Scope,
    classify,
    is_bound,
    local_names,
    module_read,
    reading,
)
from ._packages import is_stdlib
from ._source import code_file, source_statements
from ._usercode import is_user_top

__all__ = [
    "ARGV_READ",
    "CLOCK_READ",
    "ENVIRONMENT_READ",
    "GLOBAL_DRAW",
    "GLOBAL_STORE",
    "HELPER_READS",
    "LIBRARY_SETTING",
    "OWN_CODE_READS",
    "Lookup",
    "Lookups",
    "all_names",
    "body_imports",
    "display_path",
    "dynamic_lookups",
    "expression_names",
    "global_stores",
    "instruction_line",
]

_IMPORT_NAME = dis.opmap["IMPORT_NAME"]
#: how a read of an environment variable is marked among the uncovered constructs
ENVIRONMENT_READ = "(an environment variable)"
#: how a read of the command line (``sys.argv``) is marked among them
ARGV_READ = "(a command-line argument)"
#: how an assignment to a module global (``global X; X = ...``) is marked among them
GLOBAL_STORE = "(assigns a module global: other nodes that read it get another value when this node is a cache hit, which does not run it; return the value instead)"
#: how a draw from a process's global random generator is marked among them
GLOBAL_DRAW = "(the process's global random generator: what it draws depends on a seed set elsewhere, which worker processes do not run, and on the draws before it; draw from rng = np.random.default_rng(seed) made in the node, seed a parameter)"
#: how a read of the clock (``date.today()``, ``datetime.now()``) is marked among them
CLOCK_READ = "(the clock: the result depends on the day it runs, which the key does not hold; pass the date in as a parameter, e.g. a workflow parameter that defaults to today)"
#: how a change of a library's process-wide settings (``pd.set_option``) is marked among them
LIBRARY_SETTING = "(a library's process-wide setting: the nodes that run after this one in the process see it only when it runs, not when it is a cache hit; set it where the workflow is built, or in each node that needs it)"
#: the marks of what is warned about only in the node's own code and in the helpers it reaches
#: directly (a helper may be reached through a mere attribute name: ``ctx.spark`` and a global
#: ``spark``)
OWN_CODE_READS = (
    ENVIRONMENT_READ,
    ARGV_READ,
    GLOBAL_STORE,
    GLOBAL_DRAW,
    CLOCK_READ,
    LIBRARY_SETTING,
)
#: those of them a helper reached directly is warned about (not an assignment to a module
#: global: a helper may keep a module-level cache of its own)
HELPER_READS = (ENVIRONMENT_READ, ARGV_READ, GLOBAL_DRAW, CLOCK_READ)
_CONST_LOADS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})
_TRIGGERS = frozenset(
    {
        "getattr",
        "import_module",
        "__import__",
        "eval",
        "exec",
        "globals",
        "environ",
        "getenv",
        "expandvars",
        "argv",
        *("modules", "__getattribute__", "__dict__", "vars", "attrgetter", "methodcaller"),
    }
)
#: those named as uncovered when the function has no source (a getattr, or a read of a
#: module's attribute by name, cannot be told from the same call on any other object)
_SOURCELESS = frozenset(
    {"import_module", "__import__", "eval", "exec", "globals", "environ", "getenv", "expandvars"}
) | {"argv"}
#: operator's callables that read an attribute of what they are applied to, by name
_GETTERS = (operator.attrgetter, operator.methodcaller)


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


#: ``@name`` in a pandas expression (``df.query("a > @LIMIT")``); not ``user@example.com``
#: (a pattern re compiles, and caches, the first time a function calls ``query``/``eval``)
_EXPRESSION_NAME = r"(?<![\w@.])@([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
_EXPRESSION_CALLS = frozenset({"query", "eval"})


def expression_names(code: types.CodeType, doc: object = None) -> tuple[str, ...]:
    """The names written ``@name`` (``@module.NAME``: both) in the string constants of ``code``
    (and its nested code) when it calls ``query`` or ``eval`` (pandas' ``df.query``, ``df.eval``, ``pd.eval`` read
    them from the caller's variables); ``doc``, the docstring, is left out."""
    if _EXPRESSION_CALLS.isdisjoint(all_names(code)):
        return ()
    found: dict[str, None] = {}
    stack = [code]
    while stack:
        for const in stack.pop().co_consts:
            if isinstance(const, types.CodeType):
                stack.append(const)
            elif isinstance(const, (tuple, frozenset)):  # ("a > @X", "b < @Y")
                texts = [c for c in const if isinstance(c, str) and "@" in c]
                found.update(
                    dict.fromkeys(n for t in texts for n in re.findall(_EXPRESSION_NAME, t))
                )
            elif isinstance(const, str) and "@" in const and const != doc:
                found.update(dict.fromkeys(re.findall(_EXPRESSION_NAME, const)))
    return tuple(dict.fromkeys(part for name in found for part in name.split(".")))


def all_names(code: types.CodeType) -> set[str]:
    """The names ``code`` and its nested code look up (``co_names``)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= all_names(const)
    return names


def dynamic_lookups(fn: types.FunctionType, code_names: tuple[str, ...]) -> Lookups:
    """The dynamic constructs in ``fn`` (see the module docstring); empty if none is named."""
    found = Lookups()
    namespace = fn.__globals__
    environment = _bound_reads(fn, code_names, found)
    if _TRIGGERS.isdisjoint(code_names) and not environment:
        return found.unique()
    parsed = source_statements(fn)
    where = display_path(code_file(fn))
    if parsed is None:  # no source: name the construct, at the function's first line
        for name in sorted(_SOURCELESS.intersection(code_names)):
            found.uncovered.append(Lookup(f"{name}(...)", f"{where}:{fn.__code__.co_firstlineno}"))
        return found.unique()
    statements, first_line = parsed
    nodes = [n for s in statements for n in ast.walk(s)]
    imported = {
        _bound_name(a, n)
        for n in nodes
        if isinstance(n, _IMPORTS) and _maybe_user(n)
        for a in n.names
    }
    scope = Scope(namespace, imported, code_names, local_names(fn.__code__))
    for node in (n for n in nodes if isinstance(n, ast.Call)):
        line = f"{where}:{first_line + node.lineno - 1}"
        classify(node, scope, line, found)
    parents = {child: parent for parent in nodes for child in ast.iter_child_nodes(parent)}
    for each in nodes:
        if isinstance(each, (ast.Call, ast.Subscript, ast.Attribute)):
            line = f"{where}:{first_line + getattr(each, 'lineno', 1) - 1}"
            module_read(each, scope, parents, line, found)
        read = _environment_read(each, scope, parents)
        if read is not None:
            line = f"{where}:{first_line + getattr(each, 'lineno', 1) - 1}"
            found.uncovered.append(Lookup(read, line))
    return found.unique()


def _bound_reads(fn: types.FunctionType, code_names: tuple[str, ...], found: Lookups) -> bool:
    """Whether the code names a global bound to ``os.environ``, ``os.getenv`` or ``sys.argv``
    (an alias); the names an ``operator.attrgetter``/``methodcaller`` it holds (in a global it
    names, a closure cell or a default) reads go to ``found.names``: ``GET(module)`` reads
    them of whatever it is applied to."""
    namespace, environment = fn.__globals__, False
    for n in code_names:  # one look-up a name: the code of most functions names nothing here
        value = namespace.get(n)
        if value is None:
            continue
        if (
            value is os.environ
            or value is os.getenv
            or value is os.path.expandvars
            or value is sys.argv
        ):
            environment = True
        elif type(value) in _GETTERS:  # the type only: a proxy's __class__ is not asked
            found.names += _getter_names(value)
    for value in _held_values(fn):
        if type(value) in _GETTERS:
            found.names += _getter_names(value)
    return environment


def _held_values(fn: types.FunctionType) -> list[object]:
    """What ``fn``'s closure cells and defaults hold (nothing, for most functions)."""
    held: list[object] = [*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()]
    for cell in fn.__closure__ or ():
        with contextlib.suppress(ValueError):  # an empty cell
            held.append(cell.cell_contents)
    return held


def _getter_names(getter: object) -> list[str]:
    """The attribute names an ``operator.attrgetter`` (each part of ``"a.b"``) or
    ``operator.methodcaller`` reads, as its ``__reduce__`` gives them."""
    try:
        maker, args = getter.__reduce__()[:2]  # type: ignore[misc,str-unpack,unused-ignore]
    except Exception:
        return []
    if isinstance(getter, operator.methodcaller):  # with keywords: partial(methodcaller, name)
        args = (*getattr(maker, "args", ()), *args)[:1]
    names = [a for a in args if isinstance(a, str)]
    return [part for name in names for part in name.split(".")]


_STORES = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})
_STORE_OPS = frozenset(dis.opmap[name] for name in _STORES)


def global_stores(fn: types.FunctionType) -> list[Lookup]:
    """The module globals ``fn``'s code (nested code too) assigns or deletes (``global X``),
    each once, at its first line: its effect is lost when the node is a cache hit."""
    where = display_path(code_file(fn))
    found: dict[str, int] = {}
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        if not _STORE_OPS.isdisjoint(code.co_code[::2]):  # opcodes sit at even offsets
            line = code.co_firstlineno
            for ins in dis.get_instructions(code):
                line = instruction_line(ins, line)
                if ins.opname in _STORES:
                    found[str(ins.argval)] = min(found.get(str(ins.argval), line), line)
    return [Lookup(f"global {n} {GLOBAL_STORE}", f"{where}:{found[n]}") for n in sorted(found)]


def instruction_line(ins: dis.Instruction, current: int) -> int:
    """The source line of ``ins`` (``positions`` from Python 3.11, else ``starts_line``), or
    ``current`` when it starts none."""
    line = getattr(getattr(ins, "positions", None), "lineno", None)
    if line is None:
        starts = getattr(ins, "starts_line", None)
        line = starts if isinstance(starts, int) and not isinstance(starts, bool) else None
    return line or current


def _environment_read(node: ast.AST, scope: Scope, parents: dict[ast.AST, ast.AST]) -> str | None:
    """The expression that reads the environment through ``node``, as written, if ``node`` is
    ``os.environ`` or ``os.getenv`` (or a name bound to either, ``environ``/``getenv`` imported
    from os): ``os.environ['X']``, ``os.environ.get(X)``, ``os.getenv(X)``, but also
    ``dict(os.environ)``, ``os.environ.items()``, ``'X' in os.environ``, ``ENV = os.environ``:
    what the node reads there is not in its key; also ``sys.argv`` (the command line). The
    text ends with the mark of what it reads (:data:`ENVIRONMENT_READ`, :data:`ARGV_READ`).
    None for anything else."""
    if isinstance(node, ast.Name) and node.id in scope.local:
        return None
    if not isinstance(node, (ast.Name, ast.Attribute)) or not isinstance(node.ctx, ast.Load):
        return None
    if (
        _is_os_attr(node, scope.namespace, "environ")
        or _is_os_attr(node, scope.namespace, "getenv")
        or _is_expandvars(node, scope.namespace)
    ):
        return f"{ast.unparse(reading(node, parents))} {ENVIRONMENT_READ}"
    if _is_sys_argv(node, scope.namespace):
        return f"{ast.unparse(reading(node, parents))} {ARGV_READ}"
    return None


def _is_expandvars(expr: ast.AST, namespace: dict[str, Any]) -> bool:
    """``os.path.expandvars`` (``"$DATA/x.csv"``: an environment read), through ``os.path``
    or an alias of ``os.path``, or a name bound to it."""
    if isinstance(expr, ast.Attribute) and expr.attr == "expandvars":
        inner = expr.value
        if isinstance(inner, ast.Attribute) and inner.attr == "path":
            return _is_os(inner.value, namespace)
        return is_bound(inner, namespace, os.path, "path")
    return is_bound(expr, namespace, os.path.expandvars, "expandvars")


def _is_sys_argv(expr: ast.AST, namespace: dict[str, Any]) -> bool:
    """``sys.argv`` (``sys`` or an alias of it), or a name bound to it (``from sys import
    argv``), or ``argv`` unbound (imported in the body)."""
    if isinstance(expr, ast.Attribute) and expr.attr == "argv":
        return is_bound(expr.value, namespace, sys, "sys")
    return is_bound(expr, namespace, sys.argv, "argv")


def _is_os_attr(expr: ast.AST, namespace: dict[str, Any], attr: str) -> bool:
    """``os.<attr>`` (``os`` or an alias of it), or a name bound to it (``from os import
    getenv as read``), or ``attr`` unbound (imported in the body)."""
    if isinstance(expr, ast.Attribute) and expr.attr == attr:
        return _is_os(expr.value, namespace)
    return is_bound(expr, namespace, getattr(os, attr), attr)


def _is_os(expr: ast.expr, namespace: dict[str, Any]) -> bool:
    """The name ``os`` (or an alias of it) bound to the os module, or imported in the body."""
    return is_bound(expr, namespace, os, "os")


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


def display_path(path: str) -> str:
    """A file as messages show it: relative to the working folder when under it."""
    if path.startswith("<"):
        return path
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith("..") else relative
