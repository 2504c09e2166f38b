# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``): a
map's items on its node page, paged; text from the journal (node names, parameters, errors)
shown as text, never as markup; the graph reachable from the keyboard."""

from __future__ import annotations

import json
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


# -- text from the journal is text ---------------------------------------------------------------
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b class="inj">b</b>'
HOSTILE = "20260101-000000-bad0bad"
NAMES = {"src": f"src{XSS}", "sink": f"sink{XSS}", "kept": f"kept{XSS}"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """A run whose workflow, node names, parameters, errors, tracebacks, logs and map items
    are all markup (by direct inserts in a real journal)."""
    home = tmp_path_factory.mktemp("ui-xss") / "home"
    home.mkdir()
    nodes = {
        NAMES["src"]: ("succeeded", []),
        NAMES["kept"]: ("cached", []),
        NAMES["sink"]: ("failed", [NAMES["src"], NAMES["kept"]]),
    }
    with Journal(home / "journal.db") as journal:
        insert_run(journal, HOSTILE, nodes, workflow=f"flow{XSS}", status="failed")
        with journal.write() as conn:
            conn.execute(
                "UPDATE runs SET params = ? WHERE id = ?",
                (json.dumps({"target": [XSS], "params": {"p": XSS}}), HOSTILE),
            )
            conn.execute(
                "UPDATE node_runs SET error = ?, traceback = ?, output = ? WHERE run_id = ?",
                (f"ValueError: {XSS}", f"Traceback {XSS}", f"printed {XSS}", HOSTILE),
            )
            insert_map(conn, HOSTILE, f"map{XSS}", 3)
            conn.execute(
                "UPDATE node_runs SET node = replace(node, 'item_', ?) WHERE node LIKE 'map%[%'",
                (XSS,),
            )
            conn.execute(
                "UPDATE node_runs SET error = ? WHERE run_id = ? AND status = 'failed'",
                (f"ValueError: {XSS}", HOSTILE),
            )
    server = UiServer(home)
    yield server
    server.stop()


def no_markup_ran(page: Any) -> None:
    assert page.evaluate("window.__xss") is None, "markup from the journal ran as script"
    injected = page.evaluate(
        "document.querySelectorAll('img, b.inj, body script:not([type=\"application/json\"])')"
        ".length"
    )
    assert injected == 0, "markup from the journal became elements"


def test_text_from_the_journal_is_shown_as_text_never_markup(page: Any, hostile: UiServer) -> None:
    from urllib.parse import quote

    run = f"/runs/{HOSTILE}"
    page.goto(f"{hostile.base}/")
    sync_api.expect(page.locator("#runs")).to_contain_text(f"flow{XSS}")
    no_markup_ran(page)
    page.goto(f"{hostile.base}{run}")
    sync_api.expect(page.locator("#failures")).to_contain_text(f"ValueError: {XSS}")
    drawn = page.locator("svg.graph [data-node]")
    sync_api.expect(drawn).to_have_count(4)  # and the map
    names = drawn.evaluate_all("els => els.map((e) => e.getAttribute('data-node'))")
    assert sorted(names) == sorted([*NAMES.values(), f"map{XSS}"])
    sync_api.expect(page.locator("svg.graph")).to_contain_text("sink<img")  # the label, as text
    sync_api.expect(page.locator("#nodes")).to_contain_text(NAMES["src"])
    page.locator("#gantt").hover()
    no_markup_ran(page)
    page.goto(f"{hostile.base}{run}/nodes/{quote(NAMES['sink'], safe='')}")
    sync_api.expect(page.locator("h1")).to_contain_text(NAMES["sink"])
    sync_api.expect(page.locator("#attempts")).to_contain_text(f"printed {XSS}")
    sync_api.expect(page.locator("#attempts .error")).to_contain_text(f"ValueError: {XSS}")
    page.locator("#attempts summary").first.click()
    sync_api.expect(page.locator("#attempts .tb")).to_contain_text(f"Traceback {XSS}")
    assert XSS in page.title()
    no_markup_ran(page)
    page.goto(f"{hostile.base}{run}/nodes/{quote(f'map{XSS}', safe='')}")
    sync_api.expect(page.locator("#items tbody tr")).to_have_count(3)
    sync_api.expect(page.locator("#items")).to_contain_text(f"{XSS}00005"[:-5])
    no_markup_ran(page)
    page.goto(f"{hostile.base}/cache")
    sync_api.expect(page.locator("#by-node")).to_contain_text(NAMES["kept"])
    no_markup_ran(page)


# -- the graph from the keyboard, and status not by colour alone --------------------------------
def test_graph_nodes_are_links_reached_by_tab_and_say_their_status_in_text(
    page: Any, mapped: UiServer, hostile: UiServer
) -> None:
    page.goto(f"{hostile.base}/runs/{HOSTILE}")
    sync_api.expect(page.locator("svg.graph [data-node]")).to_have_count(4)
    shown = page.locator("svg.graph a.node").evaluate_all(
        "els => els.map((a) => [a.querySelector('rect').getAttribute('data-node'), "
        "a.getAttribute('aria-label'), a.querySelector('text.st').textContent])"
    )
    by_name = {name: (label, mark) for name, label, mark in shown}
    assert by_name[NAMES["sink"]][0] == f"{NAMES['sink']}: failed"
    assert by_name[NAMES["src"]][0] == f"{NAMES['src']}: succeeded"
    assert by_name[NAMES["kept"]][0] == f"{NAMES['kept']}: cached"
    marks = {by_name[NAMES[k]][1] for k in ("sink", "src", "kept")}
    assert len(marks) == 3 and all(m.strip() for m in marks)  # a mark of its own per status
    legend = page.locator(".legend").inner_text()
    assert all(m in legend for m in marks)  # the legend explains the marks
    page.goto(f"{mapped.base}/runs/{MAPPED}")
    sync_api.expect(page.locator("svg.graph [data-node]")).to_have_count(2)
    for _ in range(80):  # Tab from the top of the page until a node of the graph has the focus
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(() => { const a = document.activeElement; return a && a.closest('svg.graph') ? "
            "a.getAttribute('aria-label') : null; })()"
        )
        if focused:
            break
    assert focused in ("first: succeeded", "work: succeeded"), focused
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("h1")).to_contain_text(focused.split(":")[0])
