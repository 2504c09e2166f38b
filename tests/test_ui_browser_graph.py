# ruff: noqa: F811  (the browser fixtures, imported, are the tests' parameters)
"""The run page's graph in a real browser (headless Chromium, the fixtures of
``test_ui_browser.py``): on the canvas of a big run (more than 1,000 nodes), an edge that skips
a row is drawn around the rows between, along the route the server computed (the SVG's), not
straight behind the box it does not connect (found by review: a -> c beside a -> b -> c was
drawn through b)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
sync_api = pytest.importorskip("playwright.sync_api")

from etherealfabric.journal import Journal  # noqa: E402
from test_ui import UiServer  # noqa: E402
from test_ui_browse import insert_run  # noqa: E402
from test_ui_browser import browser, page  # noqa: E402,F401  (fixtures)

RUN = "20260101-000000-5c1b5c"
FILLERS = 1100


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """a -> b -> c and a -> c, then more than a thousand nodes below c (a canvas graph)."""
    home = tmp_path_factory.mktemp("ui-graph") / "home"
    home.mkdir()
    nodes = {"a": ("succeeded", []), "b": ("succeeded", ["a"]), "c": ("succeeded", ["a", "b"])}
    nodes |= {f"f{i:04d}": ("succeeded", ["c"]) for i in range(FILLERS)}
    with Journal(home / "journal.db") as journal:
        insert_run(journal, RUN, nodes)
    server = UiServer(home)
    yield server
    server.stop()


def ink(page: Any, x: float, y: float) -> int:
    """How opaque the most opaque pixel the canvas drew around world point ``(x, y)`` is
    (0: nothing drawn there, 255: opaque), from a few pixels left to right of it."""
    return int(
        page.evaluate(
            """([x, y]) => {
              const g = document.querySelector('#graph-box').graph, { cw, ch } = g.size();
              g.view = { x: x - cw / 2, y: y - ch / 2, s: 1 };
              g.draw();
              const ratio = window.devicePixelRatio || 1;
              const px = Math.round(cw / 2 * ratio), py = Math.round(ch / 2 * ratio);
              const d = g.canvas.getContext('2d').getImageData(px - 3, py, 7, 1).data;
              let most = 0;
              for (let i = 3; i < d.length; i += 4) most = Math.max(most, d[i]);
              return most;
            }""",
            [x, y],
        )
    )


def test_a_canvas_draws_an_edge_that_skips_a_row_around_the_box_between(
    page: Any, big: UiServer
) -> None:
    with urllib.request.urlopen(f"{big.base}/api/runs/{RUN}/graph?compact=1") as response:
        data = json.load(response)
    names, xy, edges, via = data["names"], data["xy"], data["edges"], data["via"]
    a, b, c = (names.index(n) for n in "abc")
    k = [(edges[2 * j], edges[2 * j + 1]) for j in range(len(edges) // 2)].index((a, c))
    routes = {via[j]: via[j + 1 : j + 4] for j in range(0, len(via), 4)}
    above, lane, below = routes[k]  # a -> c is routed
    w, h = data["box"]
    bx, by = xy[2 * b], xy[2 * b + 1]
    assert not bx <= lane <= bx + w  # the route passes beside b
    assert above < by and below > by + h

    page.goto(f"{big.base}/runs/{RUN}")
    canvas = page.locator('#graph-box[data-mode="canvas"] canvas.graph-canvas')
    sync_api.expect(canvas).to_have_attribute("data-nodes", str(FILLERS + 3))
    # the canvas draws the route's lane beside b, level with b's middle (nothing is drawn
    # there when a -> c is drawn straight through b, hidden behind its box)
    assert ink(page, lane, by + h / 2) > 60
    # and nothing in the free space on b's other side
    other = bx + w + (bx - lane) if lane < bx else bx - (lane - bx - w)
    assert ink(page, other, by + h / 2) == 0
