"""polars frames as parquet, models with their library versions, memory-mapped large loads."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from etherealfabric import Workflow, node
from etherealfabric.run._worker import store_values
from etherealfabric.store import LocalStore, Serializer, get_serializer
from etherealfabric.store._loading import InputHandle, load_value
from etherealfabric.store._serializers import choose_serializer
from etherealfabric.store._signing import unsigned_problem
from etherealfabric.store._tables import MMAP_BYTES
from etherealfabric.testing import SerializerContract

pl = pytest.importorskip("polars")
sklearn = pytest.importorskip("sklearn")
pa = pytest.importorskip("pyarrow")

from sklearn.linear_model import LinearRegression, LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

START, END = pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 3)
POLARS_FRAMES = [
    pl.DataFrame({"a": [1, 2, None], "s": ["x", None, "zz"]}),
    pl.DataFrame({"c": pl.Series(["x", "y", "x"], dtype=pl.Categorical)}),
    pl.DataFrame({"e": pl.Series(["u", "v", "u"], dtype=pl.Enum(["u", "v"]))}),
    pl.DataFrame({"t": pl.datetime_range(START, END, "1d", time_zone="Europe/Paris", eager=True)}),
    pl.DataFrame({"l": [[1], [2, 3], []], "st": [{"x": 1}, {"x": 2}, None]}),
    pl.DataFrame({"f": pl.Series([], dtype=pl.Float32)}),
]


class TestPolarsSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("polars")

    @pytest.fixture
    def values(self) -> list[Any]:
        return POLARS_FRAMES

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return [pl.Series([1]), [1, 2], pa.table({"a": [1]})]

    def assert_same(self, back: Any, value: Any) -> None:
        assert type(back) is type(value)
        assert back.schema == value.schema and back.equals(value)


def fitted_models() -> list[Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5]
    labels = (y > 0).astype(int)
    return [
        LinearRegression().fit(X, y),
        make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels),
    ]


class TestModelSerializer(SerializerContract):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return get_serializer("model")

    @pytest.fixture
    def values(self) -> list[Any]:
        return fitted_models()

    @pytest.fixture
    def unsupported(self) -> list[Any]:
        return []

    def test_read_back_bytes_write_the_same_bytes_again(
        self, serializer: Serializer, values: list[Any]
    ) -> None:
        """Weaker for pickled models: a loaded model pickles differently (pickle's memo and
        the library's ``__setstate__``), so only one object's dumps must agree. Consumers are
        keyed by the stored bytes, which change only when the producer runs again."""
        for value in values:
            assert self.dump(serializer, value) == self.dump(serializer, value)

    def assert_same(self, back: Any, value: Any) -> None:
        assert type(back) is type(value)
        X = np.linspace(-1, 1, 30).reshape(10, 3)
        assert np.array_equal(back.predict(X), value.predict(X))


def test_polars_frames_choose_polars_and_object_columns_do_not() -> None:
    for frame in POLARS_FRAMES:
        assert choose_serializer(frame).name == "polars"
    with_objects = pl.DataFrame({"o": pl.Series([object(), object()], dtype=pl.Object)})
    assert choose_serializer(with_objects).name == "cloudpickle"
    out = {"digest": "0" * 32, "serializer": "polars", "size": 1}
    assert unsigned_problem({"outputs": {"df": out}}) == ""  # no code runs when loaded


def test_models_choose_model_and_record_their_library_versions(tmp_path: Path) -> None:
    @node
    def fit(n: int) -> Any:
        return fitted_models()[1]

    with Workflow("models", root=tmp_path, home=tmp_path / "home") as wf:
        fit(1)
    results = wf.execute()
    assert type(results["fit"]["result"]).__name__ == "Pipeline"
    conn = sqlite3.connect(tmp_path / "home" / "journal.db")
    (text,) = conn.execute("SELECT record FROM actions").fetchone()
    conn.close()
    out = json.loads(text)["outputs"]["result"]
    assert out["serializer"] == "model"
    assert out["versions"]["sklearn"] == sklearn.__version__
    assert out["versions"]["numpy"] == np.__version__
    assert "signed" in unsigned_problem({"outputs": {"result": out}})  # a pickle


def test_loading_a_model_under_other_versions_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path / "store")
    records, _ = store_values("fit", ("m",), {"m": fitted_models()[0]}, {}, store, -1)
    handle = InputHandle(records["m"]["digest"], "model")
    made_with = sklearn.__version__
    monkeypatch.setattr(sklearn, "__version__", "0.1.0")
    with caplog.at_level(logging.WARNING, logger="etherealfabric"):
        model = load_value(handle, store)
        del model
        load_value(InputHandle(handle.digest, "model"), store)
    said = [r.getMessage() for r in caplog.records if "saved with" in r.getMessage()]
    assert len(said) == 1, said
    assert f"sklearn {made_with} under sklearn 0.1.0" in said[0]
    assert "LinearRegression" in said[0]


def test_a_large_array_is_memory_mapped_and_its_object_never_changes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    array = np.arange(MMAP_BYTES // 8 + 1024, dtype=np.float64)
    records, _ = store_values("make", ("a",), {"a": array}, {}, store, -1)
    digest = records["a"]["digest"]
    loaded = load_value(InputHandle(digest, "npy"), store)
    assert type(loaded) is np.ndarray and np.array_equal(loaded, array)
    base = loaded
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)  # pages of the stored file, not a copy
    with pytest.raises(ValueError, match="read-only"):  # shared between consumers
        loaded[:10] = -1.0
    with pytest.raises(ValueError):  # a read-only map: the flag cannot be set back
        loaded.flags.writeable = True
    del loaded, base
    again = load_value(InputHandle(digest, "npy"), store, verify=True)
    assert again[0] == 0.0  # the stored object never changes (verify=True checked it)


def test_a_small_array_is_read_into_memory(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    records, _ = store_values("make", ("a",), {"a": np.arange(100_000.0)}, {}, store, -1)
    loaded = load_value(InputHandle(records["a"]["digest"], "npy"), store)
    assert loaded.base is None or not isinstance(loaded.base, np.memmap)


def test_a_large_arrow_table_is_memory_mapped(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    table = pa.table({"x": np.arange(MMAP_BYTES // 8 + 1024, dtype=np.int64)})
    records, _ = store_values("make", ("t",), {"t": table}, {}, store, -1)
    assert records["t"]["serializer"] == "arrow"
    del table
    before = pa.total_allocated_bytes()
    loaded = load_value(InputHandle(records["t"]["digest"], "arrow"), store)
    assert pa.total_allocated_bytes() - before < MMAP_BYTES // 4  # no copy of the data
    assert loaded.num_rows == MMAP_BYTES // 8 + 1024 and loaded.column("x")[5].as_py() == 5


def test_a_large_frame_is_read_back_exactly_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames of 64 MiB and more are read by path (pyarrow decodes chunk by chunk)."""
    import pandas as pd

    from etherealfabric.hashing._values import hash_value
    from etherealfabric.store._tables import ParquetSerializer

    rows = MMAP_BYTES // 7  # random floats: parquet cannot compress them much
    frame = pd.DataFrame(
        {"x": np.random.default_rng(0).random(rows), "k": np.arange(rows, dtype=np.int64) % 7},
        index=pd.RangeIndex(10, 10 + rows, name="row"),
    )
    frame.attrs["source"] = "test"
    store = LocalStore(tmp_path / "store")
    records, _ = store_values("make", ("f",), {"f": frame}, {}, store, -1)
    assert records["f"]["serializer"] == "parquet" and records["f"]["size"] >= MMAP_BYTES

    def not_the_stream(self: Any, fp: Any) -> Any:
        raise AssertionError("a large frame was read through a Python file object")

    monkeypatch.setattr(ParquetSerializer, "load", not_the_stream)
    back = load_value(InputHandle(records["f"]["digest"], "parquet"), store)
    assert hash_value(back) == hash_value(frame)
