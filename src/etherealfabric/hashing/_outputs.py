"""Value digests of node outputs: the canonical hash of an output whose type has one.

An output is stored by the digest of its bytes, and two equal frames built differently (a
``concat`` or a constructor, C or Fortran order) can serialize to different bytes. Its *value
digest* is the same for equal values however they were built, so a downstream key that uses
it lets an upstream edit that yields an equal value stop there (early cutoff).

:func:`value_digest` gives one only where equal digests mean values no consumer can tell
apart: the top-level value must be a numpy, pandas, pyarrow or polars object, or a plain
``None``/``bool``/``int``/``float``/``str``/``list``/``dict`` (JSON-like) or ``set``/``frozenset``
(its elements' digests sorted: a set's pickle depends on the process's hash seed); every value met
inside (object cells, attrs, list items) must be of a builtin, numpy, pandas, pyarrow, polars,
``datetime``, ``decimal``, ``fractions`` or ``uuid`` type with a canonical handler. Anything
else (a user's class or subclass, a function, a ``File``, a value only cloudpickle can hash)
gives None and the output is keyed by its bytes, as before. So does a plain value of more
than 100,000 items (the limit of the ``json`` serializer). The digest covers the exact type
of the output (``module.qualname``), so a subclass never stands in for its base.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, TypeVar

from ._arrays import _enc_ndarray, feed_teed, teeable
from ._builtins import SCALAR_HANDLERS, SCALARS  # (importing it registers the handlers)
from ._digest import digest_bytes, raw_digest
from ._encoder import Encoder, _handler, encode_pickled, frame_bytes, type_name
from ._scans import LazyReaderError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._digest import Hasher

__all__ = ["has_value_type", "value_digest", "value_digest_teed"]

_TOP_MODULES = frozenset({"numpy", "pandas", "pyarrow", "polars"})
_PLAIN = frozenset({type(None), bool, int, float, str, list, dict, set, frozenset})
_CELL_MODULES = _TOP_MODULES | {"builtins", "datetime", "decimal", "fractions", "uuid"}
_PLAIN_BUDGET = 100_000  # plain values (lists, dicts, sets): as many items as json takes
_CELL_BUDGET = 50_000_000  # frames and arrays: cells hashed one by one (object columns)
_T = TypeVar("_T")
_CODE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)


class _NotCanonical(Exception):
    """A value inside the output has no canonical hash."""


class _StrictEncoder(Encoder):
    """An encoder that refuses every value without a canonical, type-exact handler.

    ``budget`` (shared with child encoders) caps how many values it takes: hashing a huge
    list cell by cell would cost more than the cutoff saves.
    """

    __slots__ = ("budget",)

    def __init__(self, budget: list[int]) -> None:
        super().__init__(None)
        self.budget = budget

    def value(self, value: object) -> None:
        encoded = _scalar_encoding(value)
        if encoded is None:
            self.encode(value)
        else:
            self.spend()
            self.buf += encoded

    def encode(self, value: object) -> None:
        """Write ``value`` through its handler, if it has a canonical one."""
        tp = type(value)
        if tp.__module__.partition(".")[0] not in _CELL_MODULES or issubclass(tp, _CODE):
            raise _NotCanonical(type_name(tp))
        handler = _handler(tp)
        if handler is encode_pickled:
            raise _NotCanonical(type_name(tp))
        self.spend()
        handler(value, self)

    def child(self, value: object) -> bytes:
        encoded = _scalar_encoding(value)
        if encoded is not None:
            self.spend()
            return raw_digest(encoded)
        encoder = _StrictEncoder(self.budget)
        encoder.encode(value)
        return encoder.digest()

    def spend(self) -> None:
        """Count one value against the budget."""
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise _NotCanonical("too many values")


def has_value_type(value: object) -> bool:
    """True if ``value``'s type may have a value digest (its content still has to qualify)."""
    tp = type(value)
    return tp in _PLAIN or tp.__module__.partition(".")[0] in _TOP_MODULES


def _start(encoder: Encoder, tp: type) -> None:
    """What every output value's encoding starts with: its tag and exact type."""
    encoder.tag("output-value")
    encoder.text(type_name(tp))


def _encoding(write: Callable[[Encoder, _T], None], arg: _T) -> bytes:
    """The bytes ``write(encoder, arg)`` writes (small frames only: they stay in its buffer)."""
    encoder = Encoder(None)
    write(encoder, arg)
    return bytes(encoder.buf)


#: scalar type -> (its built-in handler, its tag frame, its payload); see _scalar_encoding
_SCALARS: dict[type, tuple[object, bytes, Callable[[Any], bytes] | None]] = {
    tp: (SCALAR_HANDLERS[tp], _encoding(Encoder.tag, tag), payload)
    for tp, (tag, payload) in SCALARS.items()
}
#: scalar type -> the start of an output's encoding (see _start)
_HEADS = {tp: _encoding(_start, tp) for tp in _SCALARS}
_SCALAR_BYTES = 64 * 1024  # a longer payload is hashed the general way (no copies)


def _scalar_encoding(value: object) -> bytes | None:
    """The bytes the encoder writes for a scalar whose type still has its built-in handler
    (``_builtins.SCALARS``: a tag frame and a payload frame), made in one piece; None for
    any other value, or a payload over 64 KiB."""
    tp = type(value)
    scalar = _SCALARS.get(tp)
    if scalar is None or _handler(tp) is not scalar[0]:
        return None
    _, tag, payload = scalar
    if payload is None:
        return tag
    data = payload(value)
    return tag + frame_bytes(data) if len(data) <= _SCALAR_BYTES else None


def value_digest(value: object) -> str | None:
    """The canonical digest of an output's value, or None when it has none (see above).

    A scalar is hashed in one call from its encoding made in one piece (see
    :func:`_scalar_encoding`); anything else goes through the strict encoder.
    """
    encoded = _scalar_encoding(value)
    if encoded is None:
        return _encoded_digest(value)
    return digest_bytes(_HEADS[type(value)] + encoded)


def _encoded_digest(value: object) -> str | None:
    """:func:`value_digest` of a value that is not a small scalar, through the strict
    encoder (scalars inside it are still encoded in one piece)."""
    if not has_value_type(value):
        return None
    budget = _PLAIN_BUDGET if type(value) in _PLAIN else _CELL_BUDGET
    encoder = _StrictEncoder([budget])
    _start(encoder, type(value))
    try:
        encoder.encode(value)
    except LazyReaderError:  # a lazy reader of remote data: its bytes would be a stale key
        raise
    except Exception:  # _NotCanonical, too deep, or a library that cannot show its values
        return None
    return encoder.hexdigest()


def value_digest_teed(value: object, tee: Hasher) -> str | None:
    """:func:`value_digest` of a plain C-contiguous numeric array, its raw bytes fed to
    ``tee`` in the same pass over memory (see ``feed_teed``); None, with nothing fed, for any
    other value (then use :func:`value_digest`)."""
    if not teeable(value) or _handler(type(value)) is not _enc_ndarray:
        return None
    encoder = _StrictEncoder([_CELL_BUDGET])
    _start(encoder, type(value))
    feed_teed(encoder, value, tee)
    return encoder.hexdigest()
