# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The web UI in a real browser (headless Chromium, the fixtures of ``test_ui_browser.py``): a
graph of more than 1,000 nodes, drawn on a canvas, is reachable from the keyboard: Tab reaches
it, the arrow keys select nodes (said in a live region), Enter opens one; and the graph's
heading links to the node table, whose rows are links too."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_run, layered  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)

RUN = "20260101-000000-4e4e4e"
COUNT = 1500


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    home = tmp_path_factory.mktemp("ui-keys") / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, RUN, layered(COUNT, ["succeeded", "failed"]))
    server = UiServer(home)
    yield server
    server.stop()


def tab_to(page: Any, script: str) -> None:
    """Press Tab from where the focus is until ``script`` (about document.activeElement)."""
    for _ in range(120):
        page.keyboard.press("Tab")
        if page.evaluate(
            f"(() => {{ const a = document.activeElement; return !!a && {script}; }})()"
        ):
            return
    raise AssertionError(f"Tab never reached {script}")


def selected(page: Any) -> tuple[str, float]:
    """The selected node of the canvas graph and its row (y)."""
    name, y = page.evaluate(
        "(() => { const g = document.querySelector('#graph-box').graph; "
        "return [g.canvas.dataset.selected, g.xy[2 * g.selected + 1]]; })()"
    )
    return str(name), float(y)


def test_a_canvas_graph_is_walked_and_opened_from_the_keyboard(page: Any, big: UiServer) -> None:
    page.goto(f"{big.base}/runs/{RUN}")
    canvas = page.locator("#graph-box canvas")
    sync_api.expect(canvas).to_have_attribute("data-nodes", str(COUNT))
    tab_to(page, "a.tagName === 'CANVAS'")
    sync_api.expect(canvas).to_have_attribute("aria-label", f"the run's graph, {COUNT} nodes: "
        "arrow keys select a node, Enter opens it (the node table below lists them too); "
        "drag to pan, wheel to zoom, click a node")  # fmt: skip
    said = page.locator("#graph-box [aria-live]")
    first, top = selected(page)  # reached with Tab: the first node is selected and said
    sync_api.expect(said).to_have_text(
        f"{first}: {'succeeded' if int(first[-5:]) % 2 == 0 else 'failed'} (1 of {COUNT})"
    )
    page.keyboard.press("ArrowRight")
    second, y = selected(page)
    assert second != first and y == top
    sync_api.expect(said).to_contain_text(f"{second}: ")
    sync_api.expect(said).to_contain_text(f"(2 of {COUNT})")
    page.keyboard.press("ArrowDown")
    below, lower = selected(page)
    assert lower > top, (below, lower, top)
    page.keyboard.press("ArrowUp")
    assert selected(page)[1] == top
    page.keyboard.press("End")
    last, bottom = selected(page)
    assert bottom > lower
    sync_api.expect(said).to_contain_text(f"({COUNT} of {COUNT})")
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("h1")).to_contain_text(last)


def test_the_graph_links_to_the_node_table_whose_rows_are_links(page: Any, big: UiServer) -> None:
    page.goto(f"{big.base}/runs/{RUN}")
    sync_api.expect(page.locator("#graph-box canvas")).to_have_attribute("data-nodes", str(COUNT))
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(100)
    tab_to(page, "a.id === 'graph-table'")
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("#nodes-filter")).to_be_focused()
    page.keyboard.type("node_01234")
    sync_api.expect(page.locator("#nodes tbody tr")).to_have_count(1)
    tab_to(page, "!!a.closest('#nodes tbody')")
    page.keyboard.press("Enter")
    sync_api.expect(page.locator("h1")).to_contain_text("node_01234")
