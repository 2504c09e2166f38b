"""A warm run reads the action records it needs in one query (issue 14), never stale ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from etherealfabric import Node, Workflow, node
from etherealfabric.journal import Journal


@node
def leaf(i):
    return i


@node
def step(x):
    return x + 1


def _chain(n: int) -> Workflow:
    with Workflow("warm-lookups") as wf:
        x = leaf(0)
        for _ in range(n - 1):
            x = step(x)
    return wf


def _spy_bulk_reads(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, str, str]]]:
    """From now on, the rows of each bulk read of records (``Journal.recent_actions``)."""
    read: list[list[tuple[str, str, str]]] = []
    original = Journal.recent_actions

    def spied(self: Journal, *args: object, **kwargs: object) -> list[tuple[str, str, str]]:
        rows = original(self, *args, **kwargs)  # type: ignore[arg-type]
        read.append(rows)
        return rows

    monkeypatch.setattr(Journal, "recent_actions", spied)
    return read


def _count_single_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the keys whose record is read on its own (``Journal.get_action``)."""
    single: list[str] = []
    original = Journal.get_action

    def counted(self: Journal, key: str) -> object:
        single.append(key)
        return original(self, key)

    monkeypatch.setattr(Journal, "get_action", counted)
    return single


def test_a_warm_run_looks_up_no_record_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _chain(30).execute().executed == 30
    single = _count_single_lookups(monkeypatch)
    results = _chain(30).execute()
    assert (results.executed, results.cached) == (0, 30)
    assert single == []
    # a longer chain: the 30 known records come in bulk, the 5 new keys one by one
    results = _chain(35).execute()
    assert (results.executed, results.cached) == (5, 30)
    assert len(set(single)) == 5  # (each asked before and after its lease is taken)


def test_a_record_gone_before_the_run_is_not_served(home: Path) -> None:
    _chain(5).execute()
    with Journal(home / "journal.db") as journal, journal.write() as conn:
        last = "SELECT cache_key FROM node_runs ORDER BY finished_at DESC LIMIT 1"
        assert conn.execute(f"DELETE FROM actions WHERE key = ({last})").rowcount == 1
    results = _chain(5).execute()
    assert results.executed == 1  # the record read in bulk is the journal's, not a memory
    assert _chain(5).execute().executed == 0


@node
def numbers(n):
    return list(range(n))


@node
def double(x):
    return 2 * x


@node
def total(xs):
    return sum(xs)


def test_the_bulk_read_skips_a_maps_children(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def mapped() -> Workflow:
        with Workflow("warm-map") as wf:
            total(double.map(numbers(40)))
        return wf

    assert mapped().execute().executed == 3
    with Journal(home / "journal.db") as journal:
        children = journal._rows("SELECT node FROM node_runs WHERE node LIKE 'double[%'")
    assert len(children) == 40  # their rows and records are there, and not read up front
    read = _spy_bulk_reads(monkeypatch)
    results = mapped().execute()
    assert results.executed == 0
    assert sorted(node for node, _, _ in read[0]) == ["double", "numbers", "total"]


@node
def part(root, i):
    return root + i


def _fan_out(n: int, parts: int) -> Workflow:
    with Workflow(f"fan-out-{n}") as wf:
        root = leaf(n)
        total([part(root, i) for i in range(parts)])
    return wf


def test_a_cold_fan_out_looks_its_ready_nodes_up_in_bulk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _fan_out(1, 5).execute().executed == 7  # some records exist, most do not
    single = _count_single_lookups(monkeypatch)
    results = _fan_out(1, 60).execute()
    assert (results.executed, results.cached) == (56, 6)
    # the root and the gather are ready alone; the 60 parts are read in one go
    assert len(single) <= 2
    assert [results[p]["result"] for p in ("part", "part-60")] == [1, 60]
    assert results["total"]["result"] == sum(range(1, 61))


@pytest.mark.parametrize(
    "text",
    ['{"node":"a","outputs":{}}', ' {"node": "a"} ', '{"a": [1, 2.5, null, true, "\\u00e9"]}\n'],
)
def test_a_preloaded_record_decodes_as_json_loads_does(text: str) -> None:
    import json

    from etherealfabric.run._records import decode_record as _decode_record

    assert _decode_record(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "[1]", "null", "1"])
def test_a_preloaded_record_that_is_no_json_object_is_none(text: str) -> None:
    from etherealfabric.run._records import decode_record as _decode_record

    assert _decode_record(text) is None


def test_a_cache_hits_row_is_the_row_of_any_cached_node(home: Path) -> None:
    """A warm run writes its cache hits' rows from five values (run/_recorder.py): every
    column is what the full row of a cached node holds."""
    import os

    from etherealfabric.run._messages import HOST

    cold = _chain(3).execute()
    warm = _chain(3).execute()
    assert warm.cached == 3
    with Journal(home / "journal.db") as journal:
        rows = journal.conn.execute(
            "SELECT node, attempt, status, cache_key, components, started_at, finished_at, "
            "duration, error, traceback, host, pid, output, fallback FROM node_runs "
            "WHERE run_id = ? ORDER BY node",
            (warm.run_id,),
        ).fetchall()
        keys = dict(
            journal.conn.execute(
                "SELECT node, cache_key FROM node_runs WHERE run_id = ?", (cold.run_id,)
            ).fetchall()
        )
    assert [r[0] for r in rows] == ["leaf", "step", "step-2"]
    for node_name, attempt, status, key, comp, start, end, dur, err, tb, host, pid, out, fb in rows:
        assert (attempt, status, key) == (1, "cached", keys[node_name])
        assert isinstance(start, float) and start == end and dur == 0.0
        assert (comp, err, tb, pid, out, fb) == (None, None, None, None, None, 0)
        assert host == HOST and os.getpid() != pid


def test_nodes_the_last_run_lacks_come_from_the_run_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bulk read takes the last run's records, then the run before's for the nodes the
    last run did not have (here it ran only some targets)."""
    assert _chain(30).execute().executed == 30
    wf = _chain(30)
    assert wf.execute(targets=["step-9"]).cached == 10  # this run has rows for 10 nodes
    single = _count_single_lookups(monkeypatch)
    results = _chain(30).execute()
    assert (results.executed, results.cached) == (0, 30)
    assert single == []


@node(name="scores[2024]")
def bracketed(xs):
    return [3 * x for x in xs]


def test_a_node_named_like_a_maps_child_is_read_in_bulk(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows named ``map[label]`` are a map's children, left out of the bulk read, unless the
    graph has a node of that name."""

    def flow() -> Workflow:
        with Workflow("bracketed") as wf:
            bracketed(double.map(numbers(3)))
        return wf

    assert flow().execute().executed == 3
    read = _spy_bulk_reads(monkeypatch)
    results = flow().execute()
    assert (results.executed, results["scores[2024]"]["result"]) == (0, [0, 6, 12])
    assert sorted(node for node, _, _ in read[0]) == ["double", "numbers", "scores[2024]"]


@node
def released(i):
    return i


def test_a_runs_graph_goes_when_the_run_returns() -> None:
    """The scheduler and its helpers point at each other; the graph they hold (a spec per
    node) is freed by reference count as the run returns, not left for a full collection
    (600,000 objects, a second of CPU at the exit of a 100,000-node run)."""
    import gc

    from etherealfabric.define._spec import NodeSpec

    def specs_alive() -> list[NodeSpec]:
        return [o for o in gc.get_objects() if type(o) is NodeSpec and o.code is released.fn]

    with Workflow("released") as wf:
        for i in range(20):
            released(i)
    gc.collect()
    gc.disable()  # nothing is collected but by reference count from here on
    try:
        results = wf.execute()
        assert results.executed + results.cached == 20
        assert specs_alive() == []
    finally:
        gc.enable()


@node
def frozen_part(i):
    return i


def test_a_runs_graph_and_records_are_frozen_while_it_runs() -> None:
    """Once the graph is built and the records read up front, the run freezes them for the
    collector (run/_gcpause.freeze_long_lived): full collections during the run no longer
    traverse them (0.6-0.8 s at 100,000 nodes). Put back when the run ends; outside a run
    nothing is frozen."""
    import gc

    from etherealfabric.define._spec import NodeSpec
    from etherealfabric.run._gcpause import freeze_long_lived

    def tracked_specs() -> int:  # gc.get_objects() lists every generation but the frozen one
        return sum(1 for o in gc.get_objects() if type(o) is NodeSpec and o.code is frozen_part.fn)

    seen: list[tuple[int, int]] = []

    def at_start(event: object) -> None:
        if getattr(event, "kind", None) == "run_started":
            seen.append((tracked_specs(), gc.get_freeze_count()))

    with Workflow("frozen") as wf:
        for i in range(30):
            frozen_part(i)
    before = gc.get_freeze_count(), gc.get_threshold()
    results = wf.execute(subscribers=[at_start])
    assert results.executed + results.cached == 30
    ((specs, frozen),) = seen
    assert specs == 0 and frozen > 0  # the run's 30 specs are in the permanent generation
    assert (gc.get_freeze_count(), gc.get_threshold()) == before
    freeze_long_lived()  # outside a run: nothing
    assert gc.get_freeze_count() == before[0]


class _Probe(Node):
    """A class node whose ``writes`` is read while the graph is built: it notes whether the
    collector was on then (and can make the build fail)."""

    seen: ClassVar[list[bool]] = []
    fail = False

    def __init__(self, i: int) -> None:
        super().__init__()
        self.i = i
        self.outputs = ["result"]

    @property
    def writes(self) -> None:
        import gc

        _Probe.seen.append(gc.isenabled())
        if _Probe.fail:
            raise RuntimeError("probe: the build fails here")
        return None

    def run(self) -> dict[str, int]:
        return {"result": self.i}


def test_no_collection_while_the_graph_is_built_and_the_collector_is_back_after() -> None:
    """The graph build and the records read up front run with the collector off
    (run/_gcpause.no_collections), and it is on again once they end, also when the build
    fails; outside a run (``wf.build()``) it stays on."""
    import gc

    _Probe.seen, _Probe.fail = [], False
    with Workflow("probed") as wf:
        for i in range(3):
            wf.add_node(_Probe(i))
    results = wf.execute()
    assert results.executed + results.cached == 3
    assert _Probe.seen == [False] * 3 and gc.isenabled()
    _Probe.seen = []
    wf.build()
    assert _Probe.seen == [True] * 3
    _Probe.seen, _Probe.fail = [], True
    frozen = gc.get_freeze_count()
    with pytest.raises(RuntimeError, match="probe"):
        wf.execute()
    assert _Probe.seen == [False] and gc.isenabled() and gc.get_freeze_count() == frozen


_EXITING = """
import atexit, gc, os, sys

def report():  # registered before the engine's hook, so it runs after it (atexit: LIFO)
    print("collector on at exit:", gc.isenabled(), flush=True)

atexit.register(report)
if sys.argv[1] == "frozen":
    gc.freeze()

from etherealfabric import Workflow, node

class Kept:
    def __del__(self, write=os.write):  # (print may be gone by then)
        write(1, b"global freed\\n")

class Ring:
    def __init__(self):
        self.me = self

    def __del__(self, write=os.write):
        write(1, b"cycle finalized\\n")

@node
def double(x):
    return 2 * x

with Workflow("exiting") as wf:
    double(21)
results = wf.execute()
kept, ring = Kept(), Ring()  # globals: still freed and finalized as the modules go
print("collector on after the run:", gc.isenabled(), flush=True)
"""


@pytest.mark.parametrize("process", ["plain", "frozen"])
def test_a_process_that_ran_a_workflow_skips_the_collection_before_its_exit(
    tmp_path: Path, process: str
) -> None:
    """At exit CPython runs a full collection (if the collector is on) over every object still
    alive, the workflow's nodes and results included, before its teardown's own: a process
    that ran a workflow turns the collector off as it exits (run/_gcpause.py), after the run
    put it back on. Its globals are freed and its cycles finalized all the same (by the
    teardown's collections). A process that froze objects itself is left alone."""
    script = tmp_path / "exiting.py"
    script.write_text(_EXITING)
    env = {**os.environ, "ETHEREALFABRIC_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(script), process],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert "collector on after the run: True" in lines
    assert f"collector on at exit: {process == 'frozen'}" in lines
    if process == "plain":  # (a frozen object is never collected: its cycles are kept)
        assert "global freed" in lines
        assert "cycle finalized" in lines
