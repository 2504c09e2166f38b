"""The questions :class:`~._references.References` asks of one value or piece of code: is it
code or a library's callable, a constant setting, a numpy ufunc, EtherealFabric's own
machinery, class machinery, generated from a string; and the details it reads: every name a
code object looks up, a function's defaults, a relative import made absolute, a closure
variable's name that is the same on every Python version.
"""

from __future__ import annotations

import importlib.util
import types
from collections.abc import Iterator

from ..errors import HashingError
from ._builtins import hash_plain
from ._encoder import has_encoding
from ._source import code_file, is_constant, unwrap
from ._usercode import is_user_code, qualified_name

__all__ = [
    "absolute_name",
    "code_names",
    "defaults_of",
    "defined_in",
    "dict_orders",
    "has_submodule",
    "is_code",
    "is_frompyfunc",
    "is_generated",
    "is_machinery",
    "is_setting",
    "is_ufunc",
    "is_users",
    "library_descriptor",
    "library_name",
    "stable_var",
]


def code_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name the code (and its nested code: lambdas, comprehensions, defs) looks up."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(code_names(const)))
    return tuple(names)


def is_code(value: object) -> bool:
    """Functions, classes and library objects that are named callables (builtins, ufuncs)."""
    target = unwrap(value)
    if isinstance(target, (types.FunctionType, type, types.BuiltinFunctionType)):
        return True
    named = isinstance(getattr(value, "__name__", None), str)
    return named and callable(value) and not is_user_code(type(value))


def is_setting(attr: str, value: object) -> bool:
    """A public attribute holding a constant (what a library wrapper object was made with)."""
    return not attr.startswith("_") and is_constant(value)


def is_ufunc(value: object) -> bool:
    tp = type(value)
    return tp.__name__ == "ufunc" and tp.__module__ == "numpy"


def is_frompyfunc(value: object) -> bool:
    """A ufunc made by ``numpy.frompyfunc`` (numpy names it ``<function> (vectorized)``)."""
    name = getattr(value, "__name__", None)
    return is_ufunc(value) and isinstance(name, str) and name.endswith(" (vectorized)")


def has_submodule(package: types.ModuleType, name: str) -> bool:
    """Whether package ``package`` has a submodule ``name`` (found, not imported)."""
    try:
        return importlib.util.find_spec(f"{package.__name__}.{name}") is not None
    except (ImportError, ValueError):
        return False


def is_machinery(value: object) -> bool:
    """EtherealFabric's own objects without a value (``checkpoint``, a workflow): not data."""
    tp = type(value)
    ours = tp.__module__ == "etherealfabric" or tp.__module__.startswith("etherealfabric.")
    return ours and not has_encoding(tp)


def library_descriptor(member: object) -> bool:
    """Class machinery such as a named tuple's field getters or a slot (not user code)."""
    return hasattr(type(member), "__get__") and not is_user_code(type(member))


def absolute_name(target: str, level: int, package: object) -> str | None:
    if not level:
        return target
    if not isinstance(package, str) or not package:
        return None
    try:
        return importlib.util.resolve_name("." * level + target, package)
    except (ImportError, ValueError):
        return None


def defaults_of(fn: types.FunctionType) -> Iterator[tuple[str, object]]:
    code = fn.__code__
    positional = code.co_varnames[: code.co_argcount]
    defaults = fn.__defaults__ or ()
    yield from zip(positional[len(positional) - len(defaults) :], defaults, strict=True)
    yield from (fn.__kwdefaults__ or {}).items()


def defined_in(obj: object, cls: type) -> bool:
    qualname = getattr(obj, "__qualname__", "")
    return isinstance(qualname, str) and qualname.startswith(cls.__qualname__ + ".")


def stable_var(var: str) -> str:
    """A generated function's closure variable, named the same on every Python version.

    Dataclasses name them ``_HAS_DEFAULT_FACTORY`` up to 3.11 and
    ``__dataclass_HAS_DEFAULT_FACTORY__`` from 3.12 on; both are ``HAS_DEFAULT_FACTORY`` here.
    """
    if var.startswith("__dataclass_") and var.endswith("__"):
        var = var[len("__dataclass_") : -2]
    return var.lstrip("_") or var


def is_generated(fn: types.FunctionType) -> bool:
    """Made from a string (a dataclass's methods): nothing to read, only names to follow."""
    return code_file(fn).startswith("<")  # not a function cloudpickle rebuilt


def is_users(value: object) -> bool:
    """Whether a code value is the user's (followed as a piece) or EtherealFabric's (which
    counts for nothing), not a library's."""
    target = unwrap(value)
    module = str(getattr(target, "__module__", None) or "")
    if module == "etherealfabric" or module.startswith("etherealfabric."):
        return True
    if isinstance(target, (types.FunctionType, type)):
        return is_user_code(target)
    return callable(target) and is_user_code(type(target))


def dict_orders(value: object, limit: int = 10_000) -> tuple[tuple[str, ...], ...]:
    """The key order of each dict in ``value`` and the lists, tuples and dicts it holds (at
    most ``limit`` items looked at) whose keys are not in their canonical order (sorted by key
    digest), as key digests: a global's dict that code iterates (``df[list(FEATURES)]``) gives
    another result in another order. A dict in canonical order adds nothing, so the digest of
    a value holding only such dicts is the one it always had."""
    found: list[tuple[str, ...]] = []
    todo, seen = [value], 0
    while todo and seen < limit:
        item = todo.pop()
        if isinstance(item, dict):
            seen += len(item)
            if len(item) > 1:
                try:
                    keys = [hash_plain(k) for k in item]
                except HashingError:  # a key of no plain encoding: its order is not kept
                    keys = []
                if keys != sorted(keys):
                    found.append(tuple(keys))
            todo.extend(item.values())
        elif isinstance(item, (list, tuple)):
            seen += len(item)
            todo.extend(item)
    return tuple(found)


#: the modules ``os.path`` is on each system: one name, so that keys agree across systems
_OS_PATH = {"posixpath": "os.path", "ntpath": "os.path"}


def library_name(target: object) -> str:
    name = qualified_name(target)
    module, dot, rest = name.partition(".")
    return f"{_OS_PATH[module]}.{rest}" if dot and module in _OS_PATH else name
