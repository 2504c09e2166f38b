"""Digests: type-tagged value hashes, file and folder contents, code fingerprints, cache keys.

The only module that imports xxhash. Every digest is xxh3-128 as 32 lowercase hex characters.

**Value encoding.** :func:`hash_value` feeds a canonical, type-tagged encoding of the value to
one streaming hasher. Each value is a *tag* frame followed by its payload; a frame is an 8-byte
little-endian length and that many bytes, so an encoding is self-delimiting and two different
types never share a pre-image (``1``, ``"1"``, ``1.0`` and ``True`` all differ)::

    none | bool b | int <two's complement> | float <IEEE double; every NaN alike>
    complex re im | str <utf-8> | bytes <raw> (bytes, bytearray and memoryview alike)
    list n v... | tuple n v... | dict n <sorted key-digest+value-digest pairs>
    set / frozenset n <sorted element digests> | range start stop step
    enum T value | dataclass T n (field value)... | namedtuple T n (field value)...
    datetime iso fold | date iso | time iso fold | timedelta d s us | path flavour text
    decimal text | fraction p q | uuid 16 bytes | ellipsis
    ref serializer digest       (RefDigest: an upstream output, by its content digest)
    file content-digest | directory n (kind relpath digest)...
    function T fingerprint | class T fingerprint  (fingerprint only for user code)
    numpy.* | pandas.*  (see etherealfabric.hashing._arrays)
    custom T <stand-in> | pickle T <cloudpickle>

``T`` is the type's ``module.qualname``. Subclasses of builtin types hash like their base,
except enums, named tuples and dataclasses, and types with a registered hasher.
Handlers for numpy, pandas, decimal, fractions and uuid are registered the first time a value
is hashed while that module is already imported; this module imports none of them. The numpy
and pandas handlers live in :mod:`etherealfabric.hashing._arrays`.

**Files.** ``File`` hashes as the xxh3-128 of its bytes (equal to :func:`digest_bytes` of the
content); the path is not part of it. ``Directory`` hashes every entry below it in sorted order:
folders by relative path (so empty ones count), files by relative path and content. The
reading, the symlink rules and the :class:`FileHashCache` fast path live in
:mod:`etherealfabric.hashing._files`.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import math
import re
import struct
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath, PureWindowsPath
from typing import Any, NamedTuple, TypeVar

import xxhash

from ..errors import HashingError
from ._describe import describe_value
from ._files import Directory, File, FileHashCache, file_digest, tree_entries
from ._fingerprint import Fingerprint, FingerprintWarning, code_fingerprint, is_user_code

__all__ = [
    "KEY_FORMAT_VERSION",
    "FileHashCache",
    "Fingerprint",
    "FingerprintWarning",
    "RefDigest",
    "UnstableHashWarning",
    "cache_key",
    "code_fingerprint",
    "describe_value",
    "digest_bytes",
    "directory_digest",
    "file_digest",
    "hash_value",
    "is_digest",
    "new_hasher",
    "register_value_hasher",
]

KEY_FORMAT_VERSION: int = 1

_T = TypeVar("_T")
_LEN = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_NAN = _DOUBLE.pack(math.nan)
_DIGEST = re.compile(r"[0-9a-f]{32}")


class UnstableHashWarning(UserWarning):
    """A value was hashed through cloudpickle; its cache key may differ between runs."""


class RefDigest(NamedTuple):
    """An upstream output, already resolved to its content digest."""

    serializer: str
    digest: str


def new_hasher() -> xxhash.xxh3_128:
    """A streaming xxh3-128 hasher (``.update(buffer)``, ``.hexdigest()``)."""
    return xxhash.xxh3_128()


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """The xxh3-128 hex digest of a buffer."""
    return xxhash.xxh3_128_hexdigest(data)


def is_digest(text: str) -> bool:
    """True iff ``text`` is 32 lowercase hex characters (check keys before they become paths)."""
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def hash_value(value: object, *, file_cache: FileHashCache | None = None) -> str:
    """The type-tagged canonical digest of ``value`` (see the module docstring)."""
    encoder = _Encoder(file_cache)
    try:
        encoder.value(value)
    except RecursionError:
        raise HashingError(
            f"cannot hash this {_type_name(type(value))}: it is nested too deeply or contains "
            "itself"
        ) from None
    return encoder.hexdigest()


def cache_key(
    *,
    kind: str,
    code: str,
    version: str | None,
    params: Mapping[str, str],
    outputs: Sequence[str],
) -> str:
    """The Merkle cache key of a node, from its kind, code, version, params and outputs.

    ``params`` maps each parameter name to the digest of its value (upstream outputs already
    replaced by their content digests); ``outputs`` are the declared names, in order.
    """
    # The same bytes as ``encoder.value((KEY_FORMAT_VERSION, kind, code, version,
    # tuple(sorted(params.items())), tuple(outputs)))``, written without dispatch: this runs
    # once per node per run, so it is on the hot path of a warm run.
    e = _Encoder(None)
    e.tag("cache-key")
    e.tag("tuple")
    e.integer(6)
    e.tag("int")
    e.integer(KEY_FORMAT_VERSION)
    _str(e, kind)
    _str(e, code)
    if version is None:
        e.tag("none")
    else:
        _str(e, version)
    items = sorted(params.items())
    e.tag("tuple")
    e.integer(len(items))
    for name, digest in items:
        e.tag("tuple")
        e.integer(2)
        _str(e, name)
        _str(e, digest)
    e.tag("tuple")
    e.integer(len(outputs))
    for name in outputs:
        _str(e, name)
    return e.hexdigest()


def _str(encoder: _Encoder, value: str) -> None:
    encoder.tag("str")
    encoder.text(value)


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
    if tp in _BUILTIN.registry:
        raise HashingError(f"{_type_name(tp)} already has a built-in hasher; it cannot be replaced")
    name = _type_name(tp)

    def handler(value: Any, encoder: _Encoder) -> None:
        stand_in = fn(value)
        if isinstance(stand_in, tp):
            raise HashingError(
                f"the hasher registered for {name} returned a {name} again; return a stand-in "
                "made of builtins (e.g. a tuple of its fields)"
            )
        encoder.tag("custom")
        encoder.text(name)
        encoder.value(stand_in)

    _USER.register(tp, handler)
    _RESOLVED.clear()


# -- the encoder -----------------------------------------------------------------------------


_DIRECT = 64 * 1024  # frames larger than this bypass the buffer
_TAG_FRAMES: dict[str, bytes] = {}


class _Encoder:
    """Writes the canonical, type-tagged encoding of values into one streaming hasher.

    Small frames collect in a buffer that is hashed in one call (one ``update`` per frame
    costs more than the hashing itself for small values); big buffers go straight to the
    hasher. The byte stream, and so every digest, is the same either way.
    """

    __slots__ = ("buf", "file_cache", "hasher")

    def __init__(self, file_cache: FileHashCache | None) -> None:
        self.hasher = new_hasher()
        self.file_cache = file_cache
        self.buf = bytearray()

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes with no length prefix."""
        if len(data) > _DIRECT:
            self.flush()
            self.hasher.update(data)
        else:
            self.buf += data

    def flush(self) -> xxhash.xxh3_128:
        """Hash what is buffered; returns the hasher (for direct feeding)."""
        if self.buf:
            self.hasher.update(self.buf)
            self.buf.clear()
        return self.hasher

    def hexdigest(self) -> str:
        return self.flush().hexdigest()

    def digest(self) -> bytes:
        return self.flush().digest()

    def length(self, size: int) -> None:
        """The length prefix of a frame whose ``size`` bytes go straight to the hasher."""
        self.buf += _LEN.pack(size)

    def frame(self, data: bytes | bytearray | memoryview) -> None:
        """Length-prefixed bytes (``data`` must be a flat byte buffer)."""
        self.buf += _LEN.pack(len(data))
        self.raw(data)

    def tag(self, name: str) -> None:
        frame = _TAG_FRAMES.get(name)
        if frame is None:
            encoded = name.encode()
            frame = _TAG_FRAMES[name] = _LEN.pack(len(encoded)) + encoded
        self.buf += frame

    def text(self, value: str) -> None:
        self.frame(value.encode("utf-8", "surrogatepass"))

    def integer(self, value: int) -> None:
        self.frame(value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True))

    def value(self, value: object) -> None:
        _handler(type(value))(value, self)

    def sequence(self, tag: str, values: Sequence[Any]) -> None:
        self.tag(tag)
        self.integer(len(values))
        for item in values:
            self.value(item)

    def unordered(self, tag: str, digests: list[bytes]) -> None:
        """Sorted fixed-size digests: the encoding of a dict or set, whatever its order."""
        digests.sort()
        self.tag(tag)
        self.integer(len(digests))
        self.raw(b"".join(digests))

    def child(self, value: object) -> bytes:
        """The raw digest of ``value`` on its own (an element of a dict or set)."""
        encoder = _Encoder(self.file_cache)
        encoder.value(value)
        return encoder.digest()


_Handler = Callable[[Any, _Encoder], None]


def _type_name(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def _float_bytes(value: float) -> bytes:
    return _NAN if math.isnan(value) else _DOUBLE.pack(value)


# -- handlers for builtin and stdlib types ---------------------------------------------------


def _tagged(tag: str, payload: Callable[[Any], bytes] | None = None) -> _Handler:
    """A handler writing ``tag`` and one frame made by ``payload`` (nothing when None)."""

    def handler(value: Any, encoder: _Encoder) -> None:
        encoder.tag(tag)
        if payload is not None:
            encoder.frame(payload(value))

    return handler


def _texts(tag: str, *getters: Callable[[Any], str]) -> _Handler:
    def handler(value: Any, encoder: _Encoder) -> None:
        encoder.tag(tag)
        for get in getters:
            encoder.text(get(value))

    return handler


def _integers(tag: str, *getters: Callable[[Any], int]) -> _Handler:
    def handler(value: Any, encoder: _Encoder) -> None:
        encoder.tag(tag)
        for get in getters:
            encoder.integer(get(value))

    return handler


def _enc_memoryview(value: memoryview, encoder: _Encoder) -> None:
    encoder.tag("bytes")
    encoder.frame(value.cast("B") if value.c_contiguous else value.tobytes())


def _enc_dict(value: dict[Any, Any], encoder: _Encoder) -> None:
    encoder.unordered("dict", [encoder.child(k) + encoder.child(v) for k, v in value.items()])


def _enc_set(value: set[Any] | frozenset[Any], encoder: _Encoder) -> None:
    tag = "frozenset" if isinstance(value, frozenset) else "set"
    encoder.unordered(tag, [encoder.child(v) for v in value])


def _enc_enum(value: enum.Enum, encoder: _Encoder) -> None:
    encoder.tag("enum")
    encoder.text(_type_name(type(value)))
    encoder.value(value.value)


def _enc_fields(tag: str, value: Any, names: Sequence[str], encoder: _Encoder) -> None:
    encoder.tag(tag)
    encoder.text(_type_name(type(value)))
    encoder.integer(len(names))
    for name in names:
        encoder.text(name)
        encoder.value(getattr(value, name))


def _enc_dataclass(value: Any, encoder: _Encoder) -> None:
    names = [f.name for f in dataclasses.fields(value) if f.compare]
    _enc_fields("dataclass", value, names, encoder)


def _enc_namedtuple(value: Any, encoder: _Encoder) -> None:
    _enc_fields("namedtuple", value, value._fields, encoder)


def _enc_path(value: PurePath, encoder: _Encoder) -> None:
    encoder.tag("path")
    encoder.text("windows" if isinstance(value, PureWindowsPath) else "posix")
    encoder.text(str(value))


def _enc_code(value: Any, encoder: _Encoder) -> None:
    """Functions and classes: by qualified name, plus the code fingerprint for user code.

    Library code that its name does not identify (lambdas, local functions, builtin methods
    bound to an object) goes through cloudpickle instead.
    """
    name = f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', '?')}"
    user = is_user_code(value)
    bound = getattr(value, "__self__", None)
    if not user and ("<" in name or not (bound is None or isinstance(bound, types.ModuleType))):
        _enc_pickled(value, encoder)
        return
    encoder.tag("class" if isinstance(value, type) else "function")
    encoder.text(name)
    if user:
        encoder.text(code_fingerprint(value).digest)


def _enc_file(value: File, encoder: _Encoder) -> None:
    encoder.tag("file")
    encoder.text(file_digest(value.path, file_cache=encoder.file_cache))


def _enc_directory(value: Directory, encoder: _Encoder) -> None:
    entries = tree_entries(value.path, file_cache=encoder.file_cache)
    encoder.tag("directory")
    encoder.integer(len(entries))
    for kind, relative, digest in entries:
        encoder.text(kind)
        encoder.text(relative)
        encoder.text(digest)


def _enc_pickled(value: object, encoder: _Encoder) -> None:
    """Anything else: cloudpickle, with a warning once per type."""
    import cloudpickle

    tp = type(value)
    try:
        data = cloudpickle.dumps(value, protocol=5)
    except Exception as exc:
        raise HashingError(
            f"cannot hash a value of type {_type_name(tp)}: it has no hasher and cloudpickle "
            f"failed ({type(exc).__name__}: {exc}). Register one with "
            f"etherealfabric.hashing._values.register_value_hasher({tp.__name__}, fn), or pass a "
            "value made of builtins, dataclasses, numpy arrays or File/Directory instead."
        ) from exc
    _warn_unstable(tp)
    encoder.tag("pickle")
    encoder.text(_type_name(tp))
    encoder.frame(data)


_WARNED: weakref.WeakSet[type] = weakref.WeakSet()


def _warn_unstable(tp: type) -> None:
    if tp in _WARNED:
        return
    _WARNED.add(tp)
    warnings.warn(
        f"values of type {_type_name(tp)} are hashed through cloudpickle; their cache key may "
        "not be stable across runs — register a hasher with register_value_hasher",
        UnstableHashWarning,
        stacklevel=2,
    )


def _no_user_hasher(value: object, encoder: _Encoder) -> None:  # pragma: no cover - marker
    raise AssertionError("unreachable")


_BUILTIN = functools.singledispatch(_enc_pickled)
_USER = functools.singledispatch(_no_user_hasher)
_RESOLVED: dict[type, _Handler] = {}

_BUILTIN_HANDLERS: dict[type[Any], _Handler] = {
    type(None): _tagged("none"),
    type(...): _tagged("ellipsis"),
    bool: _tagged("bool", lambda v: b"\x01" if v else b"\x00"),
    int: _integers("int", int),
    float: _tagged("float", _float_bytes),
    complex: _tagged("complex", lambda v: _float_bytes(v.real) + _float_bytes(v.imag)),
    str: _texts("str", lambda v: v),
    bytes: _tagged("bytes", lambda v: v),
    bytearray: _tagged("bytes", lambda v: v),
    memoryview: _enc_memoryview,
    list: lambda v, e: e.sequence("list", v),
    tuple: lambda v, e: e.sequence("tuple", v),
    dict: _enc_dict,
    set: _enc_set,
    frozenset: _enc_set,
    range: _integers("range", lambda v: v.start, lambda v: v.stop, lambda v: v.step),
    datetime.datetime: _texts("datetime", datetime.datetime.isoformat, lambda v: str(v.fold)),
    datetime.date: _texts("date", datetime.date.isoformat),
    datetime.time: _texts("time", datetime.time.isoformat, lambda v: str(v.fold)),
    datetime.timedelta: _integers(
        "timedelta", lambda v: v.days, lambda v: v.seconds, lambda v: v.microseconds
    ),
    PurePath: _enc_path,
    RefDigest: _texts("ref", lambda v: v.serializer, lambda v: v.digest),
    File: _enc_file,
    Directory: _enc_directory,
    types.FunctionType: _enc_code,
    types.BuiltinFunctionType: _enc_code,
    type: _enc_code,
}
for _tp, _fn in _BUILTIN_HANDLERS.items():
    _BUILTIN.register(_tp, _fn)
del _tp, _fn


def _handler(tp: type) -> _Handler:
    handler = _RESOLVED.get(tp)
    if handler is None:
        _register_imported()
        handler = _RESOLVED[tp] = _resolve(tp)
    return handler


def _resolve(tp: type) -> _Handler:
    """A registered hasher, else an exact built-in one, else a structural rule, else a base's."""
    user = _USER.dispatch(tp)
    if user is not _no_user_hasher:
        return user
    if tp in _BUILTIN.registry:
        return _BUILTIN.registry[tp]
    if issubclass(tp, enum.Enum):
        return _enc_enum
    if dataclasses.is_dataclass(tp):
        return _enc_dataclass
    if issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return _enc_namedtuple
    return _BUILTIN.dispatch(tp)


# -- handlers for modules we never import ourselves ------------------------------------------


def _register_stdlib_extras(module: types.ModuleType) -> None:
    name = module.__name__
    if name == "decimal":
        _BUILTIN.register(module.Decimal, _texts("decimal", str))
    elif name == "fractions":
        _BUILTIN.register(
            module.Fraction, _integers("fraction", lambda v: v.numerator, lambda v: v.denominator)
        )
    elif name == "uuid":
        _BUILTIN.register(module.UUID, _tagged("uuid", lambda v: v.bytes))


def _register_numpy(np: Any) -> None:
    from ._arrays import numpy_handlers  # loaded only once numpy is

    for tp, handler in numpy_handlers(np).items():
        _BUILTIN.register(tp, handler)


def _register_pandas(pd: Any) -> None:
    from ._arrays import pandas_handlers

    for tp, handler in pandas_handlers(pd).items():
        _BUILTIN.register(tp, handler)


_LAZY: dict[str, Callable[[Any], None]] = {
    "decimal": _register_stdlib_extras,
    "fractions": _register_stdlib_extras,
    "uuid": _register_stdlib_extras,
    "numpy": _register_numpy,
    "pandas": _register_pandas,
}


def _register_imported() -> None:
    """Register the handlers of optional modules that have been imported since last time."""
    for name in [n for n in _LAZY if n in sys.modules]:
        register = _LAZY.pop(name, None)
        if register is not None:
            register(sys.modules[name])
            _RESOLVED.clear()


# -- files and folders -----------------------------------------------------------------------


def directory_digest(path: str, *, file_cache: FileHashCache | None = None) -> str:
    """The digest of a folder's whole content (what ``hash_value(Directory(path))`` uses)."""
    return hash_value(Directory(path), file_cache=file_cache)
