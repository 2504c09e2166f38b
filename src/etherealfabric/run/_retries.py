"""``node_retrying``: an attempt failed and another follows, reported when it happens.

A worker retries a node itself (tenacity, ``run/_retrying.py``) and reports every attempt in the
node's result, from which the scheduler sends a ``node_retrying`` event per failed attempt once
the node ends: all that Celery and Spark let it know. A task run in the scheduler's process
(the threads backend, an ``on_driver`` node) is given :meth:`Retries._retry_note` as
``Task.on_retry``: the worker's thread calls it when an attempt failed and the next is about to
start (before the backoff), with the failed :class:`~._messages.Attempt` (its start, end, error,
traceback and output), and again as the next attempt begins. On the processes backend the
worker reports both instead (``report_progress``: a retry note, and the start note every
attempt sends), and the pool's thread that feeds that worker passes them to the same method
(``run/_lost.py``: ``send``), as it does the attempt a worker died in when the task is sent
again; on Dask a node sent alone reports them too, the failed attempt by its error only. The
notes go through the completion queue, and the scheduler's loop handles them then: the event
(with the time of the failure), the failed attempt's ``retrying`` row and the next attempt's
``running`` row (the recorder's ``attempt_failed`` and ``attempt_started``:
``run/_noderows.py``), both committed with the next group. So
the progress lines, the log, ``status``, ``show`` and ``logs`` say so while the node is still
retrying, and a run killed meanwhile keeps the failed attempts. The node's result later
reports only the attempts not reported yet (its rows replace those written meanwhile).

:class:`Retries` is a part of the :class:`~._scheduler.Scheduler` (a base class).
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, Any

from ..states import EventKind
from ._events import Event, EventBus

if TYPE_CHECKING:
    from ._messages import Attempt, TaskResult
    from ._recorder import JournalRecorder

__all__ = ["Retries"]


class Retries:
    """Reports a node's failed attempts: as they happen when it can, else with its result."""

    bus: EventBus
    run_id: str
    recorder: JournalRecorder
    _done: queue.SimpleQueue[Any]
    _dirty: bool
    #: per node, the last attempt reported as it happened (made by the first report)
    _told: dict[str, int] | None = None

    def _retry_note(self, node: str, attempt: Attempt) -> None:
        """``Task.on_retry``, called in the worker's thread: hand the note to the loop."""
        self._done.put(((self._retried_now, node, attempt), None))

    def _retried_now(self, node: str, attempt: Attempt) -> None:
        """A note of :meth:`_retry_note`, in the scheduler's loop: the event of an attempt
        that failed (once per attempt), or the row of the one that follows, now."""
        self._dirty = True
        if not attempt.finished_at:  # the next attempt begins (a node's: a map's child has no
            # row while it runs), its row now
            self.recorder.attempt_started(self.run_id, node, attempt.number, attempt.started_at)
            return
        if self._told is None:
            self._told = {}
        if attempt.number <= self._told.get(node, 0):
            return  # told already (a worker that died in the backoff that followed it)
        self._told[node] = attempt.number
        data = {"attempt": attempt.number, "error": attempt.error}
        self.bus.emit(Event(EventKind.NODE_RETRYING, self.run_id, node, data, attempt.finished_at))
        self.recorder.attempt_failed(self.run_id, node, attempt)  # (its row: a node's only)

    def _retried_late(self, node: str, result: TaskResult) -> None:
        """The node ended after several attempts: an event for each failed attempt but the
        last that was not reported as it happened."""
        told = self._told.pop(node, 0) if self._told else 0
        for attempt in result.attempts[:-1]:
            if attempt.number > told:
                data = {"attempt": attempt.number, "error": attempt.error}
                self.bus.emit(Event(EventKind.NODE_RETRYING, self.run_id, node, data))
