"""A run's "still live" key: tasks of a run that has ended are never run by a late worker.

A task message may wait in the broker longer than the run that sent it: no worker consumed
the queue and the run failed, the run was cancelled (Ctrl-C) or it stopped after another
node failed. Revoking it (``app.control.revoke``) reaches only the workers alive then: a
worker started later has not heard of it (unless every worker keeps a ``--statedb``), and
a fixed ``expires=`` would also drop the tasks of a long run. So each run has a key in the
(Redis) result backend, ``etherealfabric-live-<uuid>``, that the run's poller sets when it
first sends a task and sets again every :data:`RENEW_SECONDS` with a time to live of
:data:`LIVE_SECONDS` (so it also goes away when the run's process is killed), and deletes
when the run ends. Every task names the key (its ``live`` argument) and the worker looks it
up before running the node: when the key is gone, it skips the task, acknowledges the
message, removes what Celery recorded for it (the ``STARTED`` state) and records nothing
else (:class:`celery.exceptions.Ignore`). A node already running when the run ends finishes.
A live run whose key expired anyway (no renewal for a minute: Redis unreachable) sets it
again at its next renewal; a task skipped meanwhile looks lost to it and is sent again
(:mod:`._celery_lost`).

A fail-fast stop reaches the retries of the nodes running on workers the same way: the run
sets a second key, ``etherealfabric-stop-<uuid>`` (:meth:`LiveKey.stop`), and a task's retry
loop looks it up before each further attempt and while it waits out a backoff
(:class:`CeleryStop`, polled every :data:`STOP_POLL_SECONDS`).

One Redis command per run on the driver's critical path (the first set), then one every
:data:`RENEW_SECONDS` off it; one ``EXISTS`` per task message on the worker. Result backends
other than Redis keep no key: their tasks carry none and are only revoked.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    "LIVE_SECONDS",
    "RENEW_SECONDS",
    "SEES_COMMAND",
    "CeleryStop",
    "LiveKey",
    "guarded",
    "register_sees_command",
    "run_ended",
]

log = logging.getLogger("etherealfabric.backends.celery")

#: the key's time to live: a run whose process was killed stops counting as live after this
LIVE_SECONDS = 60
#: how often a live run sets its key again (well within :data:`LIVE_SECONDS`)
RENEW_SECONDS = 10.0
PREFIX = "etherealfabric-live-"
STOP_PREFIX = "etherealfabric-stop-"
#: how often a task waiting out a backoff looks for the run's stop key
STOP_POLL_SECONDS = 0.5
#: the stop key's time to live: longer than any backoff
STOP_SECONDS = 3600
#: the workers' remote command that says whether a key is in their result backend: the driver
#: asks whether they see its run's key, i.e. share its result backend (``._celery_conf``)
SEES_COMMAND = "etherealfabric_sees_key"


def _redis(results: Any) -> Any:
    """The Redis client of a Redis result backend, else ``None`` (no key is kept there)."""
    try:
        from celery.backends.redis import RedisBackend
    except ImportError:  # the redis package is missing: not a Redis result backend
        return None
    return results.client if isinstance(results, RedisBackend) else None


class LiveKey:
    """The driver's side: the run's key, kept by the backend's poller thread (which alone
    talks to Celery: :meth:`renew` each round, :meth:`end` when it stops)."""

    def __init__(self) -> None:
        self.key = PREFIX + uuid.uuid4().hex
        self.stop_key = STOP_PREFIX + self.key[len(PREFIX) :]
        self.stopping = False  # the run stops: set the stop key at the next round
        self._stopped = False
        #: the keyword arguments of every task sent: the key, once it was set
        self.task_kwargs: dict[str, str] = {}
        self._renew_at = 0.0

    def renew(self, results: Any) -> None:
        """Set the key with a fresh time to live, at most every :data:`RENEW_SECONDS` (and
        the stop key, once the run stops)."""
        if self.stopping and not self._stopped:
            self._stopped = True
            client = _redis(results)
            if client is not None:
                try:
                    client.set(self.stop_key, b"1", ex=STOP_SECONDS)
                except Exception as exc:
                    log.warning("could not set the run's stop key %s: %s (the retries of "
                                "the nodes running go on)", self.stop_key, exc)  # fmt: skip
        now = time.monotonic()
        if now < self._renew_at:
            return
        self._renew_at = now + RENEW_SECONDS
        client = _redis(results)
        if client is None:
            return
        try:
            client.set(self.key, b"1", ex=LIVE_SECONDS)
        except Exception as exc:  # tasks sent until it is set carry no key: they are run
            log.warning("could not set the run's key %s in the result backend: %s", self.key, exc)
            return
        self.task_kwargs = {"live": self.key}

    def end(self, results: Any) -> None:
        """Delete the key: the tasks still queued are skipped by any worker from now on."""
        client = _redis(results) if self.task_kwargs or self._stopped else None
        if client is None:
            return
        try:
            client.delete(self.key, self.stop_key)
        except Exception as exc:
            log.warning(
                "could not delete the run's key %s from the result backend (%s): tasks still "
                "queued may run until it expires, within %ds",
                self.key,
                exc,
                LIVE_SECONDS,
            )


class CeleryStop:
    """The run's stop key as its tasks carry it (a :class:`~._base.RetryStop`), looked up
    in the worker's result backend (none kept but in Redis: then never set)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def is_set(self) -> bool:
        try:
            from celery import current_app

            client = _redis(current_app.backend)
            return client is not None and bool(client.exists(self.key))
        except Exception:  # cannot tell: the retries go on
            return False

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if self.is_set():
                return True
            time.sleep(min(STOP_POLL_SECONDS, left))
        return self.is_set()


def run_ended(results: Any, key: str) -> bool:
    """On a worker: whether the run whose key is ``key`` has ended (its key is gone)."""
    client = _redis(results)
    if client is None:
        return False
    try:
        return not client.exists(key)
    except Exception as exc:  # cannot tell: run it, as a live run needs it
        log.warning("could not look up the run's key %s: %s; running the task", key, exc)
        return False


def guarded(run: Callable[[Any], Any]) -> Callable[..., Any]:
    """The body of a bound Celery task: ``run(payload)``, unless the run that sent the task
    has ended; then nothing runs and nothing is recorded."""

    def task(self: Any, payload: Any, live: str | None = None) -> Any:
        if live is not None and run_ended(self.backend, live):
            from celery.exceptions import Ignore

            log.warning(
                "skipped task %s: the run that sent it has ended (its key %s is gone)",
                self.request.id,
                live,
            )
            with contextlib.suppress(Exception):  # the STARTED state stored before the body
                self.backend.forget(self.request.id)
            raise Ignore()
        return run(payload)

    task.__name__ = getattr(run, "__name__", "task")
    task.__doc__ = run.__doc__
    return task


def register_sees_command() -> None:
    """Give this worker process the remote command :data:`SEES_COMMAND` (before it starts)."""
    from celery.worker.control import inspect_command

    inspect_command(name=SEES_COMMAND, args=[("key", str)], signature="<key>")(_sees_key)


def _sees_key(state: Any, key: str, **kwargs: Any) -> dict[str, bool | None]:
    """On a worker: whether its result backend holds ``key`` (``None``: not a Redis one)."""
    client = _redis(state.app.backend)
    return {"sees": None if client is None else bool(client.exists(key))}
