"""A run's graph and counts in the web UI come from what the run itself recorded (found by a
black-box review): a node running, or cut off by its run's death, was drawn as an unconnected
root until some *later* run completed its key (its edges came from that run's action record,
so a past run's graph changed after later runs), and the nodes an interrupted run never
started vanished from its counts and graph (``status`` says "(of 6)").

A run now records its graph as it starts (its ``run_started`` event: each node's data
upstreams); runs recorded before that (direct inserts here) take a node's edges only from
that run's rows or earlier runs, never from a later one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etherealfabric.journal import Journal, browse
from test_ui_browse import components, insert_run

pytest.importorskip("starlette")

from etherealfabric.ui import _views as views

HALTED = """
import pathlib
import time

from etherealfabric import Workflow, node


@node
def a():
    return 1


@node
def b(x):
    return x + 1


@node
def wait(x):
    pathlib.Path({started!r}).touch()
    while True:
        time.sleep(0.05)


@node
def d(x):
    return x


@node
def e(x, y):
    return x + y


with Workflow("halted") as wf:
    first = a()
    e(d(wait(b(first))), first)
"""


def _graph(journal: Journal, run_id: str) -> tuple[set[tuple[str, str]], dict[str, str]]:
    shown = views.graph_view(journal, run_id)
    return {(e["from"], e["to"]) for e in shown["edges"]}, shown["statuses"]


def test_a_killed_first_run_is_drawn_whole_with_the_edges_it_recorded(tmp_path: Path) -> None:
    """kill -9 while `wait` runs, on the workflow's first run: `wait` is drawn below `b` (it was
    a root without edges), `d` and `e`, never started, are drawn as not run (they were not
    drawn at all), and the counts say so ("of 5" in `status`)."""
    started = tmp_path / "started"
    (tmp_path / "flow.py").write_text(HALTED.format(started=str(started)))
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETHEREALFABRIC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etherealfabric", "run", "flow.py", "--home", str(home)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:  # until `wait` runs and its running row is committed
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run did not reach `wait`"
            if started.exists() and (home / "journal.db").exists():
                with Journal(home / "journal.db", read_only=True) as journal:
                    rows = journal._rows("SELECT node FROM node_runs WHERE status = 'running'")
                if [r["node"] for r in rows] == ["wait"]:
                    break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    with Journal(home / "journal.db", read_only=True) as journal:
        run_id = journal.list_runs(limit=1)[0]["id"]
        edges, statuses = _graph(journal, run_id)
        assert edges == {("a", "b"), ("b", "wait"), ("wait", "d"), ("d", "e"), ("a", "e")}
        assert statuses == {"a": "succeeded", "b": "succeeded", "wait": "interrupted",
                            "d": "not_run", "e": "not_run"}  # fmt: skip
        run = views.run_view(journal, run_id)
        assert run["counts"] == {"succeeded": 2, "interrupted": 1, "not_run": 2}
        assert views.status_view(journal, run_id)["statuses"] == statuses


def test_a_past_run_s_graph_does_not_change_after_later_runs(tmp_path: Path) -> None:
    """A run recorded before runs recorded their graph: its node `b`, cut off while it ran,
    has a key and no components. A later run completes that key (an action record with the
    components): the past run's graph stays as it was (it gained the edge a → b, and a new
    layout), and its never-started `c` is still not drawn from the later run."""
    with Journal(tmp_path / "journal.db") as journal:
        nodes = {"a": ("succeeded", []), "b": ("interrupted", ["a"])}
        insert_run(journal, "r1", nodes, workflow="w", status="interrupted",
                   started=time.time() - 600, total=3)  # fmt: skip
        with journal.write() as conn:  # (its components are written when it ends: never)
            conn.execute("UPDATE node_runs SET components = NULL WHERE node = 'b'")
        before = _graph(journal, "r1")
        assert before == (set(), {"a": "succeeded", "b": "interrupted"})  # (no edge: nothing says)
        later = {"a": ("succeeded", []), "b": ("succeeded", ["a"]), "c": ("succeeded", ["b"])}
        insert_run(journal, "r2", later, workflow="w", started=time.time() - 60)
        with journal.write() as conn:  # r2 computed r1's key of b: its record has components
            conn.execute(
                "INSERT INTO actions (key, node, record, components, created_at) "
                "VALUES ('r1-b', 'b', '{\"outputs\": {}}', ?, ?)",
                (components(["a"]), time.time()),
            )
        assert _graph(journal, "r1") == before
        assert browse.run_graph(journal, journal.get_run("r1")) == {
            "a": {"status": "succeeded", "ups": []},
            "b": {"status": "interrupted", "ups": []},
        }
        # a cache hit's components are still its record's: the record the run used
        insert_run(journal, "r3", {"a": ("succeeded", []), "b": ("cached", ["a"])}, workflow="w")
        assert _graph(journal, "r3")[0] == {("a", "b")}


def test_an_ended_run_counts_the_nodes_it_never_started(tmp_path: Path) -> None:
    """An interrupted run of 6 nodes with 4 rows: "2 not_run" (the counts said nothing of
    them); while a run goes on they are pending, as before."""
    with Journal(tmp_path / "journal.db") as journal:
        nodes = {"a": ("succeeded", []), "b": ("succeeded", ["a"]), "c": ("succeeded", ["b"]),
                 "s": ("interrupted", ["c"])}  # fmt: skip
        insert_run(journal, "gone", nodes, status="interrupted", total=6)
        insert_run(journal, "going", dict(list(nodes.items())[:3]), status="running", total=6)
        assert views.run_view(journal, "gone")["counts"] == {
            "succeeded": 3, "interrupted": 1, "not_run": 2
        }  # fmt: skip
        assert views.run_view(journal, "going")["counts"] == {"succeeded": 3, "pending": 3}


def test_a_run_records_its_graph_as_it_starts(tmp_path: Path) -> None:
    """The run_started event's ``upstreams``: each node's data upstreams, not ordering-only
    ones (the UI draws none of those)."""
    from etherealfabric import Workflow, node

    @node
    def src() -> int:
        return 1

    @node
    def use(x: int) -> int:
        return x

    @node
    def after() -> int:
        return 2

    with Workflow("recorded") as wf:
        used = use(src())
        wf.add_dependency(after(), used)
    run_id = wf.execute(home=tmp_path / "home").run_id
    with Journal(tmp_path / "home" / "journal.db", read_only=True) as journal:
        data = journal._value(
            "SELECT data FROM events WHERE run_id = ? AND kind = 'run_started'", (run_id,)
        )
    assert json.loads(data)["upstreams"] == {"src": [], "use": ["src"], "after": []}
