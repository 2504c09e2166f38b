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


# -- labels fit their boxes -----------------------------------------------------------------------
LONG = ["LOAD_CUSTOMER_DATA", "W" * 18, "TRAIN_GRADIENT_BOOSTED_MODEL", "MMMMMMMMMMMMMMMM", "mmmmmmmmmmmm",
        "%%%%%%%%%%%%%%", "数据处理数据处理数据处理", "short", "node_01234", "a" * 40]  # fmt: skip
LABELS_SMALL, LABELS_BIG = "20260101-000000-1abe15", "20260101-000000-1abe16"


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiServer]:
    """Runs whose nodes have long, wide names: a small one (SVG) and a big one (canvas)."""
    home = tmp_path_factory.mktemp("ui-labels") / "home"
    home.mkdir()
    small = {name: ("succeeded", []) for name in LONG}
    big = small | {f"f{i:04d}": ("succeeded", [LONG[i % len(LONG)]]) for i in range(1100)}
    with Journal(home / "journal.db") as journal:
        insert_run(journal, LABELS_SMALL, small)
        insert_run(journal, LABELS_BIG, big)
    server = UiServer(home)
    yield server
    server.stop()


def test_a_label_never_runs_over_its_box_or_its_status_mark(page: Any, labels: UiServer) -> None:
    """Labels are cut by width, not length (found by review: upper-case names of 18 characters
    ran over the status mark and into the next box); the full name stays in the tooltip."""
    from etherealfabric.ui._layout import HEIGHT

    page.goto(f"{labels.base}/runs/{LABELS_SMALL}")
    sync_api.expect(page.locator("#graph rect.n")).to_have_count(len(LONG))
    extents = page.evaluate(
        """() => [...document.querySelectorAll('#graph .node')].map((g) => {
             const [mark, label] = g.querySelectorAll('text'), r = g.querySelector('rect');
             const m = mark.getBBox(), l = label.getBBox();
             return { name: r.dataset.node, title: r.querySelector('title').textContent,
                      x: +r.getAttribute('x'), w: +r.getAttribute('width'), mark: m.x + m.width,
                      left: l.x, right: l.x + l.width, text: label.textContent };
           })"""
    )
    assert {e["name"] for e in extents} == set(LONG)
    for e in extents:
        assert e["mark"] + 2 <= e["left"] and e["right"] <= e["x"] + e["w"] - 2, e
        assert e["title"].startswith(e["name"] + " (")
        assert e["text"] == e["name"] or (
            e["name"].startswith(e["text"][:-1]) and e["text"][-1] == "…"
        )
    assert {e["name"] for e in extents if e["text"] == e["name"]} >= {"short", "node_01234"}
    # the canvas of a big run: each label it draws is as narrow
    page.goto(f"{labels.base}/runs/{LABELS_BIG}")
    canvas = page.locator('#graph-box[data-mode="canvas"] canvas.graph-canvas')
    sync_api.expect(canvas).to_have_attribute("data-nodes", str(len(LONG) + 1100))
    for name in LONG:
        drawn = page.evaluate(DRAWN, name)
        x, width = drawn["x"], page.evaluate("document.querySelector('#graph-box').graph.w")
        row = drawn["y"] + HEIGHT / 2 + 4
        texts = [t for t, tx, ty in drawn["calls"]["text"] if x + 11 < tx < x + width and ty == row]
        assert len(texts) == 1, (name, texts)
        assert texts[0] == name or (name.startswith(texts[0][:-1]) and texts[0][-1] == "…")
        measured = page.evaluate(
            """(text) => { const c = document.createElement('canvas').getContext('2d');
               c.font = '12px system-ui, -apple-system, sans-serif'; return c.measureText(text).width; }""",
            texts[0],
        )
        centre = next(tx for t, tx, _ in drawn["calls"]["text"] if t == texts[0])
        assert x + 17 <= centre - measured / 2 and centre + measured / 2 <= x + width - 2, (
            name,
            measured,
        )
