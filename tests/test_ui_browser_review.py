# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``),
over journals written by direct inserts: page behaviour a browser review found wrong (an
interrupted run's timeline growing with the clock, a live graph losing the user's zoom, ...).
"""

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
from test_ui_app import add_map  # noqa: E402
from test_ui_browse import insert_nodes, insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)

ENDED = "20260101-000000-e0d0e0"  # interrupted, marked so: it has an end
UNMARKED = "20260101-000001-deadde"  # recorded running, its process gone: shown interrupted
CACHED = "20260101-000004-ca0000"  # a node taken from the cache: an output to preview
MANY = "20260101-000005-3a3a3a"  # 251 nodes, one a map of 150 items: tables of pages


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("review") / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        nodes = {"a": ("succeeded", []), "b": ("interrupted", ["a"])}
        insert_run(journal, ENDED, nodes, status="interrupted", started=time.time() - 600)
        insert_run(journal, UNMARKED, {"a": ("succeeded", []), "b": ("running", ["a"])},
                   status="running", started=time.time() - 600)  # fmt: skip
        with journal.write() as conn:
            conn.execute("UPDATE node_runs SET finished_at = NULL, duration = NULL "
                         "WHERE node = 'b'")  # fmt: skip
            conn.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (UNMARKED,))
        insert_run(journal, CACHED, {"c": ("cached", [])}, started=time.time() - 900)
        many: dict[str, tuple[str, list[str]]] = {f"n{i}": ("succeeded", []) for i in range(250)}
        many["m"] = ("succeeded", [])
        many.update({f"m[{i}]": ("failed" if i % 3 else "succeeded", []) for i in range(150)})
        insert_run(journal, MANY, many, status="failed", started=time.time() - 1200, total=251)
        add_map(journal, MANY, "m")
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[UiServer]:
    running = UiServer(home)
    yield running
    running.stop()


def gantt_span(page: Any) -> float:
    page.wait_for_function("() => document.querySelector('#gantt').gantt")
    return float(page.evaluate("() => document.querySelector('#gantt').gantt.span"))


# -- 2. a finished run's timeline does not grow with the clock ------------------------------
def test_an_interrupted_run_s_timeline_ends_where_the_run_did(page: Any, server: UiServer) -> None:
    page.goto(f"{server.base}/runs/{ENDED}")
    sync_api.expect(page.locator("#run-status")).to_have_text("interrupted")
    assert 29 < gantt_span(page) < 31  # its end (30 s after its start), not now (600 s after)
    page.goto(f"{server.base}/runs/{UNMARKED}")
    sync_api.expect(page.locator("#run-status")).to_have_text("interrupted")
    assert gantt_span(page) < 5  # its last known time: a's end, half a second in


# -- 4. a live run's graph keeps the user's zoom, pan and found node when it grows ----------
def test_a_growing_live_graph_keeps_the_user_s_view_and_found_node(
    page: Any, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    live = "20260101-000002-11fe22"
    with Journal(home / "journal.db") as journal:  # running, in this process: alive to the UI
        nodes = {"a": ("succeeded", []), "b": ("running", ["a"])}
        insert_run(journal, live, nodes, status="running", total=4)
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/runs/{live}")
        svg = page.locator("svg.graph")
        sync_api.expect(page.locator('svg.graph rect[data-node="b"]')).to_have_count(1)
        box = page.locator("#graph-box").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 60)
        for _ in range(3):
            page.mouse.wheel(0, -200)
        page.fill("#graph-find", "a")
        page.press("#graph-find", "Enter")
        sync_api.expect(page.locator("#graph-found")).to_contain_text("a:")
        page.mouse.move(box["x"] + 200, box["y"] + 100)
        page.mouse.down()
        page.mouse.move(box["x"] + 260, box["y"] + 140, steps=4)
        page.mouse.up()
        viewed = svg.get_attribute("viewBox")
        with Journal(home / "journal.db") as journal, journal.write() as conn:
            insert_nodes(conn, live, {"c": ("running", ["b"])}, time.time())
        sync_api.expect(page.locator('svg.graph rect[data-node="c"]')).to_have_count(1)
        assert page.locator("svg.graph").get_attribute("viewBox") == viewed
        selected = page.locator("svg.graph rect[data-selected]")
        sync_api.expect(selected).to_have_count(1)
        assert selected.get_attribute("data-node") == "a"
        page.click("#fit")  # fit: the whole graph again, and a graph drawn again fits too
        fitted = page.locator("svg.graph").get_attribute("viewBox")
        assert fitted != viewed
        with Journal(home / "journal.db") as journal, journal.write() as conn:
            insert_nodes(conn, live, {"d": ("running", ["c"])}, time.time())
        sync_api.expect(page.locator('svg.graph rect[data-node="d"]')).to_have_count(1)
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


# -- 6. the cache page says when it shows only the largest nodes ----------------------------
def test_the_cache_page_says_it_shows_100_of_more_nodes(page: Any, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        nodes = {f"n{i:03d}": ("cached", []) for i in range(150)}
        insert_run(journal, "20260101-000003-cac4e0", nodes, workflow="many")
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/cache")
        sync_api.expect(page.locator("#by-node-note")).to_have_text(
            "showing the 100 largest of 150 nodes"
        )
        sync_api.expect(page.locator("#by-node tbody tr")).to_have_count(100)
        first = page.locator("#by-node tbody tr").first.locator("td")
        sync_api.expect(first.nth(1)).to_have_text("many")  # the workflow column
        sync_api.expect(page.locator("#by-workflow-note")).to_have_text("")
    finally:
        server.stop()


# -- 7. a phone's screen: wide tables scroll in their box, the page keeps the screen's width --
def test_on_a_phone_the_pages_keep_the_screen_s_width(browser: Any, server: UiServer) -> None:
    context = browser.new_context(
        viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True
    )
    try:
        phone = context.new_page()
        for path, drawn in (
            ("/", f'#runs tr[data-run="{ENDED}"]'),
            (f"/runs/{ENDED}", "#nodes tbody tr"),
            (f"/runs/{ENDED}/nodes/a", "#components table"),
            ("/cache", "#hit-chart svg"),
        ):
            phone.goto(server.base + path)
            sync_api.expect(phone.locator(drawn).first).to_be_visible()
            width = phone.evaluate("() => document.documentElement.scrollWidth")
            assert width <= 375, f"{path}: the page is {width} px wide on a 375 px screen"
    finally:
        context.close()


# -- 8. a journal damaged under an open runs page: one clear banner --------------------------
def test_a_journal_damaged_under_the_runs_page_is_one_banner(page: Any, tmp_path: Path) -> None:
    from test_ui_gates import _not_sqlite, make_journal

    home = tmp_path / "home"
    path = make_journal(home)
    server = UiServer(home)
    try:
        page.goto(f"{server.base}/")
        sync_api.expect(page.locator("#runs tbody tr[data-run]")).to_have_count(1)
        _not_sqlite(path)
        banner = page.locator("#page-error")
        sync_api.expect(banner).to_be_visible()
        sync_api.expect(banner).to_contain_text(f"cannot list the runs now: the journal {path}")
        sync_api.expect(banner).to_contain_text("Move it aside")
        assert "503" not in banner.inner_text()
        sync_api.expect(page.locator("#runs-note")).to_have_text("")
    finally:
        server.stop()


# -- 8. a preview being loaded says so -------------------------------------------------------
def test_a_preview_says_loading_until_it_comes(page: Any, server: UiServer) -> None:
    held: list[Any] = []
    page.route("**/api/runs/*/preview/**", lambda route: held.append(route))
    page.goto(f"{server.base}/runs/{CACHED}/nodes/c")
    cell = page.locator('#outputs tr[data-output="result"] td.preview')
    sync_api.expect(cell).to_have_text("loading…")
    page.wait_for_function("() => true")  # (lets the held request reach the handler)
    assert held, "the preview was not asked for"
    held[0].continue_()
    sync_api.expect(cell).to_contain_text("cannot load it here")  # (its inline bytes: none)


# -- 9. a table's filter and page are in the address: Back (or a reload) finds them ----------
def test_the_node_table_s_filter_and_page_survive_back_and_reload(
    page: Any, server: UiServer
) -> None:
    page.goto(f"{server.base}/runs/{MANY}")
    page.fill("#nodes-filter", "n1")  # n1, n10-n19, n100-n199: 111 of them
    sync_api.expect(page.locator("#nodes-range")).to_have_text("1-100 of 111")
    page.click("#nodes-next")
    sync_api.expect(page.locator("#nodes-range")).to_have_text("101-111 of 111")
    assert page.url.endswith(f"/runs/{MANY}?filter=n1&page=2")
    page.locator("#nodes tbody a").first.click()
    sync_api.expect(page.locator("#node-status")).not_to_have_text("")
    page.go_back()
    sync_api.expect(page.locator("#nodes-range")).to_have_text("101-111 of 111")
    sync_api.expect(page.locator("#nodes-filter")).to_have_value("n1")
    page.reload()
    sync_api.expect(page.locator("#nodes-range")).to_have_text("101-111 of 111")
    page.fill("#nodes-filter", "")
    assert page.url.endswith(f"/runs/{MANY}")


def test_a_map_s_item_page_and_status_survive_back_and_reload(page: Any, server: UiServer) -> None:
    page.goto(f"{server.base}/runs/{MANY}/nodes/m")
    sync_api.expect(page.locator("#items-range")).to_have_text("1-100 of 150")
    page.select_option("#items-status", "failed")
    sync_api.expect(page.locator("#items-range")).to_have_text("1-100 of 100")
    page.select_option("#items-status", "")
    page.click("#items-next")
    sync_api.expect(page.locator("#items-range")).to_have_text("101-150 of 150")
    assert page.url.endswith(f"/runs/{MANY}/nodes/m?items_from=101")
    page.locator("#items tbody a").first.click()
    sync_api.expect(page.locator("h1 code")).to_have_text("m[100]")
    page.go_back()
    sync_api.expect(page.locator("#items-range")).to_have_text("101-150 of 150")
    page.goto(f"{server.base}/runs/{MANY}/nodes/m?items_status=failed&items_from=51")
    sync_api.expect(page.locator("#items-range")).to_have_text("51-100 of 100")
    sync_api.expect(page.locator("#items-status")).to_have_value("failed")
