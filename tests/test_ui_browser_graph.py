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
from test_ui_browse import insert_run, layered  # noqa: E402
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


# -- status on the canvas: not by colour alone --------------------------------------------------
SHAPES = "20260101-000000-5a9e5a"
STATUSES = ["succeeded", "failed", "upstream_failed", "pending", "cached", "interrupted", "skipped"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """A run of more than 1,000 nodes (a canvas graph) of every ending status."""
    home = tmp_path_factory.mktemp("ui-shapes") / "home"
    home.mkdir()
    with Journal(home / "journal.db") as journal:
        insert_run(journal, SHAPES, layered(1100, STATUSES), status="failed")
    server = UiServer(home)
    yield server
    server.stop()


#: What the canvas drew (recorded from its context's calls) while it drew ``node`` centred.
DRAWN = """(node) => {
  const g = document.querySelector('#graph-box').graph, ctx = g.canvas.getContext('2d');
  const proto = CanvasRenderingContext2D.prototype, calls = { text: [], strokes: [] };
  const { fillText, stroke } = proto;
  ctx.fillText = function (text, x, y) { calls.text.push([text, x, y]); return fillText.call(this, text, x, y); };
  ctx.stroke = function () {
    calls.strokes.push({ style: this.strokeStyle, width: this.lineWidth * g.view.s, dash: this.getLineDash().map((d) => d * g.view.s) });
    return stroke.call(this);
  };
  try { g.locate(node); } finally { delete ctx.fillText; delete ctx.stroke; }
  const i = g.index.get(node);
  return { calls, x: g.xy[2 * i], y: g.xy[2 * i + 1], stroke: g.colour(g.status[i])[1], marks: g.marks };
}"""


def test_a_canvas_shows_status_by_mark_dashes_and_borders_as_the_svg_does(
    page: Any, shapes: UiServer
) -> None:
    """Each node drawn on the canvas carries its status's mark beside its name, a dashed border
    when it did not run and a thick one when it ended badly (found by review: the canvas showed
    status by colour only, the SVG of the same run by all three)."""
    from etherealfabric.ui._layout import HEIGHT, STATUS_MARKS

    page.goto(f"{shapes.base}/runs/{SHAPES}")
    canvas = page.locator('#graph-box[data-mode="canvas"] canvas.graph-canvas')
    sync_api.expect(canvas).to_have_attribute("data-nodes", "1100")
    nodes = layered(1100, STATUSES)
    for name in [f"node_{n:05d}" for n in range(1000, 1007)]:
        status = nodes[name][0]
        drawn = page.evaluate(DRAWN, name)
        x, y = drawn["x"], drawn["y"]
        # its mark, left in its box, as the SVG's text.st
        mark = [
            t for t, tx, ty in drawn["calls"]["text"] if (tx, ty) == (x + 11, y + HEIGHT / 2 + 4)
        ]
        assert mark == [STATUS_MARKS[status]], (name, status, drawn["calls"]["text"][:5])
        # its border: the stroke in its status's colour, as app.css draws the SVG's
        border = [s for s in drawn["calls"]["strokes"] if s["style"] == _hex(drawn["stroke"])]
        assert border, (name, status, drawn["calls"]["strokes"])
        width, dash = border[0]["width"], border[0]["dash"]
        assert (width >= 3) == (status in ("failed", "upstream_failed", "interrupted")), (
            name,
            status,
            width,
        )
        assert (dash == [5, 3]) == (status in ("pending", "skipped", "cancelled")), (
            name,
            status,
            dash,
        )
        assert dash in ([], [5, 3])


def _hex(rgb: str) -> str:
    """``rgb(r, g, b)`` as the canvas reports a stroke style: ``#rrggbb``."""
    r, g, b = (int(v) for v in rgb[rgb.index("(") + 1 : -1].split(","))
    return f"#{r:02x}{g:02x}{b:02x}"
