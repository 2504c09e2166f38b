"""A Celery worker that stores results where this driver never reads them fails the run at once.

The driver and its workers each build the app from their own settings, so a worker started
with another ``ETHEREALFABRIC_CELERY_RESULT_BACKEND`` (another Redis database, another server)
runs the tasks and stores their results where the driver never looks: the run waited forever,
or re-dispatched its nodes until they failed as lost. :class:`ResultsCheck` asks, on a thread
of its own started once the first task is sent (never delaying it), the workers that consume
the queue for their settings (``inspect().conf()``: URL passwords masked) and compares their
``result_backend`` with the driver's, both masked the same way. Two URLs that differ may still
name one store (``localhost`` and ``127.0.0.1``, a host name and its address): a worker that
says it sees the run's live key (:mod:`._celery_live`) in its result backend (the command
:data:`._celery_live.SEES_COMMAND`, which the workers' entry point registers) shares the
driver's. Any other worker whose URL differs is a mismatch: the poller fails every node
sent or waiting with a :class:`~etherealfabric.errors.ConfigError` naming both URLs and the
setting. Workers that do not answer count for nothing; the check is repeated every
:data:`RECHECK_SECONDS` while tasks are out, for the workers that joined since.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sized
from typing import Any

from ..config import ENV
from ..errors import ConfigError
from ._celery_app import QUEUE, safe_url
from ._celery_live import SEES_COMMAND, LiveKey, _redis
from ._celery_lost import Submission

__all__ = ["RECHECK_SECONDS", "ResultsCheck"]

log = logging.getLogger("etherealfabric.backends.celery")

#: how long a broadcast to the workers waits for their replies
REPLY_SECONDS = 1.0
#: how often the workers that joined since are checked, while tasks are out
RECHECK_SECONDS = 5.0


class ResultsCheck:
    """The driver's side: checks the workers' result backends on a thread of its own."""

    def __init__(self, app: Callable[[], Any], url: str, live: LiveKey) -> None:
        self._app = app  # the backend's lazily built app
        self._url = _masked(url)
        self._live = live
        self._checked: set[str] = set()  # workers found to share our result backend
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: why the run cannot go on (a worker stores results elsewhere), once found
        self.mismatch = ""

    def start(self, pending: Sized, found: Callable[[], None]) -> None:
        """Start checking (once), now and while ``pending`` holds tasks; ``found`` is called
        when a mismatch was found (:attr:`mismatch` says which)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run,
                args=(pending, found),
                name="etherealfabric-celery-conf-check",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def raise_found(
        self, pending: dict[str, Submission], drop: Callable[[Submission], None]
    ) -> None:
        """On the poller: once a mismatch was found, revoke the tasks out (``drop``), fail
        their nodes and raise it (the poller stops, failing the nodes waiting to be sent)."""
        if not self.mismatch:
            return
        for sub in set(pending.values()):
            drop(sub)
            sub.fail(self.mismatch)
        raise ConfigError(self.mismatch, setting=ENV["celery_result_backend"])

    def _run(self, pending: Sized, found: Callable[[], None]) -> None:
        wait = 0.0
        while not self._stop.wait(wait):
            wait = RECHECK_SECONDS
            if not len(pending):
                continue
            try:
                self.mismatch = self.check()
            except Exception as exc:  # cannot tell now: the next look asks again
                log.debug("could not check the Celery workers' result backend: %s", exc)
                continue
            if self.mismatch:
                found()
                return

    def check(self) -> str:
        """The mismatch of the workers consuming our queue not checked yet, else ``""``.

        Every broadcast goes over a connection of its own, publishing included: the app's pool
        is shared with the poller, and a broadcast holds two of its connections at once (one
        to read the replies, one to publish), so checks waiting on it could starve the poller.
        """
        if not self._url:
            return ""
        app = self._app()
        with app.connection_for_write() as connection:
            mailbox = app.control.mailbox(connection)  # a copy, bound to this connection
            mailbox._producer_pool = None  # publish on it too, not with a pooled producer
            return self._compare(app, mailbox)

    def _compare(self, app: Any, mailbox: Any) -> str:
        replies = _replies(mailbox.multi_call("active_queues", timeout=REPLY_SECONDS))
        hosts = sorted(
            h
            for h, queues in replies.items()
            if h not in self._checked
            and isinstance(queues, list)
            and any(isinstance(q, dict) and q.get("name") == QUEUE for q in queues)
        )
        if not hosts:
            return ""
        differ = {}
        for host, conf in _replies(mailbox.call(hosts, "conf", timeout=REPLY_SECONDS)).items():
            if not isinstance(conf, dict) or "error" in conf:
                continue  # it could not say: not a mismatch
            url = conf.get("result_backend")
            theirs = _masked(str(url)) if url else "nowhere (its result_backend is unset)"
            if theirs == self._url:
                self._checked.add(host)
            elif theirs:
                differ[host] = theirs
        if differ and self._live.task_kwargs:  # one store under two names: the live key
            sees = _replies(
                mailbox.call(
                    sorted(differ), SEES_COMMAND, {"key": self._live.key}, timeout=REPLY_SECONDS
                )
            )
            for host in list(differ):
                reply = sees.get(host)
                if reply is None:  # no reply: ask again next time
                    differ.pop(host)
                elif isinstance(reply, dict) and reply.get("sees") is True:
                    self._checked.add(host)
                    differ.pop(host)
        elif differ and _redis(app.backend) is not None:
            return ""  # the live key is not set yet: ask again next time
        if not differ:
            return ""
        host, theirs = sorted(differ.items())[0]
        more = f" (and {len(differ) - 1} other worker(s))" if len(differ) > 1 else ""
        return (
            f"the Celery worker {host}{more} stores results in {theirs} but this driver reads "
            f"them from {self._url}: start the worker with the same "
            f"{ENV['celery_result_backend']} as this driver"
        )


def _replies(replies: Any) -> dict[str, Any]:
    """``{host: reply}`` of a broadcast's list of ``{host: reply}``."""
    return {h: r for reply in replies or () if isinstance(reply, dict) for h, r in reply.items()}


def _masked(url: str) -> str:
    """``url`` with its password masked, ``""`` if it cannot be parsed (not compared then:
    a list of Sentinel URLs, which Celery cannot mask either)."""
    try:
        return safe_url(url)
    except ValueError:
        return ""
