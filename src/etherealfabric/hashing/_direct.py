"""Which names a function's code reaches *directly*, read from its bytecode.

A fingerprint follows every name in a function's ``co_names`` that its namespaces hold: the
globals its code loads, but also mere attribute names (``ctx.spark`` matches a global function
``spark``). What a helper does at run time that the key cannot see (an environment read, a
draw from a global random generator) is reported only for the helpers the code certainly
reaches: the globals it loads (``LOAD_GLOBAL``/``LOAD_NAME``), and the attributes it loads off
a module (``settings.mode``, ``pkg.sub.f``; the module a global, or a local an import in the
body binds: ``from pkg import settings``). :func:`direct_loads` finds both; :class:`Loads`
reads them only when asked, once per function (most functions reach no user code).

How a fingerprint reached a piece of code is a *route*: ``None`` (not directly: inside a
value, through a default...), ``""`` (directly: a name imported in the body, a closure cell),
``"global:NAME"`` (directly if the code loads the global ``NAME``) or ``"attr:MODULE.NAME"``
(directly if it loads ``NAME`` off the module ``MODULE``).
"""

from __future__ import annotations

import dis
import importlib.util
import types
from dataclasses import dataclass

__all__ = ["SAME", "Direct", "Loads", "direct_loads"]

#: stands for "the route of the code being followed now" (no route has this form)
SAME = "<same>"

_GLOBAL_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTRIBUTE_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_LOCAL_STORES = frozenset({"STORE_FAST", "STORE_DEREF", "STORE_NAME", "STORE_GLOBAL"})
_CONST_LOADS = frozenset({"LOAD_CONST", "LOAD_SMALL_INT"})
_TRANSPARENT = frozenset({"EXTENDED_ARG", "CACHE", "NOP"})


@dataclass(frozen=True, eq=False)
class Direct:
    """What one function's code loads directly: global names, and ``module.attr`` paths (the
    module by its ``__name__``: ``pkg.settings.mode``)."""

    globals: frozenset[str]
    attributes: frozenset[str]


class Loads:
    """What the code of ``fn`` loads directly, read when first needed."""

    __slots__ = ("_fn", "_found")

    def __init__(self, fn: types.FunctionType | None) -> None:
        self._fn = fn
        self._found: Direct | None = None

    def reaches(self, route: str | None) -> bool:
        """Whether code found by ``route`` (see the module docstring) is reached directly."""
        if route is None:
            return False
        kind, _, key = route.partition(":")
        if not key:
            return True
        if self._fn is None:
            return False
        if self._found is None:
            self._found = direct_loads(self._fn)
        return key in (self._found.globals if kind == "global" else self._found.attributes)


def direct_loads(fn: types.FunctionType) -> Direct:
    """The globals ``fn``'s code (nested code too) loads, and the attributes it loads off
    modules (see the module docstring)."""
    namespace = fn.__globals__
    package = namespace.get("__package__")
    loaded: set[str] = set()
    attributes: set[str] = set()
    bound: dict[str, str] = {}  # local name -> the module path an import in the body bound
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        path: str | None = None  # the dotted path of the module object last loaded
        binding: str | None = None  # what the import just made binds, if stored now
        module, from_list, consts = "", False, [0, None]
        for ins in dis.get_instructions(code):
            op, arg = ins.opname, ins.argval
            if op in _TRANSPARENT:
                continue
            if op in _GLOBAL_LOADS:
                loaded.add(str(arg))
                value = namespace.get(str(arg))
                path = value.__name__ if isinstance(value, types.ModuleType) else None
            elif op.startswith("LOAD_FAST") or op in ("LOAD_DEREF", "LOAD_CLOSURE"):
                path = bound.get(str(arg[-1] if isinstance(arg, tuple) else arg))
            elif op in _ATTRIBUTE_LOADS and path is not None:
                path = f"{path}.{arg}"
                attributes.add(path)
            elif op == "IMPORT_NAME":
                level, names = consts[-2:]
                module = _absolute(str(arg), level if isinstance(level, int) else 0, package)
                from_list = isinstance(names, tuple)
                binding = module.partition(".")[0] if module and not from_list else None
                path = None
            elif op == "IMPORT_FROM":
                binding = f"{module}.{arg}" if from_list else module  # ``import a.b as x``
                binding = binding if module else None
                path = None
            elif op in _LOCAL_STORES and binding is not None:
                bound[str(arg)] = binding
                binding = path = None
            else:
                path = binding = None
            consts = [*consts[-1:], arg] if op in _CONST_LOADS else [0, None]
    return Direct(frozenset(loaded), frozenset(attributes))


def _absolute(target: str, level: int, package: object) -> str:
    """The absolute name of an imported module; ``""`` when it cannot be resolved."""
    if not level:
        return target
    if not isinstance(package, str) or not package:
        return ""
    try:
        return importlib.util.resolve_name("." * level + target, package)
    except (ImportError, ValueError):
        return ""
