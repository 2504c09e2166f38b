"""A run's graph for the pages: its rows, its layout and its drawings, each kept while valid.

Three small caches (least recently used, a few entries each, shared by the server's threads):

- the graph rows (node → status and upstream nodes) per (run, version stamp): a finished run's
  are read once; a live run's are read again only when something was committed;
- the layout per *structure* (the nodes and their upstreams, not their statuses): a live run
  whose statuses change every second keeps its layout, so its page never waits for networkx
  again, and runs of the same workflow share one;
- the SVG per (run, version stamp, link prefix).

Nothing here reads the journal except through :mod:`._queries`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ..journal import Journal
from . import _queries as q
from ._layout import Layout, layout, to_svg

__all__ = ["Drawing", "Kept", "drawing", "stamp", "svg"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: (layout, statuses as the journal has them)
Drawing = tuple[Layout, dict[str, str]]


class Kept(OrderedDict[K, V]):
    """A tiny thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get_or(self, key: K, make: Callable[[], V]) -> V:
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()  # outside the lock: two threads may both make it, neither waits
        with self.lock:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


_ROWS: Kept[tuple[str, str], Drawing] = Kept(16)
_LAYOUTS: Kept[tuple[tuple[str, tuple[str, ...]], ...], Layout] = Kept(16)
_SVGS: Kept[tuple[str, str, str], str] = Kept(16)


def stamp(journal: Journal, run: dict[str, Any]) -> str:
    """The run's version stamp and its status as shown (which may be ``interrupted``)."""
    return f"{q.run_version(journal, run['id'])}:{run['status']}"


def drawing(journal: Journal, run: dict[str, Any]) -> Drawing:
    """The run's layout and its nodes' statuses (``run`` as :func:`q.effective` shows it)."""

    def make() -> Drawing:
        nodes = q.graph_rows(journal, run)
        upstreams = {name: node["ups"] for name, node in nodes.items()}
        shape = tuple(sorted((name, tuple(ups)) for name, ups in upstreams.items()))
        drawn = _LAYOUTS.get_or(shape, lambda: layout(upstreams))
        return drawn, {name: node["status"] for name, node in nodes.items()}

    return _ROWS.get_or((run["id"], stamp(journal, run)), make)


def svg(
    journal: Journal, run: dict[str, Any], statuses: dict[str, str], drawn: Layout, href: str
) -> str:
    """The SVG of a drawing with ``statuses`` (kept for the run's version stamp)."""
    key = (run["id"], stamp(journal, run), href)
    return _SVGS.get_or(key, lambda: to_svg(drawn, statuses, href=href))
