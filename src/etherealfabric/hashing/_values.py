"""Value digests: :func:`hash_value` for any value, and :func:`register_value_hasher`.

:func:`hash_value` feeds a canonical, type-tagged encoding of the value to one streaming
hasher, so ``1``, ``"1"``, ``1.0`` and ``True`` all differ. The frame format and the order in
which a type's handler is chosen are in :mod:`etherealfabric.hashing._encoder`; the encodings of
builtin and standard-library types, ``File``, ``Directory`` and upstream digests in
:mod:`etherealfabric.hashing._builtins`; numpy and pandas in :mod:`etherealfabric.hashing._arrays`.
This module adds the last rules, which sit above code fingerprints::

    function T fingerprint | class T fingerprint    (fingerprint only for user code)
    custom T <stand-in>                              (a hasher registered by the user)
    pickle T <cloudpickle>                           (anything else, with a warning)

Importing this module loads every handler set, so :func:`hash_value` gives a value the same
digest whatever else has been imported.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import HashingError
from . import _builtins  # noqa: F401  (importing it registers the builtin handlers)
from ._encoder import (
    Encoder,
    digest_of,
    encode_pickled,
    is_builtin,
    register_builtin,
    register_user,
    type_name,
)
from ._files import FileHashCache
from ._fingerprint import code_fingerprint
from ._usercode import is_user_code

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
                f"the hasher registered for {name} returned a {name} again; return a stand-in "
                "made of builtins (e.g. a tuple of its fields)"
            )
        encoder.tag("custom")
        encoder.text(name)
        encoder.value(stand_in)

    register_user(tp, handler)


def _enc_code(value: Any, encoder: Encoder) -> None:
    """Functions and classes: by qualified name, plus the code fingerprint for user code.

    Library code that its name does not identify (lambdas, local functions, builtin methods
    bound to an object) goes through cloudpickle instead.
    """
    name = f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', '?')}"
    user = is_user_code(value)
    bound = getattr(value, "__self__", None)
    if not user and ("<" in name or not (bound is None or isinstance(bound, types.ModuleType))):
        encode_pickled(value, encoder)
        return
    encoder.tag("class" if isinstance(value, type) else "function")
    encoder.text(name)
    if user:
        encoder.text(code_fingerprint(value).digest)


register_builtin(
    {types.FunctionType: _enc_code, types.BuiltinFunctionType: _enc_code, type: _enc_code}
)
