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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._packages import is_stdlib
from ._source import code_file, source_statements
from ._usercode import is_user_module, is_user_top

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


@dataclass(frozen=True, eq=False)
class Lookup:
    """One dynamic construct: what it is (``eval(...)``) and where (``flow.py:12``)."""

    construct: str
    where: str

    def __str__(self) -> str:
        return f"{self.construct} at {self.where}"


@dataclass(eq=False)
class Lookups:
    """What :func:`dynamic_lookups` found in one function."""

    uncovered: list[Lookup] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # getattr(module, "name") constants
    modules: list[str] = field(default_factory=list)  # import_module("constant") arguments

    def unique(self) -> Lookups:
        """The same, each name and module once."""
        self.names[:] = dict.fromkeys(self.names)
        self.modules[:] = dict.fromkeys(self.modules)
        return self


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
    scope = _Scope(namespace, imported, code_names, _local_names(fn.__code__))
    for node in (n for n in nodes if isinstance(n, ast.Call)):
        line = f"{where}:{first_line + node.lineno - 1}"
        _classify(node, scope, line, found)
    parents = {child: parent for parent in nodes for child in ast.iter_child_nodes(parent)}
    for each in nodes:
        if isinstance(each, (ast.Call, ast.Subscript, ast.Attribute)):
            line = f"{where}:{first_line + getattr(each, 'lineno', 1) - 1}"
            _module_read(each, scope, parents, line, found)
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


def _environment_read(node: ast.AST, scope: _Scope, parents: dict[ast.AST, ast.AST]) -> str | None:
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
        return f"{ast.unparse(_reading(node, parents))} {ENVIRONMENT_READ}"
    if _is_sys_argv(node, scope.namespace):
        return f"{ast.unparse(_reading(node, parents))} {ARGV_READ}"
    return None


def _is_expandvars(expr: ast.AST, namespace: dict[str, Any]) -> bool:
    """``os.path.expandvars`` (``"$DATA/x.csv"``: an environment read), through ``os.path``
    or an alias of ``os.path``, or a name bound to it."""
    if isinstance(expr, ast.Attribute) and expr.attr == "expandvars":
        inner = expr.value
        if isinstance(inner, ast.Attribute) and inner.attr == "path":
            return _is_os(inner.value, namespace)
        return _is_bound(inner, namespace, os.path, "path")
    return _is_bound(expr, namespace, os.path.expandvars, "expandvars")


def _is_sys_argv(expr: ast.AST, namespace: dict[str, Any]) -> bool:
    """``sys.argv`` (``sys`` or an alias of it), or a name bound to it (``from sys import
    argv``), or ``argv`` unbound (imported in the body)."""
    if isinstance(expr, ast.Attribute) and expr.attr == "argv":
        return _is_bound(expr.value, namespace, sys, "sys")
    return _is_bound(expr, namespace, sys.argv, "argv")


def _reading(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST:
    """The expression around ``node`` that a message names: its subscripts, attributes and
    calls (``os.environ.get('X')``); a bare one, the call or comparison it is an argument of
    (``dict(os.environ)``)."""
    start = node
    while True:
        parent = parents.get(node)
        if parent is not None and _applies_to(parent, node):
            node = parent
        elif node is start and isinstance(parent, (ast.Call, ast.Compare)):
            return parent
        else:
            return node


def _applies_to(parent: ast.AST, node: ast.AST) -> bool:
    """``parent`` is ``node.attr``, ``node[...]`` or ``node(...)``."""
    if isinstance(parent, (ast.Attribute, ast.Subscript)):
        return parent.value is node
    return isinstance(parent, ast.Call) and parent.func is node


def _is_os_attr(expr: ast.AST, namespace: dict[str, Any], attr: str) -> bool:
    """``os.<attr>`` (``os`` or an alias of it), or a name bound to it (``from os import
    getenv as read``), or ``attr`` unbound (imported in the body)."""
    if isinstance(expr, ast.Attribute) and expr.attr == attr:
        return _is_os(expr.value, namespace)
    return _is_bound(expr, namespace, getattr(os, attr), attr)


def _is_os(expr: ast.expr, namespace: dict[str, Any]) -> bool:
    """The name ``os`` (or an alias of it) bound to the os module, or imported in the body."""
    return _is_bound(expr, namespace, os, "os")


def _is_bound(expr: ast.AST, namespace: dict[str, Any], module: object, name: str) -> bool:
    """A name bound to ``module`` in the globals, or ``name`` unbound (imported in the body)."""
    if not isinstance(expr, ast.Name):
        return False
    value = namespace.get(expr.id)
    return value is module or (value is None and expr.id == name)


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


@dataclass(frozen=True, eq=False)
class _Scope:
    """What the names in one function's source are bound to."""

    namespace: dict[str, Any]  # its globals
    imported: set[str]  # names its body's imports of user modules bind
    globals: tuple[str, ...]  # the names its code looks up outside itself
    local: frozenset[str]  # its local variables (and those of the code nested in it)


def _local_names(code: types.CodeType) -> frozenset[str]:
    names = {*code.co_varnames, *code.co_cellvars, *code.co_freevars}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _local_names(const)
    return frozenset(names)


def _classify(call: ast.Call, scope: _Scope, line: str, found: Lookups) -> None:
    func, args, namespace = call.func, call.args, scope.namespace
    name = func.id if isinstance(func, ast.Name) else None
    if name in ("eval", "exec", "globals") and name not in namespace:
        found.uncovered.append(Lookup(f"{name}(...)" if name != "globals" else "globals()", line))
    elif name == "getattr" and len(args) >= 2:
        first = ast.unparse(args[0])
        _attribute_of(args[0], args[1:2], scope, line, found, lambda t: f"getattr({first}, {t})")
    elif _is_import_call(func, namespace) and args:
        text = "__import__" if name == "__import__" else "importlib.import_module"
        named = _constant_text(args[0], scope)  # a literal, or a global str (keyed)
        if named is not None:
            if not named.startswith("."):
                found.modules.append(named)
        else:
            found.uncovered.append(Lookup(f"{text}(<computed>)", line))


def _attribute_of(
    module_expr: ast.expr, name_exprs: list[ast.expr], scope: _Scope, line: str,
    found: Lookups, text: Callable[[str], str],
) -> None:  # fmt: skip
    """A read of the attributes named by ``name_exprs`` of ``module_expr``, when that is a user
    module (see :func:`_module_of`): their names (and the module) are followed when they are
    constants; else the construct, written by ``text(<placeholder>)``, is uncovered."""
    module = _module_of(module_expr, scope)
    if module is None:
        return
    attrs = [_constant_text(e, scope) for e in name_exprs]
    if module == _COMPUTED or None in attrs:
        shown = "..." if module == _COMPUTED else "<computed>"
        found.uncovered.append(Lookup(text(shown), line))
        return
    found.names += [part for attr in attrs if attr is not None for part in attr.split(".")]
    if module:
        found.modules.append(module)


def _module_read(
    node: ast.Call | ast.Subscript | ast.Attribute, scope: _Scope,
    parents: dict[ast.AST, ast.AST], line: str, found: Lookups,
) -> None:  # fmt: skip
    """The reads of a module's attribute by a name that are not ``module.NAME`` nor
    ``getattr``: ``module.__getattribute__(name)``, ``module.__dict__[name]``,
    ``vars(module)[name]`` (and ``.get(name)``), ``operator.attrgetter(name)(module)``,
    ``operator.methodcaller(name)(module)``; ``sys.modules["pkg"]`` (the module followed) and
    ``sys.modules[<computed>].NAME``; a module's namespace used whole."""
    if isinstance(node, ast.Subscript):
        if isinstance(node.ctx, ast.Load):
            _subscript_read(node, scope, line, found)
        return
    if isinstance(node, ast.Attribute):
        inner = node.value
        if (
            isinstance(node.ctx, ast.Load)
            and isinstance(inner, ast.Subscript)
            and _is_sys_modules(inner.value, scope.namespace)
            and node.attr not in ("__dict__", "__getattribute__")  # read as such
        ):
            text = ast.unparse(node)
            _attribute_of(inner, [ast.Constant(node.attr)], scope, line, found, lambda t: text)
    else:
        _call_read(node, scope, line, found)
    if _namespace_of(node, scope) is not None:
        _whole_namespace(node, parents, line, found)


def _subscript_read(node: ast.Subscript, scope: _Scope, line: str, found: Lookups) -> None:
    """``sys.modules["pkg"]`` (the module to follow), ``vars(module)[name]`` and
    ``module.__dict__[name]``."""
    if _is_sys_modules(node.value, scope.namespace):
        _named_module(node.slice, scope, found)
        return
    space = _namespace_of(node.value, scope)
    if space is not None:
        whole = ast.unparse(node.value)
        _attribute_of(space, [node.slice], scope, line, found, lambda t: f"{whole}[{t}]")


def _call_read(call: ast.Call, scope: _Scope, line: str, found: Lookups) -> None:
    """``module.__getattribute__(name)`` (``object.__getattribute__(module, name)``),
    ``vars(module).get(name)``, ``module.__dict__.get(name)``, ``sys.modules.get("pkg")``,
    ``operator.attrgetter(name)(module)``; the names of any ``attrgetter``/``methodcaller``."""
    func, args = call.func, call.args
    if isinstance(func, ast.Attribute) and func.attr == "__getattribute__" and args:
        target, names = (func.value, args[:1]) if len(args) == 1 else (args[0], args[1:2])
        callee = ast.unparse(func)
        before = "" if len(args) == 1 else f"{ast.unparse(args[0])}, "
        _attribute_of(target, names, scope, line, found, lambda t: f"{callee}({before}{t})")
    elif isinstance(func, ast.Attribute) and func.attr == "get" and args:
        if _is_sys_modules(func.value, scope.namespace):
            _named_module(args[0], scope, found)
        elif (space := _namespace_of(func.value, scope)) is not None:
            whole = ast.unparse(func.value)
            _attribute_of(space, args[:1], scope, line, found, lambda t: f"{whole}.get({t})")
    elif isinstance(func, ast.Call) and args:  # attrgetter("NAME")(module)
        names = _getter_args(func, scope.namespace)
        if names:
            getter, applied = ast.unparse(func.func), ast.unparse(args[0])
            _attribute_of(args[0], names, scope, line, found, lambda t: f"{getter}({t})({applied})")
    texts = [_constant_text(a, scope) for a in _getter_args(call, scope.namespace)]
    found.names += [part for n in texts if n is not None for part in n.split(".")]  # anywhere


def _named_module(key: ast.expr, scope: _Scope, found: Lookups) -> None:
    """``sys.modules[key]`` (or ``.get(key)``) with a constant ``key`` naming a user module:
    that module, to follow."""
    named = _constant_text(key, scope)
    module = None if named is None else _user_module_name(named)
    if module:
        found.modules.append(module)


def _namespace_of(expr: ast.expr, scope: _Scope) -> ast.expr | None:
    """The module expression of ``vars(module)`` or ``module.__dict__`` when it may be a user
    module's (see :func:`_module_of`); None for anything else."""
    if isinstance(expr, ast.Attribute) and expr.attr == "__dict__":
        module = expr.value
    elif (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id == "vars"
        and "vars" not in scope.namespace
        and "vars" not in scope.local
        and len(expr.args) == 1
        and not expr.keywords
    ):
        module = expr.args[0]
    else:
        return None
    return module if _module_of(module, scope) is not None else None


def _whole_namespace(
    node: ast.expr, parents: dict[ast.AST, ast.AST], line: str, found: Lookups
) -> None:
    """A module's namespace (``vars(module)``, ``module.__dict__``) used otherwise than
    ``[name]`` or ``.get(name)`` (``.items()``, ``dict(...)``, ``**``...): what it reads of it
    cannot be known, uncovered."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.value is node:
        return
    if isinstance(parent, ast.Attribute) and parent.value is node and parent.attr == "get":
        call = parents.get(parent)
        if isinstance(call, ast.Call) and call.func is parent and call.args:
            return
    text = ast.unparse(_reading(node, parents))
    found.uncovered.append(Lookup(f"{text} (a module's namespace, read whole)", line))


def _getter_args(call: ast.Call, namespace: dict[str, Any]) -> list[ast.expr]:
    """The arguments naming attributes of a call of ``operator.attrgetter`` (all of them) or
    ``operator.methodcaller`` (the first), through ``operator``, an alias of it, or a name
    bound to either (or imported in the body); none for any other call."""
    func = call.func
    for kind in ("attrgetter", "methodcaller"):
        if isinstance(func, ast.Attribute) and func.attr == kind:
            if _is_bound(func.value, namespace, operator, "operator"):
                return call.args if kind == "attrgetter" else call.args[:1]
        elif _is_bound(func, namespace, getattr(operator, kind), kind):
            return call.args if kind == "attrgetter" else call.args[:1]
    return []


_COMPUTED = "<computed>"


def _module_of(expr: ast.expr, scope: _Scope) -> str | None:
    """The module ``expr`` is, when it may be a user module: ``""`` for one whose names the code
    already follows (a name bound to it, or the code's own ``sys.modules[__name__]``), the name
    of one to import (``sys.modules["pkg.util"]``, ``__import__("pkg")``), or ``_COMPUTED`` for
    ``sys.modules[<computed>]``; None for anything else, library modules included (their
    package's version covers all their attributes; a computed import warns on its own)."""
    if isinstance(expr, ast.Name):
        return "" if _is_module(expr, scope.namespace, scope.imported) else None
    if isinstance(expr, ast.Subscript) and _is_sys_modules(expr.value, scope.namespace):
        key = expr.slice
        if isinstance(key, ast.Name) and key.id == "__name__" and key.id not in scope.local:
            return ""
        named = _constant_text(key, scope)
        return _COMPUTED if named is None else _user_module_name(named)
    if isinstance(expr, ast.Call) and _is_import_call(expr.func, scope.namespace) and expr.args:
        named = _constant_text(expr.args[0], scope)
        if named is None:
            return None
        if isinstance(expr.func, ast.Name) and expr.func.id == "__import__":
            named = named.partition(".")[0]  # __import__("a.b") returns a
        return _user_module_name(named)
    return None


def _user_module_name(name: str) -> str | None:
    top = name.partition(".")[0]
    if any(not isinstance(sys.modules.get(n, sys), types.ModuleType) for n in (top, name)):
        return None  # an object set in sys.modules in a module's place: no module to follow
    if not top or name.startswith(".") or is_stdlib(top) or not is_user_top(top):
        return None
    return name


def _constant_text(expr: ast.expr, scope: _Scope) -> str | None:
    """A string constant, or a global name bound to a str (its value is part of the key)."""
    if isinstance(expr, ast.Constant):
        return expr.value if isinstance(expr.value, str) else None
    if isinstance(expr, ast.Name) and expr.id in scope.globals and expr.id not in scope.local:
        value = scope.namespace.get(expr.id)
        return value if isinstance(value, str) else None
    return None


def _is_sys_modules(expr: ast.expr, namespace: dict[str, Any]) -> bool:
    if isinstance(expr, ast.Attribute) and expr.attr == "modules":
        return _is_bound(expr.value, namespace, sys, "sys")
    return isinstance(expr, ast.Name) and namespace.get(expr.id) is sys.modules


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
