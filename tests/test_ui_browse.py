"""``journal.browse``: the read-only bulk questions the web UI asks, over journals written by
direct inserts (as ``benchmarks/ui.py`` builds its big one), so every case is exact and fast.

``insert_run`` is also how ``test_ui_browser.py`` makes its run of thousands of nodes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from etherealfabric.errors import RunNotFoundError
from etherealfabric.journal import Journal, ReadOnlyJournalError, browse
from etherealfabric.journal._history import run_status
from etherealfabric.journal._liveness import HOST, PID_START


def components(ups: Sequence[str]) -> str:
    """Key components whose inputs read ``result`` of each upstream node."""
    inputs = {f"in{i}": [f"{up}.result@{'f' * 32}"] for i, up in enumerate(ups)}
    return json.dumps({"kind": "flow.n", "code": "c" * 32, "params": {}, "inputs": inputs})


def insert_run(
    journal: Journal,
    run_id: str,
    nodes: Mapping[str, tuple[str, Sequence[str]]],
    *,
    workflow: str = "big",
    status: str = "succeeded",
    total: int | None = None,
    started: float | None = None,
) -> None:
    """A run of ``nodes`` (name → (status, upstream names)), one attempt each, by direct
    inserts. A ``cached`` node's components live with its action record, as in real runs; a
    ``running`` run names this process, so readers see it alive."""
    t = time.time() - 60 if started is None else started
    running = status == "running"
    with journal.write() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO runs (id, workflow, status, started_at, finished_at, host, "
            "pid, pid_start, backend, params, nodes) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, workflow, status, t, None if running else t + 30, HOST, os.getpid(),
             PID_START, "local", "{}", len(nodes) if total is None else total),
        )  # fmt: skip
        insert_nodes(conn, run_id, nodes, t)


def insert_nodes(
    conn: sqlite3.Connection, run_id: str, nodes: Mapping[str, tuple[str, Sequence[str]]], t: float
) -> None:
    """Node rows (and action records for cached ones) inside an open write transaction."""
    rows, actions = [], []
    for i, (name, (status, ups)) in enumerate(nodes.items()):
        key = f"{run_id}-{name}"
        comp: str | None = components(ups)
        begun = None if status in ("cached", "pending") else t + i * 0.001
        done = begun + 0.5 if begun is not None and status != "running" else None
        if status == "cached":
            record = {"node": name, "outputs": {"result": {"digest": "a" * 32, "size": 10,
                      "serializer": "json", "inline": True}}}  # fmt: skip
            actions.append((key, name, json.dumps(record), comp, t))
            comp = None
        error = "ValueError: no" if status == "failed" else None
        rows.append((run_id, name, 1, status, key, comp, begun, done, 0.5 if done else None,
                     error, "Traceback..." if error else None, HOST, 1, "out\n", 0))  # fmt: skip
    conn.executemany(
        "INSERT OR REPLACE INTO actions (key, node, record, components, created_at) "
        "VALUES (?,?,?,?,?)",
        actions,
    )
    conn.executemany(
        "INSERT OR REPLACE INTO node_runs (run_id, node, attempt, status, cache_key, components, "
        "started_at, finished_at, duration, error, traceback, host, pid, output, fallback) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )


def layered(
    count: int, statuses: Sequence[str], width: int = 100
) -> dict[str, tuple[str, list[str]]]:
    """``count`` nodes in layers of ``width``, each reading two nodes of the layer above;
    node ``n`` has status ``statuses[n % len(statuses)]``."""
    nodes: dict[str, tuple[str, list[str]]] = {}
    for n in range(count):
        above = (n // width - 1) * width
        ups = {f"node_{above + (n * k) % width:05d}" for k in (1, 7)} if above >= 0 else set()
        nodes[f"node_{n:05d}"] = (statuses[n % len(statuses)], sorted(ups))
    return nodes


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.db") as writer:
        yield writer


def test_a_reader_is_read_only_and_none_before_a_journal(tmp_path: Path, journal: Journal) -> None:
    assert browse.open_reader(tmp_path / "nothing" / "journal.db") is None
    reader = browse.open_reader(journal.path)
    assert reader is not None
    try:
        assert reader.read_only
        with pytest.raises(ReadOnlyJournalError), reader.write():
            pass
    finally:
        reader.close()


def test_run_state_counts_latest_attempts_in_one_read(journal: Journal) -> None:
    insert_run(journal, "r1", {"a": ("failed", []), "b": ("running", ["a"]),
                               "c": ("cached", [])}, status="running", total=4)  # fmt: skip
    with journal.write() as conn:  # a retried a: its second attempt succeeded
        conn.execute(
            "INSERT INTO node_runs (run_id, node, attempt, status, started_at, finished_at) "
            "VALUES ('r1', 'a', 2, 'succeeded', ?, ?)",
            (time.time(), time.time()),
        )
    run = browse.shown(journal.get_run("r1"))
    assert run["status"] == "running"  # this process wrote it: alive
    state = browse.run_state(journal, run)
    assert state.counts == {"succeeded": 1, "running": 1, "cached": 1, "pending": 1}
    assert state.counts == run_status(journal, run).counts  # what the CLI says
    assert [r["node"] for r in state.running] == ["b"]
    assert state.statuses == {"a": "succeeded", "b": "running", "c": "cached"}
    assert [(a["node"], a["attempt"]) for a in state.attempts][-2:] == [("a", 2), ("c", 1)]
    assert "output" not in state.attempts[0] and "traceback" not in state.attempts[0]


def test_a_running_run_whose_process_is_gone_is_shown_interrupted(journal: Journal) -> None:
    insert_run(journal, "r1", {"a": ("running", [])}, status="running")
    with journal.write() as conn:
        conn.execute("UPDATE runs SET pid = 999999999 WHERE id = 'r1'")
    assert browse.shown(journal.get_run("r1"))["status"] == "interrupted"
    assert journal.get_run("r1")["status"] == "running"  # shown, never written


def test_run_graph_reads_inputs_of_own_and_cached_components(journal: Journal) -> None:
    insert_run(journal, "r1", {"load": ("succeeded", []), "clean": ("cached", ["load"]),
                               "fit": ("failed", ["clean", "load"])})  # fmt: skip
    graph = browse.run_graph(journal, journal.get_run("r1"))
    assert graph == {
        "clean": {"status": "cached", "ups": ["load"]},
        "fit": {"status": "failed", "ups": ["clean", "load"]},
        "load": {"status": "succeeded", "ups": []},
    }


def test_run_graph_keeps_the_input_edges_of_nodes_their_handler_stood_in_for(
    tmp_path: Path,
) -> None:
    """A node whose on_error gave a fallback, or SKIP, was drawn as a root: its row had no key
    components and its skipped event no upstreams (found by review). Real runs, cold and warm."""
    from etherealfabric import SKIP, Workflow, node

    @node
    def src(n: int) -> int:
        return n

    @node(on_error=lambda err: {"result": -1})
    def fb(x: int) -> int:
        raise RuntimeError("use the fallback")

    @node(on_error=lambda err: SKIP)
    def sk(x: int) -> int:
        raise RuntimeError("skip me")

    @node
    def plain(x: int) -> int:
        raise RuntimeError("fails")

    with Workflow("handlers", keep_going=True) as wf:
        s = src(1)
        fb(s), sk(s), plain(s)
    home = tmp_path / "home"
    for _ in range(2):  # (the second: src cached)
        run_id = wf.execute(home=home, raise_on_error=False).run_id
        with Journal(home / "journal.db") as journal:
            graph = browse.run_graph(journal, journal.get_run(run_id))
        assert {n: g["ups"] for n, g in graph.items()} == {
            "src": [], "fb": ["src"], "sk": ["src"], "plain": ["src"]
        }  # fmt: skip
        assert graph["fb"]["status"] == "fallback" and graph["sk"]["status"] == "skipped"


def test_run_graph_takes_unreached_and_unkeyed_nodes_from_earlier_runs(journal: Journal) -> None:
    before = time.time() - 600
    insert_run(journal, "r0", {"a": ("succeeded", []), "b": ("succeeded", ["a"]),
                               "c": ("succeeded", ["b"])}, started=before)  # fmt: skip
    insert_run(journal, "r1", {"a": ("succeeded", []), "b": ("failed", [])},
               status="running", total=3)  # fmt: skip
    with journal.write() as conn:  # b failed before its key: no components, or broken ones
        conn.execute("UPDATE node_runs SET components = 'not json' WHERE run_id = 'r1' AND node = 'b'")  # fmt: skip
    graph = browse.run_graph(journal, journal.get_run("r1"))
    assert graph["b"] == {"status": "failed", "ups": ["a"]}
    assert graph["c"] == {"status": "pending", "ups": ["b"]}


def test_run_stamp_changes_only_when_rows_change(journal: Journal) -> None:
    insert_run(journal, "r1", {"a": ("running", [])}, status="running", total=2)
    first = browse.run_stamp(journal, "r1")
    assert browse.run_stamp(journal, "r1") == first
    with journal.write() as conn:
        insert_nodes(conn, "r1", {"b": ("running", ["a"])}, time.time())
    assert browse.run_stamp(journal, "r1") != first


def test_failures_workflows_cache_sizes_and_hit_rates(journal: Journal) -> None:
    insert_run(journal, "r1", {"a": ("cached", []), "b": ("failed", ["a"])}, workflow="w1")
    insert_run(journal, "r2", {"c": ("succeeded", [])}, workflow="w2")
    with journal.write() as conn:
        conn.execute("UPDATE runs SET executed = 1, cached = 1 WHERE id = 'r1'")
    failed = browse.failed_attempts(journal, "r1")
    assert [(f["node"], f["error"], f["traceback"]) for f in failed] == [
        ("b", "ValueError: no", "Traceback...")
    ]
    assert browse.workflow_names(journal) == ["w1", "w2"]
    sizes = browse.cache_sizes(journal)
    assert sizes["records"] == 1 and sizes["bytes"] == sizes["inline_bytes"] == 10
    assert sizes["by_workflow"] == [{"workflow": "w1", "bytes": 10, "records": 1}]
    rates = {r["id"]: r["hit_rate"] for r in browse.hit_rates(journal)}
    assert rates == {"r1": 0.5, "r2": None}
    assert browse.hit_rates(journal, workflow="w2")[0]["id"] == "r2"


def test_an_unknown_run_is_not_found(journal: Journal) -> None:
    with pytest.raises(RunNotFoundError):
        journal.get_run("nope")
    assert browse.run_attempts(journal, "nope") == []
