"""A map over a map's result, started item by item: no barrier where none is needed.

In ``cube.map(square.map(items))`` each ``cube`` child needs one ``square`` child's output,
not the whole collection. So when a ``square`` child succeeds, its output is fed to ``cube``
at once: the ``cube`` child for that value is keyed (its key depends only on the value, not
on where it sits), looked up, and sent if missing, while ``square`` still runs. ``cube``
itself starts as usual once ``square`` is collected; it then adopts the children streamed
into it (done, or still out) and adds the rest, so nothing is computed twice and the
collection, the records and the journal are the same as without streaming.

Streaming applies when the downstream map maps over exactly one output of an upstream map of
a list (a dict's keys are only known with the collection), is not forced, and its other
inputs (broadcast arguments) are already known; otherwise it waits for the collection. Cached
children stream too, as soon as their map starts (when it has other children to run: else
its collection comes at once anyway), and down a chain of maps (``c.map(b.map(a.map(x)))``).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..plan._graph import InputRef
from ..plan._keys import KeyInfo
from ..plan._maps import map_keys
from ..states import NodeStatus
from ._mapstate import Child, MapHost, MapRun

__all__ = ["Streams"]


class MapsLike(Protocol):
    """What streaming uses of :class:`~._mapping.Maps`."""

    host: MapHost

    def add_children(
        self, run: MapRun, items: list[Any], labels: list[Any] | None = None, place: bool = False
    ) -> list[int]: ...
    def look_up(self, run: MapRun, new: list[int]) -> None: ...


class Streams:
    """The maps being streamed into before they start (a part of :class:`~._mapping.Maps`)."""

    def __init__(self, maps: MapsLike) -> None:
        self.maps = maps
        self.early: dict[str, MapRun] = {}
        self._followers: dict[str, list[tuple[str, str]]] = {}

    def followers(self, upstream: str) -> list[tuple[str, str]]:
        """The maps that map over one output of the map ``upstream``: (name, output)."""
        found = self._followers.get(upstream)
        if found is None:
            graph = self.maps.host.graph
            found = []
            for name in graph.succs.get(upstream, ()):
                spec = graph.specs[name]
                items = spec.params.get(spec.map.item_param) if spec.map is not None else None
                if isinstance(items, InputRef) and items.node == upstream:
                    found.append((name, items.output))
            self._followers[upstream] = found
        return found

    def feed(self, upstream: MapRun, children: list[Child]) -> None:
        """``children`` of ``upstream`` succeeded: start their items in the maps that follow."""
        if upstream.labels is not None or not children:
            return
        cache = self.maps.host.cache
        for name, output in self.followers(upstream.name):
            run = self.early.get(name) or self._open(name)
            if run is None:
                continue
            cache.prefetch_inline([c.outputs[output] for c in children if c.outputs])
            values = [cache.load(c.outputs[output]) for c in children if c.outputs]
            new = self.maps.add_children(run, values)
            self.maps.look_up(run, new)
            cached = [run.children[i] for i in new if run.children[i].status is NodeStatus.CACHED]
            self.feed(run, cached)  # and on down the chain

    def _open(self, name: str) -> MapRun | None:
        """A map to stream into, if it can be keyed now (else it waits for its start)."""
        host = self.maps.host
        spec = host.graph.specs[name]
        if host.outcome.status.get(name) is not NodeStatus.PENDING or name in host.policy.force:
            return None
        items = spec.params[spec.map.item_param] if spec.map is not None else None
        source = items.node if isinstance(items, InputRef) else None
        if any(up not in host.outcome.outputs for up in spec.upstream if up != source):
            return None  # a broadcast input is not known yet: the children cannot be keyed
        keys = map_keys(spec, host.outcome.outputs, file_cache=host.recorder, secrets=host.secrets)
        run = MapRun(name, KeyInfo("", spec, {}, {}), keys, started=False)
        self.early[name] = run
        return run

    def adopt(self, name: str, info: KeyInfo) -> MapRun | None:
        """The run streamed into for the map ``name``, now starting with its own key."""
        run = self.early.pop(name, None)
        if run is not None:
            run.info, run.started = info, True
        return run

    def sendable(self, run: MapRun) -> bool:
        """Whether a streamed-into map's children may still be sent (it has not ended)."""
        return self.maps.host.outcome.status.get(run.name) is NodeStatus.PENDING

    def settle(self, run: MapRun) -> None:
        """A streamed-into map whose node ended without starting (its upstream failed):
        forget it once nothing of it is out (what came back is in the cache)."""
        if not run.in_flight and not self.sendable(run):
            self.early.pop(run.name, None)
