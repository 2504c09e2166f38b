"""What a function's source reads of modules by name, for :func:`~._scan.dynamic_lookups`:
``getattr(m, "N")``, ``import_module("m")``, and the dynamic forms of an attribute read
(``sys.modules["m"].N``, ``vars(m)["N"]``, ``m.__dict__.get("N")``, ``m.__getattribute__("N")``,
``operator.attrgetter("N")(m)``): a constant name is followed like ``m.N``, a computed one is a
:class:`Lookup` the key does not cover. Also the :class:`Lookup` and :class:`Lookups` records
and the small AST helpers the scanner's other checks share (:func:`is_bound`, :func:`reading`)."""

from __future__ import annotations

import ast
import operator
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._packages import is_stdlib
from ._usercode import is_user_module, is_user_top

__all__ = [
    "Lookup",
    "Lookups",
    "Scope",
    "classify",
    "is_bound",
    "local_names",
    "module_read",
    "reading",
]


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


def reading(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> ast.AST:
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


def is_bound(expr: ast.AST, namespace: dict[str, Any], module: object, name: str) -> bool:
    """A name bound to ``module`` in the globals, or ``name`` unbound (imported in the body)."""
    if not isinstance(expr, ast.Name):
        return False
    value = namespace.get(expr.id)
    return value is module or (value is None and expr.id == name)


@dataclass(frozen=True, eq=False)
class Scope:
    """What the names in one function's source are bound to."""

    namespace: dict[str, Any]  # its globals
    imported: set[str]  # names its body's imports of user modules bind
    globals: tuple[str, ...]  # the names its code looks up outside itself
    local: frozenset[str]  # its local variables (and those of the code nested in it)


def local_names(code: types.CodeType) -> frozenset[str]:
    names = {*code.co_varnames, *code.co_cellvars, *code.co_freevars}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= local_names(const)
    return frozenset(names)


def classify(call: ast.Call, scope: Scope, line: str, found: Lookups) -> None:
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
    module_expr: ast.expr, name_exprs: list[ast.expr], scope: Scope, line: str,
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


def module_read(
    node: ast.Call | ast.Subscript | ast.Attribute, scope: Scope,
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


def _subscript_read(node: ast.Subscript, scope: Scope, line: str, found: Lookups) -> None:
    """``sys.modules["pkg"]`` (the module to follow), ``vars(module)[name]`` and
    ``module.__dict__[name]``."""
    if _is_sys_modules(node.value, scope.namespace):
        _named_module(node.slice, scope, found)
        return
    space = _namespace_of(node.value, scope)
    if space is not None:
        whole = ast.unparse(node.value)
        _attribute_of(space, [node.slice], scope, line, found, lambda t: f"{whole}[{t}]")


def _call_read(call: ast.Call, scope: Scope, line: str, found: Lookups) -> None:
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


def _named_module(key: ast.expr, scope: Scope, found: Lookups) -> None:
    """``sys.modules[key]`` (or ``.get(key)``) with a constant ``key`` naming a user module:
    that module, to follow."""
    named = _constant_text(key, scope)
    module = None if named is None else _user_module_name(named)
    if module:
        found.modules.append(module)


def _namespace_of(expr: ast.expr, scope: Scope) -> ast.expr | None:
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
    text = ast.unparse(reading(node, parents))
    found.uncovered.append(Lookup(f"{text} (a module's namespace, read whole)", line))


def _getter_args(call: ast.Call, namespace: dict[str, Any]) -> list[ast.expr]:
    """The arguments naming attributes of a call of ``operator.attrgetter`` (all of them) or
    ``operator.methodcaller`` (the first), through ``operator``, an alias of it, or a name
    bound to either (or imported in the body); none for any other call."""
    func = call.func
    for kind in ("attrgetter", "methodcaller"):
        if isinstance(func, ast.Attribute) and func.attr == kind:
            if is_bound(func.value, namespace, operator, "operator"):
                return call.args if kind == "attrgetter" else call.args[:1]
        elif is_bound(func, namespace, getattr(operator, kind), kind):
            return call.args if kind == "attrgetter" else call.args[:1]
    return []


_COMPUTED = "<computed>"


def _module_of(expr: ast.expr, scope: Scope) -> str | None:
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


def _constant_text(expr: ast.expr, scope: Scope) -> str | None:
    """A string constant, or a global name bound to a str (its value is part of the key)."""
    if isinstance(expr, ast.Constant):
        return expr.value if isinstance(expr.value, str) else None
    if isinstance(expr, ast.Name) and expr.id in scope.globals and expr.id not in scope.local:
        value = scope.namespace.get(expr.id)
        return value if isinstance(value, str) else None
    return None


def _is_sys_modules(expr: ast.expr, namespace: dict[str, Any]) -> bool:
    if isinstance(expr, ast.Attribute) and expr.attr == "modules":
        return is_bound(expr.value, namespace, sys, "sys")
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
