"""In-memory hand-over on the threads backend (issue 14): a large array made in this process
reaches its consumers from memory, is still stored once (verified, record committed after the
write), a warm run loads it from the store, and consumers cannot change each other's input."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from etherealfabric import Secret, Workflow, node
from etherealfabric.journal import Journal
from etherealfabric.run import _worker
from etherealfabric.store import LocalStore
from etherealfabric.store._loading import held
from etherealfabric.store._serializers import default_registry

N = 200_000  # 1.6 MB: well beyond the 64 KiB inline limit


@node
def make(n: int) -> Any:
    return np.arange(n, dtype=np.float64)


@node
def total(a: Any) -> float:
    return float(a.sum())


@node
def biggest(a: Any) -> float:
    return float(a.max())


@node
def scribble(a: Any) -> float:
    a[:] = -1.0  # in place: refused, the input is shared
    return 0.0


@node
def shifted(a: Any) -> float:
    b = a.copy()  # what a node that wants to change its input does
    b += 1.0
    return float(b.sum())


@contextlib.contextmanager
def object_reads() -> Iterator[list[str]]:
    """The digests of the stored objects opened for reading (the real LocalStore, counted)."""
    opened: list[str] = []
    original = LocalStore.open_object

    def counting(self: LocalStore, digest: str, *, verify: bool = True) -> Any:
        opened.append(digest)
        return original(self, digest, verify=verify)

    LocalStore.open_object = counting  # type: ignore[method-assign]
    try:
        yield opened
    finally:
        LocalStore.open_object = original  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def background_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the test's small arrays in the background as "fast" does for large ones."""
    monkeypatch.setattr(_worker, "BACKGROUND_BYTES", 1024)


def pipeline(home: Path, **options: Any) -> Workflow:
    with Workflow("handover", home=str(home), **options) as wf:
        a = make(N)
        total(a)
        biggest(a)
        shifted(a)
    return wf


def expected() -> dict[str, float]:
    a = np.arange(N, dtype=np.float64)
    return {"total": float(a.sum()), "biggest": float(a.max()), "shifted": float((a + 1).sum())}


def values(results: Any) -> dict[str, float]:
    return {n: results[n]["result"] for n in ("total", "biggest", "shifted")}


@pytest.mark.parametrize("durability", ["fast", "safe"])
def test_consumers_get_the_array_from_memory_and_it_is_stored_once_verified(
    tmp_path: Path, durability: str
) -> None:
    home = tmp_path / "home"
    with object_reads() as opened:
        results = pipeline(home, durability=durability).execute()
    assert results.executed == 4
    assert values(results) == expected()
    assert opened == []  # three consumers, nothing read back from the store
    assert held() == {}  # nothing left in memory after the run

    # the object is in the store, verified against its digest, and its record is committed
    journal = Journal(home / "journal.db")
    try:
        key = results._keys["make"]
        record = journal.get_action(key)
    finally:
        journal.close()
    assert record is not None
    out = record["outputs"]["result"]
    assert out["inline"] is False and out["serializer"] == "npy"
    store = LocalStore(home)
    with store.open_object(out["digest"], verify=True) as fp:
        stored = np.lib.format.read_array(fp)
    np.testing.assert_array_equal(stored, np.arange(N, dtype=np.float64))
    assert len(list(store.list_entries("objects"))) == 1  # written once


def test_fast_and_safe_record_the_same_outputs(tmp_path: Path) -> None:
    records = []
    for durability in ("fast", "safe"):
        home = tmp_path / durability
        results = pipeline(home, durability=durability).execute()
        journal = Journal(home / "journal.db")
        try:
            record = journal.get_action(results._keys["make"])
        finally:
            journal.close()
        assert record is not None
        records.append(record["outputs"])
    assert records[0] == records[1]


def test_a_warm_rerun_of_a_consumer_loads_the_array_from_the_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pipeline(home).execute()
    with object_reads() as opened:
        results = pipeline(home).execute(force=["total"])
    assert results.executed == 1 and results.cached == 3
    assert values(results) == expected()
    assert len(opened) == 1  # make is cached: total read its output from the store


def test_a_consumer_cannot_change_its_siblings_input(tmp_path: Path) -> None:
    with Workflow("siblings", home=str(tmp_path / "home"), keep_going=True) as wf:
        a = make(N)
        scribble(a)
        total(a)
        biggest(a)
    results = wf.execute(raise_on_error=False)
    assert results.statuses["scribble"].value == "failed"
    assert "read-only" in str(results.errors["scribble"])
    assert results["total"]["result"] == expected()["total"]
    assert results["biggest"]["result"] == expected()["biggest"]


def test_arrays_loaded_from_the_store_are_read_only_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Workflow("siblings", home=str(home), keep_going=True) as wf:
        a = make(N)
        scribble(a)
        total(a)
    wf.execute(raise_on_error=False)
    results = wf.execute(raise_on_error=False)  # make cached: scribble reads the store
    assert results.statuses["scribble"].value == "failed"
    assert "read-only" in str(results.errors["scribble"])
    assert results["total"]["result"] == expected()["total"]


def test_the_processes_backend_reads_the_store(tmp_path: Path) -> None:
    results = pipeline(tmp_path / "home", backend="processes").execute()
    assert values(results) == expected()
    assert held() == {}


def test_a_killed_background_write_commits_no_record(tmp_path: Path) -> None:
    """A write that fails (as one interrupted by a kill would never finish) leaves the node
    without a record: the next run computes it again."""
    home = tmp_path / "home"
    started = threading.Event()
    original = LocalStore.put_file

    def failing(self: LocalStore, name: str, path: str, size: int) -> None:
        started.set()
        raise OSError(28, "No space left on device")

    LocalStore.put_file = failing  # type: ignore[method-assign]
    try:
        results = pipeline(home).execute(raise_on_error=False)
    finally:
        LocalStore.put_file = original  # type: ignore[method-assign]
    assert started.is_set()
    assert results.statuses["make"].value == "failed"
    assert "No space left" in str(results.errors["make"])
    assert held() == {}
    journal = Journal(home / "journal.db")
    try:
        assert journal.get_action(results._keys.get("make") or "0" * 32) is None
    finally:
        journal.close()
    again = pipeline(home).execute()
    assert "make" in {n for n, s in again.statuses.items() if s.value == "succeeded"}
    assert values(again) == expected()


consumer_ran = threading.Event()


@node
def signal_and_sum(a: Any) -> float:
    consumer_ran.set()
    return float(a.sum())


def test_with_durability_fast_the_write_does_not_block_the_consumers(tmp_path: Path) -> None:
    """The object's write waits until a consumer has run: it could not if the write came
    first. The producer's record is still committed (after the write)."""
    consumer_ran.clear()
    original = LocalStore.put_file
    waited: list[bool] = []

    def after_the_consumer(self: LocalStore, name: str, path: str, size: int) -> None:
        waited.append(consumer_ran.wait(timeout=60))
        original(self, name, path, size)

    LocalStore.put_file = after_the_consumer  # type: ignore[method-assign]
    try:
        with Workflow("fast", home=str(tmp_path / "home"), durability="fast") as wf:
            signal_and_sum(make(N))
        results = wf.execute()
    finally:
        LocalStore.put_file = original  # type: ignore[method-assign]
    assert waited == [True]
    assert results["signal_and_sum"]["result"] == expected()["total"]
    journal = Journal(tmp_path / "home" / "journal.db")
    try:
        assert journal.get_action(results._keys["make"]) is not None
    finally:
        journal.close()


def _arrays() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    with_nan = rng.random(300_000)
    with_nan[[7, 200_000]] = [np.nan, -np.nan]  # two NaNs, in different chunks
    waves = rng.random(150_000) + 1j * rng.random(150_000)
    waves[5] = complex(np.nan, 1.0)
    return {
        "floats": np.arange(300_000, dtype=np.float64),
        "floats with NaNs": with_nan,
        "complex with a NaN": waves,
        "ints 2-d": np.arange(400_000, dtype=np.int32).reshape(800, 500),
        "fortran order": np.asfortranarray(rng.random((600, 500))),
        "strided": np.arange(600_000, dtype=np.float64)[::2],
        "datetimes": np.arange(200_000).astype("M8[s]"),
        "strings": np.array(["a", "bc", "def"] * 10_000),
        "empty": np.zeros((0, 3)),
    }


@pytest.mark.parametrize("name", sorted(_arrays()))
def test_an_array_measured_in_memory_has_the_record_of_its_stored_bytes(
    tmp_path: Path, name: str
) -> None:
    """What a background write is announced as (digest and size of its ``.npy`` bytes, value
    digest: one pass over a plain array) is what storing it gives."""
    array = _arrays()[name]
    measured = _worker._measured("make", "result", array, default_registry)
    stored, _ = _worker.store_values(
        "make", ("result",), {"result": array}, {}, LocalStore(tmp_path / "store"), -1
    )
    assert measured == stored["result"]


@node(outputs=["array", "secret"])
def leaky(n: int) -> Any:
    return np.arange(n, dtype=np.float64), Secret("s3cr3t")  # an output may not be a Secret


def test_a_write_started_for_a_node_that_then_fails_leaves_nothing(tmp_path: Path) -> None:
    """The array's write starts as soon as the node returns, while its other outputs are
    stored: when one of those fails, the node fails and the array's object is not stored
    (its temp file is dropped)."""
    home = tmp_path / "home"
    with Workflow("leaky", home=str(home)) as wf:
        leaky(N)
    results = wf.execute(raise_on_error=False)
    assert results.statuses["leaky"].value == "failed"
    assert "Secret" in str(results.errors["leaky"])
    store = LocalStore(home)
    temp = home / "objects" / ".tmp"
    deadline = time.monotonic() + 30
    while list(store.list_entries("objects")) or (temp.exists() and os.listdir(temp)):
        assert time.monotonic() < deadline, "the write of a failed node's array was kept"
        time.sleep(0.05)
