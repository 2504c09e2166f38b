"""Value hashers for pandas, pyarrow and polars: frames, series, indexes, arrays and scalars.

:mod:`etherealfabric.hashing._builtins` registers these handlers the first time a value is
hashed while that library is already imported; this module imports none of them. Nothing goes
through ``pandas.util.hash_pandas_object`` (it hashes ``1`` and ``'1'``, ``b'a'`` and ``'a'``,
``0.0`` and ``-0.0`` alike, and ignores categories and names). The encodings::

    pandas.DataFrame [no-dups] <columns index> <row index> attrs n <column array>...
    pandas.Series [no-dups] name attrs <index> <array>
    pandas.Index [freq freqstr] name <array> | pandas.MultiIndex n <level index>...   (level
        values, not codes); [no-dups]: a tag when ``flags.allows_duplicate_labels`` is False,
        [freq]: a DatetimeIndex's or TimedeltaIndex's freq when it has one
    pandas.array dtype n <values>, the values by kind:
        numpy dtypes        the buffer (see _arrays.feed_buffer: no copy, NaNs canonical)
        object / strings    objects: a kind per cell (str, int, float, None, bool, other),
                            str lengths and utf-8 text, int64s, float64s, bools, then
                            every other cell by its own type-tagged encoding
        categorical         ordered <categories index> <codes buffer>
        datetime/timedelta/period   the int64 buffer (dtype text has unit, tz and freq)
        Int64/Float64/boolean       mask buffer, data buffer (zero under the mask)
        arrow-backed ("str", "string[pyarrow]", ArrowDtype)   <arrow column>
        interval            <left array> <right array>
        anything else       its cells as objects
    pandas.Timestamp unit value zone | Timedelta unit value | Period freq ordinal | NaT | NA
    arrow.Table / arrow.RecordBatch n (name type nullable metadata)... metadata <column>...
    arrow.Array / arrow.ChunkedArray <column>; a column: type n <values>, the values as
        numbers (null mask, data with nulls zero; dates and times as their integers),
        strings (null mask, int64 lengths, utf-8 text), or else cell by cell
    polars.DataFrame n <series>... | polars.Series name dtype <arrow column>

**What counts as equal** (``values_equal`` in ``tests/test_frames.py`` is this, as code): two
values hash alike exactly when they have the same type and, for pandas, ``DataFrame.equals``
holds and so do the same dtypes (strings: the same storage; categoricals: the same categories
in the same order, the same ``ordered`` and codes, even when unordered), the same row index
and columns (values, dtypes, names, MultiIndex levels, the ``freq`` of a datetime or
timedelta index), series name, ``attrs`` and ``flags.allows_duplicate_labels``. Cells compare
exactly: ``0.0`` and ``-0.0`` differ, every NaN equals every NaN whatever its sign or payload,
object cells of different types differ (``1``, ``1.0``, ``True``, ``'1'``, ``b'1'``), and None,
NaN, NA and NaT all differ. A RangeIndex equals the int64 Index of its values; memory layout
(C or Fortran order, blocks, arrow chunks) never counts. Arrow values: ``equals`` with
``check_metadata=True`` (field nullability and schema metadata count: pandas metadata in it
shapes ``to_pandas()``), and a Table is not a RecordBatch. polars: ``equals`` plus names and
dtypes, with the same rules for cells.
"""

from __future__ import annotations

import sys
from itertools import repeat
from typing import TYPE_CHECKING, Any

from ._arrays import dtype_text, feed_buffer

if TYPE_CHECKING:
    from ._encoder import Encoder, Handler

__all__ = ["arrow_handlers", "pandas_handlers", "polars_handlers", "zone_text"]

_RANGE_CHUNK = 1 << 17  # RangeIndex values hashed per slice


def zone_text(tz: object) -> str:
    """A time zone's identity: its kind and key (``zoneinfo:Europe/Paris``), '' for none."""
    if tz is None:
        return ""
    kind = type(tz).__module__.split(".")[0]
    key = getattr(tz, "key", None) or getattr(tz, "zone", None) or str(tz)
    return f"{kind}:{key}"


# -- pandas ------------------------------------------------------------------------------------


def pandas_handlers(pd: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported pandas module ``pd``, by type."""
    return {
        pd.DataFrame: _enc_dataframe,
        pd.Series: _enc_series,
        pd.Index: _enc_index,
        pd.api.extensions.ExtensionArray: _enc_array,
        pd.Timestamp: _enc_timestamp,
        pd.Timedelta: _enc_timedelta,
        pd.Period: _enc_period,
        pd.Interval: _enc_interval,
        type(pd.NaT): lambda v, e: e.tag("pandas.NaT"),
        type(pd.NA): lambda v, e: e.tag("pandas.NA"),
    }


def _enc_dataframe(frame: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.DataFrame")
    _enc_flags(frame, encoder)
    _enc_index(frame.columns, encoder)
    _enc_index(frame.index, encoder)
    encoder.value(dict(frame.attrs))
    encoder.integer(frame.shape[1])
    for i in range(frame.shape[1]):
        _enc_array(frame.iloc[:, i].array, encoder)


def _enc_series(series: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.Series")
    _enc_flags(series, encoder)
    encoder.value(series.name)
    encoder.value(dict(series.attrs))
    _enc_index(series.index, encoder)
    _enc_array(series.array, encoder)


def _enc_flags(value: Any, encoder: Encoder) -> None:
    """``flags.allows_duplicate_labels=False`` (it makes later operations raise), only then."""
    if not value.flags.allows_duplicate_labels:
        encoder.tag("pandas.no-duplicate-labels")


def _enc_index(index: Any, encoder: Encoder) -> None:
    pd = sys.modules["pandas"]
    if isinstance(index, pd.MultiIndex):
        encoder.tag("pandas.MultiIndex")
        encoder.integer(index.nlevels)
        for level in range(index.nlevels):
            _enc_index(index.get_level_values(level), encoder)
        return
    encoder.tag("pandas.Index")
    # a DatetimeIndex's or TimedeltaIndex's freq (a PeriodIndex's is in its dtype), only when
    # it has one: an index without one keeps the digest it always had
    if getattr(index, "freq", None) is not None and not isinstance(index, pd.PeriodIndex):
        encoder.tag("pandas.freq")
        encoder.text(index.freqstr)
    encoder.value(index.name)
    if isinstance(index, pd.RangeIndex):
        _enc_range(index, encoder)
    else:
        _enc_array(index.array, encoder)


def _enc_range(index: Any, encoder: Encoder) -> None:
    """A RangeIndex as the equal int64 Index's array, a slice at a time (never materialised)."""
    np = sys.modules["numpy"]
    encoder.tag("pandas.array")
    encoder.text("<i8")
    encoder.integer(len(index))
    encoder.length(8 * len(index))
    start, step = index.start, index.step
    for first in range(0, len(index), _RANGE_CHUNK):
        count = min(_RANGE_CHUNK, len(index) - first)
        lo = start + first * step
        chunk = np.arange(lo, lo + count * step, step, dtype="<i8")[:count]
        feed_buffer(encoder, chunk, framed=False)


def _pandas_dtype_text(dtype: Any) -> str:
    """numpy's ``dtype.str``, else the extension dtype's text (plus its storage, if any:
    ``string`` backed by Python objects or by arrow are unequal dtypes that print alike)."""
    np = sys.modules["numpy"]
    if isinstance(dtype, np.dtype):
        return dtype_text(dtype)
    storage = getattr(dtype, "storage", None)
    return f"{dtype}[{storage}]" if isinstance(storage, str) else str(dtype)


def _enc_array(array: Any, encoder: Encoder) -> None:
    """A pandas ExtensionArray (a column's ``.array``): dtype, length, values by kind."""
    pd = sys.modules["pandas"]
    np = sys.modules["numpy"]
    arrays = pd.arrays
    dtype = array.dtype
    # exactly: StringArray subclasses it, with another dtype ("string[python]", not object)
    numpy_backed = type(array) is arrays.NumpyExtensionArray
    values: Any = array.to_numpy() if numpy_backed else None
    encoder.tag("pandas.array")
    encoder.text(dtype_text(values.dtype) if numpy_backed else _pandas_dtype_text(dtype))
    encoder.integer(len(array))
    if numpy_backed:
        if values.dtype.hasobject:
            _enc_objects(values, encoder)
        else:
            feed_buffer(encoder, values)
    elif isinstance(array, pd.Categorical):
        encoder.value(bool(dtype.ordered))
        _enc_index(dtype.categories, encoder)
        feed_buffer(encoder, array.codes)
    elif isinstance(array, (arrays.DatetimeArray, arrays.TimedeltaArray, arrays.PeriodArray)):
        feed_buffer(encoder, array.asi8)
    elif isinstance(array, arrays.IntervalArray):
        _enc_array(array.left.array, encoder)
        _enc_array(array.right.array, encoder)
    elif hasattr(array, "_mask") and hasattr(array, "_data"):  # IntegerArray, BooleanArray...
        mask, data = array._mask, array._data
        if mask.any():
            data = data.copy()
            data[mask] = 0
        feed_buffer(encoder, mask)
        feed_buffer(encoder, data)
    elif isinstance(array, arrays.ArrowExtensionArray):  # "str", "string[pyarrow]", ArrowDtype
        _enc_arrow_column(array.__arrow_array__(), encoder, label="")
    else:  # python strings, sparse, third-party arrays: cell by cell
        _enc_objects(np.asarray(array.to_numpy(dtype=object)), encoder)


_STR, _INT, _FLOAT, _NONE, _BOOL, _OTHER = range(6)
_KINDS = {str: _STR, int: _INT, float: _FLOAT, type(None): _NONE, bool: _BOOL}


def _enc_objects(values: Any, encoder: Encoder) -> None:
    """Object cells by exact type: a kind code per cell, then strings, ints (that fit int64),
    floats and bools in bulk, and every other cell by its own encoding, in order."""
    np = sys.modules["numpy"]
    cells = values.reshape(-1)
    kinds = np.fromiter(
        map(_KINDS.get, map(type, cells.tolist()), repeat(_OTHER)), dtype=np.uint8, count=len(cells)
    )
    ints = _bulk(np, cells, kinds, _INT, "<i8")
    if ints is None:  # an int beyond int64: every int cell goes on its own
        kinds[kinds == _INT] = _OTHER
        ints = np.zeros(0, dtype="<i8")
    strings = cells[kinds == _STR].tolist()
    encoder.tag("objects")
    feed_buffer(encoder, kinds)
    feed_buffer(encoder, np.fromiter(map(len, strings), dtype="<i8", count=len(strings)))
    encoder.frame("".join(strings).encode("utf-8", "surrogatepass"))
    feed_buffer(encoder, ints)
    feed_buffer(encoder, _bulk(np, cells, kinds, _FLOAT, "<f8"))
    feed_buffer(encoder, _bulk(np, cells, kinds, _BOOL, "?"))
    for item in cells[kinds == _OTHER]:
        encoder.value(item)


def _bulk(np: Any, cells: Any, kinds: Any, kind: int, dtype: str) -> Any:
    """The cells of one kind as a numpy array of ``dtype``; None if an int does not fit."""
    try:
        return np.array(cells[kinds == kind].tolist(), dtype=dtype)
    except OverflowError:
        return None


def _enc_timestamp(value: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.Timestamp")
    encoder.text(value.unit)
    encoder.integer(int(value.asm8.view("i8")))  # UTC when aware, wall time when naive
    encoder.text(zone_text(value.tzinfo))


def _enc_timedelta(value: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.Timedelta")
    encoder.text(value.unit)
    encoder.integer(int(value.asm8.view("i8")))


def _enc_period(value: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.Period")
    encoder.text(value.freqstr)
    encoder.integer(value.ordinal)


def _enc_interval(value: Any, encoder: Encoder) -> None:
    encoder.tag("pandas.Interval")
    encoder.text(value.closed)
    encoder.value(value.left)
    encoder.value(value.right)


# -- pyarrow -----------------------------------------------------------------------------------


def arrow_handlers(pa: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported pyarrow module ``pa``, by type."""
    return {
        pa.Table: _enc_table,
        pa.RecordBatch: _enc_table,
        pa.ChunkedArray: _enc_arrow_array,
        pa.Array: _enc_arrow_array,
    }


def _enc_table(table: Any, encoder: Encoder) -> None:
    pa = sys.modules["pyarrow"]
    encoder.tag("arrow.RecordBatch" if isinstance(table, pa.RecordBatch) else "arrow.Table")
    schema = table.schema
    encoder.integer(len(schema))
    for field in schema:
        encoder.text(field.name)
        encoder.text(str(field.type))
        encoder.value(bool(field.nullable))
        encoder.value(dict(field.metadata or {}))
    encoder.value(dict(schema.metadata or {}))
    for column in table.columns:
        _enc_arrow_column(column, encoder)


def _enc_arrow_array(column: Any, encoder: Encoder) -> None:
    pa = sys.modules["pyarrow"]
    encoder.tag("arrow.ChunkedArray" if isinstance(column, pa.ChunkedArray) else "arrow.Array")
    _enc_arrow_column(column, encoder)


def _numeric(tp: Any, types: Any) -> bool:
    return bool(
        types.is_integer(tp)
        or types.is_floating(tp)
        or types.is_boolean(tp)
        or _temporal(tp, types)
    )


def _temporal(tp: Any, types: Any) -> bool:
    return bool(
        types.is_timestamp(tp) or types.is_duration(tp) or types.is_date(tp) or types.is_time(tp)
    )


def _is_string(tp: Any, types: Any) -> bool:
    return bool(types.is_string(tp) or types.is_large_string(tp) or str(tp) == "string_view")


def _enc_arrow_column(column: Any, encoder: Encoder, label: str | None = None) -> None:
    """An arrow Array or ChunkedArray: its type, length, values (chunking does not count)."""
    pa = sys.modules["pyarrow"]
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    tp = column.type
    encoder.tag("arrow.column")
    encoder.text(str(tp) if label is None else label)
    encoder.integer(len(column))
    if not chunks:
        chunks = [pa.array([], type=tp)]
    if pa.types.is_dictionary(tp):
        chunks = [chunk.dictionary_decode() for chunk in chunks]
        tp = tp.value_type
    if _numeric(tp, pa.types):
        masks = [chunk.is_null().to_numpy(zero_copy_only=False) for chunk in chunks]
        _feed_parts(encoder, (("mask", masks), ("data", [_numbers(c, pa) for c in chunks])))
    elif _is_string(tp, pa.types):
        _feed_strings(encoder, chunks, pa)
    else:
        encoder.tag("cells")
        for chunk in chunks:
            for item in chunk.to_pylist():
                encoder.value(item)


def _numbers(chunk: Any, pa: Any) -> Any:
    """A numeric chunk as a numpy array: dates and times as their integers, nulls as zero."""
    if _temporal(chunk.type, pa.types):
        chunk = chunk.view(pa.int32() if chunk.type.bit_width == 32 else pa.int64())
    if chunk.null_count:
        boolean = pa.types.is_boolean(chunk.type)
        chunk = chunk.fill_null(False if boolean else pa.scalar(0, pa.int8()).cast(chunk.type))
    return chunk.to_numpy(zero_copy_only=False)


def _feed_strings(encoder: Encoder, chunks: list[Any], pa: Any) -> None:
    """Strings in bulk: null mask, int64 lengths, utf-8 text (nulls are empty)."""
    np = sys.modules["numpy"]
    masks, lengths, texts = [], [], []
    for chunk in chunks:
        masks.append(chunk.is_null().to_numpy(zero_copy_only=False))
        if chunk.type != pa.large_string():
            chunk = chunk.cast(pa.large_string())
        if chunk.null_count:
            chunk = chunk.fill_null("")
        if len(chunk) == 0:
            continue
        start = chunk.offset
        offsets = np.frombuffer(chunk.buffers()[1], dtype="<i8")[start : start + len(chunk) + 1]
        lengths.append(np.diff(offsets))
        texts.append(np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]])
    encoder.tag("strings")
    empty = [np.zeros(0, dtype=np.uint8)]
    parts = (
        ("mask", masks),
        ("lengths", lengths or [np.zeros(0, "<i8")]),
        ("text", texts or empty),
    )
    _feed_parts(encoder, parts)


def _feed_parts(encoder: Encoder, parts: tuple[tuple[str, list[Any]], ...]) -> None:
    """Named buffers, each the concatenation of its chunks' arrays (chunking does not count)."""
    for part, arrays in parts:
        encoder.tag(part)
        encoder.text(dtype_text(arrays[0].dtype))
        encoder.length(sum(a.nbytes for a in arrays))
        for array in arrays:
            feed_buffer(encoder, array, framed=False)


# -- polars ------------------------------------------------------------------------------------


def polars_handlers(pl: Any) -> dict[type[Any], Handler]:
    """The handlers of the imported polars module ``pl``, by type."""
    return {pl.DataFrame: _enc_polars_frame, pl.Series: _enc_polars_series}


def _enc_polars_frame(frame: Any, encoder: Encoder) -> None:
    encoder.tag("polars.DataFrame")
    encoder.integer(frame.width)
    for series in frame.get_columns():
        _enc_polars_series(series, encoder)


def _enc_polars_series(series: Any, encoder: Encoder) -> None:
    import pyarrow  # noqa: F401  (polars hands its columns over as arrow arrays)

    encoder.tag("polars.Series")
    encoder.text(series.name)
    _enc_arrow_column(series.to_arrow(), encoder, label=str(series.dtype))
