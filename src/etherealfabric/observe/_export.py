"""A workflow graph as text: Mermaid (``flowchart``) or Graphviz DOT.

Data edges are solid arrows, ordering edges (``add_dependency``) dashed. Given the statuses of
a run, each node is coloured by its status and the status is added to its label::

    etherealfabric graph flow.py --format dot --run 20261125-211530 | dot -Tsvg > flow.svg
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..plan._graph import Graph
from ..states import NodeStatus

__all__ = ["FORMATS", "STATUS_COLOURS", "render", "to_dot", "to_mermaid"]

#: status → (fill, stroke) colours.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    NodeStatus.SUCCEEDED: ("#c8e6c9", "#2e7d32"),  # green
    NodeStatus.CACHED: ("#cfd8dc", "#1565c0"),  # grey, blue border
    NodeStatus.FAILED: ("#ffcdd2", "#c62828"),  # red
    NodeStatus.UPSTREAM_FAILED: ("#ffe0b2", "#ef6c00"),  # orange
    NodeStatus.RUNNING: ("#fff9c4", "#f9a825"),  # yellow
    NodeStatus.RETRYING: ("#fff9c4", "#f9a825"),  # yellow
    NodeStatus.PENDING: ("#ffffff", "#9e9e9e"),  # white
    NodeStatus.CANCELLED: ("#eeeeee", "#616161"),  # light grey
    NodeStatus.INTERRUPTED: ("#e1bee7", "#6a1b9a"),  # purple
    NodeStatus.FALLBACK: (
        "#b2dfdb",
        "#00695c",
    ),  # teal: failed, an on_error handler supplied outputs
    NodeStatus.SKIPPED: ("#f5f5f5", "#9e9e9e"),  # near white
    NodeStatus.DRIFTED: ("#fff3e0", "#e65100"),  # amber: ran, an input changed, not cached
}


def _edges(graph: Graph) -> list[tuple[str, str, bool]]:
    """``(upstream, downstream, is_ordering_edge)`` in a stable order."""
    return [
        (up, name, (up, name) in graph.ordering_edges)
        for name in graph.order
        for up in graph.preds[name]
    ]


def _label(name: str, statuses: Mapping[str, str]) -> str:
    status = statuses.get(name)
    return f"{name} ({status})" if status else name


def to_mermaid(graph: Graph, statuses: Mapping[str, str] | None = None) -> str:
    """A Mermaid ``flowchart`` of ``graph``, coloured by ``statuses`` (node → status)."""
    statuses = statuses or {}
    ids = {name: f"n{i}" for i, name in enumerate(graph.order)}
    lines = ["flowchart TD"]
    for name in graph.order:
        lines.append(f'    {ids[name]}["{_mermaid_text(_label(name, statuses))}"]')
    for up, down, ordering in _edges(graph):
        lines.append(f"    {ids[up]} {'-.->' if ordering else '-->'} {ids[down]}")
    used = sorted({s for n, s in statuses.items() if n in ids and s in STATUS_COLOURS})
    for status in used:
        fill, stroke = STATUS_COLOURS[status]
        lines.append(f"    classDef {status} fill:{fill},stroke:{stroke},color:#000")
        members = ",".join(ids[n] for n in graph.order if statuses.get(n) == status)
        lines.append(f"    class {members} {status}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return (
        text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    )


def to_dot(graph: Graph, statuses: Mapping[str, str] | None = None) -> str:
    """A Graphviz ``digraph`` of ``graph``, coloured by ``statuses`` (node → status)."""
    statuses = statuses or {}
    lines = [
        f"digraph {_dot_id(graph.workflow)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
    ]
    for name in graph.order:
        attrs = [f"label={_dot_id(_label(name, statuses))}"]
        if statuses.get(name) in STATUS_COLOURS:
            fill, stroke = STATUS_COLOURS[statuses[name]]
            attrs += [f'fillcolor="{fill}"', f'color="{stroke}"']
        lines.append(f"    {_dot_id(name)} [{', '.join(attrs)}];")
    for up, down, ordering in _edges(graph):
        style = " [style=dashed]" if ordering else ""
        lines.append(f"    {_dot_id(up)} -> {_dot_id(down)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


FORMATS: dict[str, Callable[[Graph, Mapping[str, str] | None], str]] = {
    "mermaid": to_mermaid,
    "dot": to_dot,
}


def render(graph: Graph, fmt: str, statuses: Mapping[str, str] | None = None) -> str:
    """``graph`` in format ``fmt`` (``mermaid`` or ``dot``)."""
    try:
        return FORMATS[fmt](graph, statuses)
    except KeyError:
        raise ValueError(f"unknown graph format {fmt!r}; use one of {', '.join(FORMATS)}") from None
