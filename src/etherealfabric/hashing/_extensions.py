"""The user's code set on a library's classes: pandas accessors, methods patched on a frame.

``@pd.api.extensions.register_dataframe_accessor("geo")`` puts the user's class on
``pd.DataFrame`` as ``geo``, and ``pd.DataFrame.total = total`` a user function. A node that
calls ``df.geo.center()`` or ``df.total()`` names only the attributes ``geo``, ``center`` and
``total`` of a value its fingerprint never sees, so the code behind them was in no key: an edit
there was served stale. The classes libraries let users extend so (pandas', polars' and
xarray's frames and series) are looked at once their library is imported: an attribute name
the code loads that is the user's code on one of them is followed like a helper it calls.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable

from ._usercode import is_user_code

__all__ = ["extension_members"]

#: the classes whose attributes users extend, by library
_EXTENSIBLE = {
    "pandas": ("DataFrame", "Series", "Index"),
    "polars": ("DataFrame", "LazyFrame", "Series", "Expr"),
    "xarray": ("Dataset", "DataArray"),
}
#: where an accessor descriptor keeps the user's class (pandas and xarray; polars)
_ACCESSOR_FIELDS = ("_accessor", "_ns")

#: (the state it was built from, attribute name -> the user's code there)
_table: tuple[tuple[int, ...], dict[str, list[object]]] = ((), {})


def extension_members(names: Iterable[str]) -> list[object]:
    """The user's functions and classes set on extensible library classes under any of
    ``names`` (nothing when none of those libraries is imported)."""
    classes = _classes()
    if not classes:
        return []
    found = _members(classes)
    if not found:
        return []
    return [obj for name in names for obj in found.get(name, ())]


def _classes() -> list[type]:
    found = []
    for library, names in _EXTENSIBLE.items():
        module = sys.modules.get(library)
        if module is not None:
            found += [c for n in names if isinstance(c := getattr(module, n, None), type)]
    return found


def _members(classes: list[type]) -> dict[str, list[object]]:
    """Attribute name -> the user's code there, built again when a class gained or lost one."""
    global _table
    state = tuple(len(vars(c)) for c in classes)
    if _table[0] == state:
        return _table[1]
    found: dict[str, list[object]] = {}
    for cls in classes:
        for name, value in vars(cls).items():
            code = _code_of(value)
            if code is not None:
                found.setdefault(name, []).append(code)
    _table = (state, found)
    return found


def _code_of(value: object) -> object | None:
    """The user function or class an attribute holds (through a property, a static or class
    method, or an accessor descriptor); None for a library's."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    elif isinstance(value, property):
        value = value.fget
    elif not isinstance(value, (types.FunctionType, type)):
        value = next(
            (held for f in _ACCESSOR_FIELDS if isinstance(held := getattr(value, f, None), type)),
            None,
        )
    if isinstance(value, (types.FunctionType, type)) and is_user_code(value):
        return value
    return None
