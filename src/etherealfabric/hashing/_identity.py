"""Which of several user functions or classes of one qualified name a name or a slot holds.

Lambdas in a list or a dict, closures one factory made (``A = make(3)``, ``B = make(5)``) and
classes one factory made share a qualified name (``cfg.<lambda>``, ``cfg.make.<locals>.f``): a
fingerprint numbers such parts in the order of their digests, whichever name holds which. So
swapping two of them (``T = {"a": lambda x: x + 2, "b": lambda x: x + 1}`` after the other way
round, ``A = make(5)`` and ``B = make(3)``) kept every key: a stale hit. :func:`code_identity`
tells them apart: the source of a function (a lambda's own, by its position in the line) and
what its closure holds, a class's data attributes. References record it for a global bound
under another name than the object's own, and values hold it for the code inside them.
"""

from __future__ import annotations

import types
from typing import Any

from ._builtins import hash_plain
from ._source import code_digest, normalized_source
from ._usercode import qualified_name

__all__ = ["code_identity", "shares_its_name"]

_SETTINGS = (bool, int, float, complex, str, bytes, type(None), tuple, frozenset)


def code_identity(obj: Any) -> str:
    """A digest telling ``obj`` (a user function or class) from others of its qualified name."""
    parts: list[object] = [qualified_name(obj)]
    if isinstance(obj, types.FunctionType):
        found = normalized_source(obj)
        parts.append(found[0] if found is not None else code_digest(obj.__code__))
        parts.append(tuple(_held(cell) for cell in obj.__closure__ or ()))
    elif isinstance(obj, type):
        parts.append(  # (plain settings only: K = 3, not an object made at import)
            tuple(
                (name, hash_plain(value))
                for name, value in sorted(vars(obj).items())
                if not name.startswith("__") and isinstance(value, _SETTINGS)
            )
        )
    return hash_plain(tuple(parts))


def shares_its_name(obj: Any) -> bool:
    """Whether ``obj``'s qualified name stands for others too, so that an identity must say
    which one a name or a slot holds: a lambda (``cfg.<lambda>`` for each of them). Closures
    and classes a factory makes share their name too, but their identity would also change
    with the code that wraps them (a decorator's ``wrapper``), making ``explain`` name parts
    that did not change: not covered (docs/concepts.md)."""
    return "<lambda>" in getattr(obj, "__qualname__", "")


def _held(cell: types.CellType) -> object:
    try:
        value = cell.cell_contents
    except ValueError:  # an empty cell
        return None
    if isinstance(value, (types.FunctionType, type)):
        return qualified_name(value)  # (its own parts are the fingerprint's)
    return _plain(value)


def _plain(value: object) -> object:
    try:
        return hash_plain(value)
    except Exception:  # a value without a plain encoding: its type
        return f"<{type(value).__module__}.{type(value).__qualname__}>"
