"""The Celery backend: nodes run on Celery workers fed through a broker (Redis).

The broker and result backend come from ``ETHEREALFABRIC_CELERY_BROKER_URL`` and
``ETHEREALFABRIC_CELERY_RESULT_BACKEND`` (or the ``broker_url=`` / ``result_backend=``
arguments). Workers are started with the project's own entry point, which builds the same app::

    python -m etherealfabric.backends._celery worker [--concurrency N] [--loglevel INFO]

One Celery task, ``etherealfabric.run_task``, carries ``cloudpickle.dumps((fn, task))`` and
returns the cloudpickled result, so nodes defined in ``__main__`` or in workflow files travel by
value. Messages use Celery's ``pickle`` serializer: the broker must be trusted, as with any
pickle transport. Tasks go to the ``etherealfabric`` queue, so other Celery apps on the same
broker never receive them. Once the recent tasks turn out to be short, the tasks sent at once
travel in groups (:mod:`._grouping`): one message of the task ``etherealfabric.run_group``
runs several nodes and returns each one's outcome, so the broker round trip is paid once per
group; a group that fails as a whole (its pool process died) is sent again node by node.

:meth:`CeleryBackend.submit` returns a :class:`concurrent.futures.Future`. One poller thread per
backend resolves them, and it alone talks to Celery (Celery gives each thread its own result
backend, and a Redis pub/sub connection is not thread-safe): it sends the queued tasks at once,
reads the result backend's notifications (Redis pub/sub) every 5 ms while tasks are out (every
50 ms when idle), and, as a safety net, asks the result backend for the state of the tasks
still pending once a second (every round for result backends without notifications). Reading the notifications matters: Redis
disconnects a subscriber that leaves them unread once its output buffer overflows.

Lost workers: tasks are acknowledged late and a task whose pool process dies is sent again by
the worker (``retry_on_worker_lost``, at most :data:`._celery_app.WORKER_LOST_RETRIES` times,
then it fails with ``WorkerLostError``). A task whose whole worker is gone is found by the
poller, and sent again or failed (:mod:`._celery_lost`). Every copy of a submission maps to
the same future: the first result settles it, the other copies are revoked and their results
ignored, so a node run twice is reported once.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

from ..config import ENV, strict_options
from ..errors import ConfigError, EtherealFabricError, ExecutionError
from ._base import Backend, Listening
from ._celery_app import (
    GROUP_TASK_NAME,
    QUEUE,
    TASK_NAME,
    celery_urls,
    check_reachable,
    main,
    make_app,
    run_task,
    safe_url,
)
from ._celery_conf import ResultsCheck
from ._celery_live import CeleryStop, LiveKey
from ._celery_lost import LostTasks, Submission, resolve_redispatch_seconds
from ._grouping import GroupPacing, outcome
from ._taskpickle import dumps_task

__all__ = ["QUEUE", "TASK_NAME", "CeleryBackend", "main", "make_app", "run_task"]

log = logging.getLogger("etherealfabric.backends.celery")
T = TypeVar("T")

POLL_SECONDS = 0.05
BUSY_POLL_SECONDS = 0.005
SWEEP_SECONDS = 1.0
PROBE_SECONDS = 1.0
DEFAULT_WORKERS = 4
MAX_DRAIN_ROUNDS = 20
WARN_EVERY_SECONDS = 30.0
#: close() stops waiting for a poller whose round has taken this long (every network call it
#: makes is bounded far below: ``._celery_app.SOCKET_SECONDS``)...
STUCK_SECONDS = 90.0
#: ... or, closing with ``cancel`` (Ctrl-C, SIGTERM), once it has waited this long in all
CANCEL_WAIT_SECONDS = 10.0


# -- the backend ------------------------------------------------------------------------------
class CeleryBackend(LostTasks, Backend):
    """Sends tasks to Celery workers; one poller thread does all Celery I/O."""

    name = "celery"
    reports_starts = True  # a node sent alone begins at its task's STARTED state

    @strict_options
    def __init__(
        self,
        *,
        max_workers: int | None = None,
        broker_url: str | None = None,
        result_backend: str | None = None,
        redispatch_seconds: float | None = None,
    ) -> None:
        self.redispatch_seconds = resolve_redispatch_seconds(redispatch_seconds)
        if importlib.util.find_spec("celery") is None:
            make_app(broker_url, result_backend)  # raises the ConfigError that says what to install
        self._urls = celery_urls(broker_url, result_backend)  # missing or unusable URLs raise now
        self._app: Any = None
        self._app_lock = threading.Lock()
        self._no_worker_since: float | None = None  # since when no worker answers
        self._max_workers: int | None = None
        super().__init__(max_workers=max_workers)  # None: probed when first asked
        self._outbox: queue.SimpleQueue[Submission] = queue.SimpleQueue()
        self._pending: dict[str, Submission] = {}  # task id -> submission; the poller's own
        self._wake = threading.Event()
        self._closing = False
        self._cancel = False
        self._start_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._dead = ""  # why the poller thread died, once it has
        self._beat = time.monotonic()  # when the poller last began a round
        self._notifications = 0
        self._last_warning = ("", 0.0)
        self._pacing = GroupPacing()
        self._live = LiveKey()  # tasks of this run are skipped once it ended (._celery_live)
        self._check = ResultsCheck(lambda: self.app, self._urls[1], self._live)

    @property
    def app(self) -> Any:
        """The Celery app, built on first use: a fully cached run never contacts the broker."""
        with self._app_lock:
            if self._app is None:
                self._app = make_app(*self._urls)
            return self._app

    @property
    def max_workers(self) -> int | None:
        """The given ``max_workers``, else the workers' summed concurrency, asked on first use
        (once something is submitted: a fully cached run never waits for the probe)."""
        if self._max_workers is None:
            self._max_workers = self._probe_concurrency() or DEFAULT_WORKERS
        return self._max_workers

    @max_workers.setter
    def max_workers(self, value: int | None) -> None:
        self._max_workers = value

    @property
    def in_flight(self) -> int | None:
        """Tasks kept sent: enough that no worker waits for a round trip (:class:`Pacing`)."""
        return self._pacing.window(self.max_workers or DEFAULT_WORKERS)

    def _probe_concurrency(self) -> int | None:
        """The summed ``--concurrency`` of the workers that answer within a second."""
        check_reachable(self.app, self.app.backend)  # a server that is down: at once, named
        try:
            stats = self.app.control.inspect(timeout=PROBE_SECONDS).stats() or {}
        except Exception as exc:
            self.app.close()
            raise ConfigError(
                f"cannot reach the Celery broker {safe_url(self.app.conf.broker_url)} "
                f"({ENV['celery_broker_url']}): {exc}",
                setting=ENV["celery_broker_url"],
            ) from exc
        total = sum(int(s.get("pool", {}).get("max-concurrency", 0)) for s in stats.values())
        if not total:
            self._no_worker_since = time.monotonic()
            log.warning(
                "no Celery worker answered within %gs; nodes wait in the queue for one to start "
                "(etherealfabric celery-worker), and fail if none starts within %gs",
                PROBE_SECONDS,
                self.redispatch_seconds,
            )
        return total or None

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        """Queue ``fn(task)`` for the workers; the future resolves to its return value."""

        if self._closing:
            raise RuntimeError("this CeleryBackend is closed")
        future: Future[Any] = Listening()
        node = str(getattr(task, "node", getattr(fn, "__name__", "task")))
        try:
            payload = dumps_task((fn, task))
        except Exception as exc:  # reported as the node's failure, not the scheduler's
            future.set_exception(exc)
            return future
        self._outbox.put(Submission(node, future, payload))
        if self._dead:  # (set before the dying poller empties the outbox: nothing is missed)
            for sub in _emptied(self._outbox):
                sub.fail(self._dead)
            return future
        self._start_poller()
        self._wake.set()
        return future

    # -- the poller thread: it alone talks to Celery, whose result backend is per thread -------
    def _start_poller(self) -> None:
        with self._start_lock:
            if self._poller is None:
                self._beat = time.monotonic()
                self._poller = threading.Thread(
                    target=self._poll, name="etherealfabric-celery-poller", daemon=True
                )
                self._poller.start()

    def _poll(self) -> None:
        try:
            self._poll_rounds()
        except BaseException as exc:  # the poller is gone: nothing would settle a future
            why = " ".join(str(exc).split())  # (one line)
            self._dead = f"the Celery poller thread stopped: {type(exc).__name__}: {why}"
            if isinstance(exc, ConfigError):  # a server that is down (check_reachable)
                self._dead = why
            log.error("%s; failing the nodes sent or waiting to be sent", self._dead)
            for sub in {*self._pending.values(), *_emptied(self._outbox)}:
                sub.fail(self._dead)

    def _poll_rounds(self) -> None:
        results = self.app.backend  # Celery gives every thread its own result backend
        check_reachable(self.app, results)  # before the first send: a server that is down
        notified = bool(getattr(results, "is_async", False))
        last_sweep = time.monotonic()
        try:
            while True:
                # tasks out: look again soon (a result waits at most this long to be seen)
                self._wake.wait(BUSY_POLL_SECONDS if notified and self._pending else POLL_SECONDS)
                self._wake.clear()
                self._beat = time.monotonic()
                self._check.raise_found(self._pending, self._drop)  # (._celery_conf)
                sweep = not notified or time.monotonic() - last_sweep >= SWEEP_SECONDS
                try:
                    self._live.renew(results)  # first round: before the first task is sent
                    self._send()
                    if self._pending:  # (on a thread of its own: the first send is not delayed)
                        self._check.start(self._pending, self._wake.set)
                    if self._cancel:
                        self._revoke_pending()
                    if notified:
                        self._drain(results)
                    if sweep:
                        self._sweep()
                        last_sweep = time.monotonic()
                    self._watch()
                except Exception as exc:  # keep polling: the next round retries
                    self._warn(f"polling Celery failed: {type(exc).__name__}: {exc}")
                if self._closing and not self._pending and self._outbox.empty():
                    return
        finally:
            self._check.stop()
            self._live.end(results)  # what is still queued never runs
            if notified:
                with contextlib.suppress(Exception):
                    results.result_consumer.stop()

    def _warn(self, message: str) -> None:
        """Log ``message``, but a repeated one (a broker that is down) once in a while only."""
        now = time.monotonic()
        if message != self._last_warning[0] or now - self._last_warning[1] > WARN_EVERY_SECONDS:
            log.warning("%s", message)
            self._last_warning = (message, now)

    def _send(self) -> None:
        """Send what was submitted since the last round; short tasks in groups."""
        subs = []
        while True:
            try:
                subs.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        if self._cancel:
            for sub in subs:
                sub.future.cancel()
            return
        together = [sub for sub in subs if not sub.alone]
        for sub in subs:
            if sub.alone:
                self._dispatch(sub)
        for group in self._pacing.split(together, self._max_workers or DEFAULT_WORKERS):
            self._dispatch(group[0] if len(group) == 1 else self._group(group))

    def _group(self, members: list[Submission]) -> Submission:
        future: Future[Any] = Future()
        future.add_done_callback(functools.partial(self._fan_out, members))
        label = f"{members[0].node} (and {len(members) - 1} more)"
        payloads = [cast(bytes, m.payload) for m in members]  # members are single tasks
        return Submission(label, future, payloads, members=members)

    def _fan_out(self, members: list[Submission], future: Future[Any]) -> None:
        """A group's outcomes (or its failure, or cancellation) to its members' futures."""
        if future.cancelled():
            for member in members:
                member.future.cancel()
            return
        error = future.exception()
        for i, member in enumerate(members):
            if member.future.done():
                continue
            try:
                if error is not None:
                    raise error
                member.future.set_result(self._pacing.observe(outcome(future.result()[i])))
            except BaseException as exc:
                member.future.set_exception(exc)

    def _dispatch(self, sub: Submission) -> None:
        """Send a (new) copy of ``sub``; a first send that fails fails the node."""
        sub.deadline = time.monotonic() + self.redispatch_seconds
        try:
            name = GROUP_TASK_NAME if sub.members else TASK_NAME
            result = self.app.send_task(name, args=(sub.payload,), kwargs=self._live.task_kwargs)
        except Exception as exc:
            error = f"could not send it to the Celery broker {self._broker()}: "
            error += f"{type(exc).__name__}: {exc}"
            if sub.copies:  # a re-dispatch: the next look retries it
                self._warn(f"node {sub.node!r}: {error}")
            else:
                sub.fail(error)
            return
        sub.copies.append(result)
        self._pending[result.id] = sub
        result.then(self._on_ready, weak=False)

    def _broker(self) -> str:
        return safe_url(self.app.conf.broker_url)

    def _drain(self, results: Any) -> None:
        """Read the result notifications that arrived, until a round brings no result.

        ``drain_events`` reads one pub/sub message per call, and a task brings four (the
        subscription, STARTED, its result, the unsubscription): a round reads up to four per
        task, and stops once nothing is left (an empty call holds the GIL for ~25 us).
        """
        consumer = results.result_consumer
        consumer.on_message = self._count_notification
        for _ in range(MAX_DRAIN_ROUNDS):
            before = self._notifications
            for _ in range(4 * len(self._pending) + 4):
                if not _readable(consumer):
                    break
                consumer.drain_events(timeout=0)
            if self._notifications == before:
                return

    def _count_notification(self, meta: Any) -> None:
        self._notifications += 1
        if meta.get("status") == "STARTED":  # a node alone begins (a group's: at its end)
            sub = self._pending.get(str(meta.get("task_id")))
            if sub is not None and not sub.members and isinstance(sub.future, Listening):
                sub.future.noted(("attempt", 1, time.time()))

    def _sweep(self) -> None:
        """Ask the result backend about every pending task; ready ones fire ``_on_ready``."""
        for result in [sub.copies[-1] for sub in set(self._pending.values())]:
            result.ready()

    def _on_ready(self, result: Any) -> None:
        """Settle a submission with the first result of any of its copies."""
        sub = self._pending.get(result.id)
        if sub is None:
            return
        if result.state == "REVOKED" and result is not sub.copies[-1]:
            self._pending.pop(result.id)  # a copy we replaced: the newest one counts
            _forget(result)
            return
        self._drop(sub, keep=result)
        try:
            if sub.members and result.successful():
                sub.future.set_result(result.result)  # _fan_out settles the members
            elif result.successful():
                import cloudpickle

                sub.future.set_result(self._pacing.observe(cloudpickle.loads(result.result)))
            elif sub.members and not self._cancel:  # each alone: one fails, not its group
                log.warning(
                    "a Celery task of %d nodes failed (%s); sending them again one by one",
                    len(sub.members),
                    result.state,
                )
                for member in sub.members:
                    member.alone = True
                    self._outbox.put(member)
            else:
                sub.future.set_exception(_task_error(sub.node, result))
        except BaseException as exc:
            if not sub.future.done():
                sub.future.set_exception(exc)
        _forget(result)  # results are read once: free the result backend now

    def _drop(self, sub: Submission, keep: Any = None) -> None:
        """Stop following ``sub``; revoke its copies (but ``keep``): their results are unused."""
        for copy in sub.copies:
            self._pending.pop(copy.id, None)
        others = [copy for copy in sub.copies if copy is not keep]
        if not others:
            return
        try:
            self.app.control.revoke([copy.id for copy in others])
        except Exception as exc:
            log.warning("could not revoke %d Celery task(s): %s", len(others), exc)
        for copy in others:
            _forget(copy)

    def _revoke_pending(self) -> None:
        subs = set(self._pending.values())
        for sub in subs:
            self._drop(sub)
            sub.future.cancel()

    # -- shutting down -------------------------------------------------------------------------
    @property
    def retry_stop(self) -> CeleryStop:
        """The run's stop key (``._celery_live``), set by :meth:`stop_retries`."""
        return CeleryStop(self._live.stop_key)

    def stop_retries(self) -> None:
        """Have the poller set the run's stop key (it alone talks to Celery)."""
        self._live.stopping = True
        self._wake.set()

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the tasks sent (or, with ``cancel``, revoke them), then release the app."""
        self._cancel = self._cancel or cancel
        self._closing = True
        self._wake.set()
        with self._start_lock:
            poller, self._poller = self._poller, None
        if poller is not None:
            self._join(poller, cancel=self._cancel)
        if self._app is not None:
            self._app.close()

    def _join(self, poller: threading.Thread, *, cancel: bool) -> None:
        """Wait for the poller to end; never forever: a poller stuck in a network call that
        does not return is left behind (a daemon thread), with a warning, so that the run
        ends and Ctrl-C or SIGTERM stop it."""
        started = time.monotonic()
        while poller.is_alive():
            poller.join(0.1)
            now = time.monotonic()
            stuck = now - self._beat > STUCK_SECONDS
            if poller.is_alive() and (stuck or (cancel and now - started > CANCEL_WAIT_SECONDS)):
                log.warning(
                    "the Celery poller thread has not answered for %.0fs (broker %s); "
                    "leaving it behind",
                    now - self._beat,
                    self._broker(),
                )
                return


def _emptied(outbox: queue.SimpleQueue[Submission]) -> list[Submission]:
    """What ``outbox`` held (it is empty now)."""
    subs = []
    with contextlib.suppress(queue.Empty):
        while True:
            subs.append(outbox.get_nowait())
    return subs


def _readable(consumer: Any) -> bool:
    """Whether the result consumer has something to read (True when that cannot be told)."""
    connection = getattr(getattr(consumer, "_pubsub", None), "connection", None)
    if connection is None:
        return True
    try:
        return bool(connection.can_read(timeout=0))
    except Exception:
        return True


def _forget(result: Any) -> None:
    try:
        result.forget()
    except Exception as exc:
        log.debug("could not forget Celery result %s: %s", result.id, exc)


def _task_error(node: str, result: Any) -> ExecutionError:
    """The error of a task that failed at the Celery level (the worker crashed, or the payload)."""
    remote = result.result
    detail = (
        str(remote)
        if isinstance(remote, EtherealFabricError)
        else f"{type(remote).__name__}: {remote}"
    )
    error = ExecutionError(
        f"node {node!r}: its Celery task {result.id} failed ({result.state}): {detail}"
    )
    if isinstance(remote, BaseException):
        error.__cause__ = remote
    if result.traceback and hasattr(error, "add_note"):
        error.add_note(f"worker traceback:\n{result.traceback}")
    return error


if __name__ == "__main__":
    # run the module's importable copy, not this ``__main__`` one, so there is a single app
    from etherealfabric.backends._celery import main as _main

    sys.exit(_main())
