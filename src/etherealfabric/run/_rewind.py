"""Recovering from a missing or corrupt input: recompute its producer, the consumer waits.

If an input turns out missing or corrupt when a node needs it, the node that produced it is
recomputed (its cache entry is dropped first) and the consumer waits for it again. Several
consumers may find the same bad input at once: the first one's report rewinds the producer,
and a later report that predates the producer's new outputs (the consumer was submitted
before they existed) only sends that consumer back to wait, so the producer runs once more.

:class:`Rewinds` is a part of the :class:`~._scheduler.Scheduler` (a base class): it keeps
the rewind's clock, when each node was last submitted and last made outputs available.
"""

from __future__ import annotations

import logging
from collections import deque

from ..plan._graph import Graph
from ..states import NodeStatus
from ._cache import ArtifactCache
from ._lookahead import LookAhead
from ._outcome import RunOutcome

__all__ = ["MAX_REWINDS", "Rewinds"]

log = logging.getLogger("etherealfabric.scheduler")
MAX_REWINDS = 2


class Rewinds:
    """The scheduler's recovery from unusable inputs (see the module docstring)."""

    graph: Graph
    cache: ArtifactCache
    outcome: RunOutcome
    _waiting: dict[str, int]
    _ready: deque[str]
    _ahead: LookAhead

    def _init_rewinds(self) -> None:
        self._rewinds: dict[str, int] = {}
        # the rewind's clock: when each node was last submitted and last made outputs
        # available, and which producer made the digests a rewind dropped
        self._clock = 0
        self._submitted_at: dict[str, int] = {}
        self._produced_at: dict[str, int] = {}
        self._dropped: dict[str, str] = {}

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _rewind_input(self, consumer: str, digest: str | None, error: object) -> bool:
        """Recompute the nodes that produced ``digest`` (one, unless several upstream nodes
        made the same bytes: content addressed, one object; which of their records is bad the
        digest does not say, so each is recomputed); the consumer waits for them again."""
        rewound = [
            self._rewind_producer(consumer, producer, digest, error)
            for producer in self._producers_of(consumer, digest)
        ]
        return any(rewound)

    def _rewind_producer(
        self, consumer: str, producer: str, digest: str | None, error: object
    ) -> bool:
        """Recompute ``producer``, which made ``digest``; the consumer waits for it again.

        False if it was already rewound too often (or its recomputation failed): the
        consumer then fails. A consumer submitted before the producer's current outputs
        existed, or while the producer is being recomputed, read bytes that are already
        being replaced: it only waits (or, if they are there, runs again).
        """
        started = self._submitted_at.get(consumer, 0)
        if producer not in self.outcome.outputs or self._produced_at.get(producer, 0) > started:
            if self.outcome.status[producer] not in (NodeStatus.PENDING, NodeStatus.RUNNING) and (
                producer not in self.outcome.outputs
            ):
                return False  # the producer's recomputation failed or was skipped
            log.info("%s: input from %r is being recomputed; waiting for it", consumer, producer)
            self.outcome.status[consumer] = NodeStatus.PENDING
            if self._waiting[consumer] == 0:
                self._ready.append(consumer)
            return True
        if self._rewinds.get(producer, 0) >= MAX_REWINDS:
            return False
        self._rewinds[producer] = self._rewinds.get(producer, 0) + 1
        log.warning(
            "%s: input from %r is unusable (%s); recomputing %r",
            consumer,
            producer,
            error,
            producer,
        )
        outputs = self.outcome.outputs.pop(producer)
        self._dropped.update((out["digest"], producer) for out in outputs.values())
        self.cache.forget(self.outcome.keys.pop(producer, None), outputs)
        self.outcome.status[producer] = NodeStatus.PENDING
        self.outcome.status[consumer] = NodeStatus.PENDING
        for child in self.graph.succs[producer]:
            # every child waits for the producer again (its release counts down once more)
            self._waiting[child] += 1
            self._ahead.forget(child)  # its key, if computed ahead, used the dropped outputs
            if child in self._ready:
                self._ready.remove(child)
        self._ready.append(producer)
        return True

    def _rewind_inputs(self, consumer: str, digests: list[str], error: object) -> bool:
        """:meth:`_rewind_input` for each of the consumer's bad inputs at once; True when
        the consumer waits for at least one (a digest left over fails it when it runs
        again, if it is still bad then)."""
        said = str(error)  # the error of the first: the others get their own words
        rewound = [
            self._rewind_input(
                consumer,
                digest,
                error
                if not digest or digest in said
                else f"its object {digest} is damaged or missing too",
            )
            for digest in digests
        ]
        return any(rewound)

    def _producers_of(self, consumer: str, digest: str | None) -> list[str]:
        """The consumer's upstream nodes whose outputs hold ``digest`` (sorted: the same
        order whatever the hash seed), else the one a rewind dropped it from; [] if none."""
        upstream = self.graph.specs[consumer].upstream
        found = [
            up
            for up in sorted(upstream)
            if any(o["digest"] == digest for o in self.outcome.outputs.get(up, {}).values())
        ]
        dropped = self._dropped.get(digest or "")
        return found or ([dropped] if dropped in upstream else [])
