"""The scheduler's map machinery, imported only for a graph that has mapped nodes.

``run/_mapping.py`` and the modules under it (chunks, streams, map state, map keys) take
about 10 ms to import, a cost the first run of a process paid whether or not its workflow maps
anything: a twentieth of a millisecond per node of a 200-node run. A graph without a mapped
node gets :class:`NoMaps`, which answers the scheduler's questions about maps with "none".
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

from ..plan._graph import Graph

if TYPE_CHECKING:
    from ._mapping import Maps
    from ._mapstate import MapHost

__all__ = ["NoMaps", "maps_for"]

_map_of = attrgetter("map")


class NoMaps:
    """The map machinery of a graph without mapped nodes: idle, and never given work."""

    busy = False
    waiting = False
    in_flight = 0

    def pump(self) -> None:
        """Nothing to send."""

    def start(self, name: str, info: Any) -> None:
        raise RuntimeError(f"node {name!r} is mapped, but its graph was said to have no maps")

    def collect(self, token: Any, future: Any) -> None:
        raise RuntimeError("a map's chunk came back to a run without mapped nodes")


def maps_for(host: MapHost, graph: Graph) -> Maps | NoMaps:
    """:class:`~._mapping.Maps` for ``host`` if ``graph`` has a mapped node, else :class:`NoMaps`."""
    if not any(map(_map_of, graph.specs.values())):  # (a MapSpec is true; a C loop)
        return NoMaps()
    from ._mapping import Maps

    return Maps(host)
