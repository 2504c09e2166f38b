"""When a node is started: at submission, or, queued behind busy workers, when it begins.

The scheduler keeps more tasks submitted than there are workers once tasks turn out short
(``Backend.in_flight``): those wait in the backend's queue. On a backend that reports starts
(``Backend.reports_starts``: threads, processes, Dask, Celery) a task submitted while every
worker is busy is ``queued``: its ``node_started`` event (the journal's running row, its
start) waits for its first attempt to begin, which the worker notes (``Task.on_start`` in this process, the
attempt's note over a worker process's channel: ``run/_lost.py``) through the completion
queue; a task that ends with no note (it failed before its first attempt) is started then, at
its first attempt's start. A node cancelled while queued never started. On Spark a node
is started when it is handed to the cluster (Dask: ``backends/_dask_notes.py``; Celery: its
task's STARTED state).

:class:`Starts` is a part of the :class:`~._scheduler.Scheduler` (a base class).
"""

from __future__ import annotations

import queue
import time
from typing import TYPE_CHECKING, Any

from ._events import EventBus
from ._outcome import RunOutcome

if TYPE_CHECKING:
    from ..backends import Backend
    from ._messages import TaskResult

__all__ = ["Starts"]


class Starts:
    """``node_started`` of the nodes that waited for a worker, when they begin."""

    bus: EventBus
    run_id: str
    backend: Backend
    _done: queue.SimpleQueue[Any]
    _dirty: bool
    _running: dict[str, Any]
    _maps: Any
    outcome: RunOutcome
    #: queued nodes not started yet: their node_started event's key, input bytes and extra
    _unstarted: dict[str, tuple[str, int, dict[str, Any]]]

    def _failed(self, name: str, result: TaskResult, info: Any = None) -> None:
        raise NotImplementedError  # (the scheduler's)

    def _fail_before_start(self, name: str, exc: BaseException) -> None:
        """A node that failed before it could start (its inputs, its task): failed, unstarted."""
        from ._messages import TaskResult

        self.outcome.unstarted.add(name)
        self._failed(name, TaskResult.failure(name, "", exc))

    def _queued(self, running: int) -> bool:
        """Whether a task submitted now, with ``running`` nodes out (and the maps' children),
        waits for a worker (asked only of a backend that reports starts)."""
        busy: int = running + self._maps.in_flight
        return busy >= (self.backend.max_workers or 1)

    def _start_note(self, name: str, ts: float) -> None:
        """``Task.on_start``, called in the worker's thread: hand the note to the loop."""
        self._done.put(((self._started_now, name, ts), None))

    def _started_now(self, name: str, ts: float) -> None:
        """A queued node began its first attempt (a note of :meth:`_start_note`): its
        ``node_started``, with when it began."""
        pending = self._unstarted.pop(name, None)
        if pending is not None:
            self._dirty = True
            self.bus.node_started(self.run_id, name, *pending, ts)

    def _started_by_end(self, name: str, result: TaskResult) -> None:
        """A queued node ended with no start noted (it failed before its first attempt)."""
        if name in self._unstarted:
            self._started_now(
                name, result.attempts[0].started_at if result.attempts else time.time()
            )
