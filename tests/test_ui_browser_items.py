# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``): a
map's items on its node page, paged; text from the journal (node names, parameters, errors)
shown as text, never as markup; the graph reachable from the keyboard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)
from test_ui_items import insert_map  # noqa: E402

#: when the first page of items is in the table (ms since the navigation began)
DRAWN = """
new MutationObserver((_, seen) => {
  if (document.querySelectorAll("#items tbody tr").length >= 100) {
    window.__itemsDrawn = performance.now();
    seen.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""
MAPPED = "20260101-000000-3000aa"
ITEMS = 3000


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """A run whose map ``work`` has 3,000 items (by direct inserts in a real journal)."""
    home = tmp_path_factory.mktemp("ui-items") / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, MAPPED, {"first": ("succeeded", [])}, workflow="mapped", total=2)
        with journal.write() as conn:
            insert_map(conn, MAPPED, "work", ITEMS)
    server = UiServer(home)
    yield server
    server.stop()


def test_a_map_node_page_lists_its_items_a_page_at_a_time(page: Any, mapped: UiServer) -> None:
    page.add_init_script(DRAWN)
    page.goto(f"{mapped.base}/runs/{MAPPED}/nodes/work")
    rows = page.locator("#items tbody tr")
    sync_api.expect(rows).to_have_count(100)
    drawn_ms = page.evaluate("window.__itemsDrawn")  # since the navigation began
    loaded_ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    print(f"\nnode page of a map of {ITEMS} items: items drawn {drawn_ms:.0f} ms after the "
          f"navigation began (page loaded at {loaded_ms:.0f} ms)")  # fmt: skip
    sync_api.expect(page.locator("#items-range")).to_have_text(f"1-100 of {ITEMS}")
    first = rows.first
    sync_api.expect(first.locator("td").nth(0)).to_have_text("1")
    sync_api.expect(first.locator("td").nth(1)).to_have_text("item_00000")
    sync_api.expect(first).to_contain_text("succeeded")
    sync_api.expect(first).to_contain_text("2 attempts")
    sync_api.expect(page.locator("#items-counts")).to_contain_text("2999 succeeded")
    page.locator("#items-next").click()
    sync_api.expect(page.locator("#items-range")).to_have_text(f"101-200 of {ITEMS}")
    sync_api.expect(rows.first.locator("td").nth(1)).to_have_text("item_00100")
    page.locator("#items-status").select_option("failed")
    sync_api.expect(rows).to_have_count(1)
    sync_api.expect(rows.first).to_contain_text("ValueError: bad item")
    sync_api.expect(page.locator("#items-range")).to_have_text("1-1 of 1")
    rows.first.locator("a").click()  # an item opens its own page
    sync_api.expect(page.locator("h1")).to_contain_text("work[item_00005]")
    # a node that is not a map has no items section
    page.goto(f"{mapped.base}/runs/{MAPPED}/nodes/first")
    sync_api.expect(page.locator("#node-status")).to_have_text("succeeded")
    assert page.locator("#items-section").is_hidden()
