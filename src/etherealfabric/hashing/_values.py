"""Value digests: :func:`hash_value` for any value, and :func:`register_value_hasher`.

:func:`hash_value` feeds a canonical, type-tagged encoding of the value to one streaming
hasher, so ``1``, ``"1"``, ``1.0`` and ``True`` all differ. The frame format and the order in
which a type's handler is chosen are in :mod:`etherealfabric.hashing._encoder`; the encodings of
builtin and standard-library types, ``File``, ``Directory`` and upstream digests in
:mod:`etherealfabric.hashing._builtins`; numpy and pandas in :mod:`etherealfabric.hashing._arrays`.
Values that carry code (functions, classes, bound methods, partials, instances of user classes)
are encoded by :mod:`etherealfabric.hashing._objects`, with their code fingerprints. This module
adds the last rules::

    custom T <stand-in>                              (a hasher registered by the user)
    pickle T <cloudpickle>                           (anything else, with a warning)

Importing this module loads every handler set, so :func:`hash_value` gives a value the same
digest whatever else has been imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import HashingError, a_or_an
from . import (
    _builtins,  # noqa: F401  (importing it registers the builtin handlers)
    _fingerprint,  # noqa: F401  (registers the handlers of values that carry code)
    _pickled,  # noqa: F401  (pickled values: the code their pickles name, see encode_pickled)
)
from ._encoder import Encoder, digest_of, is_builtin, register_user, type_name
from ._files import FileHashCache

__all__ = ["hash_value", "register_value_hasher"]

_T = TypeVar("_T")


def hash_value(value: object, *, file_cache: FileHashCache | None = None) -> str:
    """The type-tagged canonical digest of ``value`` (see the module docstring)."""
    return digest_of(value, file_cache)


def register_value_hasher(tp: type[_T], fn: Callable[[_T], object]) -> None:
    """Hash values of type ``tp`` (and its subclasses) through ``fn``.

    ``fn(value)`` returns a *stand-in* that :func:`hash_value` can hash canonically: builtins,
    containers, bytes, numpy arrays, dataclasses... The digest covers ``tp``'s qualified name
    and the stand-in, so two types with equal stand-ins still differ. A registered hasher
    wins over the built-in rules for dataclasses, enums and named tuples; the exact built-in
    types (int, str, dict, File, ...) cannot be overridden. Example::

        register_value_hasher(Model, lambda m: (m.name, m.weights))
    """
    if not isinstance(tp, type):
        raise HashingError(f"register_value_hasher needs a type; got {tp!r}")
    if is_builtin(tp):
        raise HashingError(f"{type_name(tp)} already has a built-in hasher; it cannot be replaced")
    name = type_name(tp)

    def handler(value: Any, encoder: Encoder) -> None:
        stand_in = fn(value)
        if isinstance(stand_in, tp):
            raise HashingError(
                f"the hasher registered for {name} returned {a_or_an(name)} again; return a stand-in "
                "made of builtins (e.g. a tuple of its fields)"
            )
        encoder.tag("custom")
        encoder.text(name)
        encoder.value(stand_in)

    register_user(tp, handler)
