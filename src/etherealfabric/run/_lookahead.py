"""Look ahead: the keys of the nodes that are ready are computed before they start, so that
their records are read together (``ArtifactCache.read_ahead``) instead of one node after the
other.

With the home's own store that is one query per 500 ready nodes instead of one each (a
fan-out over 10,000 items: 20 queries, not 10,000). With a shared store the records the
journal lacks are fetched from the store a few requests at a time (``ArtifactCache.prefetch``):
a new teammate's first run of a wide graph otherwise waits for a round trip per record and per
small output in sequence. The scheduler asks :meth:`LookAhead.pop` for a node's key when it
starts it (and computes it itself when there is none: a key that failed here fails again
there, reported); a node whose inputs are recomputed (``run/_rewind.py``) has its key
computed again (:meth:`LookAhead.forget`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from itertools import islice

from ..plan._keys import KeyInfo
from ._cache import ArtifactCache

__all__ = ["LookAhead"]

#: The ready nodes looked at ahead in one go.
AHEAD = 512


class LookAhead:
    """Keys of ready nodes computed ahead of their start, their records fetched at once."""

    def __init__(self, cache: ArtifactCache) -> None:
        self.cache = cache
        #: the keys computed ahead, by node (the scheduler looks here before calling fetch)
        self.known: dict[str, KeyInfo] = {}

    def fetch(self, ready: deque[str], key_of: Callable[[str], KeyInfo]) -> None:
        """Compute the keys of (up to :data:`AHEAD`) ready nodes and prefetch their records,
        when the next node to start has no key yet (called before each start: cheap then)."""
        if len(ready) < 2 or ready[0] in self.known:
            return  # the next node's key is known: the last batch is not used up yet
        new = []
        for name in islice(ready, AHEAD):
            if name in self.known:
                continue
            try:
                info = key_of(name)
            except Exception:  # the node's start computes it again and reports the error
                continue
            self.known[name] = info
            new.append(info.key)
        if len(new) > 1:
            self.cache.read_ahead(new)

    def forget(self, name: str) -> None:
        """Drop the key computed ahead for ``name`` (its inputs are being recomputed)."""
        self.known.pop(name, None)

    def pop(self, name: str) -> KeyInfo | None:
        """The key computed ahead for ``name`` (once), or None."""
        return self.known.pop(name, None)
