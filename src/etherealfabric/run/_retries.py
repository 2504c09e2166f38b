"""``node_retrying``: an attempt failed and another follows, reported when it happens.

A worker retries a node itself (tenacity, ``run/_retrying.py``) and reports every attempt in the
node's result, from which the scheduler sends a ``node_retrying`` event per failed attempt once
the node ends: all that Dask and Celery let it know. A task run in the scheduler's process
(the threads backend, an ``on_driver`` node) is given :meth:`Retries._retry_note` as
``Task.on_retry``: the worker's thread calls it when an attempt failed and the next is about to
start (before the backoff). On the processes backend the worker reports it instead
(``report_progress``), and the pool's thread that feeds that worker passes it to the same
method (``run/_lost.py``: ``send``). The note goes through the completion queue, and the
scheduler's loop sends the event then (with the time of the failure), so the progress lines,
the log and the journal's events say so while the node is still retrying. The node's result
later reports only the attempts not reported yet.

:class:`Retries` is a part of the :class:`~._scheduler.Scheduler` (a base class).
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

from ..states import EventKind
from ._events import Event, EventBus

if TYPE_CHECKING:
    from ._messages import TaskResult

__all__ = ["Retries"]


class Retries:
    """Reports a node's failed attempts: as they happen when it can, else with its result."""

    bus: EventBus
    run_id: str
    _done: queue.SimpleQueue[Any]
    #: per node, the last attempt reported as it happened (made by the first report)
    _told: dict[str, int] | None = None

    def _retry_note(self, node: str, attempt: int, error: str | None, ts: float) -> None:
        """``Task.on_retry``, called in the worker's thread: hand the note to the loop."""
        self._done.put(((node, attempt, error, ts), None))

    def _retried_now(self, node: str, attempt: int, error: str | None, ts: float) -> None:
        """A note of :meth:`_retry_note`, in the scheduler's loop: the event, now."""
        if self._told is None:
            self._told = {}
        self._told[node] = attempt
        data = {"attempt": attempt, "error": error}
        self.bus.emit(Event(EventKind.NODE_RETRYING, self.run_id, node, data, ts))

    def _retried_late(self, node: str, result: TaskResult) -> None:
        """The node ended after several attempts: an event for each failed attempt but the
        last that was not reported as it happened."""
        told = self._told.pop(node, 0) if self._told else 0
        for attempt in result.attempts[:-1]:
            if attempt.number > told:
                data = {"attempt": attempt.number, "error": attempt.error}
                self.bus.emit(Event(EventKind.NODE_RETRYING, self.run_id, node, data))
