"""Serializers for tables: ``parquet`` for pandas DataFrames, ``arrow`` (Arrow IPC) for pyarrow
Tables, ``polars`` (parquet) for polars DataFrames. The first two need pyarrow, the last
polars, imported only when a table is written or read.

**parquet** writes ``pyarrow.Table.from_pandas(frame)`` with zstd compression (a Series as a
one-column frame, its name kept in the schema metadata as JSON); pandas
metadata in the file brings back the index (a RangeIndex as its bounds), column names, dtypes,
categoricals, time zones and ``attrs``; a DatetimeIndex's ``freq`` and a RangeIndex of column
labels (``pd.DataFrame(array)``'s 0, 1, 2..., which pandas metadata gives back as an integer
Index) are kept in the schema metadata too. A frame with ``allows_duplicate_labels=False`` is pickled (parquet drops it). Not every frame survives that exactly, so the registry
chooses parquet for a DataFrame only when :func:`parquet_fits` says so, and cloudpickle
otherwise: the frame must be a plain ``DataFrame`` with unique column names and at least one
column, its object columns and index levels must hold only ``str`` (or only ``bytes``) with
nothing missing, and its first rows must come back from parquet with the same value digest
(same dtypes, units, string storage, categories, index, names and attrs; see
``hashing/_frames.py``). A frame that fails any check, or whose conversion fails while being
written, is pickled instead: choosing never fails.

**arrow** writes a ``pyarrow.Table`` in the IPC stream format (schema, metadata and chunks
kept as they are). A large one (over :data:`MMAP_BYTES`) in a local store is loaded from a
memory map of the stored object (:meth:`ArrowSerializer.load_path`): its buffers are pages of
the file, read on demand and shared with the page cache, not copies.

**polars** writes a ``polars.DataFrame`` with its own ``write_parquet`` (zstd); polars keeps its
dtypes (categoricals, enums, time zones, lists, structs) in the file. As for pandas, the
registry chooses it only when the frame's first rows come back with the same value digest
(:func:`polars_fits`), so an ``Object`` column goes to cloudpickle instead.

**Loading runs no code from the data.** Reading parquet or Arrow IPC parses flatbuffers,
thrift and JSON metadata; types are rebuilt from names: arrow extension types only by classes
registered in the loading process (pandas' own period and interval types, or a library you
imported), pandas extension dtypes only from pandas' registry. The one data-driven code path
pyarrow ever had, pickled ``PyExtensionType`` (CVE-2023-47248), is refused by
:func:`_pyarrow`: pyarrow older than 14.0.1, or with its auto-loading switched back on, is not
used to load. So both formats are accepted from unsigned shared-store records, like ``json``
and ``npy`` (see ``store/_signing.py``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
from functools import cache
from typing import Any, BinaryIO

from ..errors import SerializationError
from ..hashing._loaded import loaded
from ._serializer_base import Serializer

__all__ = [
    "MMAP_BYTES",
    "ArrowSerializer",
    "ParquetSerializer",
    "PolarsSerializer",
    "frame_problem",
    "is_arrow_table",
    "parquet_fits",
    "pickled_frame_reason",
    "polars_fits",
    "say_pickled",
]

log = logging.getLogger("etherealfabric.store")

#: Stored objects at least this large are memory-mapped on load where the serializer can.
MMAP_BYTES = 64 * 1024 * 1024

_PROBE_ROWS = 3
_TEXT_KINDS = frozenset({"string", "bytes", "empty"})


@cache
def _pyarrow_installed() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def _pyarrow() -> Any:
    """pyarrow, if it cannot run code from the data it reads (else a SerializationError)."""
    import pyarrow

    version = tuple(int(p) for p in pyarrow.__version__.split(".")[:3] if p.isdigit())
    if version < (14, 0, 1) or getattr(pyarrow.lib, "_py_extension_type_auto_load", False):
        raise SerializationError(
            f"pyarrow {pyarrow.__version__} may run pickled code from the files it reads "
            "(CVE-2023-47248): install pyarrow 14.0.1 or newer, and leave PyExtensionType "
            "auto-loading off, to read parquet or arrow outputs"
        )
    return pyarrow


@cache
def _pandas_arrow_types() -> None:
    """Register pandas' own arrow extension types (period, interval) with pyarrow before a
    read. pandas registers them lazily, when it first converts such a frame *to* arrow, so a
    process that had not written one read a PeriodIndex back as the integers it is stored as."""
    for module in ("pandas.core.arrays.arrow.extension_types", "pandas.core.arrays._arrow_utils"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
            return


# -- parquet -------------------------------------------------------------------------------------


class ParquetSerializer(Serializer):
    """pandas DataFrames (and Series) as parquet (pyarrow, zstd); see the module docstring."""

    name = "parquet"

    def dump(self, value: object, fp: BinaryIO) -> None:
        frame, series = _as_frame(value)
        problem = frame_problem(frame)
        if problem:
            raise TypeError(problem)
        pa = _pyarrow()
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame)
        extra = {}
        if series is not None:  # the series' name, which the frame's column does not keep
            extra[_SERIES_KEY] = series
        freq = getattr(getattr(frame, "index", None), "freq", None)
        if freq is not None and hasattr(freq, "freqstr"):  # pandas metadata drops it
            extra[_FREQ_KEY] = str(freq.freqstr).encode()
        columns: Any = getattr(frame, "columns", None)
        if type(columns).__name__ == "RangeIndex":  # pandas metadata brings back an Index
            extra[_COLUMNS_KEY] = json.dumps([columns.start, columns.stop, columns.step]).encode()
        if extra:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
        pq.write_table(table, fp, compression="zstd")

    def load(self, fp: BinaryIO) -> object:
        _pyarrow()
        _pandas_arrow_types()
        import pyarrow.parquet as pq

        # one thread: pyarrow's thread pool, having read through a Python file object, may
        # abort the interpreter at its exit ("terminate called without an active exception",
        # apache/arrow#34314, #50482): 2 of 40 processes here. Such reads are small objects
        # (larger ones are read by path, below) or a shared store's, read as they are verified
        return _to_pandas(pq.read_table(fp, pre_buffer=False, use_threads=False), threads=False)

    def loads(self, data: bytes) -> object:
        pa = _pyarrow()
        _pandas_arrow_types()
        import pyarrow.parquet as pq

        return _to_pandas(pq.read_table(pa.BufferReader(data), pre_buffer=False))

    def load_path(self, path: str) -> object:
        """Read a large stored file by its path: pyarrow reads the column chunks it decodes,
        never the whole file into memory first (as through a Python file object). A frame
        with a plain layout is read one column at a time (:func:`_read_by_column`)."""
        _pyarrow()
        _pandas_arrow_types()
        import pyarrow.parquet as pq

        frame = _read_by_column(pq.ParquetFile(path, pre_buffer=False))
        if frame is not None:
            return frame
        return _to_pandas(pq.read_table(path, pre_buffer=False))


_SERIES_KEY = b"etherealfabric.series"
_FREQ_KEY = b"etherealfabric.index_freq"
_COLUMNS_KEY = b"etherealfabric.columns_range"
_SERIES_COLUMN = "values"


def _as_frame(value: object) -> tuple[object, bytes | None]:
    """A Series as a one-column frame and its name (JSON); any other value as it is."""
    pd = loaded("pandas")
    if pd is None or type(value) is not pd.Series:
        return value, None
    series: Any = value
    try:
        name = json.dumps({"name": series.name}, allow_nan=False).encode()
    except (TypeError, ValueError):
        return None, None  # a name JSON cannot hold: frame_problem refuses None
    back = json.loads(name)["name"]
    if type(back) is not type(series.name) or back != series.name:
        return None, None  # a tuple would come back a list
    return series.to_frame(name=_SERIES_COLUMN), name


def _read_by_column(file: Any) -> object | None:
    """The frame of ``file`` read and converted one column at a time, or None when its layout
    needs pyarrow's whole-table conversion (an index other than a RangeIndex, MultiIndex
    columns, a Series, a single column).

    Decoding every column at once holds the decoded table and its page buffers beside the
    frame being built (about 1.65 frames at the peak); column by column, the peak is the frame
    and about one column (1.27 frames measured on a 256 MB frame of 16 columns). The result is
    checked against the frame pyarrow would build (column labels, dtypes, index, attrs, all
    taken from the file's pandas metadata by pyarrow itself); any difference falls back.
    """
    import pandas as pd

    schema = file.schema_arrow
    meta = schema.pandas_metadata or {}
    index = meta.get("index_columns") or []
    names = list(schema.names)
    if (
        _SERIES_KEY in (schema.metadata or {})
        or len(index) != 1
        or not isinstance(index[0], dict)
        or index[0].get("kind") != "range"
        or len(names) < 2
        or len(set(names)) != len(names)
    ):
        return None
    template = schema.empty_table().to_pandas()  # labels, dtypes and attrs as pyarrow makes them
    if isinstance(template.columns, pd.MultiIndex) or len(template.columns) != len(names):
        return None
    parts = []
    for name in names:
        table = file.read(columns=[name], use_pandas_metadata=True)
        parts.append(table.to_pandas(split_blocks=True, self_destruct=True).iloc[:, 0])
        del table
    # pandas 3 never copies here (copy-on-write); pandas 2 needs to be told
    copy = {} if int(pd.__version__.split(".")[0]) >= 3 else {"copy": False}
    frame = pd.concat(parts, axis=1, **copy)
    del parts
    frame.columns = template.columns
    _restore_columns(frame, schema.metadata or {})
    frame.attrs = dict(template.attrs)
    if type(frame.index) is not type(template.index) or not all(
        _same_kind(a, b) for a, b in zip(frame.dtypes, template.dtypes, strict=True)
    ):
        return None
    read: object = frame
    return read


def _restore_columns(frame: Any, metadata: dict[bytes, bytes]) -> None:
    """Give back the RangeIndex of a frame's column labels (``pd.DataFrame(array)``'s 0, 1, 2...),
    which pyarrow's pandas metadata brings back as an integer Index; only when the labels read
    are exactly that range (a forged or foreign entry leaves them as they are)."""
    stored = metadata.get(_COLUMNS_KEY)
    if stored is None:
        return
    import pandas as pd

    try:
        start, stop, step = json.loads(stored)
        labels = pd.RangeIndex(start, stop, step, name=frame.columns.name)
    except (TypeError, ValueError):
        return
    if len(labels) == len(frame.columns) and frame.columns.equals(labels):
        frame.columns = labels


def _same_kind(read: Any, template: Any) -> bool:
    """Whether a column's dtype as read is the one pyarrow's whole-table conversion gives it
    (a categorical's categories come from the data, so the empty template has none)."""
    import pandas as pd

    if isinstance(template, pd.CategoricalDtype):
        return isinstance(read, pd.CategoricalDtype) and read.ordered == template.ordered
    return bool(read == template)


def _to_pandas(table: Any, *, threads: bool = True) -> object:
    """The frame of a table read from parquet, freeing each column's arrow memory as it is
    converted. With the pages read as they are decoded (``pre_buffer=False``: the stored
    object is local, or already checked in full) the peak is about 1.5 frames, not 2.
    ``threads``: False for a table read through a Python file object (see ``load``)."""
    metadata = table.schema.metadata or {}
    series, freq = metadata.get(_SERIES_KEY), metadata.get(_FREQ_KEY)
    frame = table.to_pandas(split_blocks=True, self_destruct=True, use_threads=threads)
    _restore_columns(frame, metadata)
    if freq is not None:  # a DatetimeIndex's frequency ("h", "D"...): checked by pandas
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            frame.index.freq = freq.decode()
    if series is None:
        return frame
    return frame[_SERIES_COLUMN].rename(json.loads(series)["name"])


def frame_problem(value: object) -> str:
    """Why parquet cannot store ``value`` exactly, by its shape and dtypes; ``""`` if it may.
    (A Series is asked about as the one-column frame it is stored as.)"""
    pd = loaded("pandas")
    if pd is not None and type(value) is pd.Series:
        value = _as_frame(value)[0]
    if pd is None or type(value) is not pd.DataFrame:
        return f"parquet stores pandas DataFrames and Series only, not {type(value).__qualname__}"
    frame: Any = value
    if frame.shape[1] == 0:
        return "a frame without columns loses its index in parquet"
    if not frame.columns.is_unique:
        return "parquet needs unique column names"
    if not frame.flags.allows_duplicate_labels:
        return "parquet does not keep allows_duplicate_labels=False"
    kinds = {type(name) for name in frame.columns}
    if len(kinds) > 1:  # pyarrow would warn, and turn them all into strings
        return "parquet needs column names of one type"
    infer = pd.api.types.infer_dtype
    index = frame.index
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    for name, values in [*frame.items(), *(("index", level) for level in levels)]:
        if values.dtype == object and infer(values, skipna=False) not in _TEXT_KINDS:
            return (
                f"the object column {name!r} holds values other than only strings or only "
                "bytes, which parquet would convert or refuse"
            )
    return ""


def pickled_frame_reason(value: object) -> str | None:
    """Why a pandas or polars frame (or Series) was not written as parquet; None for other
    values. For the log line that says so once (see ``run/_worker.py``)."""
    pd = loaded("pandas")
    if pd is not None and type(value) in (pd.DataFrame, pd.Series):
        return frame_problem(value) or (
            "parquet would change it (its first rows came back with another value digest)"
            if _pyarrow_installed()
            else "pyarrow is not installed"
        )
    if is_polars_frame(value):
        return "parquet would change it (an Object column, or a dtype parquet does not keep)"
    return None


_said: set[tuple[str, str, str]] = set()


def say_pickled(node: str, output: str, value: Any, reason: str | None = None) -> None:
    """Log once (per node, output and reason, in this process) why a frame was pickled."""
    reason = reason or pickled_frame_reason(value)
    if reason is None or (node, output, reason) in _said:
        return
    _said.add((node, output, reason))
    log.info("%s: output %r is stored with cloudpickle, not parquet: %s", node, output, reason)


def parquet_fits(value: object) -> bool:
    """True if parquet stores this DataFrame exactly (see the module docstring)."""
    if not _pyarrow_installed() or frame_problem(value):
        return False
    from ..hashing._outputs import value_digest

    frame: Any = value
    head = frame.iloc[:_PROBE_ROWS]
    head.attrs = dict(frame.attrs)
    expected = value_digest(head)
    if expected is None:
        return False
    serializer = ParquetSerializer()
    try:  # (warnings are left alone: filters are global, other threads would feel them)
        buffer = io.BytesIO()
        serializer.dump(head, buffer)
        back = serializer.loads(buffer.getvalue())
    except Exception:
        return False
    return value_digest(back) == expected


# -- arrow ---------------------------------------------------------------------------------------


class ArrowSerializer(Serializer):
    """pyarrow Tables in the Arrow IPC stream format (schema, metadata and chunks kept)."""

    name = "arrow"

    def dump(self, value: object, fp: BinaryIO) -> None:
        if not is_arrow_table(value):
            raise TypeError(f"arrow stores pyarrow Tables only, not {type(value).__qualname__}")
        pa = _pyarrow()
        table: Any = value
        with pa.ipc.new_stream(fp, table.schema) as writer:
            writer.write_table(table)

    def load(self, fp: BinaryIO) -> object:
        pa = _pyarrow()
        with pa.ipc.open_stream(fp) as reader:
            return reader.read_all()

    def loads(self, data: bytes) -> object:
        pa = _pyarrow()
        with pa.ipc.open_stream(pa.BufferReader(data)) as reader:
            return reader.read_all()

    def load_path(self, path: str) -> object:
        """Read from a memory map of ``path``: the table's buffers stay pages of the file."""
        pa = _pyarrow()
        with pa.ipc.open_stream(pa.memory_map(path, "r")) as reader:
            return reader.read_all()


def is_arrow_table(value: object) -> bool:
    """True for a ``pyarrow.Table`` (pyarrow is never imported to answer)."""
    pa = loaded("pyarrow")
    return pa is not None and type(value) is pa.Table


# -- polars ---------------------------------------------------------------------------------------


class PolarsSerializer(Serializer):
    """polars DataFrames as parquet (polars' own writer and reader, zstd)."""

    name = "polars"

    def dump(self, value: object, fp: BinaryIO) -> None:
        if not is_polars_frame(value):
            raise TypeError(f"polars stores polars DataFrames only, not {type(value).__qualname__}")
        frame: Any = value
        frame.write_parquet(fp, compression="zstd")

    def load(self, fp: BinaryIO) -> object:
        import polars

        return polars.read_parquet(fp)

    def loads(self, data: bytes) -> object:
        return self.load(io.BytesIO(data))


def is_polars_frame(value: object) -> bool:
    """True for a ``polars.DataFrame`` (polars is never imported to answer)."""
    pl = loaded("polars")
    return pl is not None and type(value) is pl.DataFrame


def polars_fits(value: object) -> bool:
    """True if parquet stores this polars DataFrame exactly (its first rows are the probe)."""
    if not is_polars_frame(value):
        return False
    from ..hashing._outputs import value_digest

    frame: Any = value
    if frame.width == 0:
        return False
    head = frame.head(_PROBE_ROWS)
    expected = value_digest(head)
    if expected is None:
        return False
    serializer = PolarsSerializer()
    try:
        buffer = io.BytesIO()
        serializer.dump(head, buffer)
        back = serializer.loads(buffer.getvalue())
    except Exception:
        return False
    return value_digest(back) == expected
