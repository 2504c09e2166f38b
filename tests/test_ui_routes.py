"""The run page's graph draws no edge behind a box it does not connect (found by review: an
edge that skipped a layer, a -> c beside a -> b -> c, was drawn straight through b, so the graph
read a -> b -> c; in wrapped rows, edges ran behind the boxes of the rows between)."""

from __future__ import annotations

import random
import re

import pytest

from etherealfabric.ui._layout import HEIGHT, WIDTH, layout, to_svg

Point = tuple[float, float]


def _curves(svg: str) -> list[list[Point]]:
    """Each edge of the SVG as points along it (its path's lines and curves, sampled)."""
    data = svg.split('class="edges" d="')[1].split('"')[0]
    edges = []
    for part in re.findall(r"M[^M]+", data):
        points: list[Point] = []
        for command, args in re.findall(r"([MLCQ])([^MLCQ]+)", part):
            nums = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", args)]
            given = list(zip(nums[::2], nums[1::2], strict=True))
            if command in "ML":
                if points and command == "L":
                    (ax, ay), (bx, by) = points[-1], given[0]
                    points += [
                        (ax + (bx - ax) * t / 40, ay + (by - ay) * t / 40) for t in range(1, 41)
                    ]
                else:
                    points.append(given[0])
                continue
            p0, *rest = [points[-1], *given]
            for i in range(1, 41):
                t = i / 40
                if command == "Q":
                    (cx, cy), (ex, ey) = rest
                    x = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * cx + t * t * ex
                    y = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * cy + t * t * ey
                else:
                    (c1x, c1y), (c2x, c2y), (ex, ey) = rest
                    a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t**3
                    x = a * p0[0] + b * c1x + c * c2x + d * ex
                    y = a * p0[1] + b * c1y + c * c2y + d * ey
                points.append((x, y))
        edges.append(points)
    return edges


def _behind(upstreams: dict[str, list[str]]) -> list[str]:
    """Each edge that passes behind (through the inside of) a box it does not connect."""
    drawing = layout(upstreams)
    curves = _curves(to_svg(drawing, {}))
    assert len(curves) == len(drawing.edges)
    wrong = []
    for (up, down), points in zip(drawing.edges, curves, strict=True):
        xs, ys = [px for px, _ in points], [py for _, py in points]
        for name, (x, y) in drawing.positions.items():
            if (
                name in (up, down)
                or x > max(xs)
                or x + WIDTH < min(xs)
                or y > max(ys)
                or y + HEIGHT < min(ys)
            ):
                continue
            if any(x + 1 < px < x + WIDTH - 1 and y + 1 < py < y + HEIGHT - 1 for px, py in points):
                wrong.append(f"{up} -> {down} behind {name}")
    return wrong


def _fan(count: int) -> dict[str, list[str]]:
    """A fan-out that wraps onto several rows, and a fan-in of every 7th leaf."""
    leaves = [f"leaf{i:03d}" for i in range(count)]
    return {"root": [], **{leaf: ["root"] for leaf in leaves}, "sink": leaves[::7]}


def _random(count: int, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {
        f"n{i}": [f"n{rng.randrange(i)}" for _ in range(min(i, rng.randint(1, 3)))]
        for i in range(count)
    }


@pytest.mark.parametrize(
    "upstreams",
    [
        {"a": [], "b": ["a"], "c": ["a", "b"]},  # a -> c skips b's layer
        # the review's second graph: start -> nap_a -> nap_c; start -> nap_b; join(a, b, c)
        {"start": [], "a": ["start"], "b": ["start"], "c": ["a"], "join": ["a", "b", "c"]},
        {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(6)} | {"end": ["s0", "s2", "s5"]},
        _fan(100),  # rows of 40: the edges to the second and third rows cross the first
        _random(200, 1),
        _random(200, 2),
    ],
    ids=["skip", "sleepy", "chain", "wrapped-fan", "random1", "random2"],
)
def test_no_edge_is_drawn_behind_a_box_it_does_not_connect(upstreams: dict[str, list[str]]) -> None:
    assert _behind(upstreams) == []


def test_a_skipping_edge_is_routed_the_same_in_the_svg_and_the_compact_layout() -> None:
    """The canvas (the compact layout) draws the routes the SVG does: one computation."""
    drawing = layout({"a": [], "b": ["a"], "c": ["a", "b"]})
    k = drawing.edges.index(("a", "c"))
    above, lane, below = drawing.via[k]
    assert drawing.compact["via"] == [k, round(above), round(lane), round(below)]
    x, _ = drawing.positions["b"]
    assert not x <= lane <= x + WIDTH  # beside b, not through it
    assert drawing.to_dict()["edges"][k]["via"][1] == (lane, above)
    assert all(0 <= v <= drawing.width for v in drawing.compact["xy"][::2])
    assert 0 <= lane <= drawing.width
