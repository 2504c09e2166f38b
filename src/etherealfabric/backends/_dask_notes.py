"""What a node sent alone to a Dask worker reports as it runs, back to the driver.

The process backend hands each note a running task reports (:func:`~._base.report_progress`:
an attempt's start, a retry) to its future's listener (``listen``, which ``run/_lost.py``
sets). On Dask, a Dask task that runs one node sends its kept notes as Dask events, under
:data:`TOPIC` with the Dask task's key (:func:`sink`); the driver's client is subscribed to
the topic, and each note reaches the listener of the future of that key (:class:`Notes`). So
a node that waits on the cluster behind busy workers is reported started when a worker begins
it, not when it is sent (``Backend.reports_starts``). A group of short nodes in one Dask
task sends nothing: each is started when it ends. A note that never arrives (an event lost,
the subscription not yet at the scheduler) only moves a node's start to its end.

One topic for every run: the scheduler keeps a bounded log per topic, and keys are unique, so
a driver ignores the notes of another's tasks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future
from typing import Any

from ._base import Listening

__all__ = ["TOPIC", "Notes", "sink"]

log = logging.getLogger("etherealfabric.backends.dask")

#: the Dask event topic of every run's notes
TOPIC = "etherealfabric-notes"


class Notes:
    """The driver's side: the futures expecting notes, by Dask key, and the subscription."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, Listening] = {}
        self._clients: set[str] = set()

    def subscribe(self, client: Any) -> None:
        """Have ``client`` pass the topic's events to :meth:`_on_event` (once per client)."""
        with self._lock:
            if client.id in self._clients:
                return
            self._clients.add(client.id)
        client.subscribe_topic(TOPIC, self._on_event)

    def expect(self, key: str, future: Future[Any]) -> None:
        """Pass the notes of the Dask task ``key`` to ``future``'s listener."""
        if isinstance(future, Listening):
            with self._lock:
                self._by_key[key] = future

    def forget(self, key: str) -> None:
        with self._lock:
            self._by_key.pop(key, None)

    def _on_event(self, event: Any) -> None:
        try:
            _, (key, note) = event
            with self._lock:
                future = self._by_key.get(key)
            if future is not None:
                future.noted(tuple(note))
        except Exception as exc:  # a stranger's event on the topic, or a listener's bug
            log.debug("a Dask note was not passed on: %r (%s)", event, exc)


def sink(note: Any, keep: bool) -> None:
    """On a worker, in the thread of a Dask task of one node: send a kept note to the driver."""
    if not keep:
        return
    from distributed import get_worker

    with contextlib.suppress(Exception):  # (the node goes on: its start is then its end)
        worker = get_worker()
        worker.log_event(TOPIC, [worker.get_current_task(), list(note)])
