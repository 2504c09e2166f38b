"""Value digests of outputs: equal outputs give equal downstream keys however they were built
(early cutoff for frames), outputs without a canonical hash keep byte-digest keys, and
records carry the digest through shared stores, checked and signed."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from etherealfabric import Workflow, node
from etherealfabric.define._files import File
from etherealfabric.hashing._digest import RefDigest
from etherealfabric.hashing._outputs import value_digest
from etherealfabric.journal._journal import Journal
from etherealfabric.plan._keys import VALUE_REF, input_digest
from etherealfabric.store._signing import Signer, encode_record, read_record, record_problem

CALLS: dict[str, int] = {}
LOCK = threading.Lock()


def count(name: str) -> None:
    with LOCK:
        CALLS[name] = CALLS.get(name, 0) + 1


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


class MyFrame(pd.DataFrame):
    pass


class Thing:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Thing)

    __hash__ = None  # type: ignore[assignment]


def _frame(how: str) -> pd.DataFrame:
    """Equal frames, built three ways (their pickles and parquet files differ)."""
    a, b = np.arange(5.0), np.arange(5.0) * 2
    if how == "concat":
        return pd.concat([pd.DataFrame({"a": a}), pd.DataFrame({"b": b})], axis=1)
    if how == "fortran":  # one 2-D block, and an int64 index equal to the RangeIndex
        grid = np.asfortranarray(np.stack([a, b], axis=1))
        return pd.DataFrame(grid, columns=["a", "b"], index=pd.Index(np.arange(5)))
    return pd.DataFrame({"a": a, "b": b})


# -- which outputs have a value digest ----------------------------------------------------------


def test_equal_values_built_differently_have_equal_value_digests() -> None:
    digests = {value_digest(_frame(how)) for how in ("concat", "fortran", "dict")}
    assert len(digests) == 1 and None not in digests
    grid = np.arange(12.0).reshape(3, 4)
    assert value_digest(grid) == value_digest(np.asfortranarray(grid)) is not None
    table = pa.table({"a": [1, 2]})
    rebatched = pa.Table.from_batches([pa.record_batch({"a": [1]}), pa.record_batch({"a": [2]})])
    assert value_digest(table) == value_digest(rebatched) is not None
    assert value_digest({"b": [1, 2], "a": None}) == value_digest({"a": None, "b": [1, 2]})
    frame = pl.DataFrame({"a": [1, 2], "s": ["x", None], "l": [[1], None]})
    rechunked = pl.concat([frame[:1], frame[1:]], rechunk=False)
    assert value_digest(frame) == value_digest(rechunked) is not None
    assert value_digest(frame) != value_digest(frame.with_columns(pl.col("a") * 2))


def test_unequal_values_and_other_types_have_other_value_digests() -> None:
    values: list[Any] = [
        _frame("dict"),
        _frame("dict").astype({"b": "float32"}),
        pd.Series([1, 2]),
        np.array([1, 2]),
        [1, 2],
        {"a": 1},
        1,
        1.0,
        True,
        "1",
        None,
        math.nan,
        -0.0,
        0.0,
        pa.table({"a": [1, 2]}),
        pa.record_batch({"a": [1, 2]}),
    ]
    digests = [value_digest(v) for v in values]
    assert None not in digests
    assert len(set(digests)) == len(digests)


@pytest.mark.parametrize(
    "value",
    [
        MyFrame({"a": [1]}),  # a subclass never stands in for its base
        pd.DataFrame({"a": [Thing()]}),  # a cell without a canonical hash
        pd.DataFrame({"a": [1]}).pipe(lambda f: f.set_axis(pd.Index([Thing()], dtype=object))),
        np.array([Thing()], dtype=object),
        [1, Thing()],
        {"a": [File(__file__)]},
        (1, 2),  # not plain JSON: its serializer is cloudpickle; keyed by its bytes
        {1, Path("x")},  # a set has one when its elements do (see test_sets_have_...)
        Thing(),
        print,
        Thing,
        lambda x: x,
        Path("x"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_without_a_canonical_hash_have_no_value_digest(value: object) -> None:
    assert value_digest(value) is None


def test_frame_attrs_with_a_user_object_have_no_value_digest() -> None:
    frame = pd.DataFrame({"a": [1]})
    frame.attrs["x"] = Thing()
    assert value_digest(frame) is None


def test_input_digest_uses_the_value_digest_when_the_record_has_one() -> None:
    record = {"digest": "a" * 32, "serializer": "json", "size": 1}
    assert input_digest(record) == RefDigest("json", "a" * 32)
    assert input_digest({**record, "value": "b" * 32}) == RefDigest(VALUE_REF, "b" * 32)


# -- the early cutoff ----------------------------------------------------------------------------


@node(version="1")
def make_v1(how):
    count("make")
    return _frame(how)


@node
def total(frame):
    count("total")
    return float(frame["a"].sum() + frame["b"].sum())


@node
def as_list(n):
    count("as_list")
    return list(range(n))


@node
def length(values):
    count("length")
    return len(values)


def _records(home: Path, run: int = 0) -> dict[str, dict[str, Any]]:
    with Journal(home / "journal.db") as journal:
        rows = journal.node_runs(journal.list_runs()[run]["id"])
        return {r["node"]: r for r in rows}


def test_an_equal_frame_built_differently_does_not_rerun_its_consumers(home: Path) -> None:
    with Workflow("cutoff") as wf:
        total(make_v1("concat"))
    first = wf.execute()
    assert first.executed == 2
    digests = {_output_record(home, "make_v1")["digest"]}
    for how in ("fortran", "dict"):
        CALLS.clear()
        with Workflow("cutoff") as wf:
            total(make_v1(how))
        results = wf.execute()
        assert CALLS == {"make": 1}
        assert results.statuses == {"make_v1": "succeeded", "total": "cached"}
        digests.add(_output_record(home, "make_v1")["digest"])
    assert len(digests) >= 2  # stored bytes differ (the int64 index at least); values do not


def _output_record(home: Path, name: str) -> dict[str, Any]:
    with Journal(home / "journal.db") as journal:
        run = journal.list_runs()[0]["id"]
        key = next(r["cache_key"] for r in journal.node_runs(run) if r["node"] == name)
        record = journal.get_action(key)
    assert record is not None
    return dict(record["outputs"]["result"])


def test_an_unequal_frame_reruns_its_consumers() -> None:
    with Workflow("cutoff") as wf:
        total(make_v1("dict"))
    wf.execute()
    CALLS.clear()

    @node(name="make_v1", version="2")
    def make_v2(how):
        count("make")
        return _frame(how).assign(a=lambda f: f["a"] + 1)

    with Workflow("cutoff") as wf:
        total(make_v2("dict"))
    results = wf.execute()
    assert CALLS == {"make": 1, "total": 1}
    assert results.statuses["total"] == "succeeded"


def test_records_carry_value_digests_and_plain_values_cut_off_too(home: Path) -> None:
    with Workflow("plain") as wf:
        length(as_list(3))
    wf.execute()
    record = _output_record(home, "as_list")
    assert record["serializer"] == "json"
    assert record["value"] == value_digest([0, 1, 2])


# -- records from shared stores ----------------------------------------------------------------


def _record(**extra: Any) -> dict[str, Any]:
    out = {"digest": "ab" * 16, "serializer": "npy", "size": 3, "type": "numpy.ndarray"}
    return {"node": "fit", "created_at": 1.0, "outputs": {"result": {**out, **extra}}}


@pytest.mark.parametrize("bad", [None, 1, "", "AB" * 16, "ab" * 15, ["ab" * 16]])
def test_a_malformed_value_digest_makes_the_record_malformed(bad: object) -> None:
    assert record_problem(_record()) == ""
    assert record_problem(_record(value="cd" * 16)) == ""
    assert "'value'" in record_problem(_record(value=bad))


def test_the_signature_covers_the_value_digest() -> None:
    signer = Signer(b"k" * 32)
    stored = encode_record("key", _record(value="cd" * 16), signer)
    data = json.dumps(stored).encode()
    assert read_record("key", data, signer)[0] is not None
    stored["outputs"]["result"]["value"] = "ef" * 16
    record, problem = read_record("key", json.dumps(stored).encode(), signer)
    assert record is None and "changed after it was signed" in problem
    del stored["outputs"]["result"]["value"]
    assert read_record("key", json.dumps(stored).encode(), signer)[0] is None


def test_huge_plain_values_have_no_value_digest() -> None:
    assert value_digest(list(range(50_000))) is not None
    assert value_digest(list(range(200_000))) is None
    assert value_digest(np.arange(200_000)) is not None
    assert value_digest(pd.Series(range(200_000), dtype=object)) is not None


# -- pandas metadata that changes what consumers compute -----------------------------------------

_NO_FREQ = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-03"])


def test_values_without_freq_or_flags_keep_their_digests() -> None:
    """Digests computed before freq and flags counted: existing cache keys stay valid."""
    from etherealfabric.hashing._values import hash_value

    series = pd.Series([1.0, 2.0, 3.0], index=_NO_FREQ)
    frame = pd.DataFrame({"a": [1, 2]}, index=pd.to_timedelta([1, 2], unit="D"))
    periods = pd.period_range("2024-01", periods=2, freq="M")
    assert [(hash_value(v), value_digest(v)) for v in (_NO_FREQ, series, frame, periods)] == [
        ("b20c2d1e3fc004e4f079dc1924c4139c", "5f03dd41434096786b4e4ced6472ff2d"),
        ("2e7c96066e18f27415f1f4d43876521b", "81a11fd3d389b3d16c4f4588ca0adfe8"),
        ("483a55f06cfac036b591326005b980d5", "3bd7b1a390b9d029e3871f4a9232fb87"),
        ("bb8de8258f02012e4fa6dfb545354fac", "31a76a74442f76798823de78f942dcae"),
    ]


def test_index_freq_and_duplicate_label_flags_count() -> None:
    daily = pd.date_range("2024-01-01", periods=3, freq="D")
    assert daily.equals(_NO_FREQ)
    assert value_digest(daily) != value_digest(_NO_FREQ)
    assert value_digest(daily) != value_digest(pd.date_range("2024-01-01", periods=3, freq="24h"))
    series = pd.Series([1.0, 2.0, 3.0], index=_NO_FREQ)
    assert value_digest(series) != value_digest(series.set_axis(daily))
    strict = series.set_flags(allows_duplicate_labels=False)
    assert value_digest(strict) != value_digest(series)
    frame = series.to_frame()
    assert value_digest(frame.set_flags(allows_duplicate_labels=False)) != value_digest(frame)
    steps = pd.timedelta_range("1D", periods=3, freq="D")
    assert value_digest(steps) != value_digest(pd.TimedeltaIndex(list(steps)))


@node
def next_day(series):
    count("next_day")
    try:
        return [str(t) for t in series.index.shift(1)]  # needs a freq
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def test_an_upstream_edit_that_only_adds_a_freq_reruns_its_consumers() -> None:
    @node(name="load", version="1")
    def load_v1():
        return pd.Series([1.0, 2.0, 3.0], index=_NO_FREQ)

    @node(name="load", version="2")
    def load_v2():
        return pd.Series([1.0, 2.0, 3.0], index=pd.date_range("2024-01-01", periods=3, freq="D"))

    with Workflow("freq") as wf:
        out = next_day(load_v1())
    assert str(wf.execute()[out]).startswith("error")
    with Workflow("freq") as wf:
        out = next_day(load_v2())
    results = wf.execute()
    assert results.statuses["next_day"] == "succeeded"
    assert results[out][0].startswith("2024-01-02")


# -- sets: their pickles depend on the process's hash seed, their value digests must not --------


def test_sets_have_value_digests_whatever_the_hash_seed(python: str) -> None:
    import os
    import subprocess

    code = (
        "from etherealfabric.hashing._outputs import value_digest as v; "
        "print(v({'alpha', 'beta', 'gamma', 'delta', 'eps'}), v(frozenset({1, 'a', (2, 3)})), "
        "v({'x', object()}))"
    )
    seen = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        seen.add(out.stdout)
    assert len(seen) == 1
    set_digest, frozen_digest, with_object = seen.pop().split()
    assert set_digest != "None" and frozen_digest != "None" and with_object == "None"
    assert value_digest({1, 2}) != value_digest(frozenset({1, 2})) != value_digest([1, 2])


@node
def size(values):
    count("size")
    return len(values)


def test_an_equal_set_output_cuts_off_its_consumers(home: Path) -> None:
    @node(name="make_set", version="1")
    def make_v1():
        return {"alpha", "beta", "gamma"}

    @node(name="make_set", version="2")
    def make_v2():
        return set(["gamma", "beta", "alpha"])

    with Workflow("sets") as wf:
        size(make_v1())
    wf.execute()
    assert _output_record(home, "make_set")["value"] == value_digest({"alpha", "beta", "gamma"})
    CALLS.clear()
    with Workflow("sets") as wf:
        size(make_v2())
    assert wf.execute().statuses == {"make_set": "succeeded", "size": "cached"}
    assert CALLS == {}
