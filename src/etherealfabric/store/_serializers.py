"""Serializers turn output values into bytes and back; a registry picks one per value.

Built-ins: ``json`` (compact, keys in order, strict: no NaN), ``pickle`` (protocol 5),
``cloudpickle``, ``npy`` (numpy's ``.npy`` format, never pickled), ``parquet`` (pandas
DataFrames), ``arrow`` (pyarrow Tables, Arrow IPC) and ``polars`` (polars DataFrames, parquet),
the last three in :mod:`._tables`, and ``model`` (estimators, :mod:`._models`). The
automatic choice, in order:

1. a type registered by the user (``register_serializer(s, types=(Foo,))``, by MRO);
2. a ``pandas.DataFrame`` that parquet stores exactly, when pyarrow is installed →
   ``parquet`` (:func:`._tables.parquet_fits`; other frames go to cloudpickle);
3. a ``pyarrow.Table`` → ``arrow``; a ``polars.DataFrame`` that parquet stores exactly →
   ``polars`` (:func:`._tables.polars_fits`);
4. a plain ``numpy.ndarray`` of a non-object dtype → ``npy``; a scikit-learn (or XGBoost,
   LightGBM, CatBoost, statsmodels) model → ``model`` (cloudpickle behind a header naming
   the versions of the libraries it was made with; loading under others warns);
5. a value that round-trips exactly through JSON → ``json``: ``None``, ``bool``, ``int``,
   finite ``float``, ``str`` and lists / str-keyed dicts of those (exact types: no tuples, no
   subclasses such as ``numpy.float64``). The check gives up on very large or deep values,
   which then go to cloudpickle;
6. anything else → ``cloudpickle``.

Serializers write to a binary file object and must stream: the writer hashes what it is given
and spills it to disk, so a large value is never held twice in memory. ``npy`` writes the array
buffer in slices straight from the array's memory. ``json`` builds its text in one piece (the C
encoder is several times faster than streaming, and values that choose JSON are small).

Bytes are deterministic within a Python version (and pyarrow version, for parquet and arrow):
JSON sorts keys, numpy writes a canonical header and pickle is stable for equal values of
builtin types (sets of strings are the known exception across processes, since their order
follows the per-process string hash).

numpy, pyarrow and cloudpickle are imported only when a value needs them.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, BinaryIO

from ..define._secret import refusing_secrets
from ..errors import SerializationError, StoreError
from ..hashing._loaded import loaded
from ._json import JsonSerializer, is_json_safe, json_bytes
from ._models import ModelSerializer, is_model
from ._serializer_base import Serializer
from ._tables import (
    ArrowSerializer,
    ParquetSerializer,
    PolarsSerializer,
    is_arrow_table,
    parquet_fits,
    polars_fits,
)
from ._writer import StoredObject, inline_object

if TYPE_CHECKING:
    import numpy

    from ._base import Store

__all__ = [
    "CloudpickleSerializer",
    "JsonSerializer",
    "NpySerializer",
    "PickleSerializer",
    "PortableSerializers",
    "Serializer",
    "SerializerRegistry",
    "choose_serializer",
    "default_registry",
    "dump_value",
    "get_serializer",
    "npy_header",
    "register_serializer",
    "write_value",
]

PICKLE_PROTOCOL = 5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# -- built-ins -----------------------------------------------------------------------------------
class PickleSerializer(Serializer):
    """The standard library's pickle, protocol 5 (large buffers are written without a copy)."""

    name = "pickle"

    def dump(self, value: object, fp: BinaryIO) -> None:
        from ..hashing._pickled import dump_pickle  # (notes the code it names, for keys)

        dump_pickle(value, fp, cloud=False, protocol=PICKLE_PROTOCOL)

    def load(self, fp: BinaryIO) -> object:
        import pickle

        return pickle.load(fp)

    def loads(self, data: bytes) -> object:
        import pickle

        return pickle.loads(data)


class CloudpickleSerializer(PickleSerializer):
    """cloudpickle: also lambdas, closures and classes defined in ``__main__``."""

    name = "cloudpickle"

    def dump(self, value: object, fp: BinaryIO) -> None:
        from ..hashing._pickled import dump_pickle

        dump_pickle(value, fp, cloud=True, protocol=PICKLE_PROTOCOL)


class NpySerializer(Serializer):
    """numpy's ``.npy`` format, without pickle: object arrays are refused.

    Contiguous arrays are written as the standard header followed by slices of the array's own
    memory (no copy); the bytes equal ``numpy.save``'s. Their size is announced to a store's
    writer first (``ObjectWriter.expect_size``), which may allocate the file at once. Other arrays go through
    ``numpy.lib.format.write_array``, which copies 16 MiB at a time.
    """

    name = "npy"
    chunk_bytes = 4 * 1024 * 1024

    def dump(self, value: object, fp: BinaryIO) -> None:
        import numpy

        if not isinstance(value, numpy.ndarray):
            raise TypeError(f"npy stores numpy arrays only, not {type(value).__name__}")
        if value.dtype.hasobject:
            raise TypeError(f"npy does not store arrays of dtype {value.dtype} (they need pickle)")
        if not self._dump_contiguous(value, fp):
            numpy.lib.format.write_array(fp, value, allow_pickle=False)

    def _dump_contiguous(self, array: numpy.ndarray[Any, Any], fp: BinaryIO) -> bool:
        """Write a contiguous array without copying it; False if it is not contiguous."""
        import numpy

        if array.flags.c_contiguous:
            flat = array.reshape(-1)
        elif array.flags.f_contiguous:
            flat = array.T.reshape(-1)
        else:
            return False
        header = _npy_header(array)
        if header is None:  # header too long or non-latin-1 field names: nothing written yet
            return False
        expect_size = getattr(fp, "expect_size", None)  # an ObjectWriter: allocate it at once
        if expect_size is not None:
            expect_size(len(header) + array.nbytes)
        fp.write(header)
        data = flat.view(numpy.uint8)
        for start in range(0, data.size, self.chunk_bytes):
            fp.write(data[start : start + self.chunk_bytes].data)
        return True

    def load(self, fp: BinaryIO) -> object:
        import numpy

        return numpy.lib.format.read_array(fp, allow_pickle=False)

    def load_path(self, path: str) -> object:
        """A read-only memory map of the stored file: pages are read when touched, and the
        array cannot be changed (it is shared, see ``store/_loading.py``)."""
        import numpy

        mapped = numpy.load(path, mmap_mode="r", allow_pickle=False)
        return mapped.view(numpy.ndarray)  # a plain array (its base keeps the map open)


def _npy_header(array: Any) -> bytes | None:
    """The ``.npy`` header of a contiguous array; None if numpy cannot write a 1.0 one."""
    import numpy

    fmt = numpy.lib.format
    buffer = io.BytesIO()
    try:
        fmt.write_array_header_1_0(buffer, fmt.header_data_from_array_1_0(array))
    except ValueError:
        return None
    return buffer.getvalue()


def npy_header(value: object, registry: SerializerRegistry | None = None) -> bytes | None:
    """What ``npy`` writes before a C-contiguous array's memory (its object is the two); None
    for another value, or when the registry's ``npy`` is not the built-in one."""
    numpy = loaded("numpy")
    if numpy is None or not isinstance(value, numpy.ndarray) or value.dtype.hasobject:
        return None
    if not value.flags.c_contiguous:
        return None
    if type((registry or default_registry).get("npy")) is not NpySerializer:
        return None
    return _npy_header(value)


# -- automatic choice ------------------------------------------------------------------------------
_NPY_KINDS = frozenset("biufcmMSUV")
#: the exact types JSON stores (when their content fits): none is a library's value
_JSON_TYPES = frozenset({type(None), bool, int, float, str, list, dict})
_MEMO_TYPES = 10_000  # types whose registered serializer a registry remembers


def is_npy_array(value: object) -> bool:
    """True for a plain ``numpy.ndarray`` (not a subclass) of a non-object, built-in dtype."""
    numpy = loaded("numpy")
    if numpy is None or type(value) is not numpy.ndarray:
        return False
    dtype = value.dtype  # type: ignore[attr-defined]
    return not dtype.hasobject and dtype.kind in _NPY_KINDS


# -- registry --------------------------------------------------------------------------------------
#: serializers registered beyond the built-ins, each with the types that choose it
PortableSerializers = tuple[tuple["Serializer", tuple[type, ...]], ...]


class SerializerRegistry:
    """Serializers by name, and the types whose values choose one automatically."""

    def __init__(self, serializers: Iterable[Serializer] = ()) -> None:
        self._by_name: dict[str, Serializer] = {}
        self._by_type: dict[type, Serializer] = {}
        #: exact type -> the serializer registered for it or a base class (None: none), as
        #: :meth:`choose` found it; replaced by an empty one whenever ``_by_type`` changes
        self._registered: dict[type, Serializer | None] = {}
        self._lock = threading.Lock()
        for serializer in serializers:
            self.register(serializer)
        self._base = frozenset(self._by_name)  # what every process has without registering

    def portable(self) -> PortableSerializers:
        """What was registered beyond the built-ins, with its types: what a task carries.

        A worker in another process (``processes``, Dask, Celery) never ran the user's
        ``register_serializer(...)`` calls; the task brings these along (cloudpickled, so
        classes defined in the user's script travel by value) and the worker reads and writes
        with :meth:`extended`. Empty, and free, when nothing was registered.
        """
        with self._lock:
            types: dict[str, list[type]] = {}
            for kind, serializer in self._by_type.items():
                types.setdefault(serializer.name, []).append(kind)
            return tuple(
                (serializer, tuple(types.get(name, ())))
                for name, serializer in sorted(self._by_name.items())
                if name not in self._base
            )

    def extended(self, extra: PortableSerializers) -> SerializerRegistry:
        """This registry plus ``extra`` (from :meth:`portable`), which wins on conflicts.

        Returns ``self`` when ``extra`` adds nothing, so the common case costs nothing; never
        changes this registry (a worker process stays as it was).
        """
        if all(self._by_name.get(s.name) is s for s, _ in extra):
            return self
        registry = SerializerRegistry()
        with self._lock:
            registry._by_name = dict(self._by_name)
            registry._by_type = dict(self._by_type)
        registry._base = self._base
        for serializer, types in extra:
            registry.register(serializer, types=types, replace=True)
        return registry

    def register(
        self, serializer: Serializer, *, types: tuple[type, ...] = (), replace: bool = False
    ) -> None:
        """Add ``serializer``; values of ``types`` (and their subclasses) will choose it.

        Registering a different serializer under a taken name, or for a type that already has
        one, needs ``replace=True`` (registering the same class again, as a re-run notebook
        cell does, replaces silently).
        """
        name = _check_name(serializer)
        with self._lock:
            current = self._by_name.get(name)
            if current is not None and not replace and not _same_kind(current, serializer):
                raise SerializationError(
                    f"a serializer named {name!r} is already registered ({current!r}); "
                    "pass replace=True to replace it"
                )
            self._check_types(serializer, types, replace)
            self._by_name[name] = serializer
            self._by_type.update(dict.fromkeys(types, serializer))
            self._registered = {}  # after the update: a choice made meanwhile is dropped

    def _check_types(self, serializer: Serializer, types: tuple[type, ...], replace: bool) -> None:
        for kind in types:
            if not isinstance(kind, type):
                raise SerializationError(f"types must be classes, got {kind!r}")
            current = self._by_type.get(kind)
            if current is not None and not replace and not _same_kind(current, serializer):
                raise SerializationError(
                    f"values of type {kind.__qualname__} already use serializer "
                    f"{current.name!r}; pass replace=True to use {serializer.name!r} instead"
                )

    def get(self, name: str) -> Serializer:
        """The serializer called ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise SerializationError(
                f"unknown serializer {name!r}; known serializers: {', '.join(self.names())}. "
                "Register your own with register_serializer(...)"
            ) from None

    def choose(self, value: object) -> Serializer:
        """The serializer for ``value`` when none was chosen (see the module docstring)."""
        kind = type(value)
        memo = self._registered  # read first: a register() meanwhile replaces it
        try:
            chosen = memo[kind]
        except KeyError:
            chosen = next((s for s in map(self._by_type.get, kind.__mro__) if s is not None), None)
            if len(memo) < _MEMO_TYPES:  # classes made on the fly are not kept forever
                memo[kind] = chosen
        if chosen is not None:
            return chosen
        if kind not in _JSON_TYPES:  # no library serializer takes these
            chosen = self._by_library(value)
            if chosen is not None:
                return chosen
        return self.get("json" if is_json_safe(value) else "cloudpickle")

    def _by_library(self, value: object) -> Serializer | None:
        """The serializer of a library's values (steps 2-4 of the choice), if ``value`` is one."""
        if "parquet" in self._by_name and parquet_fits(value):
            return self.get("parquet")
        if "arrow" in self._by_name and is_arrow_table(value):
            return self.get("arrow")
        if "polars" in self._by_name and polars_fits(value):
            return self.get("polars")
        if is_npy_array(value):
            return self.get("npy")
        if "model" in self._by_name and is_model(value):
            return self.get("model")
        return None

    def names(self) -> list[str]:
        """Names of the registered serializers, sorted."""
        return sorted(self._by_name)

    def knows(self, name: object) -> bool:
        """Whether ``name`` is a registered serializer's (a record's, checked before a hit)."""
        return isinstance(name, str) and name in self._by_name


def _same_kind(old: Serializer, new: Serializer) -> bool:
    """True when ``new`` re-registers ``old``: same name and class name, as when a notebook
    cell or a module runs again. Such a registration replaces without ``replace=True``."""
    return old.name == new.name and _type_name(old) == _type_name(new)


def _check_name(serializer: Serializer) -> str:
    if not isinstance(serializer, Serializer):
        raise SerializationError(
            f"expected a Serializer instance, got {type(serializer).__name__}; "
            "subclass etherealfabric.store._serializers.Serializer"
        )
    name = getattr(serializer, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise SerializationError(
            f"{type(serializer).__name__}.name must be a short name of letters, digits and "
            f"'_.+-', got {name!r}"
        )
    return name


def builtin_serializers() -> list[Serializer]:
    """Fresh instances of the built-in serializers."""
    return [
        JsonSerializer(),
        PickleSerializer(),
        CloudpickleSerializer(),
        NpySerializer(),
        ParquetSerializer(),
        ArrowSerializer(),
        PolarsSerializer(),
        ModelSerializer(),
    ]


default_registry = SerializerRegistry(builtin_serializers())


def register_serializer(
    serializer: Serializer, *, types: tuple[type, ...] = (), replace: bool = False
) -> None:
    """Register ``serializer`` in the default registry (see :meth:`SerializerRegistry.register`)."""
    default_registry.register(serializer, types=types, replace=replace)


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name`` in the default registry."""
    return default_registry.get(name)


def choose_serializer(value: object) -> Serializer:
    """The default registry's automatic choice for ``value``."""
    return default_registry.choose(value)


# -- dumping with context --------------------------------------------------------------------------
def dump_value(
    value: object,
    fp: BinaryIO,
    serializer: Serializer,
    *,
    node: str | None = None,
    output: str | None = None,
) -> None:
    """``serializer.dump(value, fp)``, turning failures into a :class:`SerializationError`.

    The message names the node, output, type and serializer and suggests what to do. Errors
    of the store being written to (:class:`StoreError`) pass through unchanged. A value that
    holds a :class:`~etherealfabric.define._secret.Secret` cannot be pickled here.
    """
    try:
        with refusing_secrets():  # pickling a Secret raises: secrets are never stored
            serializer.dump(value, fp)
    except StoreError:
        raise
    except Exception as exc:
        type_name = _type_name(value)
        raise SerializationError(
            _dump_message(type_name, serializer.name, exc, node=node, output=output),
            node=node,
            output=output,
            type_name=type_name,
        ) from exc


def write_value(
    store: Store,
    value: object,
    serializer: Serializer,
    inline_limit: int,
    *,
    node: str | None = None,
    output: str | None = None,
) -> StoredObject:
    """``value`` serialized into a new object of ``store`` (:meth:`Store.writer`, then
    :func:`dump_value`); the built-in ``json``'s bytes are made first, in one piece, and kept
    inline as the writer would keep them (:func:`~._writer.inline_object`) when they fit."""
    data = json_bytes(value, serializer)
    if data is not None:
        small = inline_object(data, inline_limit)
        if small is not None:
            return small
    with store.writer(inline_limit=inline_limit) as writer:
        if data is not None:
            writer.write(data)  # what JsonSerializer.dump writes
        else:
            dump_value(value, writer, serializer, node=node, output=output)
        return writer.commit()


def _type_name(value: object) -> str:
    kind = type(value)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _dump_message(
    type_name: str, serializer: str, exc: Exception, *, node: str | None, output: str | None
) -> str:
    where = " ".join(
        part
        for part in (f"node {node!r}" if node else "", f"output {output!r}" if output else "")
        if part
    )
    prefix = f"{where}: " if where else ""
    deep = any(isinstance(e, RecursionError) for e in (exc, exc.__cause__, exc.__context__))
    reason = "it is nested too deeply (or links too long a chain)" if deep else str(exc)
    problem = f"cannot serialize value of type {type_name} with {serializer!r}: {reason}"
    if serializer == "cloudpickle":
        what = "a flatter value (a list, an array, a table)" if deep else "a value that pickles"
        what = "a list instead of a generator" if type_name == "generator" else what
        advice = f"return {what}, or register a serializer for {type_name} (register_serializer)"
    else:
        advice = (
            f"choose another serializer with serializers={{{output or 'OUTPUT'!r}: 'cloudpickle'}}"
        )
    return f"{prefix}{problem}; {advice}"
