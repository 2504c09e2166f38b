"""The run-event stream: the scheduler emits, everything the user sees subscribes.

Events, in the order a run produces them:

=====================  =========================================================  ============
kind                   meaning                                                    ``data``
=====================  =========================================================  ============
``run_started``        a run began                                                workflow, nodes, backend
``node_cached``        a node's outputs were found in the cache; it won't run     key
``node_started``       a node was handed to the backend                           key
``node_retrying``      an attempt failed and another followed (sent with the result)  attempt, error
``node_succeeded``     a node ran and its outputs are stored                      key, duration, attempts
``node_failed``        a node failed for good                                     key, result
``node_fallback``      its ``on_error`` handler supplied fallback outputs         key, result
``node_skipped``       its handler (or an upstream one) said ``SKIP``             error or upstream
``node_upstream_failed``  a node cannot run because an input node failed          upstream
``node_cancelled``     a node was not run because the run stopped                 —
``run_finished``       the run ended                                              status, counts
=====================  =========================================================  ============

Subscribe with :meth:`EventBus.subscribe`; a subscriber that raises is logged and kept out of
the run's way (it never fails the run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EVENT_KINDS", "FINAL_STATUS", "Event", "EventBus", "Subscriber"]

log = logging.getLogger("etherealfabric.events")

EVENT_KINDS = (
    "run_started",
    "node_cached",
    "node_started",
    "node_retrying",
    "node_succeeded",
    "node_failed",
    "node_fallback",
    "node_skipped",
    "node_upstream_failed",
    "node_cancelled",
    "run_finished",
)


#: Event kinds that put a node in its final state for the run, and that state.
FINAL_STATUS = {
    "node_cached": "cached",
    "node_succeeded": "succeeded",
    "node_failed": "failed",
    "node_fallback": "fallback",
    "node_upstream_failed": "upstream_failed",
    "node_cancelled": "cancelled",
    "node_skipped": "skipped",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened in a run."""

    kind: str
    run_id: str
    node: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers each event to every subscriber, in the order they subscribed."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event: Event) -> None:
        """Deliver ``event``; a failing subscriber is logged, never raised."""
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", callback, event.kind)
