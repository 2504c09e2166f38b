"""Handlers for builtin and standard-library types, files and folders, and upstream digests.

Importing this module registers them with :mod:`etherealfabric.hashing._encoder`. The encodings,
part of every digest (``T`` is the type's ``module.qualname``)::

    none | bool b | int <two's complement> | float <IEEE double; every NaN alike>
    complex re im | str <utf-8> | bytes <raw> (bytes and memoryview) | bytearray <raw>
    list n v... | tuple n v... | dict n <sorted key-digest+value-digest pairs>
    OrderedDict n (key value)...  (in order: two OrderedDicts in another order are unequal)
    set / frozenset n <sorted element digests> | range start stop step
    enum T value | dataclass T n (field value)... | namedtuple T n (field value)...
    namespace n <sorted name-digest+value-digest pairs>  (types.SimpleNamespace; argparse.Namespace
                                                        as argparse.namespace)
    datetime iso fold | date iso | time iso fold | timedelta d s us | path flavour text
    datetime.zoned iso fold zone | time.zoned iso fold zone  (a tzinfo other than a fixed
                                 offset: the zone's kind and key count, not just the offset)
    decimal text | fraction p q | uuid 16 bytes | ellipsis
    mappingproxy <as dict> | re.pattern pattern flags | struct format  (a compiled regex or
                                 struct: what it was compiled from, not only its type)
    ref serializer digest       (RefDigest: an upstream output, by its content digest)
    file content-digest | directory n (kind relpath digest)...
    numpy.*  (see etherealfabric.hashing._arrays) | pandas.* arrow.* polars.* (see _frames)
    polars.LazyFrame, arrow datasets: plan and the content of the files they read (_scans)

A plain ``dict`` hashes without its order, as ``==`` compares dicts: a node whose result
depends on the iteration order of a dict parameter should take an ``OrderedDict`` or a list
of pairs. ``bytes`` and ``bytearray`` differ (they are different types to the code that gets
them); a ``memoryview`` hashes as the bytes it shows.

Subclasses of builtin types hash like their base, except enums, named tuples and dataclasses
(shape rules), and types with a registered hasher. ``File`` hashes as its content digest and
``Directory`` as every entry below it (:mod:`etherealfabric.hashing._files`); the path is not
part of either. Handlers for argparse, decimal, fractions, uuid, re, struct, numpy and pandas are registered the first
time a value is hashed while that module is already imported; this module imports none of them.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import math
import struct
import types
from collections.abc import Callable, Sequence
from pathlib import PurePath, PureWindowsPath
from typing import Any

from ..define._files import Directory, File
from ..errors import HashingError
from . import _secret  # noqa: F401  (registers the Secret handlers: keyed, never plain)
from ._arrays import numpy_handlers
from ._digest import RefDigest
from ._encoder import (
    Encoder,
    Handler,
    digest_of,
    int_bytes,
    register_builtin,
    register_shape,
    register_when_imported,
    text_bytes,
    type_name,
)
from ._files import file_digest, tree_entries
from ._scans import dataset_handlers, lazyframe_handlers

__all__ = ["SCALARS", "SCALAR_HANDLERS", "hash_plain"]

_DOUBLE = struct.Struct("<d")
_NAN = _DOUBLE.pack(math.nan)


def hash_plain(value: object) -> str:
    """The digest of a value made of builtin and standard-library types (as ``hash_value``).

    Code met inside it (an enum member of a user enum, an instance of a user ``float``
    subclass) is written by name only, never by fingerprint: the code fingerprints, which hash
    their constants with this, follow that code themselves.
    """
    return digest_of(value, code=_NO_CODE)


class _NamesOnly:
    """A code sink that follows nothing: code by name, and no value without an encoding."""

    def code(self, obj: object) -> None:
        pass

    def library(self, module: str | None) -> None:
        pass

    def opaque(self, value: object, encoder: Encoder) -> None:
        raise HashingError(f"{type_name(type(value))} is not a plain value")


_NO_CODE = _NamesOnly()


def _float_bytes(value: float) -> bytes:
    return _NAN if math.isnan(value) else _DOUBLE.pack(value)


def _tagged(tag: str, payload: Callable[[Any], bytes] | None = None) -> Handler:
    """A handler writing ``tag`` and one frame made by ``payload`` (nothing when None)."""

    def handler(value: Any, encoder: Encoder) -> None:
        encoder.tag(tag)
        if payload is not None:
            encoder.frame(payload(value))

    return handler


def _texts(tag: str, *getters: Callable[[Any], str]) -> Handler:
    def handler(value: Any, encoder: Encoder) -> None:
        encoder.tag(tag)
        for get in getters:
            encoder.text(get(value))

    return handler


def _integers(tag: str, *getters: Callable[[Any], int]) -> Handler:
    def handler(value: Any, encoder: Encoder) -> None:
        encoder.tag(tag)
        for get in getters:
            encoder.integer(get(value))

    return handler


def _enc_memoryview(value: memoryview, encoder: Encoder) -> None:
    encoder.tag("bytes")
    encoder.frame(value.cast("B") if value.c_contiguous else value.tobytes())


def _enc_dict(value: dict[Any, Any], encoder: Encoder) -> None:
    encoder.unordered("dict", [encoder.child(k) + encoder.child(v) for k, v in value.items()])


def _enc_mappingproxy(value: types.MappingProxyType[Any, Any], encoder: Encoder) -> None:
    encoder.tag("mappingproxy")
    _enc_dict(dict(value), encoder)


def _enc_ordered_dict(value: collections.OrderedDict[Any, Any], encoder: Encoder) -> None:
    encoder.tag("OrderedDict")
    encoder.integer(len(value))
    for key, item in value.items():
        encoder.value(key)
        encoder.value(item)


def _zoned(tag: str, iso: Callable[[Any], str]) -> Handler:
    """datetime/time: iso text and fold, plus the zone when it is more than a fixed offset."""

    def handler(value: Any, encoder: Encoder) -> None:
        zoned = value.tzinfo is not None and type(value.tzinfo) is not datetime.timezone
        encoder.tag(f"{tag}.zoned" if zoned else tag)
        encoder.text(iso(value))
        encoder.text(str(value.fold))
        if zoned:
            from ._frames import zone_text  # (the frames' module: loaded when first needed)

            encoder.text(zone_text(value.tzinfo))

    return handler


def _namespace(tag: str) -> Handler:
    """A namespace (``types.SimpleNamespace``, ``argparse.Namespace``): its attributes,
    without their order (as ``==`` compares namespaces)."""

    def handler(value: Any, encoder: Encoder) -> None:
        items = vars(value).items()
        encoder.unordered(tag, [encoder.child(k) + encoder.child(v) for k, v in items])

    return handler


def _enc_set(value: set[Any] | frozenset[Any], encoder: Encoder) -> None:
    tag = "frozenset" if isinstance(value, frozenset) else "set"
    encoder.unordered(tag, [encoder.child(v) for v in value])


def _enc_enum(value: enum.Enum, encoder: Encoder) -> None:
    encoder.tag("enum")
    encoder.text(type_name(type(value)))
    encoder.value(value.value)


def _enc_fields(tag: str, value: Any, names: Sequence[str], encoder: Encoder) -> None:
    encoder.tag(tag)
    encoder.text(type_name(type(value)))
    encoder.integer(len(names))
    for name in names:
        encoder.text(name)
        encoder.value(getattr(value, name))


def _enc_dataclass(value: Any, encoder: Encoder) -> None:
    names = [f.name for f in dataclasses.fields(value) if f.compare]
    _enc_fields("dataclass", value, names, encoder)


def _enc_namedtuple(value: Any, encoder: Encoder) -> None:
    _enc_fields("namedtuple", value, value._fields, encoder)


def _is_namedtuple(tp: type) -> bool:
    return issubclass(tp, tuple) and hasattr(tp, "_fields")


def _enc_path(value: PurePath, encoder: Encoder) -> None:
    encoder.tag("path")
    encoder.text("windows" if isinstance(value, PureWindowsPath) else "posix")
    encoder.text(str(value))


def _enc_file(value: File, encoder: Encoder) -> None:
    encoder.tag("file")
    encoder.text(file_digest(value.path, file_cache=encoder.file_cache))


def _enc_directory(value: Directory, encoder: Encoder) -> None:
    entries = tree_entries(value.path, file_cache=encoder.file_cache)
    encoder.tag("directory")
    encoder.integer(len(entries))
    for kind, relative, digest in entries:
        encoder.text(kind)
        encoder.text(relative)
        encoder.text(digest)


#: the scalars whose encoding is a tag and at most one frame: type -> (tag, payload); their
#: handlers (:data:`SCALAR_HANDLERS`) are made from this table, and so is the direct path
#: of output value digests (``_outputs``)
SCALARS: dict[type, tuple[str, Callable[[Any], bytes] | None]] = {
    type(None): ("none", None),
    bool: ("bool", lambda v: b"\x01" if v else b"\x00"),
    int: ("int", lambda v: int_bytes(int(v))),
    float: ("float", _float_bytes),
    str: ("str", text_bytes),
}
SCALAR_HANDLERS: dict[type, Handler] = {tp: _tagged(*spec) for tp, spec in SCALARS.items()}

register_builtin(
    {
        **SCALAR_HANDLERS,
        type(...): _tagged("ellipsis"),
        complex: _tagged("complex", lambda v: _float_bytes(v.real) + _float_bytes(v.imag)),
        bytes: _tagged("bytes", lambda v: v),
        bytearray: _tagged("bytearray", lambda v: v),
        memoryview: _enc_memoryview,
        list: lambda v, e: e.sequence("list", v),
        tuple: lambda v, e: e.sequence("tuple", v),
        dict: _enc_dict,
        collections.OrderedDict: _enc_ordered_dict,
        set: _enc_set,
        frozenset: _enc_set,
        types.SimpleNamespace: _namespace("namespace"),
        types.MappingProxyType: _enc_mappingproxy,
        range: _integers("range", lambda v: v.start, lambda v: v.stop, lambda v: v.step),
        datetime.datetime: _zoned("datetime", datetime.datetime.isoformat),
        datetime.date: _texts("date", datetime.date.isoformat),
        datetime.time: _zoned("time", datetime.time.isoformat),
        datetime.timedelta: _integers(
            "timedelta", lambda v: v.days, lambda v: v.seconds, lambda v: v.microseconds
        ),
        PurePath: _enc_path,
        RefDigest: _texts("ref", lambda v: v.serializer, lambda v: v.digest),
        File: _enc_file,
        Directory: _enc_directory,
    }
)
register_shape(lambda tp: issubclass(tp, enum.Enum), _enc_enum)
register_shape(dataclasses.is_dataclass, _enc_dataclass)
register_shape(_is_namedtuple, _enc_namedtuple)


# -- modules we never import ourselves -------------------------------------------------------


def _stdlib_extras(module: types.ModuleType) -> dict[type[Any], Handler]:
    name = module.__name__
    if name == "decimal":
        return {module.Decimal: _texts("decimal", str)}
    if name == "argparse":  # the parsed arguments a script hands on
        return {module.Namespace: _namespace("argparse.namespace")}
    if name == "fractions":
        fraction = _integers("fraction", lambda v: v.numerator, lambda v: v.denominator)
        return {module.Fraction: fraction}
    if name == "re":  # a compiled pattern: its text and flags
        return {module.Pattern: _compiled("re.pattern", lambda v: (v.pattern, v.flags))}
    if name == "struct":
        return {module.Struct: _compiled("struct", lambda v: v.format)}
    return {module.UUID: _tagged("uuid", lambda v: v.bytes)}


def _compiled(tag: str, source: Callable[[Any], object]) -> Handler:
    """An object compiled from a few values (a regex, a struct): by those values."""

    def handler(value: Any, encoder: Encoder) -> None:
        encoder.tag(tag)
        encoder.value(source(value))

    return handler


for _name in ("argparse", "decimal", "fractions", "uuid", "re", "struct"):
    register_when_imported(_name, _stdlib_extras)


# pandas, pyarrow and polars values: their handlers' module (_frames) is imported with the
# first such value hashed, not by every run


def _pandas(pd: types.ModuleType) -> dict[type[Any], Handler]:
    from ._frames import pandas_handlers

    return pandas_handlers(pd)


def _arrow(pa: types.ModuleType) -> dict[type[Any], Handler]:
    from ._frames import arrow_handlers

    return arrow_handlers(pa)


def _polars(pl: types.ModuleType) -> dict[type[Any], Handler]:
    from ._frames import polars_handlers

    return polars_handlers(pl) | lazyframe_handlers(pl)


register_when_imported("numpy", numpy_handlers)
register_when_imported("pandas", _pandas)
register_when_imported("pyarrow", _arrow)
register_when_imported("polars", _polars)
register_when_imported("pyarrow.dataset", dataset_handlers)
