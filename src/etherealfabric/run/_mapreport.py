"""What a mapped node did with its items: :class:`MapReport` (``Results.map_report``).

Its own module: a run without mapped nodes never imports it (a dataclass costs the first run
of a process about a millisecond to build).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MapReport"]


@dataclass
class MapReport:
    """What a mapped node did with its items (``Results.map_report``).

    ``items`` counts the items of the input; ``children`` the distinct ones (equal items are
    one child, run once). ``executed`` and ``failed`` name the children that ran (``failed``
    with each error); ``whole`` says the map's collected outputs came from the cache in one
    lookup, without looking at its items at all.
    """

    node: str
    items: int = 0
    children: int = 0
    cached: int = 0
    executed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    fallback: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    collected: int = 0
    whole: bool = False
