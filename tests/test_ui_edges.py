"""The web UI's edges over HTTP, on a real server: a node a live run has not reached yet, a
journal locked by another process or damaged deep inside while the UI runs, and odd run ids and
node names in the address."""

from __future__ import annotations

import html
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("starlette")

from etherealfabric.journal import Journal
from test_ui import UiServer
from test_ui_browse import insert_run
from test_ui_gates import answer
from test_ui_items import insert_map

LIVE = "20260101-000000-aaaaaa"  # running, in this (pytest) process: alive to the UI
DEAD = "20260101-000000-dddddd"  # recorded running, its process gone: shown interrupted
DONE = "20260101-000000-ffffff"


def make_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "journal.db"
    with Journal(path) as journal:
        insert_run(journal, DONE, {"a": ("succeeded", []), "b": ("failed", ["a"])})
        insert_run(journal, LIVE, {"a": ("succeeded", []), "b": ("running", ["a"])},
                   status="running", total=3)  # fmt: skip
        insert_run(journal, DEAD, {"a": ("succeeded", [])}, status="running", total=2)
        with journal.write() as conn:
            conn.execute("UPDATE runs SET pid = 0 WHERE id = ?", (DEAD,))
            insert_map(conn, DONE, "m", 3)
        journal.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    home = tmp_path_factory.mktemp("edges") / "home"
    make_home(home)
    running = UiServer(home)
    yield running
    stderr = running.stop()
    assert "Traceback" not in stderr, stderr


# -- a node a live run has not reached yet ------------------------------------------------------
@pytest.mark.parametrize("route", ["/api/runs/{run}/nodes/c", "/runs/{run}/nodes/c"])
def test_a_node_a_live_run_has_not_reached_yet_is_a_404_saying_so(
    server: UiServer, route: str
) -> None:
    status, body = answer(server, route.format(run=LIVE))
    body = html.unescape(body)
    assert status == 404, body
    assert "has no node 'c' yet" in body, body
    assert "still going" in body and "a, b" in body, body  # its nodes so far


def test_a_node_a_finished_run_never_had_is_a_plain_404(server: UiServer) -> None:
    for run in (DONE, DEAD):
        status, body = answer(server, f"/api/runs/{run}/nodes/c")
        assert status == 404, body
        assert "has no node 'c'" in body and "yet" not in body, body
        assert "its nodes: a" in body, body


def test_the_page_of_a_node_not_reached_yet_polls_until_it_appears(server: UiServer) -> None:
    status, body = answer(server, f"/runs/{LIVE}/nodes/c")
    assert status == 404
    assert 'http-equiv="refresh"' in body, body  # the page reloads itself until the node starts
    status, body = answer(server, f"/runs/{DONE}/nodes/c")
    assert status == 404 and "refresh" not in body, body


# -- odd run ids and node names ------------------------------------------------------------------
ODD = [
    "%2F", "..", "%2E%2E", "a%2F..%2Fb", "%00", "%FF", quote("ünï ✓"), "x" * 5000,
    quote("'\"<script>"), "%25", "a%0Ab",
]  # fmt: skip


@pytest.mark.parametrize("odd", ODD, ids=range(len(ODD)))
def test_odd_run_ids_and_node_names_are_a_clean_404_or_400(server: UiServer, odd: str) -> None:
    for route in (
        f"/runs/{odd}", f"/api/runs/{odd}", f"/api/runs/{odd}/status", f"/api/runs/{odd}/graph",
        f"/api/runs/{odd}/graph.svg", f"/api/runs/{odd}/nodes", f"/api/runs/{odd}/plan",
        f"/runs/{odd}/nodes/a", f"/runs/{DONE}/nodes/{odd}", f"/api/runs/{DONE}/nodes/{odd}",
        f"/api/runs/{DONE}/logs/{odd}", f"/api/runs/{DONE}/items/{odd}",
        f"/api/runs/{DONE}/preview/{odd}/a", f"/api/runs/{LIVE}/nodes/{odd}",
    ):  # fmt: skip
        status, body = answer(server, route)
        if route == "/api/runs/%2F":  # "/api/runs//": redirected to the list of runs
            assert status == 200 and '"runs"' in body
            continue
        assert status in (400, 404), (route[:200], status, body[:300])
        assert "Traceback" not in body
        if not route.startswith("/api/"):
            assert "<script>" not in body  # a page names it escaped, never as markup


@pytest.mark.parametrize(
    "query",
    [
        "offset=" + "9" * 30,
        "offset=" + "9" * 5000,
        "limit=" + "9" * 30,
        "offset=-1",
        "limit=0",
        "offset=1e3",
        "status=%00",
    ],
)
def test_odd_pages_of_a_map_s_items_are_a_400_or_empty(server: UiServer, query: str) -> None:
    assert answer(server, f"/api/runs/{DONE}/items/m")[0] == 200
    status, body = answer(server, f"/api/runs/{DONE}/items/m?{query}")
    assert status in (200, 400), (query, status, body[:300])
    if status == 200:
        assert '"items":[]' in body, body[:300]


# -- a locked journal, a journal damaged deep inside ---------------------------------------------
PAGES = [f"/runs/{DEAD}", f"/runs/{DEAD}/nodes/a", f"/api/runs/{DEAD}", f"/api/runs/{DEAD}/status",
         f"/runs/{DONE}", f"/api/runs/{DONE}/nodes/a", "/api/runs"]  # fmt: skip

HOLD = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE runs SET workflow = workflow")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_a_journal_locked_for_a_moment_by_another_process_waits(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = make_home(home)
    server = UiServer(home)
    try:
        for route in PAGES:
            with subprocess.Popen(
                [sys.executable, "-c", HOLD, str(path), "1.5"], stdout=subprocess.PIPE, text=True
            ) as holder:
                assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
                status, body = answer(server, route)
                holder.communicate(timeout=60)
            assert status == 200, (route, status, body[:500])
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def _damage_table(path: Path, table: str) -> None:
    """Garbage over the root page of ``table``: the schema still reads, the table does not."""
    conn = sqlite3.connect(path)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as file:
        file.seek((root[0] - 1) * size)
        file.write(b"\xee" * size)


def test_a_journal_damaged_deep_inside_while_the_ui_runs_is_a_503(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = make_home(home)
    server = UiServer(home)
    try:
        assert answer(server, f"/runs/{DEAD}")[0] == 200
        _damage_table(path, "node_runs")
        time.sleep(0.05)
        for route in PAGES[:-1]:
            status, body = answer(server, route)
            assert status == 503, (route, status, body[:500])
            assert str(path) in body and "damaged" in body, (route, body[:500])
            assert "Traceback" not in body
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


# -- bad filters and runs with nothing to plan ---------------------------------------------------
def test_an_unknown_item_status_is_a_400_naming_the_allowed_ones(server: UiServer) -> None:
    status, body = answer(server, f"/api/runs/{DONE}/items/m?status=bogus")
    assert status == 400, body
    assert "'bogus'" in body and "succeeded" in body and "failed" in body, body
    status, body = answer(server, f"/api/runs/{DONE}/items/m?status=succeeded")
    assert status == 200, body


def test_the_plan_of_a_run_with_no_file_is_a_404_with_the_reason(server: UiServer) -> None:
    status, body = answer(server, f"/api/runs/{DONE}/plan")
    assert status == 404, body
    assert "no file to plan" in body, body


def test_a_running_run_is_listed_with_its_counts_so_far(server: UiServer) -> None:
    """As `etherealfabric runs` lists it (the row's counts are written when the run ends)."""
    import json

    status, body = answer(server, "/api/runs")
    assert status == 200, body
    live = next(r for r in json.loads(body)["runs"] if r["id"] == LIVE)
    assert live["status"] == "running"
    assert (live["executed"], live["cached"], live["failed"]) == (1, 0, 0), live


def test_a_home_whose_name_is_not_valid_utf8_is_served(tmp_path: Path) -> None:
    """``--home`` with bytes that are not UTF-8 in its name: the pages and the API answer (they
    were a 500 and a 400 naming the codec); the commands shown escape those bytes."""
    home = Path(os.fsdecode(bytes(tmp_path / "h") + b"\xff\xfe"))
    make_home(home)
    running = UiServer(home)
    try:
        for page in ("/", "/cache"):
            assert "<html" in running.get(page)
        assert [r["id"] for r in running.get("/api/runs")["runs"]] == [DEAD, LIVE, DONE]
        assert running.get(f"/api/runs/{DEAD}")["run"]["status"] == "interrupted"
    finally:
        stderr = running.stop()
    assert "Traceback" not in stderr, stderr
