"""What a library callable object holds, for :meth:`References.held`: its attributes.

An object's attributes are its instance dictionary and the slots of every class in its type's
MRO (``toolz.curry`` keeps its function in a ``functools.partial`` attribute; a class with
``__slots__`` has no dictionary at all). An object with neither, of a type the garbage
partial-like object has ``func``, ``args`` and ``keywords`` (``cytoolz.curry``). The functions
and partials among what the garbage collector sees it refer to (:func:`gc.get_referents`) count
too. An object with none of these, of a type the collector
cannot look into, holds nothing that can be seen (:func:`attributes` returns None).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import types
from typing import Any

__all__ = ["attributes", "partials"]

_HAVE_GC = 1 << 14  # Py_TPFLAGS_HAVE_GC
#: what a partial-like object of a C extension names its target and arguments
_PARTIAL_LIKE = ("func", "args", "keywords")


def attributes(obj: object) -> dict[str, Any] | None:
    """``obj``'s attributes by name (see the module docstring); None if it has none to see."""
    found: dict[str, Any] = {}
    with contextlib.suppress(TypeError):
        found.update(vars(obj))
    slotted = False
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if not isinstance(slot, str) or slot in ("__dict__", "__weakref__"):
                continue
            slotted = True
            private = slot.startswith("__") and not slot.endswith("__")
            name = f"_{klass.__name__.lstrip('_')}{slot}" if private else slot
            with contextlib.suppress(Exception):  # an unset slot
                found.setdefault(slot, getattr(obj, name))
    opaque = not (found or slotted or hasattr(obj, "__dict__"))
    if opaque:  # a C partial-like object: cytoolz.curry
        for attr in _PARTIAL_LIKE:
            with contextlib.suppress(Exception):
                found[attr] = getattr(obj, attr)
    if type(obj).__flags__ & _HAVE_GC:  # what C code holds (a C extension callback)
        for i, item in enumerate(gc.get_referents(obj)):
            if isinstance(item, (types.FunctionType, functools.partial)):
                found.setdefault(f"_held{i}", item)
    elif opaque and not found:
        return None
    return found


def partials(value: object) -> list[functools.partial[Any]]:
    """``value`` if it is a ``functools.partial``, and those in a tuple or list it is."""
    if isinstance(value, functools.partial):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, functools.partial)]
    return []
