"""Routes for the edges of a layered drawing that skip rows, so none passes behind a box.

An edge between adjacent rows is drawn as one curve through the free band between them. An
edge that spans more rows (it skips a layer, or its target is on a later row of a wrapped
layer) would cross the boxes in between, and a reader would take it for two edges through the
box it hides behind. Such an edge gets a route: down from its source into the band below the
source's row, along that band to a *lane* (an x free of boxes on every row between: a gap
between two boxes, or beside the rows), down the lane to the band above the target's row,
and along it to above the target. Bands and lanes hold no boxes, so neither does the route.

The lane is the free one nearest the middle of the edge's ends; edges that share a lane or a
band are spread a few units apart so they do not read as one. Rows are grouped into runs of
equal rows (a wrapped layer's full rows are alike), so a route costs the runs it crosses, not
its rows: linear in the edges for the usual graphs.
"""

from __future__ import annotations

import math

__all__ = ["RADIUS", "Route", "corners", "path", "routes"]

#: How far a lane keeps from a box, and the radius of a route's corners, in SVG units.
CLEAR, RADIUS = 3.0, 10.0

Point = tuple[float, float]
#: A route: down to the band at ``y_above`` (below the source's row), along it to the ``lane``,
#: down the lane to the band at ``y_below`` (above the target's row), along it, down.
Route = tuple[float, float, float]


def routes(
    rows: list[tuple[float, int, float]],
    row_of: dict[str, int],
    positions: dict[str, tuple[float, float]],
    edges: list[tuple[str, str]],
    box: tuple[float, float, float, float],
) -> dict[int, Route]:
    """The route of each edge that skips a row, by its index in ``edges``.

    ``rows`` are ``(y, count, left)`` for each row of boxes top to bottom (boxes at
    ``left + i * (width + gap_x)``); ``box`` is ``(width, height, gap_x, gap_y)``.
    """
    width, height, gap_x, gap_y = box
    pitch = width + gap_x
    runs: list[tuple[int, float]] = []
    run_of: list[int] = []
    for _, count, left in rows:
        if not runs or runs[-1] != (count, left):
            runs.append((count, left))
        run_of.append(len(runs) - 1)

    def free(x: float, first: int, last: int) -> bool:
        for count, left in runs[first : last + 1]:
            if left - CLEAR < x < left + (count - 1) * pitch + width + CLEAR:
                t = (x - left) % pitch
                if t < width + CLEAR or t > pitch - CLEAR:
                    return False
        return True

    sides: dict[tuple[int, int], tuple[float, float]] = {}
    used: dict[float, int] = {}
    found: dict[int, Route] = {}
    half = width / 2
    for k, (up, down) in enumerate(edges):
        ra, rb = row_of[up], row_of[down]
        if rb - ra <= 1:
            continue
        first, last = run_of[ra + 1], run_of[rb - 1]
        if (first, last) not in sides:
            lo = min(left for _, left in runs[first : last + 1])
            hi = max(left + (count - 1) * pitch + width for count, left in runs[first : last + 1])
            sides[first, last] = (lo - gap_x / 2, hi + gap_x / 2)
        left_side, right_side = sides[first, last]
        want = (positions[up][0] + positions[down][0]) / 2 + half
        if free(want, first, last):
            lane, spread = want, 0.0
        else:  # the gaps either side of it (in the first row between), else beside the rows
            count, left = runs[first]
            step = min(max(math.floor((want - left + gap_x / 2) / pitch), 0), count)
            before = left - gap_x / 2 + step * pitch
            after = before + pitch if step < count else before
            if want - before > after - want:
                before, after = after, before
            side = left_side if want - left_side < right_side - want else right_side
            lane, spread = side, (-1.0 if side == left_side else 1.0)
            for gap in (before, after):
                if abs(gap - want) < abs(side - want) and free(gap, first, last):
                    lane, spread = gap, 2.0
                    break
        n = used.get(lane, 0)
        used[lane] = n + 1
        if spread == 2.0:  # a gap between boxes: spread within it
            lane += (n % 5 - 2) * 3
        elif spread:  # beside the rows: spread outwards
            lane += spread * (n % 6) * 4
        shift = (n % 5 - 2) * 4
        found[k] = (rows[ra][0] + height + gap_y / 2 + shift, lane, rows[rb][0] - gap_y / 2 + shift)
    return found


def corners(route: Route, start: Point, end: Point) -> list[Point]:
    """The corners of a ``route`` ``(y_above, lane, y_below)`` from ``start`` to ``end``."""
    above, lane, below = route
    return [(start[0], above), (lane, above), (lane, below), (end[0], below)]


def path(start: Point, corners: list[Point], end: Point) -> str:
    """SVG path data through ``corners``: straight lines with rounded corners (quadratic
    curves of up to :data:`RADIUS`), the same the canvas draws (``static/graph.js``)."""
    points = [start]
    for p in [*corners, end]:
        if p != points[-1]:
            points.append(p)
    out = [f"M{start[0]:.0f},{start[1]:.0f}"]
    for i in range(1, len(points) - 1):
        (ax, ay), (bx, by), (cx, cy) = points[i - 1], points[i], points[i + 1]
        into, out_of = math.hypot(bx - ax, by - ay), math.hypot(cx - bx, cy - by)
        r = min(RADIUS, into / 2, out_of / 2)
        px, py = bx - (bx - ax) * r / into, by - (by - ay) * r / into
        qx, qy = bx + (cx - bx) * r / out_of, by + (cy - by) * r / out_of
        out.append(f"L{px:.0f},{py:.0f}Q{bx:.0f},{by:.0f} {qx:.0f},{qy:.0f}")
    out.append(f"L{end[0]:.0f},{end[1]:.0f}")
    return "".join(out)
