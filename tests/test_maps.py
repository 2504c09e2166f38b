"""Mapped nodes (``fn.map(items)``): one child per item keyed by content, collected outputs,
per-child failures, and the journal rows of the children."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from etherealfabric import File, Node, RunFailedError, Workflow, node, untracked
from etherealfabric.define._policies import SKIP
from etherealfabric.errors import DefinitionError, MapItemsError
from etherealfabric.journal._journal import Journal

FLAKY = "flaky.json"  # the items that fail while this file lists them


@node
def numbers(n):
    return list(range(n))


@node
def listed(values):
    return list(values)


@node
def square(x, k=1):
    return x * x * k


@node
def total(xs):
    return sum(xs)


@node
def shaky(x, flaky):
    with untracked():  # the file says which items fail: no input of the results
        if Path(flaky).exists() and x in json.loads(Path(flaky).read_text()):
            raise ValueError(f"item {x} is flaky")
    return x * 10


def flaky(*items: int) -> str:
    Path(FLAKY).write_text(json.dumps(list(items)))
    return str(Path(FLAKY).resolve())


def run(values, **options):
    with Workflow("maps", **options) as wf:
        sq = square.map(listed(values), k=2)
        t = total(sq)
    return wf.execute(), sq, t


def test_map_calls_the_function_per_item_and_collects_a_list() -> None:
    results, sq, t = run([1, 2, 3])
    assert results[sq] == [2, 8, 18]
    assert results[t] == 28
    report = results.map_report(sq)
    assert (report.items, report.children, report.cached, report.collected) == (3, 3, 0, 3)
    assert sorted(report.executed) == ["square[1]", "square[2]", "square[3]"]


def test_warm_rerun_of_a_map_is_one_lookup() -> None:
    run([1, 2, 3])
    results, sq, _ = run([1, 2, 3])
    assert results.executed == 0
    assert results.map_report(sq).whole
    assert results[sq] == [2, 8, 18]


def test_adding_an_item_runs_only_that_child_and_the_collection() -> None:
    run([1, 2, 3])
    results, sq, _ = run([1, 2, 3, 4])
    report = results.map_report(sq)
    assert report.executed == ["square[4]"]
    assert report.cached == 3
    assert results[sq] == [2, 8, 18, 32]
    assert results.statuses["total"] == "succeeded"


def test_removing_and_reordering_items_runs_no_child() -> None:
    run([1, 2, 3])
    results, sq, t = run([3, 1])
    report = results.map_report(sq)
    assert report.executed == []
    assert report.cached == 2
    assert results[sq] == [18, 2]  # the collection follows the new order
    assert results[t] == 20


def test_children_that_produce_the_same_outputs_stop_the_collection_early() -> None:
    # the items change but their squares do not: the collection's key is the same
    run([2, 3])
    results, sq, _ = run([-2, -3])
    assert sorted(results.map_report(sq).executed) == ["square[-2]", "square[-3]"]
    assert results.statuses["total"] == "cached"


def test_equal_items_are_one_child() -> None:
    results, sq, _ = run([5, 5, 5])
    assert results[sq] == [50, 50, 50]
    report = results.map_report(sq)
    assert (report.items, report.children, report.executed) == (3, 1, ["square[5]"])


def test_map_over_a_dict_collects_a_dict() -> None:
    @node
    def table():
        return {"a": 1, "b": 2}

    with Workflow("dict") as wf:
        sq = square.map(table())
    results = wf.execute()
    assert results[sq] == {"a": 1, "b": 4}
    assert sorted(results.map_report(sq).executed) == ["square[a]", "square[b]"]


def test_map_over_a_literal_list_with_a_broadcast_reference() -> None:
    @node
    def three():
        return 3

    with Workflow("literal") as wf:
        sq = square.map([1, 2], k=three())
    assert wf.execute()[sq] == [3, 12]


def test_map_over_an_empty_list_collects_an_empty_list() -> None:
    results, sq, t = run([])
    assert results[sq] == []
    assert results[t] == 0


def test_class_nodes_map_too_with_one_list_per_output() -> None:
    class Split(Node):
        def __init__(self, value, offset):
            super().__init__()
            self.value, self.offset = value, offset
            self.outputs = ["low", "high"]

        def run(self):
            return {"low": self.value - self.offset, "high": self.value + self.offset}

    with Workflow("classes") as wf:
        parts = Split.map(numbers(3), offset=10)
        t = total(parts.outputs["high"])
    results = wf.execute()
    assert results[parts]["low"] == [-10, -9, -8]
    assert results[t] == 33
    assert sorted(results.map_report(parts).executed) == ["Split[0]", "Split[1]", "Split[2]"]


def test_outside_a_workflow_map_is_a_plain_loop() -> None:
    assert square.map([1, 2], k=3) == [3, 12]
    assert square.map({"x": 2}) == {"x": 4}


def test_children_are_named_by_content_not_position() -> None:
    with Workflow("names") as wf:
        out = listed.map(["a", "b/c", "x" * 40, ("t",)])
    results = wf.execute()
    names = sorted(results.map_report(out).executed)
    assert "listed[a]" in names
    others = [n for n in names if n != "listed[a]"]  # digests: 10 hex digits
    assert len(others) == 3 and all(len(n) == len("listed[]") + 10 for n in others)
    assert wf.execute()[out] == [["a"], ["b", "/", "c"], ["x"] * 40, ["t"]]


def test_items_that_are_not_a_sequence_fail_the_map_with_its_name() -> None:
    @node
    def one():
        return 42

    with Workflow("bad") as wf:
        square.map(one())
    with pytest.raises(RunFailedError) as info:
        wf.execute()
    assert "square" in info.value.failures
    assert "maps over the output one.result, which is an int" in info.value.failures["square"]
    assert isinstance(info.value.__cause__.original, MapItemsError)


def test_a_set_of_items_is_refused_as_unordered() -> None:
    with Workflow("set") as wf:
        square.map({1, 2})
    with pytest.raises(RunFailedError, match="sets have no order"):
        wf.execute()


def test_bad_max_failures_and_writes_are_refused_at_definition() -> None:
    with Workflow("defs"), pytest.raises(DefinitionError, match="fraction must be in"):
        square.map([1], max_failures=1.5)
    with Workflow("defs2"), pytest.raises(DefinitionError, match="max_failures must be"):
        square.map([1], max_failures="2")

    @node(writes=["out.txt"])
    def writes(x):
        return x

    with Workflow("defs3"), pytest.raises(DefinitionError, match="cannot declare writes"):
        writes.map([1])


def test_a_failed_item_fails_the_map_and_never_reruns_its_siblings() -> None:
    path = flaky(2)
    with Workflow("fail") as wf:
        out = shaky.map([1, 2, 3, 4], flaky=path)
        total(out)
    with pytest.raises(RunFailedError) as info:
        wf.execute(keep_going=True)
    results = info.value.results
    report = results.map_report(out)
    assert list(report.failed) == ["shaky[2]"]
    assert "ValueError: item 2 is flaky" in report.failed["shaky[2]"]
    assert "1 of 4 items failed" in info.value.failures["shaky"]
    assert results.statuses["total"] == "upstream_failed"
    Path(FLAKY).unlink()
    again = wf.execute()
    assert again.map_report(out).executed == ["shaky[2]"]  # the others are cached
    assert again[out] == [10, 20, 30, 40]


def test_max_failures_lets_a_map_succeed_with_the_items_that_did() -> None:
    path = flaky(2, 3)
    with Workflow("partial") as wf:
        out = shaky.map([1, 2, 3, 4], flaky=path, max_failures=2)
        t = total(out)
    results = wf.execute()
    assert results[out] == [10, 40]
    assert results[t] == 50
    assert sorted(results.map_report(out).failed) == ["shaky[2]", "shaky[3]"]
    # a fraction: 0.25 of 4 items is 1, fewer than the 2 that fail
    with Workflow("partial2") as wf2:
        shaky.map([1, 2, 3, 4], flaky=path, max_failures=0.25)
    with pytest.raises(RunFailedError, match="max_failures allows 1"):
        wf2.execute()
    # the partial result is not the map's own record: the next run retries the failed items
    Path(FLAKY).unlink()
    again = wf.execute()
    assert sorted(again.map_report(out).executed) == ["shaky[2]", "shaky[3]"]
    assert again[t] == 100


def test_fail_fast_stops_sending_children_after_a_failure() -> None:
    path = flaky(0)
    with Workflow("fast", max_workers=1) as wf:
        out = shaky.map(list(range(200)), flaky=path)
    with pytest.raises(RunFailedError):
        wf.execute()
    Path(FLAKY).unlink()
    report = wf.execute().map_report(out)
    assert len(report.executed) > 1  # what fail-fast did not get to runs now
    assert "shaky[0]" in report.executed


def test_on_error_applies_per_child() -> None:
    def handler(error):
        return SKIP if error.node == "shaky[2]" else {"result": -1}

    path = flaky(2, 3)
    with Workflow("handled", on_error=handler) as wf:
        out = shaky.map([1, 2, 3], flaky=path)
    results = wf.execute()
    assert results[out] == [10, -1]  # 2 skipped, 3 fell back
    report = results.map_report(out)
    assert (report.skipped, report.fallback) == (["shaky[2]"], ["shaky[3]"])


def test_retries_apply_per_child() -> None:
    @node(retries=2)
    def once(x, marker):
        seen = Path(marker) / str(x)
        if not seen.exists():
            seen.touch()
            raise ConnectionError("first try")
        return x

    Path("marks").mkdir()
    with Workflow("retries") as wf:
        out = once.map([1, 2], marker=str(Path("marks").resolve()))
    assert wf.execute()[out] == [1, 2]


def test_children_have_journal_rows_and_the_map_a_summary(home: Path) -> None:
    path = flaky(3)
    with Workflow("rows") as wf:
        shaky.map([1, 2, 3], flaky=path, max_failures=1)
    results = wf.execute()
    with Journal(home / "journal.db") as journal:
        rows = {r["node"]: r for r in journal.node_runs(results.run_id)}
        events = journal._rows(
            "SELECT kind, data FROM events WHERE run_id = ? AND kind LIKE 'map_%'",
            (results.run_id,),
        )
    assert rows["shaky[1]"]["status"] == "succeeded"
    assert rows["shaky[3]"]["status"] == "failed"
    assert "item 3 is flaky" in rows["shaky[3]"]["error"]
    assert rows["shaky"]["status"] == "succeeded"
    finished = json.loads(next(e["data"] for e in events if e["kind"] == "map_finished"))
    assert (finished["executed"], finished["failed"], finished["collected"]) == (2, 1, 2)
    assert "shaky[3]" in finished["failed_items"]


def test_a_map_over_a_maps_result_and_over_files_keyed_by_content(tmp_path: Path) -> None:
    @node
    def files(folder):
        return [File(str(p)) for p in sorted(Path(folder).glob("*.txt"))]

    @node
    def size(f):
        return len(Path(f).read_text())

    folder = tmp_path / "in"
    folder.mkdir()
    for name in "abc":
        (folder / f"{name}.txt").write_text(name * 3)
    with Workflow("files") as wf:
        sizes = size.map(files(str(folder)))
        doubled = square.map(sizes, k=2)
    first = wf.execute()
    assert first[doubled] == [18, 18, 18]
    (folder / "b.txt").write_text("bbbb")  # same path, new content: only its child runs
    again = wf.execute()
    assert len(again.map_report(sizes).executed) == 1
    assert again.map_report(sizes).cached == 2
    assert again[doubled] == [18, 32, 18]
    assert again.map_report(doubled).executed == ["square[4]"]


class Unpicklable:
    """An item that hashes (a registered hasher) but cannot travel to another process."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __getstate__(self) -> None:
        raise TypeError(f"cannot pickle Unpicklable {self.n}")


@node
def unwrap(item):
    return item.n if isinstance(item, Unpicklable) else item


def test_an_item_that_cannot_reach_a_process_fails_alone_naming_the_node() -> None:
    from etherealfabric.hashing._values import register_value_hasher

    register_value_hasher(Unpicklable, lambda u: u.n)
    with Workflow("unpicklable", backend="processes") as wf:
        out = unwrap.map([1, Unpicklable(2), 3, 4], max_failures=1)
    results = wf.execute()
    assert results[out] == [1, 3, 4]
    [(name, error)] = results.map_report(out).failed.items()
    assert name.startswith("unwrap[") and name != "unwrap[2]"
    assert f"item {name} of node 'unwrap' cannot be sent to the processes backend" in error
    assert "cannot pickle Unpicklable 2" in error


@node
def waits_for(x, marks):
    """Item 1 waits (at most 30 s) for the downstream child of item 0 to have run."""
    if x == 1:
        deadline = time.monotonic() + 30
        while not (Path(marks) / "after-0").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return 100 if (Path(marks) / "after-0").exists() else -100
    return x


@node
def after(y, marks):
    (Path(marks) / f"after-{y}").touch()
    return y + 1


def test_a_map_over_a_maps_result_starts_each_item_without_waiting_for_the_rest(
    tmp_path: Path,
) -> None:
    marks = str(tmp_path)
    with Workflow("stream", max_workers=2) as wf:
        first = waits_for.map([0, 1], marks=marks)
        second = after.map(first, marks=marks)
    results = wf.execute()
    # item 1 of the first map saw item 0 go through the second map while it still ran
    assert results[first] == [0, 100]
    assert results[second] == [1, 101]
    assert sorted(results.map_report(second).executed) == ["after[0]", "after[100]"]
    again = wf.execute()
    assert again.executed == 0


def test_streaming_after_failed_items_keeps_the_collections_right() -> None:
    path = flaky(2)
    with Workflow("stream-fail") as wf:
        tens = shaky.map([1, 2, 3, 4], flaky=path, max_failures=1)
        sq = square.map(tens)
        total(sq)
    results = wf.execute()
    assert results[tens] == [10, 30, 40]
    assert results[sq] == [100, 900, 1600]
    marks = Path("marks")
    marks.mkdir()
    with Workflow("stream-fail-hard") as wf2:
        tens = fails_last.map([2, 5, 6, 7], marks=str(marks.resolve()))
        sq = after.map(tens, marks=str(marks.resolve()))
    with pytest.raises(RunFailedError) as caught:
        wf2.execute(keep_going=True)
    assert caught.value.results.statuses["after"] == "upstream_failed"
    assert sorted(p.name for p in marks.iterdir()) == ["after-50", "after-60", "after-70"]
    (marks / "fixed").touch()
    again = wf2.execute()  # the streamed children of the failed run are in the cache
    assert again[sq] == [21, 51, 61, 71]
    assert again.map_report(sq).executed == ["after[20]"]


@node
def fails_last(x, marks):
    """x * 10; item 2 fails (until ``marks/fixed`` exists) once the others went downstream."""
    if x == 2 and not (Path(marks) / "fixed").exists():
        deadline = time.monotonic() + 30
        while len(list(Path(marks).glob("after-*"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise ValueError("item 2 fails")
    return x * 10


def test_a_timeout_fails_one_child_and_resume_runs_only_the_failed_items() -> None:
    @node(timeout=0.3)
    def slow_one(x, flaky):
        with untracked():  # which items are slow: no input of the results
            slow = Path(flaky).exists() and x in json.loads(Path(flaky).read_text())
        if slow:
            time.sleep(3)
        return x

    path = flaky(3)
    with Workflow("timeouts") as wf:
        out = slow_one.map([1, 2, 3, 4], flaky=path)
    with pytest.raises(RunFailedError) as caught:
        wf.execute(keep_going=True)
    failed = caught.value.results.map_report(out).failed
    assert list(failed) == ["slow_one[3]"]
    assert "NodeTimeoutError" in failed["slow_one[3]"]
    Path(FLAKY).unlink()
    resumed = wf.execute(resume=caught.value.results.run_id)
    assert resumed.map_report(out).executed == ["slow_one[3]"]
    assert resumed[out] == [1, 2, 3, 4]


def test_cached_children_stream_into_the_next_map_without_waiting_for_the_rest(
    tmp_path: Path,
) -> None:
    marks = str(tmp_path)
    with Workflow("stream-cached-1") as wf:
        waits_for.map([0], marks=marks)
    wf.execute()  # item 0 is cached from now on
    with Workflow("stream-cached", max_workers=2) as wf:
        first = waits_for.map([0, 1], marks=marks)
        second = after.map(first, marks=marks)
    results = wf.execute()
    # item 1 of the first map saw the cached item 0 go through the second map while it ran
    assert results.map_report(first).cached == 1
    assert results[first] == [0, 100]
    assert results[second] == [1, 101]
    assert sorted(results.map_report(second).executed) == ["after[0]", "after[100]"]
