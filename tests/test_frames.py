"""The canonical value hash of pandas, numpy, pyarrow and polars values (hashing/_frames.py,
hashing/_arrays.py): known collisions give different digests, equal values built differently
give equal digests, and a property test ties digests to one written-down equality predicate
(:func:`values_equal`, the one documented in ``_frames.py`` and ``docs/concepts.md``)."""

from __future__ import annotations

import datetime
import math
import pickle
import struct
import warnings
import zoneinfo
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.extra import pandas as hpd

from etherealfabric.hashing._values import hash_value

OTHER_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000001))[0]
NEG_NAN = struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000000))[0]


# -- the equality predicate ------------------------------------------------------------------


def values_equal(a: Any, b: Any) -> bool:
    """When two values must hash alike (and, when it is False, must not).

    The same type, and by type: DataFrame.equals, plus the same dtypes, the same row index and
    columns (values, dtypes and names; MultiIndex level by level; a RangeIndex equals the int64
    Index of its values; a datetime or timedelta index's freq), the same series name, attrs
    and ``flags.allows_duplicate_labels``. Cells compare exactly:
    ``0.0`` and ``-0.0`` differ, every NaN equals every NaN (any sign or payload), object
    cells of different types differ (``1``, ``1.0``, ``True``, ``'1'``, ``b'1'``), and so do
    None, NaN, NA and NaT. Categoricals are equal with the same categories in the same order,
    the same ``ordered`` and the same codes (even unordered ones: the order shows in
    ``.cat.categories`` and ``.codes``). numpy arrays: the same dtype (layout included) and
    shape and cells; memory order does not count.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, pd.DataFrame):
        return (
            a.shape == b.shape
            and a.flags.allows_duplicate_labels == b.flags.allows_duplicate_labels
            and _index_equal(a.columns, b.columns)
            and _index_equal(a.index, b.index)
            and _attrs_equal(a.attrs, b.attrs)
            and all(_array_equal(a.iloc[:, i].array, b.iloc[:, i].array) for i in range(a.shape[1]))
            and a.equals(b)  # implied by the above; kept as the documented starting point
        )
    if isinstance(a, pd.Series):
        return (
            _same_cell(a.name, b.name)
            and a.flags.allows_duplicate_labels == b.flags.allows_duplicate_labels
            and _attrs_equal(a.attrs, b.attrs)
            and _index_equal(a.index, b.index)
            and _array_equal(a.array, b.array)
        )
    if isinstance(a, pd.Index):
        return _index_equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and _cells_equal(a, b)
    raise TypeError(type(a))


def _attrs_equal(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    return a.keys() == b.keys() and all(_same_cell(a[k], b[k]) for k in a)


def _index_equal(a: pd.Index, b: pd.Index) -> bool:
    if isinstance(a, pd.MultiIndex) or isinstance(b, pd.MultiIndex):
        if not (isinstance(a, pd.MultiIndex) and isinstance(b, pd.MultiIndex)):
            return False
        return a.nlevels == b.nlevels and all(
            _index_equal(a.get_level_values(i), b.get_level_values(i)) for i in range(a.nlevels)
        )
    freq = (
        (None, None)
        if isinstance(a, pd.PeriodIndex)
        else (getattr(a, "freq", None), getattr(b, "freq", None))
    )
    return _same_cell(a.name, b.name) and freq[0] == freq[1] and _array_equal(a.array, b.array)


def _array_equal(x: Any, y: Any) -> bool:
    if len(x) != len(y):
        return False
    if isinstance(x.dtype, pd.CategoricalDtype) or isinstance(y.dtype, pd.CategoricalDtype):
        return (
            isinstance(x.dtype, pd.CategoricalDtype)
            and isinstance(y.dtype, pd.CategoricalDtype)
            and x.dtype.ordered == y.dtype.ordered
            and _index_equal(x.dtype.categories, y.dtype.categories)
            and np.array_equal(x.codes, y.codes)
        )
    if x.dtype != y.dtype:
        return False
    return all(_same_cell(p, q) for p, q in zip(list(x), list(y), strict=True))


def _same_cell(p: Any, q: Any) -> bool:
    if type(p) is not type(q):
        return False
    if p is q:
        return True
    if isinstance(p, (float, np.floating)):
        if math.isnan(p) or math.isnan(q):
            return math.isnan(p) and math.isnan(q)
        return bool(p == q) and bool(np.signbit(p) == np.signbit(q))
    if isinstance(p, (complex, np.complexfloating)):
        return _same_cell(p.real, q.real) and _same_cell(p.imag, q.imag)
    if isinstance(p, (pd.Timestamp, np.datetime64, np.timedelta64)):
        if pd.isna(p) or pd.isna(q):
            return bool(pd.isna(p) and pd.isna(q))
        return bool(p == q) and str(getattr(p, "tz", None)) == str(getattr(q, "tz", None))
    if isinstance(p, np.void):
        return _cells_equal(np.asarray(p), np.asarray(q))
    if isinstance(p, (list, tuple)):
        return len(p) == len(q) and all(_same_cell(i, j) for i, j in zip(p, q, strict=True))
    return bool(p == q)


def _cells_equal(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.dtype.names is not None:
        return all(_cells_equal(a[n], b[n]) for n in a.dtype.names)
    if a.dtype.kind == "V":
        return a.tobytes() == b.tobytes()
    return all(
        _same_cell(p, q) for p, q in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True)
    )


def same(a: Any, b: Any) -> bool:
    return hash_value(a) == hash_value(b)


# -- the collisions of the issue: different values, different digests -----------------------

BOTH = [
    lambda cells: pd.Series(cells, dtype=object),
    lambda cells: pd.DataFrame({"c": cells}, dtype=object),
]
CELLS = [
    ([1, "x"], ["1", "x"]),
    ([True, "x"], ["True", "x"]),
    ([b"a", "x"], ["a", "x"]),
    ([1, "x"], [1.0, "x"]),
    ([1, "x"], [True, "x"]),
    ([None, "x"], [math.nan, "x"]),
    ([pd.NA, "x"], [None, "x"]),
    ([pd.NaT, "x"], [None, "x"]),
    (["ab", "c"], ["a", "bc"]),
    (["", "x"], ["x", ""]),
    ([2**70, "x"], [2**70 + 1, "x"]),  # ints beyond int64 go cell by cell
    ([2**70, 1], [2**70, 2]),
    ([np.int64(1), "x"], [1, "x"]),
    ([-0.0, "x"], [0.0, "x"]),
    ([1.5, 2], [2, 1.5]),
    ([True, None], [None, True]),
]


@pytest.mark.parametrize("make", BOTH, ids=["Series", "DataFrame"])
@pytest.mark.parametrize(("left", "right"), CELLS, ids=[repr(c[0]) for c in CELLS])
def test_object_cells_of_other_types_differ(make: Any, left: list[Any], right: list[Any]) -> None:
    a, b = make(left), make(right)
    assert not values_equal(a, b)
    assert not same(a, b)


def _cat(values: list[str], categories: list[str], ordered: bool = False) -> pd.Series:
    return pd.Series(pd.Categorical(values, categories=categories, ordered=ordered))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (_cat(["a", "b"], ["a", "b"]), _cat(["a", "b"], ["a", "b", "c"])),  # other categories
        (_cat(["a", "b"], ["a", "b"]), _cat(["a", "b"], ["b", "a"])),  # other order and codes
        (_cat(["a", "b"], ["a", "b"]), _cat(["a", "b"], ["a", "b"], ordered=True)),
        (_cat(["a", "b"], ["a", "b"], True), _cat(["a", "b"], ["b", "a"], True)),  # reversed
        (_cat(["a", "b"], ["a", "b"]), pd.Series(["a", "b"], dtype=object)),
        (_cat(["a", "b"], ["a", "b"]), pd.Series(["a", "b"])),
    ],
    ids=["categories", "order", "ordered", "ordered-reversed", "object", "str"],
)
def test_categoricals_differ(a: pd.Series, b: pd.Series) -> None:
    assert not values_equal(a, b)
    assert not same(a, b)
    assert not same(a.to_frame(), b.to_frame())


def test_signed_zeros_differ_and_nan_payloads_do_not() -> None:
    assert not same(pd.Series([0.0]), pd.Series([-0.0]))
    assert not same(pd.DataFrame({"a": [0.0]}), pd.DataFrame({"a": [-0.0]}))
    assert not same(np.array([0.0]), np.array([-0.0]))
    assert not same(pd.Series([1], index=[0.0]), pd.Series([1], index=[-0.0]))
    for nan in (OTHER_NAN, NEG_NAN):
        assert math.isnan(nan)
        assert same(pd.Series([1.0, math.nan]), pd.Series([1.0, nan]))
        assert same(
            pd.Series([1.0, math.nan], index=[math.nan, 1.0]),
            pd.Series([1.0, nan], index=[nan, 1.0]),
        )
        assert same(np.array([math.nan, 2.0]), np.array([nan, 2.0]))
        assert same(np.array([complex(math.nan, 1)]), np.array([complex(nan, 1)]))
        assert same(np.array([math.nan], dtype="f4"), np.array([nan], dtype="f4"))
        assert same(pd.Series([nan, "x"], dtype=object), pd.Series([math.nan, "x"], dtype=object))


def test_names_attrs_and_indexes_count() -> None:
    base = pd.DataFrame({"a": [1, 2]})
    named = base.copy()
    named.columns.name = "cols"
    with_attrs = base.copy()
    with_attrs.attrs["source"] = "x"
    other_attrs = base.copy()
    other_attrs.attrs["source"] = "y"
    indexed = base.set_axis(pd.Index([0, 1], name="row"))
    variants = [base, named, with_attrs, other_attrs, indexed, base.set_axis([1, 2])]
    variants += [base.rename(columns={"a": "b"}), base.set_axis(["0", "1"]), base.astype("i4")]
    assert len({hash_value(v) for v in variants}) == len(variants)
    assert not same(pd.Series([1], name="a"), pd.Series([1], name="b"))
    assert not same(pd.Series([1], name=1), pd.Series([1], name="1"))
    assert not same(pd.Series([1]), pd.Series([1]).to_frame())


def test_index_kinds() -> None:
    values = [1, 2]
    tuples = [(0, "a"), (1, "b")]
    multi = pd.MultiIndex.from_tuples(tuples, names=["n", "s"])
    assert not same(pd.Series(values, index=multi), pd.Series(values, index=pd.Index(tuples)))
    assert not same(multi, multi.set_names(["n", "t"]))
    assert not same(multi, pd.MultiIndex.from_tuples(tuples[::-1], names=["n", "s"]))
    # a RangeIndex equals the int64 Index of its values: EQUAL digests by design
    for rng in (range(0, 5), range(3, 30, 7), range(10, -10, -3), range(0)):
        plain = pd.Index(list(rng), dtype="int64")
        assert same(pd.RangeIndex(rng.start, rng.stop, rng.step), plain)
        assert same(
            pd.Series(range(len(rng)), index=pd.RangeIndex(rng.start, rng.stop, rng.step)),
            pd.Series(range(len(rng)), index=plain),
        )
    big = pd.RangeIndex(5, 5 + 3 * 400_000, 3)
    assert same(big, pd.Index(np.arange(5, 5 + 3 * 400_000, 3)))
    assert not same(pd.RangeIndex(3), pd.Index([0, 1, 2], dtype="int32"))
    assert not same(pd.RangeIndex(3), pd.Index([0.0, 1.0, 2.0]))


def test_datetimes_with_zone_and_unit() -> None:
    naive = pd.Series(pd.to_datetime(["2024-01-01", "2024-06-01"]))
    utc = naive.dt.tz_localize("UTC")
    variants = [
        naive,
        naive.astype("datetime64[s]"),
        naive.astype("datetime64[ns]"),
        utc,
        naive.dt.tz_localize("Europe/Paris"),
        naive.dt.tz_localize("America/New_York"),
        pd.Series(pd.to_timedelta([1, 2], unit="s")),
        pd.Series(pd.period_range("2024-01", periods=2, freq="M")),
        pd.Series(pd.period_range("2024-01-01", periods=2, freq="D")),
    ]
    assert len({hash_value(v) for v in variants}) == len(variants)
    assert same(utc, naive.dt.tz_localize(zoneinfo.ZoneInfo("UTC")))  # equal dtypes in pandas
    assert not same(pd.Series([pd.NaT, naive[0]]), pd.Series([naive[0], pd.NaT]))


def test_extension_arrays() -> None:
    variants = [
        pd.Series([1, 2], dtype="int64"),
        pd.Series([1, 2], dtype="Int64"),
        pd.Series([1, None], dtype="Int64"),
        pd.Series([1, 0], dtype="Int64"),
        pd.Series([1, 2], dtype="Int32"),
        pd.Series([1.0, 2.0], dtype="Float64"),
        pd.Series([1, 2], dtype="int64[pyarrow]"),
        pd.Series([1, None], dtype="int64[pyarrow]"),
        pd.Series([True, False], dtype="boolean"),
        pd.Series([True, None], dtype="boolean"),
        pd.Series([True, False], dtype=bool),
        pd.Series(["1", "2"], dtype="string[python]"),
        pd.Series(["1", "2"], dtype="string[pyarrow]"),
        pd.Series(["1", "2"], dtype="str"),
        pd.Series(["1", "2"], dtype=object),
        pd.Series(["1", None], dtype="string[python]"),
        pd.Series(["1", ""], dtype="string[python]"),
        pd.Series(["1", None], dtype="str"),
        pd.Series(["1", ""], dtype="str"),
        pd.Series(pd.arrays.IntervalArray.from_breaks([0, 1, 2], closed="left")),
        pd.Series(pd.arrays.IntervalArray.from_breaks([0, 1, 2], closed="right")),
        pd.Series(pd.arrays.SparseArray([0, 0, 1])),
    ]
    assert len({hash_value(v) for v in variants}) == len(variants)
    # hidden data under the mask does not count
    masked = pd.array([1, 2], dtype="Int64")
    masked[1] = pd.NA
    assert same(pd.Series(masked), pd.Series([1, None], dtype="Int64"))
    # arrow chunking of a "str" column does not count
    chunked = pd.concat([pd.Series(["a", None]), pd.Series(["bc"])], ignore_index=True)
    assert same(chunked, pd.Series(["a", None, "bc"]))


# -- equal values built differently: equal digests --------------------------------------------


def test_equal_frames_built_differently() -> None:
    a = pd.DataFrame({"a": [1, 2, 3], "b": [1.5, 2.5, 3.5], "c": ["x", "y", "z"]})
    b = pd.concat([a[["a"]], a[["b"]], a[["c"]]], axis=1)
    c = pd.DataFrame({k: a[k].to_list() for k in a})
    d = pickle.loads(pickle.dumps(a))
    e = a.iloc[::-1].iloc[::-1]
    for other in (b, c, d, e):
        assert values_equal(a, other)
        assert same(a, other)
    grid = np.arange(24.0).reshape(6, 4)
    assert same(pd.DataFrame(grid), pd.DataFrame(np.asfortranarray(grid)))
    assert same(pd.DataFrame(grid), pd.DataFrame({i: grid[:, i] for i in range(4)}))
    big = np.random.default_rng(0).random((300_000, 3))  # chunked and parallel code paths
    assert same(pd.DataFrame(big), pd.DataFrame(np.asfortranarray(big)))
    big[5, 1] = OTHER_NAN
    alt = big.copy()
    alt[5, 1] = math.nan
    assert same(pd.DataFrame(big), pd.DataFrame(np.asfortranarray(alt)))


def test_numpy_layouts_and_object_arrays() -> None:
    grid = np.arange(24.0).reshape(2, 3, 4)
    assert same(grid, np.asfortranarray(grid))
    assert same(grid[:, ::2], np.ascontiguousarray(grid[:, ::2]))
    assert not same(grid, grid.reshape(4, 6))
    assert not same(grid, grid.astype(">f8"))
    assert not same(np.array([1, "x"], dtype=object), np.array(["1", "x"], dtype=object))
    assert not same(np.array([True], dtype=object), np.array([1], dtype=object))
    assert not same(np.array([b"a"], dtype=object), np.array(["a"], dtype=object))
    assert not same(np.array(["a", "b"]), np.array(["a", "b"], dtype=object))
    strings = np.array(["a", "b" * 40], dtype=np.dtypes.StringDType())
    assert same(strings, np.array(["a", "b" * 40], dtype=np.dtypes.StringDType()))
    assert not same(strings, np.array(["a", "c" * 40], dtype=np.dtypes.StringDType()))


def test_structured_arrays() -> None:
    packed = np.dtype([("a", "i1"), ("b", "f8")])
    aligned = np.dtype([("a", "i1"), ("b", "f8")], align=True)
    x = np.array([(1, 2.5), (2, math.nan)], dtype=aligned)
    y = x.copy()
    y.view(np.uint8)[1:8] = 7  # padding bytes: not part of the value
    y["b"][1] = OTHER_NAN
    assert values_equal(x, y) and same(x, y)
    assert not same(x, x.astype(packed))  # another layout is another dtype
    assert not same(
        x.astype(packed), np.array([(1, 2.5), (2, math.nan)], dtype=[("a", "i1"), ("c", "f8")])
    )
    assert not same(x, np.array([(1, 2.5), (3, math.nan)], dtype=aligned))
    assert not same(x, np.array([(1, -0.0), (2, math.nan)], dtype=aligned))
    nested = np.zeros(2, dtype=[("p", [("x", "f4"), ("y", "U2")]), ("q", "i2", (2,))])
    other = nested.copy()
    other["q"][1, 1] = 1
    assert not same(nested, other)
    assert same(nested[0], nested.copy()[0])


def test_arrow_tables() -> None:
    table = pa.table({"a": [1, 2], "s": ["x", None]})
    rebatched = pa.Table.from_batches(
        [
            pa.record_batch({"a": [1], "s": ["x"]}),
            pa.record_batch({"a": [2], "s": pa.array([None], pa.string())}),
        ]
    )
    assert same(table, rebatched)
    assert same(table, table.cast(pa.schema([("a", pa.int64()), ("s", pa.string())])))
    variants = [
        table,
        pa.table({"a": [1, 0], "s": ["x", None]}),
        pa.table({"a": [1, None], "s": ["x", None]}),
        pa.table({"a": [1, 2], "s": ["x", ""]}),
        pa.table({"b": [1, 2], "s": ["x", None]}),
        pa.table({"a": pa.array([1, 2], pa.int32()), "s": ["x", None]}),
        pa.table({"a": [1, 2], "s": pa.array(["x", None], pa.large_string())}),
        pa.table({"a": [1, 2], "s": [b"x", None]}),
        table.replace_schema_metadata({"k": "v"}),
        table.cast(pa.schema([pa.field("a", pa.int64(), nullable=False), ("s", pa.string())])),
        pa.record_batch({"a": [1, 2], "s": ["x", None]}),
    ]
    assert len({hash_value(v) for v in variants}) == len(variants)
    dates = pa.array([datetime.date(2024, 1, 1), None])
    assert not same(dates, pa.array([datetime.date(2024, 1, 1), datetime.date(1970, 1, 1)]))
    assert not same(pa.array([1]), pa.chunked_array([[1]]))
    assert same(pa.chunked_array([[1], [2, 3]]), pa.chunked_array([[1, 2], [3]]))
    assert same(pa.array(["a", "bc"]).slice(1), pa.array(["bc"]))
    stamps = pa.array([datetime.datetime(2024, 1, 1), None], pa.timestamp("us"))
    assert not same(stamps, stamps.cast(pa.timestamp("us", tz="UTC")))
    assert not same(stamps, stamps.cast(pa.timestamp("ns")))


def test_polars_frames() -> None:
    frame = pl.DataFrame({"a": [1, 2], "s": ["x", None]})
    assert same(frame, pl.concat([frame[:1], frame[1:]], rechunk=False))
    variants = [
        frame,
        pl.DataFrame({"a": [1, 0], "s": ["x", None]}),
        pl.DataFrame({"a": [1, None], "s": ["x", None]}),
        pl.DataFrame({"a": [1, 2], "s": ["x", ""]}),
        pl.DataFrame({"b": [1, 2], "s": ["x", None]}),
        frame.with_columns(pl.col("a").cast(pl.Int32)),
        frame.with_columns(pl.col("s").cast(pl.Categorical)),
        frame.with_columns(pl.col("s").cast(pl.Enum(["x", "y"]))),
        frame.select("s", "a"),
        pl.DataFrame({"a": [1.0, 2.0], "s": ["x", None]}),
        pl.DataFrame({"a": [-0.0, 2.0], "s": ["x", None]}),
        pl.DataFrame({"a": [0.0, 2.0], "s": ["x", None]}),
    ]
    assert len({hash_value(v) for v in variants}) == len(variants)
    assert not same(frame["a"], frame["a"].rename("b"))


# -- the property: digests agree with values_equal ------------------------------------------

OBJECT_CELLS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, width=64).filter(lambda f: math.isnan(f) or abs(f) < 4),
    st.sampled_from(["", "0", "1", "a", "True", "é"]),
    st.sampled_from([b"", b"a", b"1"]),
)
COLUMN_KINDS = st.sampled_from(
    ["int64", "float64", "bool", "object", "category", "str", "M8[ns]", "Int64"]
)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    kinds = draw(st.lists(COLUMN_KINDS, max_size=4))
    columns = []
    for i, kind in enumerate(kinds):
        name = draw(st.sampled_from([f"c{i}", i]))
        if kind == "object":
            columns.append(hpd.column(name, elements=OBJECT_CELLS, dtype=object))
        elif kind == "float64":
            elements = st.sampled_from([0.0, -0.0, 1.5, math.nan, OTHER_NAN, -1.0])
            columns.append(hpd.column(name, elements=elements, dtype=float))
        elif kind == "int64":
            columns.append(hpd.column(name, elements=st.integers(-2, 2), dtype="int64"))
        elif kind == "M8[ns]":
            columns.append(hpd.column(name, dtype="datetime64[ns]"))
        else:
            columns.append(
                hpd.column(name, elements=st.sampled_from(["a", "b", "c"]), dtype=object)
            )
    index = st.one_of(
        hpd.range_indexes(max_size=6), hpd.indexes(elements=st.integers(-3, 3), max_size=6)
    )
    frame = draw(hpd.data_frames(columns=columns, index=index))
    for i, kind in enumerate(kinds):
        if kind == "category":
            cats = draw(st.permutations(["a", "b", "c"]))
            frame.isetitem(
                i, pd.Categorical(frame.iloc[:, i], categories=cats, ordered=draw(st.booleans()))
            )
        elif kind == "str":
            frame.isetitem(i, frame.iloc[:, i].astype("str"))
        elif kind == "bool":
            frame.isetitem(i, frame.iloc[:, i].isin(["a"]))
        elif kind == "Int64":
            frame.isetitem(
                i, frame.iloc[:, i].isin(["a"]).astype("Int64").mask(frame.iloc[:, i] == "b")
            )
    return frame


def _rebuilt(frame: pd.DataFrame, how: int) -> pd.DataFrame:
    """An equal frame, built another way."""
    if how == 0:
        parts = [frame.iloc[:, [i]] for i in range(frame.shape[1])]
        return pd.concat(parts, axis=1) if parts else frame.copy()
    if how == 1:
        return pickle.loads(pickle.dumps(frame))
    if how == 2:
        return frame.iloc[::-1].iloc[::-1]
    return pd.DataFrame(
        {i: frame.iloc[:, i].copy() for i in range(frame.shape[1])}, index=frame.index.copy()
    ).set_axis(frame.columns, axis=1)


@st.composite
def mutated(draw: st.DrawFn, frame: pd.DataFrame) -> pd.DataFrame:
    """A frame that may or may not equal ``frame``: one cell, dtype, name or index changed."""
    out = frame.copy()
    choice = draw(st.integers(0, 5))
    if choice == 0 and out.size:
        row, col = draw(st.integers(0, out.shape[0] - 1)), draw(st.integers(0, out.shape[1] - 1))
        column = out.iloc[:, col].astype(object).copy()
        column.iloc[row] = draw(OBJECT_CELLS)
        out.isetitem(col, column)
    elif choice == 1 and out.shape[1]:
        out.isetitem(0, out.iloc[:, 0].astype(object))
    elif choice == 2:
        out.columns.name = draw(st.sampled_from([None, "cols", 0]))
    elif choice == 3:
        out.index = out.index.rename(draw(st.sampled_from([None, "row"])))
    elif choice == 4 and len(out):
        out = out.set_axis(
            draw(hpd.indexes(elements=st.integers(-3, 3), min_size=len(out), max_size=len(out)))
        )
    else:
        out.attrs = draw(st.sampled_from([{}, {"k": 1}, {"k": True}]))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.integers(0, 3))
def test_equal_frames_give_equal_digests(frame: pd.DataFrame, how: int) -> None:
    other = _rebuilt(frame, how)
    assert values_equal(frame, other)
    assert same(frame, other)
    for i in range(frame.shape[1]):
        assert same(frame.iloc[:, i], other.iloc[:, i])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_frame_digests_differ_exactly_when_values_differ(data: st.DataObject) -> None:
    frame = data.draw(frames())
    other = data.draw(mutated(frame))
    assert same(frame, other) == values_equal(frame, other)
    series, other_series = frame.iloc[:, 0:1].squeeze(axis=1), other.iloc[:, 0:1].squeeze(axis=1)
    if isinstance(series, pd.Series) and isinstance(other_series, pd.Series):
        assert same(series, other_series) == values_equal(series, other_series)


ARRAY_DTYPES = st.one_of(
    hnp.scalar_dtypes(),
    hnp.byte_string_dtypes(max_len=3),
    hnp.unicode_string_dtypes(max_len=3),
    hnp.array_dtypes(hnp.scalar_dtypes(), max_size=3, allow_subarrays=True),
)


@st.composite
def array_pairs(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    dtype = draw(ARRAY_DTYPES)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
    array = draw(hnp.arrays(dtype, shape))
    how = draw(st.integers(0, 4))
    if how == 0:
        other = np.asfortranarray(array)
    elif how == 1:
        other = pickle.loads(pickle.dumps(array))
    elif how == 2:
        other = draw(hnp.arrays(dtype, shape))  # independent: usually unequal
    elif how == 3:
        other = array.copy()
        if other.size:
            flat = other.reshape(-1)
            flat[draw(st.integers(0, other.size - 1))] = draw(hnp.from_dtype(dtype))
    else:
        other = _cast(array, draw(hnp.scalar_dtypes()))
    return array, other


def _cast(array: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """``array`` as ``dtype`` when numpy can cast it quietly (else an equal copy)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return array.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        return array.copy()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array_pairs())
def test_array_digests_differ_exactly_when_values_differ(
    pair: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]],
) -> None:
    array, other = pair
    assert same(array, other) == values_equal(array, other)
