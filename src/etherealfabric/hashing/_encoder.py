"""The value encoder: the canonical byte stream behind every value digest, and its handler registry.

Each value is a *tag* frame followed by its payload; a frame is an 8-byte little-endian length
and that many bytes, so an encoding is self-delimiting and two different types never share a
pre-image. The stream goes to one xxh3-128 hasher (:mod:`etherealfabric.hashing._digest`).

This module knows no concrete type: a *handler* ``(value, encoder) -> None`` writes one type's
frames, and modules above register theirs here. The handler for a type is, in order:

1. a hasher registered by the user (``register_value_hasher``), for the type or a base class;
2. a built-in handler registered for exactly that type;
3. the first *shape rule* that matches (enums, dataclasses, named tuples);
4. a built-in handler registered for a base class;
5. cloudpickle (:func:`encode_pickled`), with an :class:`UnstableHashWarning` once per type,
   followed by the digest of the code the pickle names by reference, if any (``_pickled``).

Rules registered with ``register_shape(..., first=True)`` (instances of user classes, whose
class's code is part of their identity) come right after 1; such a rule can hand the value
on to the handler the type would get without it (:func:`handler_after`).

An encoder made with a :class:`CodeSink` (``Encoder(None, code=sink)``) hashes a value *as
code refers to it*, for code fingerprints: functions and classes inside it are written by name
and handed to the sink (which follows them as code pieces of their own), and a value with no
canonical encoding is handed to the sink instead of being pickled.

Handlers for optional modules (numpy, pandas, decimal, ...) are registered the first time a
type is looked up while that module is already imported; this module imports none of them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import struct
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import HashingError
from ._digest import Hasher, new_hasher
from ._loaded import loaded

if TYPE_CHECKING:
    from ._files import FileHashCache

__all__ = [
    "CodeSink",
    "Encoder",
    "Handler",
    "UnstableHashWarning",
    "digest_of",
    "encode_pickled",
    "frame_bytes",
    "handler_after",
    "has_encoding",
    "int_bytes",
    "is_builtin",
    "register_builtin",
    "register_shape",
    "register_user",
    "register_when_imported",
    "set_pickler",
    "text_bytes",
    "type_name",
]

_LEN = struct.Struct("<Q")
_DIRECT = 64 * 1024  # frames larger than this bypass the buffer
_TAG_FRAMES: dict[str, bytes] = {}


class UnstableHashWarning(UserWarning):
    """A value was hashed through cloudpickle; its cache key may differ between runs."""


def digest_of(
    value: object, file_cache: FileHashCache | None = None, *, code: CodeSink | None = None
) -> str:
    """The digest of ``value`` with the handlers registered so far (see ``_values.hash_value``).

    ``code``: hash it as code refers to it (see the module docstring).
    """
    encoder = Encoder(file_cache, code)
    try:
        encoder.value(value)
    except RecursionError:
        raise HashingError(
            f"cannot hash this {type_name(type(value))}: it is nested too deeply or contains itself"
        ) from None
    return encoder.hexdigest()


def type_name(tp: type) -> str:
    """``module.qualname``: how a type is named inside an encoding."""
    return f"{tp.__module__}.{tp.__qualname__}"


class CodeSink(Protocol):
    """Where an encoder in code mode hands what it finds (see the module docstring)."""

    def code(self, obj: object) -> None:
        """A function, class or method found inside a value."""

    def library(self, module: str | None) -> None:
        """Library code (a module name) that a value found inside another one belongs to."""

    def opaque(self, value: object, encoder: Encoder) -> None:
        """A value with no canonical encoding: write something for it and note it."""


class Encoder:
    """Writes the canonical, type-tagged encoding of values into one streaming hasher.

    Small frames collect in a buffer that is hashed in one call (one ``update`` per frame
    costs more than the hashing itself for small values); big buffers go straight to the
    hasher. The byte stream, and so every digest, is the same either way. ``active`` holds the
    ids of the objects being encoded (shared with child encoders), so that a handler can write
    a back reference instead of recursing into a cycle.
    """

    __slots__ = ("active", "buf", "code", "file_cache", "hasher")

    def __init__(
        self,
        file_cache: FileHashCache | None,
        code: CodeSink | None = None,
        active: list[int] | None = None,
    ) -> None:
        self.hasher = new_hasher()
        self.file_cache = file_cache
        self.buf = bytearray()
        self.code = code
        self.active = [] if active is None else active

    def raw(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes with no length prefix."""
        if len(data) > _DIRECT:
            self.flush()
            self.hasher.update(data)
        else:
            self.buf += data

    def flush(self) -> Hasher:
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
            frame = _TAG_FRAMES[name] = frame_bytes(name.encode())
        self.buf += frame

    def text(self, value: str) -> None:
        self.frame(text_bytes(value))

    def integer(self, value: int) -> None:
        self.frame(int_bytes(value))

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
        encoder = Encoder(self.file_cache, self.code, self.active)
        encoder.value(value)
        return encoder.digest()


Handler = Callable[[Any, Encoder], None]


def frame_bytes(data: bytes) -> bytes:
    """A frame in one piece: the length prefix, then ``data``."""
    return _LEN.pack(len(data)) + data


def text_bytes(value: str) -> bytes:
    """The payload of a text frame."""
    return value.encode("utf-8", "surrogatepass")


def int_bytes(value: int) -> bytes:
    """The payload of an integer frame: little-endian two's complement, as short as it gets."""
    return value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)


# -- the fallback: cloudpickle ---------------------------------------------------------------


def encode_pickled(value: object, encoder: Encoder) -> None:
    """Anything else: cloudpickle, with a warning once per type (in code mode: the sink's)."""
    if encoder.code is not None:
        encoder.code.opaque(value, encoder)
        return
    tp = type(value)
    try:
        data, code = _pickler[0](value, 5)
    except Exception as exc:
        raise HashingError(
            f"cannot hash a value of type {type_name(tp)}: it has no hasher and cloudpickle "
            f"failed ({type(exc).__name__}: {exc}). Register one with "
            f"etherealfabric.hashing._values.register_value_hasher({tp.__name__}, fn), or pass a "
            "value made of builtins, dataclasses, numpy arrays or File/Directory instead."
        ) from exc
    _warn_unstable(tp)
    encoder.tag("pickle")
    encoder.text(type_name(tp))
    encoder.frame(data)
    if code is not None:  # the code its pickle names by reference (``_pickled``)
        encoder.tag("pickled-code")
        encoder.text(code)


def _plain_pickle(value: object, protocol: int) -> tuple[bytes, str | None]:
    import cloudpickle

    return cloudpickle.dumps(value, protocol=protocol), None


#: ``(value, protocol) -> (its cloudpickle, the digest of the code it names or None)``: set
#: by ``_pickled``, which follows that code (it needs fingerprints, above this module)
_pickler: list[Callable[[object, int], tuple[bytes, str | None]]] = [_plain_pickle]


def set_pickler(pickler: Callable[[object, int], tuple[bytes, str | None]]) -> None:
    """How :func:`encode_pickled` pickles (see ``_pickler``)."""
    _pickler[0] = pickler


_WARNED: weakref.WeakSet[type] = weakref.WeakSet()


#: what is being hashed, for the warning: (``parameter 'x' of node 'pick'``, the node's code)
_HASHING_FOR: contextvars.ContextVar[tuple[str, object] | None] = contextvars.ContextVar(
    "etherealfabric_hashing_for", default=None
)


@contextlib.contextmanager
def hashing_for(what: str, code: object) -> Iterator[None]:
    """Name what the values hashed inside are (``parameter 'x' of node 'pick'``) and the code
    it belongs to (a node's function or class): an :class:`UnstableHashWarning` names them
    and points at that code's file and line."""
    token = _HASHING_FOR.set((what, code))
    try:
        yield
    finally:
        _HASHING_FOR.reset(token)


def _code_line(code: object) -> tuple[str, int] | None:
    """The file and first line of a function's or class's source, if known."""
    try:
        target = inspect.unwrap(code)  # type: ignore[arg-type]
        path = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (TypeError, OSError, ValueError):
        return None
    return (path, max(line, 1)) if path else None


def _warn_unstable(tp: type) -> None:
    if tp in _WARNED:
        return
    _WARNED.add(tp)
    context = _HASHING_FOR.get()
    what = f"{context[0]}: " if context is not None else ""
    message = (
        f"{what}values of type {type_name(tp)} are hashed through cloudpickle; their cache key "
        "may not be stable across runs (the node may re-run, or share a result it should not) "
        "— pass a value made of builtins, dataclasses or arrays, or register a hasher with "
        "register_value_hasher"
    )
    location = _code_line(context[1]) if context is not None else None
    if location is None:
        warnings.warn(message, UnstableHashWarning, stacklevel=2)
    else:
        warnings.warn_explicit(message, UnstableHashWarning, location[0], location[1])


# -- the registry ----------------------------------------------------------------------------


def _no_user_hasher(value: object, encoder: Encoder) -> None:  # pragma: no cover - marker
    raise AssertionError("unreachable")


_BUILTIN = functools.singledispatch(encode_pickled)
_USER = functools.singledispatch(_no_user_hasher)
_SHAPES: list[tuple[Callable[[type], bool], Handler]] = []
_FIRST: list[tuple[Callable[[type], bool], Handler]] = []
_LAZY: dict[str, Callable[[types.ModuleType], dict[type[Any], Handler]]] = {}
_RESOLVED: dict[type, Handler] = {}
_AFTER: dict[type, Handler] = {}


def register_builtin(handlers: dict[type[Any], Handler]) -> None:
    """Register built-in handlers: for exactly these types, and for their subclasses."""
    for tp, handler in handlers.items():
        _BUILTIN.register(tp, handler)
    _RESOLVED.clear()
    _AFTER.clear()


def is_builtin(tp: type) -> bool:
    """True if ``tp`` itself has a built-in handler (it cannot be overridden)."""
    return tp in _BUILTIN.registry


def register_shape(test: Callable[[type], bool], handler: Handler, *, first: bool = False) -> None:
    """A rule for types of a shape (``test(tp)``), tried after the exact built-in types.

    ``first=True``: tried before them, right after the user's hashers.
    """
    (_FIRST if first else _SHAPES).append((test, handler))
    _RESOLVED.clear()
    _AFTER.clear()


def register_when_imported(
    module: str, handlers: Callable[[types.ModuleType], dict[type[Any], Handler]]
) -> None:
    """Register ``handlers(module)`` once ``module`` has been imported (by someone else)."""
    _LAZY[module] = handlers


def register_user(tp: type, handler: Handler) -> None:
    """A user's hasher for ``tp`` and its subclasses; it wins over every built-in rule."""
    _USER.register(tp, handler)
    _RESOLVED.clear()
    _AFTER.clear()


def _handler(tp: type) -> Handler:
    handler = _RESOLVED.get(tp)
    if handler is None:
        _register_imported()
        handler = _RESOLVED[tp] = _resolve(tp)
    return handler


def has_encoding(tp: type) -> bool:
    """True if values of ``tp`` have a canonical encoding (not the cloudpickle fallback)."""
    return _handler(tp) is not encode_pickled


def handler_after(tp: type) -> Handler:
    """The handler ``tp`` would get if no ``first=True`` rule existed."""
    handler = _AFTER.get(tp)
    if handler is None:
        _register_imported()
        handler = _AFTER[tp] = _resolve(tp, first=False)
    return handler


def _resolve(tp: type, *, first: bool = True) -> Handler:
    """A registered hasher, else an exact built-in one, else a shape rule, else a base's."""
    user = _USER.dispatch(tp)
    if user is not _no_user_hasher:
        return user
    if first:
        for test, handler in _FIRST:
            if test(tp):
                return handler
    if tp in _BUILTIN.registry:
        return _BUILTIN.registry[tp]
    for test, handler in _SHAPES:
        if test(tp):
            return handler
    return _BUILTIN.dispatch(tp)


def _register_imported() -> None:
    """Register the handlers of optional modules that have been imported since last time.

    A module leaves ``_LAZY`` only once its handlers are registered: another thread that asks
    meanwhile registers them too (the same ones) instead of resolving that library's types
    without them (making the handlers can take a while: pandas' import ``_frames``)."""
    for name in [n for n in list(_LAZY) if loaded(n) is not None]:  # (others pop meanwhile)
        handlers = _LAZY.get(name)
        if handlers is not None:
            register_builtin(handlers(sys.modules[name]))
            _LAZY.pop(name, None)
