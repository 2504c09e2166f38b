# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``),
over journals written by direct inserts: pages a black-box review found broken or unusable
(an edited address dropping a map's items, a live graph of over 1,000 nodes kept as SVG, a
long name widening a page, a phone's tables) and small things it found wrong."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_nodes, insert_run, layered  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)
from test_ui_items import insert_map  # noqa: E402

MAPPED = "20260101-000000-3a9900"
ODDS = "20260101-000000-0dd500"  # interrupted: an attempt without an end, a long error, a hit
LONG_ERROR = "ValueError: long message " + "abcdefghij" * 150


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("ui-pages") / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, MAPPED, {"first": ("succeeded", [])}, workflow="mapped", total=2)
        with journal.write() as conn:
            insert_map(conn, MAPPED, "work", 30)
        nodes = {"hit": ("cached", []), "boom": ("failed", []), "slow": ("interrupted", [])}
        insert_run(journal, ODDS, nodes, workflow="odds", status="interrupted")
        with journal.write() as conn:
            conn.execute("UPDATE node_runs SET finished_at = NULL, duration = NULL, host = 'vm', "
                         "pid = NULL WHERE node = 'slow'")  # fmt: skip
            conn.execute("UPDATE node_runs SET error = ? WHERE node = 'boom'", (LONG_ERROR,))
            conn.execute("UPDATE node_runs SET started_at = finished_at WHERE node = 'hit'")
            conn.execute("UPDATE node_runs SET finished_at = started_at WHERE node = 'hit'")
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[UiServer]:
    running = UiServer(home)
    yield running
    stderr = running.stop()
    assert "Traceback" not in stderr, stderr


# -- #8: a status no item can have, in the address, does not drop the Items section ------------
def test_a_bad_items_status_in_the_address_shows_every_item_and_says_why(
    page: Any, server: UiServer
) -> None:
    page.goto(f"{server.base}/runs/{MAPPED}/nodes/work?items_status=bogus")
    sync_api.expect(page.locator("#items-section")).to_be_visible()  # (it stayed hidden)
    sync_api.expect(page.locator("#items tbody tr")).to_have_count(30)
    note = page.locator("#items-cached")
    sync_api.expect(note).to_contain_text("not filtered by status")
    sync_api.expect(note).to_contain_text("'bogus' is no status an item can have")
    assert page.locator("#items-status").input_value() == ""
    assert "items_status" not in page.url  # the address no longer asks for it
    page.locator("#items-status").select_option("failed")  # the filter works, the note goes
    sync_api.expect(page.locator("#items tbody tr")).to_have_count(1)
    sync_api.expect(note).not_to_contain_text("not filtered")


# -- #10: a live graph that grows past 1,000 nodes is drawn on a canvas, as a reload draws it ---
def test_a_live_graph_growing_past_a_thousand_nodes_turns_into_a_canvas(
    page: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    live = "20260101-000000-b16c0e"
    nodes = layered(1100, ["succeeded"])
    with Journal(home / "journal.db") as journal:  # running, in this process: alive to the UI
        insert_run(journal, live, dict(list(nodes.items())[:900]), status="running", total=1100)
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/runs/{live}")
        sync_api.expect(page.locator('#graph-box[data-mode="svg"] svg.graph')).to_have_count(1)
        sync_api.expect(page.locator("svg.graph rect.n")).to_have_count(900)
        with Journal(home / "journal.db") as journal, journal.write() as conn:
            insert_nodes(conn, live, dict(list(nodes.items())[900:]), time.time())
        canvas = page.locator('#graph-box[data-mode="canvas"] canvas.graph-canvas')
        sync_api.expect(canvas).to_have_attribute("data-nodes", "1100", timeout=30_000)
        assert page.locator("#graph-box svg").count() == 0  # (it kept 1,100 SVG links)
        page.locator("#graph-find").fill("node_01099")  # the canvas answers find, and clicks
        page.press("#graph-find", "Enter")
        sync_api.expect(canvas).to_have_attribute("data-selected", "node_01099")
        at = page.evaluate("document.querySelector('#graph-box').graph.locate('node_01099')")
        page.mouse.click(at["x"], at["y"])
        sync_api.expect(page.locator("h1")).to_contain_text("node_01099")
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


# -- #2, #3: a long name keeps the page's width; a phone's tables stay readable ----------------
LONG_NAME = "a_very_long_node_name_" + "x" * 110 + "_end"
STATUSES = "20260101-000000-57a705"


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """A run whose cached node has a 136-character name, one of every status of the node table
    (upstream_failed, the longest), and a cached output to list."""
    home = tmp_path_factory.mktemp("ui-wide") / "home"
    home.mkdir()
    nodes = {LONG_NAME: ("cached", []), "load": ("succeeded", []), "flaky": ("retrying", []),
             "fit": ("failed", ["load"]), "report": ("upstream_failed", ["fit"]),
             "kept": ("cached", [])}  # fmt: skip
    with Journal(home / "journal.db") as journal:
        insert_run(journal, STATUSES, nodes, workflow="wide", status="failed")
    server = UiServer(home)
    yield server
    server.stop()


def page_width(page: Any) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_a_long_node_name_keeps_the_cache_page_s_width(page: Any, wide: UiServer) -> None:
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{wide.base}/cache")
    cell = page.locator("#by-node td", has_text="a_very_long")
    sync_api.expect(cell).to_have_count(1)
    assert page_width(page) <= 1400  # (2,197 px: every row's other columns off screen)
    assert cell.get_attribute("title") == LONG_NAME  # the whole name, on hover
    box = page.locator("#by-node").bounding_box()
    assert box["x"] + box["width"] <= 1400


#: cells whose content is wider than the cell (clipped, or spilling over the next one)
CLIPPED = """(selector) => [...document.querySelectorAll(selector)]
  .filter((c) => c.scrollWidth > c.clientWidth + 1 || [...c.children].some((k) =>
    k.getBoundingClientRect().right > c.getBoundingClientRect().right + 1))
  .map((c) => c.textContent)"""


#: the lines a cell's text is laid out on
LINES = """(e) => { const r = document.createRange(); r.selectNodeContents(e);
  return new Set([...r.getClientRects()].map((q) => Math.round(q.top))).size; }"""


def test_on_a_phone_statuses_and_outputs_read_whole(page: Any, wide: UiServer) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{wide.base}/runs/{STATUSES}")
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(6)
    # every status badge and header whole ("succeede", "upstrean…", "attempstatus" before)
    assert page.evaluate(CLIPPED, "#nodes td:nth-child(3), #nodes th") == []
    durations = page.locator("#nodes tbody tr td:nth-child(5)")
    assert set(durations.evaluate_all(f"els => els.map({LINES})")) == {1}  # not "500 / ms"
    assert page_width(page) <= 390  # the table scrolls in its box, the page keeps its width
    page.goto(f"{wide.base}/runs/{STATUSES}/nodes/kept")
    table = page.locator("#outputs-table")
    sync_api.expect(table.locator("tbody tr")).to_have_count(1)
    assert page.evaluate(CLIPPED, "#outputs-table th") == []  # ("outputserializertype")
    cells = table.locator("tbody td")
    for i, text in ((1, "json"), (3, "10 B (inline)"), (4, "a" * 12)):
        sync_api.expect(cells.nth(i)).to_have_text(text)
        assert cells.nth(i).evaluate(LINES) == 1, text  # not one letter per line ("j/s/o/n")
    assert page_width(page) <= 390


# -- #9: small things ----------------------------------------------------------------------
def test_the_node_table_s_filter_range_errors_and_the_attempt_line(
    page: Any, server: UiServer, wide: UiServer
) -> None:
    page.goto(f"{wide.base}/runs/{STATUSES}")
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(6)
    page.fill("#nodes-filter", "upstream")  # the start of a status: upstream_failed
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(1)  # (none: exact names only)
    sync_api.expect(page.locator("#nodes tbody tr").first).to_contain_text("report")
    page.fill("#nodes-filter", "failed")  # a status's whole name: that status only
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(1)
    sync_api.expect(page.locator("#nodes tbody tr").first).to_contain_text("fit")
    page.fill("#nodes-filter", "nothing matches this")
    sync_api.expect(page.locator("#nodes tbody")).to_contain_text("no attempt matches")
    assert page.locator("#nodes-range").text_content() == "0 of 0"  # (it said "1-0 of 0")
    page.goto(f"{server.base}/runs/{ODDS}")
    error = page.locator('#nodes tr[data-node="boom"] td.error')
    sync_api.expect(error).to_contain_text("ValueError: long message")
    assert len(error.text_content()) <= 301  # cut (its 1,525 characters made a row ~30 lines)
    assert error.text_content().endswith("…")
    assert error.get_attribute("title") == LONG_ERROR[:1000] + "…"
    # the timeline draws executed attempts: not the cache hit (a "0 ms" row before)
    sync_api.expect(page.locator("#gantt canvas")).to_have_attribute("data-rows", "2")
    sync_api.expect(page.locator("#gantt .gantt-note")).to_have_text("1 cached nodes not shown")
    page.goto(f"{server.base}/runs/{ODDS}/nodes/slow")
    line = page.locator('#attempts .attempt[data-attempt="1"] > div').first
    sync_api.expect(line).to_contain_text("interrupted started ")
    sync_api.expect(line).to_contain_text(" · vm")
    assert " - " not in line.text_content(), line.text_content()  # ("started - · - · vm")


def test_a_bad_since_is_said_in_the_page_s_words(page: Any, server: UiServer) -> None:
    page.goto(f"{server.base}/?since=bogus")
    note = page.locator("#runs-note")
    sync_api.expect(note).to_contain_text("cannot read the 'since' filter 'bogus'")
    assert "--since" not in note.text_content()  # (a CLI flag, on a web page)
