"""Lazy readers (a polars LazyFrame, a pyarrow dataset) hash by the content of the files they
read: their own bytes (a query plan, a file list) do not change when the data does, so a
consumer keyed by them would stay cached on stale data."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import polars as pl
import pyarrow.dataset as ds
import pytest

from etherealfabric import Workflow, node
from etherealfabric.hashing._outputs import value_digest
from etherealfabric.hashing._scans import LazyReaderError, scan_sources
from etherealfabric.hashing._values import hash_value


def _write(path: str, values: list[int]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"v": values}).write_parquet(path)
    old = time.time() - 10  # data written before the run (a folder changed while a node ran
    os.utime(path, (old, old))  # is taken for one it wrote into; ctime still shows the write)


@node
def scan():
    return pl.scan_parquet("data/sales.parquet").filter(pl.col("v") > 0)


@node
def open_dataset(refresh):  # a new refresh: it runs again (the same file list, the same bytes)
    return ds.dataset("data/", format="parquet")


@node
def total(lf):
    return int(lf.select(pl.col("v").sum()).collect().item())


@node
def rows(dataset):
    return dataset.to_table().num_rows


def test_a_consumer_of_a_returned_lazyframe_reruns_when_its_file_changes() -> None:
    _write("data/sales.parquet", [1, 2])
    with Workflow("lazy") as wf:
        out = total(scan())
    assert wf.execute()[out] == 3
    _write("data/sales.parquet", [1, 2, 100])
    results = wf.execute()
    assert results[out] == 103
    assert results.statuses == {"scan": "succeeded", "total": "succeeded"}
    assert wf.execute().executed == 0  # nothing changed: all cached


def test_a_consumer_of_a_returned_dataset_reruns_when_a_file_changes() -> None:
    _write("data/p0.parquet", [1, 2])
    _write("data/p1.parquet", [3])
    with Workflow("dataset") as wf:
        out = rows(open_dataset(1))
    assert wf.execute()[out] == 3
    _write("data/p0.parquet", [1, 2, 100])
    with Workflow("dataset") as wf:
        out = rows(open_dataset(2))
    results = wf.execute()
    assert results[out] == 4
    assert results.statuses["rows"] == "succeeded"


def test_a_lazyframe_argument_is_keyed_by_the_content_it_reads() -> None:
    _write("data/sales.parquet", [1, 2])
    with Workflow("lazy-param") as wf:
        out = total(pl.scan_parquet("data/sales.parquet"))
    assert wf.execute()[out] == 3
    assert wf.execute().executed == 0
    _write("data/sales.parquet", [1, 2, 100])
    with Workflow("lazy-param") as wf:  # a new scan (polars keeps what it read of the old file)
        out = total(pl.scan_parquet("data/sales.parquet"))
    results = wf.execute()
    assert results[out] == 103 and results.executed == 1


def test_lazy_reader_digests_follow_file_content_and_plan() -> None:
    _write("data/a.parquet", [1])
    lf = pl.scan_parquet("data/a.parquet")
    dataset = ds.dataset("data/", format="parquet")
    before = (hash_value(lf), value_digest(lf), hash_value(dataset), value_digest(dataset))
    assert None not in before
    assert (hash_value(lf), value_digest(lf)) == before[:2]  # stable while nothing changes
    assert hash_value(lf.filter(pl.col("v") > 0)) != before[0]  # the plan counts
    _write("data/a.parquet", [2])
    after = (hash_value(lf), value_digest(lf), hash_value(dataset), value_digest(dataset))
    assert all(x != y for x, y in zip(before, after, strict=True))


def test_globs_and_folders_cover_every_file_they_match() -> None:
    _write("data/part/a.parquet", [1])
    _write("data/part/b.parquet", [2])
    by_glob, by_folder = pl.scan_parquet("data/part/*.parquet"), pl.scan_parquet("data/part/")
    assert scan_sources(by_glob) == ["data/part/*.parquet"]
    digests = (value_digest(by_glob), value_digest(by_folder))
    _write("data/part/b.parquet", [3])
    assert value_digest(by_glob) != digests[0]
    assert value_digest(by_folder) != digests[1]


def test_a_lazyframe_over_remote_data_is_refused_with_what_to_do() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lf = pl.scan_parquet("https://example.invalid/sales.parquet")
    for digest in (hash_value, value_digest):
        with pytest.raises(LazyReaderError, match=r"https://example\.invalid.*collect\(\)"):
            digest(lf)


def test_an_in_memory_lazyframe_hashes_by_its_plan() -> None:
    lf = pl.DataFrame({"v": [1, 2]}).lazy()
    assert scan_sources(lf) == []
    assert value_digest(lf) == value_digest(pl.DataFrame({"v": [1, 2]}).lazy())
    assert value_digest(lf) != value_digest(pl.DataFrame({"v": [1, 3]}).lazy())


FOLDER = "".join(["da", "ta"])  # a path built at run time: the node does not name it


@node
def open_built_dataset():
    return ds.dataset(os.path.join(FOLDER, ""), format="parquet")


@node
def scan_built():
    return pl.scan_parquet(os.path.join(FOLDER, "sales.parquet"))


def test_a_node_returning_a_reader_is_not_a_hit_once_its_files_changed(home: Path) -> None:
    """Its cached reader's digest covers the old data: the files it reads are checked before
    a hit, as if the node had read them, even when its code does not name them."""
    _write("data/sales.parquet", [1, 2])
    with Workflow("readers") as wf:
        by_dataset, by_scan = rows(open_built_dataset()), total(scan_built())
    first = wf.execute()
    assert (first[by_dataset], first[by_scan]) == (2, 3)
    assert wf.execute().executed == 0
    _write("data/sales.parquet", [1, 2, 100])
    with Workflow("readers") as wf:  # new scans (polars keeps what it read of the old file)
        by_dataset, by_scan = rows(open_built_dataset()), total(scan_built())
    results = wf.execute()
    assert (results[by_dataset], results[by_scan]) == (3, 103)
    assert results.executed == 4
