"""A layered drawing of a run's graph, computed on the server and sent as SVG.

Layers are the topological generations (a node sits one layer below its deepest input).
Within a layer, nodes are ordered by the barycentre of their neighbours in the layer above, then
below (a few sweeps, as in Sugiyama's method), which untangles most crossings in linear time. A layer wider than :data:`ROW` nodes wraps onto several rows, so a fan-out of
thousands stays a block that fits the screen instead of a line a mile wide. Edges are drawn as
curves from the bottom of a node to the top of its consumer; one that skips a row is routed
around the boxes in between (:mod:`._routes`), never behind a box it does not connect.

The SVG carries each node's name (``data-node``) and status (class ``st-<status>``), so the
page recolours nodes in place as the run goes on, and a ``viewBox`` the page pans and zooms.

A graph of more than :data:`CANVAS_FROM` nodes is not sent as SVG to the run page: the browser
would spend most of a second parsing and laying out its ten thousand elements. The page gets
:meth:`Layout.to_compact` instead (names, coordinates and edges as flat arrays) and draws it on
a canvas, only what is in view (``static/graph.js``).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from html import escape
from typing import Any
from urllib.parse import quote

from ._routes import Route, corners, path, routes

__all__ = ["CANVAS_FROM", "STATUS_MARKS", "Layout", "layout", "to_svg"]

#: Node box size and spacing, in SVG units.
WIDTH, HEIGHT, GAP_X, GAP_Y = 150, 34, 20, 46
#: The widest row; wider layers wrap onto more rows.
ROW = 40
SWEEPS = 4
#: A label's room: between the status mark (centred 11 units in) and the box's right edge, so
#: a label is centred :data:`LABEL_AT` units in and at most :data:`LABEL_WIDTH` wide.
LABEL_AT, LABEL_WIDTH = 83, 124
#: Widths of characters at 12 px, rounded up (DejaVu Sans, system-ui on Linux and wider than
#: the usual system fonts elsewhere, so a label estimated to fit does): a label is cut by its
#: width, not its length ("WWWW" is three times as wide as "iiii").
_WIDTHS = {ch: w for w, chars in ((4.0, " '.,:;/\\|ijlIJ"), (5.0, "fr-()[]t!"), (6.5, '"*_`szc?'),
           (7.5, "LFkvxyPTYoae"), (8.0, "0123456789$ESbdghnpqu{}K"), (9.0, "ABVXZRCUHN"),
           (9.5, "DG&OQ"), (10.5, "w#+<=>^~M"), (12.0, "%mW@…")) for ch in chars}  # fmt: skip
#: Graphs up to this many nodes get a tooltip per node.
TITLES = 1000
#: Graphs of more nodes than this are drawn on a canvas by the run page, not as SVG.
CANVAS_FROM = 1000
#: The mark each status shows beside a node's name (its colour is not the only sign of it);
#: the run page's legend shows them, and its script sets them as statuses change.
STATUS_MARKS = {"pending": "○", "running": "▶", "retrying": "↻", "succeeded": "✓",
                "cached": "≡", "failed": "✗", "fallback": "↪", "skipped": "»",
                "upstream_failed": "⊘", "cancelled": "■", "interrupted": "‖", "drifted": "≠",
                "not_run": "◌"}  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """Positions (top-left corner of each node's box), edges and the drawing's size."""

    positions: dict[str, tuple[float, float]]
    edges: list[tuple[str, str]]
    width: float
    height: float
    layers: int
    #: The route of each edge that skips a row, by its index in ``edges``: ``(y_above, lane,
    #: y_below)``, the corners of a path around the rows between (:mod:`._routes`).
    via: dict[int, Route] = field(default_factory=dict)

    def ends(self, up: str, down: str) -> tuple[tuple[float, float], tuple[float, float]]:
        """Where an edge starts (its source's bottom centre) and ends (its target's top)."""
        (x1, y1), (x2, y2) = self.positions[up], self.positions[down]
        return (x1 + WIDTH / 2, y1 + HEIGHT), (x2 + WIDTH / 2, y2)

    @cached_property
    def shape(self) -> str:
        """A short digest of the structure (nodes and edges), to tell when it changed."""
        text = json.dumps([sorted(self.positions), sorted(self.edges)])
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    @cached_property
    def _dict(self) -> dict[str, Any]:
        return {
            "nodes": [{"node": n, "x": x, "y": y} for n, (x, y) in self.positions.items()],
            "edges": [
                {"from": a, "to": b}
                | ({"via": corners(self.via[k], *self.ends(a, b))} if k in self.via else {})
                for k, (a, b) in enumerate(self.edges)
            ],
            "width": self.width,
            "height": self.height,
            "layers": self.layers,
            "box": [WIDTH, HEIGHT],
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: nodes as ``{node, x, y}``, edges as ``{from, to}`` (and ``via``,
        the corners ``[[x, y], ...]`` of an edge routed around the rows it skips)."""
        return self._dict

    @cached_property
    def compact(self) -> dict[str, Any]:
        """The layout as flat arrays (a third of the bytes, no object per node or edge):
        ``names``; ``xy``, the coordinates ``[x0, y0, x1, y1, ...]`` rounded to units;
        ``edges``, pairs of indices into ``names``: ``[from0, to0, from1, to1, ...]``;
        ``via``, the routes of edges that skip rows: ``[edge, y_above, lane, y_below, ...]``
        (``edge`` an index into the pairs of ``edges``; the corners are ``(x_from, y_above)``,
        ``(lane, y_above)``, ``(lane, y_below)``, ``(x_to, y_below)``)."""
        index = {name: i for i, name in enumerate(self.positions)}
        return {
            "names": list(self.positions),
            "xy": [round(v) for x, y in self.positions.values() for v in (x, y)],
            "edges": [index[n] for edge in self.edges for n in edge],
            "via": [
                v
                for k, (above, lane, below) in self.via.items()
                for v in (k, round(above), round(lane), round(below))
            ],
            "width": round(self.width),
            "height": round(self.height),
            "layers": self.layers,
            "box": [WIDTH, HEIGHT],
        }


def layout(upstreams: Mapping[str, list[str]]) -> Layout:
    """Lay out the graph whose node → upstream nodes are ``upstreams``."""
    edges = list(dict.fromkeys((up, n) for n, ups in upstreams.items() for up in ups if up != n))
    nodes = list(dict.fromkeys([*upstreams, *(up for up, _ in edges)]))
    layers = _generations(nodes, edges)
    if layers is None:  # a cycle: never in a real run; draw something anyway
        edges = _without_cycles(nodes, edges)
        layers = _generations(nodes, edges) or [nodes]
    _order(layers, edges)
    rows = [layer[start : start + ROW] for layer in layers for start in range(0, len(layer), ROW)]
    pitch = WIDTH + GAP_X
    widest = max((len(row) for row in rows), default=1)
    full = widest * pitch - GAP_X
    positions: dict[str, tuple[float, float]] = {}
    row_of: dict[str, int] = {}
    spans: list[tuple[float, int, float]] = []  # each row's y, count and left
    for r, row in enumerate(rows):
        y = float(r * (HEIGHT + GAP_Y))
        left = (full - (len(row) * pitch - GAP_X)) / 2  # centred under the widest row
        spans.append((y, len(row), left))
        for i, name in enumerate(row):
            positions[name] = (left + i * pitch, y)
            row_of[name] = r
    via = routes(spans, row_of, positions, edges, (WIDTH, HEIGHT, GAP_X, GAP_Y))
    lanes = [lane for _, lane, _ in via.values()]
    low = min(0.0, min(lanes) - 4) if lanes else 0.0
    high = max(float(full), max(lanes) + 4) if lanes else float(full)
    if low < 0:  # a route beside the rows: the drawing starts at 0 still
        positions = {n: (x - low, y) for n, (x, y) in positions.items()}
        via = {k: (above, lane - low, below) for k, (above, lane, below) in via.items()}
    height = len(rows) * (HEIGHT + GAP_Y) - GAP_Y
    return Layout(
        positions,
        edges,
        float(max(high - low, WIDTH)),
        max(float(height), float(HEIGHT)),
        len(layers),
        via,
    )


def _generations(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]] | None:
    """The topological generations (Kahn's algorithm, each layer sorted); ``None`` on a cycle.

    Plain dicts rather than networkx: a third of the time on a graph of thousands of nodes.
    """
    below: dict[str, list[str]] = {n: [] for n in nodes}
    waiting = dict.fromkeys(nodes, 0)
    for up, down in edges:
        below[up].append(down)
        waiting[down] += 1
    layer = [n for n in nodes if not waiting[n]]
    layers, placed = [], 0
    while layer:
        layers.append(sorted(layer))
        placed += len(layer)
        ready = []
        for name in layer:
            for down in below[name]:
                waiting[down] -= 1
                if not waiting[down]:
                    ready.append(down)
        layer = ready
    return layers if placed == len(nodes) else None


def _without_cycles(nodes: list[str], edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``edges`` less one edge set of each cycle (networkx, imported only here)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    while not nx.is_directed_acyclic_graph(graph):
        graph.remove_edges_from(list(nx.find_cycle(graph)))
    return list(graph.edges)


def _order(layers: list[list[str]], edges: list[tuple[str, str]]) -> None:
    """Reorder each layer in place by the barycentre of its neighbours (down, then up)."""
    if len(layers) < 2:
        return
    above: dict[str, list[str]] = {}
    below: dict[str, list[str]] = {}
    for up, down in edges:
        above.setdefault(down, []).append(up)
        below.setdefault(up, []).append(down)
    rank: dict[str, float] = {}
    for layer in layers:
        rank.update({n: float(i) for i, n in enumerate(layer)})
    for sweep in range(SWEEPS):
        near = above if sweep % 2 == 0 else below
        sequence = layers[1:] if sweep % 2 == 0 else layers[-2::-1]
        for layer in sequence:
            key = {}
            for name in layer:
                places = [rank[m] for m in near.get(name, ())]
                key[name] = (sum(places) / len(places) if places else rank[name], rank[name])
            layer.sort(key=key.__getitem__)
            rank.update({n: float(i) for i, n in enumerate(layer)})


def _width(text: str) -> float:
    """An upper estimate of ``text``'s width at 12 px (see :data:`_WIDTHS`); a character not
    in the table is as wide as the font's size, or wider when East Asian wide (or an emoji)."""
    return sum(
        _WIDTHS.get(c) or (15.0 if unicodedata.east_asian_width(c) in "WF" else 12.0) for c in text
    )


def _label(name: str) -> str:
    """``name``, or its longest beginning that fits :data:`LABEL_WIDTH` with an ellipsis."""
    if _width(name) <= LABEL_WIDTH:
        return name
    room, end = LABEL_WIDTH - _WIDTHS["…"], 0
    for c in name:
        room -= _width(c)
        if room < 0:
            break
        end += 1
    return name[:end] + "…"


def _safe(text: str) -> str:
    return escape(text) if any(c in text for c in "<>&\"'") else text


def to_svg(drawing: Layout, statuses: Mapping[str, str], *, href: str = "") -> str:
    """The drawing as an SVG element.

    Each node is a ``<rect class="n st-STATUS" data-node=NAME>``, its status's mark
    (:data:`STATUS_MARKS`, ``<text class="st">``) and its label, in an ``<a class="node">``
    labelled ``NAME: STATUS`` for screen readers: with ``href``, a link to the node's page
    (reached with Tab, opened with Enter; ``data-href`` on the rect too, for the page's
    script). All edges are one ``<path>``; nodes get a ``<title>`` only in graphs small enough
    for it to cost nothing. A graph of thousands of nodes stays a document drawn in a moment.
    """
    pad = 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" class="graph" '
        f'viewBox="{-pad} {-pad} {drawing.width + 2 * pad:.0f} {drawing.height + 2 * pad:.0f}" '
        f'data-width="{drawing.width:.0f}" data-height="{drawing.height:.0f}" '
        f"data-marks='{escape(json.dumps(STATUS_MARKS, ensure_ascii=False))}'>",
    ]
    half, pos = WIDTH / 2, drawing.positions
    curves = []
    for k, (up, down) in enumerate(drawing.edges):
        (x1, y1), (x2, y2) = pos[up], pos[down]
        x1, y1, x2 = x1 + half, y1 + HEIGHT, x2 + half
        if k in drawing.via:
            curves.append(path((x1, y1), corners(drawing.via[k], (x1, y1), (x2, y2)), (x2, y2)))
            continue
        mid = (y1 + y2) / 2
        curves.append(f"M{x1:.0f},{y1:.0f}C{x1:.0f},{mid:.0f} {x2:.0f},{mid:.0f} {x2:.0f},{y2:.0f}")
    parts.append(f'<path class="edges" d="{"".join(curves)}"/><g class="nodes">')
    titles = len(pos) <= TITLES
    for name, (x, y) in pos.items():
        status = _safe(statuses.get(name, "pending"))
        text = _safe(name)
        target = _safe(href + quote(name, safe="")) if href else ""
        link = f' data-href="{target}"' if href else ""
        title = f"<title>{text} ({status})</title>" if titles else ""
        mark = _safe(STATUS_MARKS.get(statuses.get(name, "pending"), "?"))
        opening = f'<a class="node" href="{target}"' if href else '<g class="node"'
        parts.append(
            f'{opening} aria-label="{text}: {status}">'
            f'<rect class="n st-{status}" data-node="{text}"{link} x="{x:.0f}" y="{y:.0f}" '
            f'width="{WIDTH}" height="{HEIGHT}" rx="6">{title}</rect>'
            f'<text class="st" x="{x + 11:.0f}" y="{y + HEIGHT / 2 + 4:.0f}">{mark}</text>'
            f'<text x="{x + LABEL_AT:.0f}" y="{y + HEIGHT / 2 + 4:.0f}">{_safe(_label(name))}</text>'
            + ("</a>" if href else "</g>")
        )
    parts.append("</g></svg>")
    return "".join(parts)
