"""A map node's items in the web UI: ``browse.map_items`` (one page of a map's children, each
by its last attempt) and ``items`` in ``/api/runs/ID/nodes/NODE``, over a real mapped run."""

from __future__ import annotations

import json
import sqlite3
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from etherealfabric.journal import Journal, browse
from test_ui import UiServer, cli, status_code
from test_ui_browse import insert_run

pytest.importorskip("starlette")

MAPPED = """
from pathlib import Path
from etherealfabric import Directory, File, Workflow, node, root_path

@node
def list_files(folder: Directory):
    return {p.name: File(str(p)) for p in sorted(Path(folder).glob("*.txt"))}

@node
def clean(f: File):
    return int(Path(f).read_text())

@node
def gather(d):
    return sum(d.values())

with Workflow("mapper") as wf:
    gather(clean.map(list_files(Directory(root_path("data")))))
"""


def insert_map(
    conn: sqlite3.Connection, run_id: str, node: str, count: int, *, t: float | None = None
) -> None:
    """A map ``node`` of ``count`` items (every 7th failed once, then succeeded; item 5 failed)
    by direct inserts, with its ``map_started`` event, inside an open write transaction."""
    t = time.time() - 60 if t is None else t
    rows = [(run_id, node, 1, "succeeded", "k" * 32, t, t + 9, 9.0, None)]
    for i in range(count):
        name, begun = f"{node}[item_{i:05d}]", t + i * 0.001
        if i % 7 == 0:
            rows.append((run_id, name, 1, "retrying", None, begun, begun + 1, 1.0, "OSError: x"))
        last = 2 if i % 7 == 0 else 1
        status, error = ("failed", "ValueError: bad item") if i == 5 else ("succeeded", None)
        rows.append((run_id, name, last, status, f"{i:032x}", begun, begun + 2, 0.5 + i, error))
    conn.executemany(
        "INSERT INTO node_runs (run_id, node, attempt, status, cache_key, started_at, "
        "finished_at, duration, error, host, pid, output, fallback) "
        "VALUES (?,?,?,?,?,?,?,?,?,'h',1,'',0)",
        rows,
    )
    data = json.dumps({"items": count, "children": count, "cached": 0})
    conn.execute(
        "INSERT INTO events (run_id, ts, kind, node, data) VALUES (?,?,'map_started',?,?)",
        (run_id, t, node, data),
    )


RUN = "20260101-000000-ma9ma9"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal.db") as opened:
        insert_run(opened, RUN, {"first": ("succeeded", [])}, workflow="mapped")
        with opened.write() as conn:
            insert_map(conn, RUN, "work", 250)
            insert_map(conn, RUN, "work_more", 3)  # a name that starts like it: not its items
        yield opened


def test_map_items_are_paged_each_by_its_last_attempt(journal: Journal) -> None:
    page = browse.map_items(journal, RUN, "work", offset=0, limit=100)
    assert page["total"] == 250
    assert page["counts"] == {"succeeded": 249, "failed": 1}
    assert len(page["items"]) == 100
    first = page["items"][0]
    assert first["index"] == 1 and first["item"] == "item_00000"
    assert first["node"] == "work[item_00000]"
    assert first["attempts"] == 2 and first["status"] == "succeeded"  # its last attempt
    assert first["cache_key"] == f"{0:032x}" and first["duration"] == 0.5
    assert [i["index"] for i in page["items"]] == list(range(1, 101))
    last = browse.map_items(journal, RUN, "work", offset=200, limit=100)
    assert [i["item"] for i in last["items"]] == [f"item_{i:05d}" for i in range(200, 250)]
    assert last["items"][0]["index"] == 201
    failed = browse.map_items(journal, RUN, "work", status="failed")
    assert failed["total"] == 1 and failed["items"][0]["item"] == "item_00005"
    assert failed["items"][0]["error"] == "ValueError: bad item"
    assert browse.map_items(journal, RUN, "work_more")["total"] == 3
    assert browse.map_items(journal, RUN, "first")["total"] == 0


def test_a_map_node_page_and_api_list_its_items(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        (data / f"f{i:02d}.txt").write_text("oops" if i == 7 else str(i))
    (tmp_path / "flow.py").write_text(textwrap.dedent(MAPPED))
    home = tmp_path / "home"
    done = cli("run", "flow.py", "--home", str(home), "--json", cwd=tmp_path)
    run_id = json.loads(done.stdout)["run_id"]
    server = UiServer(home)
    try:
        node: dict[str, Any] = server.get(f"/api/runs/{run_id}/nodes/clean")
        items = node["items"]
        assert items["total"] == 12 and items["counts"] == {"succeeded": 11, "failed": 1}
        assert sorted(i["item"] for i in items["items"]) == [f"f{i:02d}.txt" for i in range(12)]
        bad = next(i for i in items["items"] if i["item"] == "f07.txt")
        assert bad["status"] == "failed" and "invalid literal" in bad["error"]
        assert all(i["cache_key"] and i["duration"] is not None for i in items["items"])
        assert server.get(f"/api/runs/{run_id}/nodes/gather")["items"] is None  # not a map
        paged = server.get(f"/api/runs/{run_id}/items/clean?offset=10&limit=5")
        assert [i["index"] for i in paged["items"]] == [11, 12]
        only = server.get(f"/api/runs/{run_id}/items/clean?status=failed")
        assert [i["item"] for i in only["items"]] == ["f07.txt"]
        assert status_code(server, f"/api/runs/{run_id}/items/clean?offset=-1") == 400
        for huge in ("9223372036854775808", "9" * 40):  # past SQLite's integers: was a 500
            assert status_code(server, f"/api/runs/{run_id}/items/clean?offset={huge}") == 400
        last = server.get(f"/api/runs/{run_id}/items/clean?offset=9223372036854775807")
        assert last["items"] == [] and last["total"] == 12
        assert status_code(server, f"/api/runs/{run_id}/items/gather") == 404
    finally:
        server.stop()


def mapped_runs(folder: Path) -> tuple[Path, str, str]:
    """The home, a warm run that took the whole map ``clean`` (12 files) from the cache, and a
    run after one file changed (11 cached, 1 ran), of the real mapped workflow."""
    data = folder / "data"
    data.mkdir()
    for i in range(12):
        (data / f"f{i:02d}.txt").write_text(str(i))
    (folder / "flow.py").write_text(textwrap.dedent(MAPPED))
    home = folder / "home"
    runs = []
    for change in (None, None, "f03.txt"):
        if change:
            (data / change).write_text("33")
        done = cli("run", "flow.py", "--home", str(home), "--json", cwd=folder)
        runs.append(json.loads(done.stdout)["run_id"])
    return home, runs[1], runs[2]


def test_cached_items_are_listed_as_the_cli_lists_them(tmp_path: Path) -> None:
    home, warm, partial = mapped_runs(tmp_path)
    shown = json.loads(cli("show", warm, "clean", "--items", "--home", str(home), "--json",
                           cwd=tmp_path).stdout)  # fmt: skip
    server = UiServer(home)
    try:
        items = server.get(f"/api/runs/{warm}/nodes/clean")["items"]  # the whole map cached
        assert items["total"] == 12 and items["counts"] == {"cached": 12}, items
        assert {(i["node"], i["status"], i["cache_key"]) for i in items["items"]} == {
            (r["node"], r["status"], r["cache_key"]) for r in shown["items"]
        }
        assert [i["index"] for i in items["items"]] == list(range(1, 13))
        items = server.get(f"/api/runs/{partial}/items/clean?limit=5")
        assert items["total"] == 12 and items["counts"] == {"cached": 11, "succeeded": 1}
        assert [i["status"] for i in items["items"]] == ["succeeded"] + ["cached"] * 4
        assert items["items"][0]["item"] == "f03.txt" and items["items"][0]["attempts"] == 1
        rest = server.get(f"/api/runs/{partial}/items/clean?offset=10&limit=5")["items"]
        assert [i["index"] for i in rest] == [11, 12]
        listed = [i["item"] for i in items["items"]] + [
            i["item"] for o in (5, 10) for i in server.get(
                f"/api/runs/{partial}/items/clean?offset={o}&limit=5")["items"]
        ]  # fmt: skip
        assert sorted(listed) == [f"f{i:02d}.txt" for i in range(12)]  # each once
        only = server.get(f"/api/runs/{partial}/items/clean?status=cached&offset=8&limit=5")
        assert only["total"] == 11 and [i["index"] for i in only["items"]] == [10, 11, 12]
        assert server.get(f"/api/runs/{partial}/items/clean?status=succeeded")["total"] == 1
    finally:
        server.stop()


def test_the_output_of_a_map_s_item_that_ran_is_previewed(tmp_path: Path) -> None:
    """An item's page previews its output, as `cat RUN 'map[item]'` prints it (it said 'cannot
    load it here: KeyError: node ... was not part of run')."""
    home, _warm, partial = mapped_runs(tmp_path)
    server = UiServer(home)
    try:
        node = quote("clean[f03.txt]", safe="")
        outputs = server.get(f"/api/runs/{partial}/nodes/{node}")["outputs"]
        assert [o["name"] for o in outputs] == ["result"], outputs
        preview = server.get(f"/api/runs/{partial}/preview/result/{node}")
        assert preview == {"kind": "text", "text": "33", "type": "builtins.int"}, preview
    finally:
        server.stop()


ITEM_ROW = (
    "INSERT INTO node_runs (run_id, node, attempt, status, cache_key, started_at, finished_at, "
    "duration, error, traceback, host, pid, output, fallback) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,'h',1,?,0)"
)


def start_map(conn: Any, run_id: str, node: str, items: int, *, cached: int = 0) -> None:
    """The map ``node``'s own row (running) and its ``map_started`` event, as a run writes them."""
    t = time.time() - 5
    conn.execute(ITEM_ROW, (run_id, node, 1, "running", "m" * 32, t, None, None, None, None, ""))
    data = {"items": items, "children": items, "cached": cached, "to_run": items - cached}
    conn.execute(
        "INSERT INTO events (run_id, ts, kind, node, data) VALUES (?,?,'map_started',?,?)",
        (run_id, t, node, json.dumps(data)),
    )


def item(conn: Any, run_id: str, name: str, status: str, *, output: str = "") -> None:
    """One attempt of a map's item (or any node) that started a moment ago."""
    t = time.time() - 1
    done = None if status == "running" else t + 0.5
    error = "ValueError: bad item" if status == "failed" else None
    conn.execute(ITEM_ROW, (run_id, name, 1, status, None, t, done, done and 0.5, error,
                            error and "Traceback (most recent call last): ...", output))  # fmt: skip


# -- a map's items are all it has, not only those that have a row yet --------------------------
def test_a_map_s_items_are_counted_whole_while_it_runs_and_once_its_run_died(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    cold, warm = "20260101-000000-c01d00", "20260101-000001-3a3a00"
    with Journal(home / "journal.db") as journal:
        for run_id in (cold, warm):  # recorded running by this process: alive to the UI
            insert_run(journal, run_id, {"first": ("succeeded", [])}, status="running", total=2)
        with journal.write() as conn:
            start_map(conn, cold, "work", 30)
            for i in range(12):
                item(conn, cold, f"work[it{i:02d}]", "succeeded")
            item(conn, cold, "work[it12]", "running")
            start_map(conn, warm, "work", 40, cached=21)  # 21 from the cache, 19 to run
            for i in range(5):
                item(conn, warm, f"work[it{i:02d}]", "succeeded")
    server = UiServer(home)
    try:
        items = server.get(f"/api/runs/{cold}/nodes/work")["items"]
        assert items["counts"] == {"succeeded": 12, "running": 1}, items
        assert (items["size"], items["unstarted"], items["unstarted_as"]) == (30, 17, "pending")
        assert items["total"] == 13 and len(items["items"]) == 13  # the rows there are
        items = server.get(f"/api/runs/{warm}/items/work")
        assert items["counts"] == {"succeeded": 5, "cached": 21}, items
        assert (items["size"], items["unstarted"]) == (40, 14)
        assert items["note"] == "they are listed once the map has finished"
        with Journal(home / "journal.db") as journal, journal.write() as conn:
            conn.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (cold,))  # died
        items = server.get(f"/api/runs/{cold}/items/work")
        assert items["counts"] == {"succeeded": 12, "interrupted": 1}, items
        assert (items["size"], items["unstarted"], items["unstarted_as"]) == (30, 17, "not run")
    finally:
        server.stop()
