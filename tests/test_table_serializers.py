"""The parquet (pandas DataFrames) and arrow (pyarrow Tables, Arrow IPC) serializers: the
serializer contract, exact round trips (index, names, dtypes, categoricals, time zones,
attrs), the automatic choice and its cloudpickle fallback, and loading without running code."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from etherealfabric import Workflow, node
from etherealfabric.errors import SerializationError
from etherealfabric.hashing._outputs import value_digest
from etherealfabric.hashing._values import hash_value
from etherealfabric.run._worker import store_values
from etherealfabric.store import LocalStore
from etherealfabric.store import _serializers as serializers
from etherealfabric.store._serializers import Serializer, default_registry, get_serializer
from etherealfabric.store._signing import unsigned_problem
from etherealfabric.store._tables import ParquetSerializer, frame_problem, parquet_fits
from etherealfabric.testing import SerializerContract
from test_frames import frames


class MyFrame(pd.DataFrame):
    pass


def _with(frame: pd.DataFrame, **attrs: Any) -> pd.DataFrame:
    frame.attrs.update(attrs)
    return frame


def _named_columns(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    frame.columns.name = name
    return frame


PARIS = zoneinfo.ZoneInfo("Europe/Paris")
FRAMES = [
    pd.DataFrame({"a": [1, 2, 3], "b": [1.5, -0.0, np.nan], "c": [True, False, True]}),
    pd.DataFrame({"x": np.arange(10, dtype="u2")}, index=pd.RangeIndex(5, 25, 2, name="r")),
    pd.DataFrame({"x": [1, 2]}, index=pd.Index(np.array([7, 3]), name="id")),
    pd.DataFrame({"x": [1, 2]}, index=pd.Index(["b", "a"])),
    pd.DataFrame(
        {"v": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["n", "s"])
    ),
    pd.DataFrame({"t": pd.date_range("2024-03-30", periods=3, freq="D", tz=PARIS)}),
    pd.DataFrame(
        {
            "t": pd.date_range("2024-01-01", periods=3, unit="ms"),
            "d": pd.to_timedelta([1, 2, 3], "s"),
        }
    ),
    pd.DataFrame(
        {"t": pd.to_datetime(["2024-01-01", None])},
        index=pd.date_range("2024", periods=2, tz="UTC"),
    ),
    pd.DataFrame({"c": pd.Categorical(["b", "a", "b"], categories=["c", "b", "a"])}),
    pd.DataFrame({"c": pd.Categorical(["b", None, "b"], categories=["b", "a"], ordered=True)}),
    pd.DataFrame(
        {"i": pd.array([1, None, 3], dtype="Int64"), "f": pd.array([1.5, None, 2], dtype="Float32")}
    ),
    pd.DataFrame(
        {"b": pd.array([True, None], dtype="boolean"), "s": pd.array(["x", None], dtype="str")}
    ),
    pd.DataFrame({"s": pd.array(["x", None], dtype="string[pyarrow]")}),
    pd.DataFrame({"p": pd.period_range("2024-01", periods=2, freq="M")}),
    pd.DataFrame({"iv": pd.arrays.IntervalArray.from_tuples([(0, 1), None])}),
    pd.DataFrame({"x": pd.array([1, 2], dtype="int64[pyarrow]")}),
    pd.DataFrame({0: [1, 2], 1: [3, 4]}),
    _named_columns(pd.DataFrame({"a": [1]}), "cols"),
    _with(pd.DataFrame({"a": [1]}), source="db", version=2, tags=["x", "y"]),
    pd.DataFrame({"a": pd.Series([], dtype="float64")}),
    pd.DataFrame(np.asfortranarray(np.arange(6.0).reshape(3, 2)), columns=["a", "b"]),
    pd.DataFrame(np.arange(6).reshape(3, 2)),  # labels 0, 1: a RangeIndex
    pd.DataFrame(np.zeros((2, 3)), columns=pd.RangeIndex(4, 10, 2, name="step")),
]
UNSUPPORTED_FRAMES = [
    pd.DataFrame([[1, 2]], columns=["a", "a"]),  # duplicate names
    pd.DataFrame({"a": [1, "x"]}, dtype=object),  # mixed object cells
    pd.DataFrame({"a": ["x", None]}, dtype=object),  # a missing string would come back None
    pd.DataFrame(index=range(3)),  # no columns
    MyFrame({"a": [1]}),  # a subclass
]


class TestParquetSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("parquet")

    @pytest.fixture
    def values(self) -> list[Any]:
        return FRAMES

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [*UNSUPPORTED_FRAMES, pd.Series([1], name=("a", "b")), {"a": [1]}]

    def assert_same(self, back: Any, value: Any) -> None:
        assert type(back) is type(value)
        assert list(back.dtypes) == list(value.dtypes)
        assert back.index.equals(value.index) and back.index.dtype == value.index.dtype
        assert type(back.index) is type(value.index)
        assert type(back.columns) is type(value.columns)  # pd.DataFrame(array): a RangeIndex
        assert back.columns.equals(value.columns) and back.columns.name == value.columns.name
        assert back.attrs == value.attrs
        assert hash_value(back) == hash_value(value)  # exact: see hashing/_frames.py


TABLES = [
    pa.table({"a": [1, None, 3], "s": ["x", None, "zz"]}),
    pa.Table.from_batches([pa.record_batch({"a": [1]}), pa.record_batch({"a": [2]})]),
    pa.table({"a": [1]}).replace_schema_metadata({"k": "v"}),
    pa.table({"t": pa.array([0, None], pa.timestamp("us", tz="Europe/Paris"))}),
    pa.table({"d": pa.array(["a", "b", "a"]).dictionary_encode()}),
    pa.table({"l": pa.array([[1, 2], None, []]), "st": pa.array([{"x": 1}, None, {"x": 2}])}),
    pa.Table.from_pandas(FRAMES[8]),
    pa.table({"e": pa.array([], pa.float32())}),
]


class TestArrowSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("arrow")

    @pytest.fixture
    def values(self) -> list[Any]:
        return TABLES

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [pa.record_batch({"a": [1]}), pd.DataFrame({"a": [1]}), [1, 2]]

    def assert_same(self, back: Any, value: Any) -> None:
        assert type(back) is type(value)
        assert back.equals(value, check_metadata=True)
        chunks = [[len(c) for c in t.column(0).chunks if len(c)] for t in (back, value)]
        assert chunks[0] == chunks[1]  # the same batches (an empty one may be dropped)


# -- the automatic choice and its fallback ------------------------------------------------------


@pytest.mark.parametrize("frame", FRAMES, ids=range(len(FRAMES)))
def test_frames_parquet_stores_exactly_choose_parquet(frame: pd.DataFrame) -> None:
    assert default_registry.choose(frame).name == "parquet"


@pytest.mark.parametrize(
    "frame",
    [
        *UNSUPPORTED_FRAMES,
        pd.DataFrame({"t": pd.date_range("2024", periods=2).astype("datetime64[s]")}),  # unit
        pd.DataFrame({"s": pd.array(["x"], dtype="string[python]")}),  # storage
        pd.DataFrame({"c": pd.Categorical([1, 2], categories=[2, 1])}),  # int categories
        pd.DataFrame({"z": np.array([1j])}),  # complex
        pd.DataFrame({"a": [1], 1: [2]}),  # mixed column names
        _with(pd.DataFrame({"a": [1]}), pair=(1, 2)),  # attrs JSON would change
        pd.DataFrame({"a": ["x"]}, dtype=object),  # pandas 3 reads it back as "str"
        pd.DataFrame({"l": pd.Series([[1]], dtype=pd.ArrowDtype(pa.list_(pa.int64())))}),
    ],
    ids=lambda f: ",".join(map(str, f.dtypes)) or "none",
)
def test_other_frames_choose_cloudpickle(frame: pd.DataFrame) -> None:
    assert default_registry.choose(frame).name == "cloudpickle"


def test_tables_choose_arrow_and_record_batches_do_not() -> None:
    assert default_registry.choose(pa.table({"a": [1]})).name == "arrow"
    assert default_registry.choose(pa.record_batch({"a": [1]})).name == "cloudpickle"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_whatever_chooses_parquet_round_trips_exactly(frame: pd.DataFrame) -> None:
    """The probe in parquet_fits looks at three rows; the whole frame must come back equal."""
    if default_registry.choose(frame).name != "parquet":
        return
    buffer = io.BytesIO()
    get_serializer("parquet").dump(frame, buffer)
    back = get_serializer("parquet").loads(buffer.getvalue())
    assert value_digest(back) == value_digest(frame) is not None


def test_a_frame_parquet_fails_to_write_falls_back_to_cloudpickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = pd.DataFrame({"a": [1, "x"]}, dtype=object)
    monkeypatch.setattr(serializers, "parquet_fits", lambda value: True)  # a wrong probe
    assert default_registry.choose(frame).name == "parquet"
    store = LocalStore(tmp_path / "store")
    records, _ = store_values("n", ("out",), {"out": frame}, {}, store, inline_limit=-1)
    assert records["out"]["serializer"] == "cloudpickle"
    with pytest.raises(SerializationError, match="'parquet'"):
        store_values("n", ("out",), {"out": frame}, {"out": "parquet"}, store, inline_limit=-1)


def test_frame_problem_names_the_reason() -> None:
    assert frame_problem(FRAMES[0]) == ""
    assert "unique" in frame_problem(UNSUPPORTED_FRAMES[0])
    assert "'a'" in frame_problem(UNSUPPORTED_FRAMES[1])
    assert not parquet_fits(UNSUPPORTED_FRAMES[2])


def test_a_workflow_stores_frames_as_parquet_and_gets_them_back(home: Path) -> None:
    expected = FRAMES[5].assign(n=[1, 2, 3])

    @node
    def make():
        return expected.copy()

    @node
    def check(frame):
        return bool(value_digest(frame) == value_digest(expected))

    with Workflow("frames") as wf:
        out = check(make())
    results = wf.execute()
    assert results[out] is True
    from etherealfabric.journal._journal import Journal

    with Journal(home / "journal.db") as journal:
        run = journal.list_runs()[0]["id"]
        key = next(r["cache_key"] for r in journal.node_runs(run) if r["node"] == "make")
        record = journal.get_action(key)
    assert record is not None and record["outputs"]["result"]["serializer"] == "parquet"


# -- safe to load without a signature -------------------------------------------------------------


def test_parquet_and_arrow_records_are_usable_unsigned() -> None:
    for name in ("parquet", "arrow"):
        out = {"digest": "ab" * 16, "serializer": name, "size": 1}
        assert unsigned_problem({"node": "n", "outputs": {"result": out}}) == ""


def test_loading_runs_no_pickle_and_no_compiled_code(tmp_path: Path) -> None:
    """Parquet with pandas metadata for extension types (period, interval, categorical, tz)
    and arrow IPC load under an audit hook: nothing is ever unpickled, and once the modules
    pyarrow and pandas import on first use are loaded, nothing is imported, compiled or
    executed while loading."""
    for i, frame in enumerate(FRAMES):
        buffer = io.BytesIO()
        get_serializer("parquet").dump(frame, buffer)
        (tmp_path / f"{i}.parquet").write_bytes(buffer.getvalue())
    for i, table in enumerate(TABLES):
        buffer = io.BytesIO()
        get_serializer("arrow").dump(table, buffer)
        (tmp_path / f"{i}.arrow").write_bytes(buffer.getvalue())
    code = textwrap.dedent(
        f"""
        import sys, pathlib
        pickled, ran = [], []
        watch = {{"compile", "exec", "marshal.loads", "import"}}
        def hook(event, args):
            if event == "pickle.find_class":
                pickled.append(args)
            elif event in watch and armed:
                ran.append((event, str(args[0])[:80]))
        armed = False
        sys.addaudithook(hook)
        from etherealfabric.store._serializers import get_serializer
        paths = sorted(pathlib.Path({str(tmp_path)!r}).iterdir())
        def load_all():
            for path in paths:
                serializer = get_serializer(path.suffix[1:])
                with open(path, "rb") as fp:
                    serializer.load(fp)
                serializer.loads(path.read_bytes())
        load_all()  # first use: pyarrow and pandas import some of their own modules
        armed = True
        load_all()
        assert not pickled, pickled
        assert not ran, ran
        # no interpreter teardown: pyarrow's threads stopping there under the audit hook
        # (whose globals are being cleared) sometimes abort the process (SIGABRT)
        armed = False
        import os
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


SERIES = [
    pd.Series([1, 2, 3], name="x"),
    pd.Series([1.5, None], name=None),
    pd.Series(["a", "b"], index=pd.Index(["i", "j"], name="k"), name=3),
    pd.Series(pd.Categorical(["a", "b", "a"], categories=["b", "a"]), name="c"),
    pd.Series(pd.to_datetime(["2026-01-01", None]).tz_localize("Europe/Paris"), name="t"),
    pd.Series([], dtype="Int64", name="empty"),
]


class TestParquetSeries(SerializerContract):
    """Series go to parquet as a one-column frame, their name kept beside it."""

    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("parquet")

    @pytest.fixture
    def values(self) -> list[Any]:
        return SERIES

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [
            pd.Series([1], name=("a", "b")),
            pd.Series([1, "a"]),
            pd.Series([1.0], name=1.5e400),
        ]

    def assert_same(self, back: Any, value: Any) -> None:
        assert type(back) is pd.Series and back.name == value.name
        assert type(back.name) is type(value.name)
        assert hash_value(back) == hash_value(value)


@pytest.mark.parametrize("series", SERIES, ids=range(len(SERIES)))
def test_series_parquet_stores_exactly_choose_parquet(series: pd.Series) -> None:
    assert default_registry.choose(series).name == "parquet"


def test_series_parquet_would_change_are_pickled() -> None:
    assert default_registry.choose(pd.Series([1], name=("a", "b"))).name == "cloudpickle"
    assert default_registry.choose(pd.Series([1, "a"])).name == "cloudpickle"


def test_a_pickled_frame_says_why_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path / "store")
    mixed = pd.DataFrame({"who": ["ann", 1, "bob"]}, dtype=object)  # str and int cells
    with caplog.at_level(logging.INFO, logger="etherealfabric.store"):
        for _ in range(3):
            records, _ = store_values("load", ("df",), {"df": mixed}, {}, store, -1)
            assert records["df"]["serializer"] == "cloudpickle"
        store_values("load", ("ok",), {"ok": pd.DataFrame({"n": [1]})}, {}, store, -1)
    said = [r.getMessage() for r in caplog.records if "not parquet" in r.getMessage()]
    assert len(said) == 1, said
    assert said[0].startswith("load: output 'df' is stored with cloudpickle, not parquet")
    assert "'who'" in said[0]


# -- large frames: read by path, one column at a time -------------------------------------------

WIDE_FRAMES = [
    pd.DataFrame(
        {
            "x": np.arange(6, dtype="u2"),
            "f": np.linspace(0, 1, 6),
            "c": pd.Categorical(list("abcabc"), categories=["c", "b", "a"], ordered=True),
            "t": pd.date_range("2024-03-30", periods=6, freq="h", tz=PARIS),
            "i": pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
            "s": pd.array(list("uvwxyz"), dtype="str"),
        },
        index=pd.RangeIndex(5, 17, 2, name="r"),
    ),
    _with(_named_columns(pd.DataFrame({"a": [1, 2], "b": [3.0, 4.0]}), "cols"), source="db"),
]


@pytest.mark.parametrize("i", range(len(FRAMES) + len(WIDE_FRAMES)))
def test_a_large_frame_read_by_its_path_is_the_frame_it_was(tmp_path: Path, i: int) -> None:
    """``load_path`` (stored frames of 64 MiB or more) reads a plain layout one column at a
    time, and any other whole: both give back exactly the frame that was stored."""
    import pyarrow.parquet as pq

    from etherealfabric.store._tables import _read_by_column

    frame = [*FRAMES, *WIDE_FRAMES][i]
    serializer = get_serializer("parquet")
    path = tmp_path / "frame.parquet"
    with path.open("wb") as fp:
        serializer.dump(frame, fp)
    TestParquetSerializer.assert_same(None, serializer.load_path(str(path)), frame)  # type: ignore[arg-type]
    by_column = _read_by_column(pq.ParquetFile(path))
    plain = isinstance(frame.index, pd.RangeIndex) and len(frame.columns) > 1
    assert (by_column is not None) == plain


@node
def hourly() -> pd.DataFrame:
    index = pd.date_range("2026-01-01", periods=48, freq="h", name="at")
    return pd.DataFrame({"load": np.arange(48.0)}, index=index)


@node
def index_freq(frame: pd.DataFrame) -> str | None:
    return frame.index.freqstr


@node
def strict() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2]}).set_flags(allows_duplicate_labels=False)


@node
def strict_flag(frame: pd.DataFrame) -> bool:
    return bool(frame.flags.allows_duplicate_labels)


def test_a_frame_keeps_its_index_frequency_and_its_flags(home: Path) -> None:
    """A DatetimeIndex's freq ("h") and allows_duplicate_labels=False reach consumers and
    come back from the store (parquet's pandas metadata keeps neither)."""
    with Workflow("freq") as wf:
        freq = index_freq(hourly())
        flag = strict_flag(strict())
    for expected_cached in (0, 4):
        results = wf.execute()
        assert (results[freq], results[flag], results.cached) == ("h", False, expected_cached)
    assert results.record("hourly")["result"]["serializer"] == "parquet"
    assert results["hourly"]["result"].index.freqstr == "h"
    buffer = io.BytesIO()
    ParquetSerializer().dump(pd.Series([1.0, 2.0], index=pd.date_range("2026", periods=2)), buffer)
    assert ParquetSerializer().loads(buffer.getvalue()).index.freqstr == "D"


def test_processes_that_loaded_a_frame_from_a_file_object_exit_cleanly(tmp_path: Path) -> None:
    """pyarrow's threads, having read parquet through a Python file object (how a small object
    or a shared store's is loaded), aborted the interpreter at its exit now and then
    ("terminate called without an active exception": 2 processes of 40 here); each of these
    processes must exit 0 (on the former code, about 1 run of this test in 2 failed)."""
    stored = tmp_path / "frame.parquet"
    with stored.open("wb") as fp:
        ParquetSerializer().dump(
            pd.DataFrame({"x": range(1000), "y": [f"v{i}" for i in range(1000)]}), fp
        )
    script = textwrap.dedent(
        f"""
        from etherealfabric.store._tables import ParquetSerializer
        for _ in range(3):
            with open({str(stored)!r}, "rb") as fp:
                frame = ParquetSerializer().load(fp)
        print(len(frame))
        """
    )
    for _ in range(16):
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert (done.returncode, done.stdout.strip()) == (0, "1000"), done.stderr
