"""How a run stops: fail-fast after a failure, and the nodes a stop leaves cancelled.

Fail-fast (the default, ``keep_going=False``): once a node failed, nothing new starts; tasks
submitted that did not start are dropped, and a node running in the scheduler's process (the
threads backend, ``on_driver``) makes no further retry (``Task.stop_retrying``,
``run/_retrying.py``); nor does one running out of process on a backend that carries the stop
to its tasks (``Backend.retry_stop``: processes, Dask, Celery, Spark). Running nodes finish their attempt.

When the run ends with nodes unfinished (fail-fast, Ctrl-C, SIGTERM), each is ``cancelled``; one
that was running keeps its key and start, and what its running attempt printed and logged so
far (``Task.printing``: where the worker leaves each attempt's capture while it runs in the
scheduler's process; filled from what a worker process passes on, run/_lost.py, on the process
backend): ``etherealfabric logs`` shows where a stopped training was.

:class:`Stopping` is a part of the :class:`~._scheduler.Scheduler` (a base class).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..plan._graph import Graph
from ..plan._keys import KeyInfo
from ..states import EventKind, NodeStatus
from ._context import DriverDispatch
from ._outcome import RunOutcome

__all__ = ["Stopping", "hold_interrupts", "release_interrupts"]

log = logging.getLogger("etherealfabric.run")

_UNFINISHED = frozenset((NodeStatus.PENDING, NodeStatus.RUNNING))  # what a run's end cancels


class Stopping:
    """Fail-fast, and the cancelled rows of what a stop left unfinished."""

    graph: Graph
    outcome: RunOutcome
    _dispatch: DriverDispatch
    _running: dict[str, KeyInfo]
    _futures: dict[str, Any]
    _unstarted: dict[str, Any]
    _stopping: bool

    def _emit(self, kind: EventKind, node: str | None = None, **data: Any) -> None:
        raise NotImplementedError  # (the scheduler's)

    def _init_stopping(self) -> None:
        self._stopping = False
        self._stop_retrying = threading.Event()  # given to the tasks run in this process
        self._retry_stop = self._dispatch.backend.retry_stop  # and the backend's to the others
        self._printing: dict[str, list[str]] = {}  # node -> its running attempt's capture

    def _fail_fast(self) -> None:
        """Start nothing more: drop what was submitted and did not start, stop retries here."""
        self._stopping = True
        self._stop_retrying.set()
        if self._retry_stop is not None:
            try:
                self._dispatch.backend.stop_retries()
            except Exception as exc:  # (a cluster gone: its retries go on, the run still stops)
                log.warning("could not stop the retries of the nodes running on %s: %s",
                            self._dispatch.backend.name, exc)  # fmt: skip
        for other in [n for n in self._running if n in self._futures]:
            spec = self.graph.specs[other]
            if self._dispatch.cancel(spec.on_driver, self._futures[other]):
                del self._futures[other]

    def _cancel_rest(self) -> None:
        """Every node not finished is ``cancelled`` (see the module docstring)."""
        status = self.outcome.status
        for name, was in status.items():
            if was not in _UNFINISHED:
                continue
            status[name] = NodeStatus.CANCELLED
            # running: submitted and not dropped before it started (its row keeps its start)
            if was is NodeStatus.RUNNING and name in self._futures and name not in self._unstarted:
                from ._capture import joined  # (not imported by a run that runs nothing)

                printed = joined(self._printing.get(name) or [])
                self._emit(EventKind.NODE_CANCELLED, name, running=True, output=printed)
            else:
                self._emit(EventKind.NODE_CANCELLED, name)


_held: list[Any] = []  # the SIGINT handler a stop put aside, while it holds Ctrl-C back


def hold_interrupts(exc: BaseException) -> None:
    """A run stopping on a Ctrl-C (``exc``: its nodes cancelled, its backend closed, its end
    recorded): a second Ctrl-C meanwhile is let pass, for it would cut that short (the end not
    recorded, the summary not printed); a third one stops at once. Main thread only, with
    Python's own handler in place (another one is its owner's to decide); other errors than a
    KeyboardInterrupt hold nothing; :func:`release_interrupts` ends it."""
    if not isinstance(exc, KeyboardInterrupt) or _held:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    import signal  # (only a run stopping on a Ctrl-C: not on every run's path)

    former = signal.getsignal(signal.SIGINT)
    if former is not signal.default_int_handler:
        return
    presses: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        presses.append(signum)
        if len(presses) >= 2:
            release_interrupts()
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    _held.append(former)


def release_interrupts() -> None:
    """Put back the SIGINT handler :func:`hold_interrupts` put aside."""
    if _held and threading.current_thread() is threading.main_thread():
        import signal

        signal.signal(signal.SIGINT, _held.pop())
