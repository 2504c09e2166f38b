"""The Celery backend: nodes run on Celery workers fed through a broker (Redis).

The broker and result backend come from ``ETHEREALFABRIC_CELERY_BROKER_URL`` and
``ETHEREALFABRIC_CELERY_RESULT_BACKEND`` (or the ``broker_url=`` / ``result_backend=``
arguments). Workers are started with the project's own entry point, which builds the same app::

    python -m etherealfabric.backends._celery worker [--concurrency N] [--loglevel INFO]

One Celery task, ``etherealfabric.run_task``, carries ``cloudpickle.dumps((fn, task))`` and
returns the cloudpickled result, so nodes defined in ``__main__`` or in workflow files travel by
value. Messages use Celery's ``pickle`` serializer: the broker must be trusted, as with any
pickle transport. Tasks go to the ``etherealfabric`` queue, so other Celery apps on the same
broker never receive them.

:meth:`CeleryBackend.submit` returns a :class:`concurrent.futures.Future`. One poller thread per
backend resolves them, and it alone talks to Celery (Celery gives each thread its own result
backend, and a Redis pub/sub connection is not thread-safe): it sends the queued tasks at once,
every 50 ms reads the result backend's notifications (Redis pub/sub), and, as a safety net,
asks the result backend for the state of the tasks still pending once a second (every 50 ms
for result backends without notifications). Reading the notifications matters: Redis
disconnects a subscriber that leaves them unread once its output buffer overflows.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import ENV, Settings, strict_options
from ..errors import ConfigError, EtherealFabricError, ExecutionError
from ._base import Backend, run_pickled

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["QUEUE", "TASK_NAME", "CeleryBackend", "main", "make_app", "run_task"]

log = logging.getLogger("etherealfabric.backends.celery")
T = TypeVar("T")

TASK_NAME = "etherealfabric.run_task"
QUEUE = "etherealfabric"
POLL_SECONDS = 0.05
SWEEP_SECONDS = 1.0
PROBE_SECONDS = 1.0
DEFAULT_WORKERS = 4
MAX_DRAIN_ROUNDS = 20
WARN_EVERY_SECONDS = 30.0
_IMPORT_HINT = (
    ". The node's code must be importable on the workers (install it there or put it on "
    "their PYTHONPATH), or be sent by value: cloudpickle.register_pickle_by_value(module)"
)


# -- the app and its task ---------------------------------------------------------------------
def celery_urls(
    broker_url: str | None = None, result_backend: str | None = None
) -> tuple[str, str]:
    """The broker and result-backend URLs: arguments, else environment; missing ones raise."""
    settings = Settings.resolve(celery_broker_url=broker_url, celery_result_backend=result_backend)
    for field, value in (
        ("celery_broker_url", settings.celery_broker_url),
        ("celery_result_backend", settings.celery_result_backend),
    ):
        if not value:
            what = "broker" if field == "celery_broker_url" else "result backend"
            raise ConfigError(
                f"the celery backend needs {ENV[field]}: set it to the URL of the Celery "
                f"{what} the workers use, e.g. redis://localhost:6379/0",
                setting=ENV[field],
            )
    return str(settings.celery_broker_url), str(settings.celery_result_backend)


def make_app(broker_url: str | None = None, result_backend: str | None = None) -> Celery:
    """The Celery app shared by the scheduler side and the workers."""
    try:
        from celery import Celery
    except ImportError as exc:
        raise ConfigError(
            f"the celery backend needs Celery ({exc}); install it with "
            "pip install 'etherealfabric[celery]'",
            setting=ENV["backend"],
        ) from exc
    broker, backend = celery_urls(broker_url, result_backend)
    app = Celery("etherealfabric", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_serializer="pickle",
        result_serializer="pickle",
        accept_content=["pickle"],
        result_accept_content=["pickle"],
        task_default_queue=QUEUE,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    app.task(name=TASK_NAME, resultrepr_maxsize=48)(run_task)  # workers log results: short
    return app


def run_task(payload: bytes) -> bytes:
    """The Celery task: run a cloudpickled ``(fn, task)`` and return the pickled result."""
    try:
        return run_pickled(payload)
    except Exception as exc:  # the payload did not load, or ``fn`` itself raised
        hint = _IMPORT_HINT if isinstance(exc, (ImportError, AttributeError)) else ""
        raise ExecutionError(
            f"on worker {socket.gethostname()} (pid {os.getpid()}): "
            f"{type(exc).__name__}: {exc}{hint}"
        ) from exc  # the chain shows in the worker traceback; only this error is pickled


def _safe_url(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


# -- the backend ------------------------------------------------------------------------------
class CeleryBackend(Backend):
    """Sends tasks to Celery workers; one poller thread does all Celery I/O."""

    name = "celery"

    @strict_options
    def __init__(
        self,
        *,
        max_workers: int | None = None,
        broker_url: str | None = None,
        result_backend: str | None = None,
    ) -> None:
        self.app = make_app(broker_url, result_backend)
        super().__init__(max_workers=max_workers or self._probe_concurrency() or DEFAULT_WORKERS)
        self._outbox: queue.SimpleQueue[tuple[bytes, Future[Any], str]] = queue.SimpleQueue()
        self._pending: dict[str, tuple[Any, Future[Any], str]] = {}  # the poller's own
        self._wake = threading.Event()
        self._closing = False
        self._cancel = False
        self._start_lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._notifications = 0
        self._last_warning = ("", 0.0)

    def _probe_concurrency(self) -> int | None:
        """The summed ``--concurrency`` of the workers that answer within a second."""
        try:
            stats = self.app.control.inspect(timeout=PROBE_SECONDS).stats() or {}
        except Exception as exc:
            self.app.close()
            raise ConfigError(
                f"cannot reach the Celery broker {_safe_url(self.app.conf.broker_url)}: {exc}",
                setting=ENV["celery_broker_url"],
            ) from exc
        total = sum(int(s.get("pool", {}).get("max-concurrency", 0)) for s in stats.values())
        if not total:
            log.warning(
                "no Celery worker answered within %gs; nodes wait in the queue until one starts "
                "(python -m etherealfabric.backends._celery worker)",
                PROBE_SECONDS,
            )
        return total or None

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        """Queue ``fn(task)`` for the workers; the future resolves to its return value."""
        import cloudpickle

        if self._closing:
            raise RuntimeError("this CeleryBackend is closed")
        future: Future[Any] = Future()
        node = str(getattr(task, "node", getattr(fn, "__name__", "task")))
        try:
            payload = cloudpickle.dumps((fn, task))
        except Exception as exc:  # reported as the node's failure, not the scheduler's
            future.set_exception(exc)
            return future
        self._outbox.put((payload, future, node))
        self._start_poller()
        self._wake.set()
        return future

    # -- the poller thread: it alone talks to Celery, whose result backend is per thread -------
    def _start_poller(self) -> None:
        with self._start_lock:
            if self._poller is None:
                self._poller = threading.Thread(
                    target=self._poll, name="etherealfabric-celery-poller", daemon=True
                )
                self._poller.start()

    def _poll(self) -> None:
        results = self.app.backend  # Celery gives every thread its own result backend
        notified = bool(getattr(results, "is_async", False))
        last_sweep = time.monotonic()
        try:
            while True:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                sweep = not notified or time.monotonic() - last_sweep >= SWEEP_SECONDS
                try:
                    self._send()
                    if self._cancel:
                        self._revoke_pending()
                    if notified:
                        self._drain(results)
                    if sweep:
                        self._sweep()
                        last_sweep = time.monotonic()
                except Exception as exc:  # keep polling: the next round retries
                    self._warn(f"polling Celery failed: {type(exc).__name__}: {exc}")
                if self._closing and not self._pending and self._outbox.empty():
                    return
        finally:
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
        while True:
            try:
                payload, future, node = self._outbox.get_nowait()
            except queue.Empty:
                return
            if self._cancel:
                future.cancel()
                continue
            try:
                result = self.app.send_task(TASK_NAME, args=(payload,))
            except Exception as exc:
                future.set_exception(
                    ExecutionError(
                        f"node {node!r}: could not send it to the Celery broker "
                        f"{_safe_url(self.app.conf.broker_url)}: {type(exc).__name__}: {exc}"
                    )
                )
                continue
            self._pending[result.id] = (result, future, node)
            result.then(self._on_ready, weak=False)

    def _drain(self, results: Any) -> None:
        """Read the result notifications that arrived, until a round brings no result.

        ``drain_events`` reads one pub/sub message per call, and a task brings three (the
        subscription, its result, the unsubscription), so a round reads three per pending task.
        """
        consumer = results.result_consumer
        consumer.on_message = self._count_notification
        for _ in range(MAX_DRAIN_ROUNDS):
            before = self._notifications
            for _ in range(3 * len(self._pending) + 3):
                consumer.drain_events(timeout=0)
            if self._notifications == before:
                return

    def _count_notification(self, meta: Any) -> None:
        self._notifications += 1

    def _sweep(self) -> None:
        """Ask the result backend about every pending task; ready ones fire ``_on_ready``."""
        for result, _future, _node in list(self._pending.values()):
            result.ready()

    def _on_ready(self, result: Any) -> None:
        """Resolve the future of a finished task."""
        entry = self._pending.pop(result.id, None)
        if entry is None:
            return
        _result, future, node = entry
        try:
            if result.successful():
                import cloudpickle

                future.set_result(cloudpickle.loads(result.result))
            else:
                future.set_exception(_task_error(node, result))
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
        _forget(result)  # results are read once: free the result backend now

    def _revoke_pending(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            self.app.control.revoke(list(pending))
        except Exception as exc:
            log.warning("could not revoke %d Celery task(s): %s", len(pending), exc)
        for result, future, _node in pending.values():
            future.cancel()
            _forget(result)

    # -- shutting down -------------------------------------------------------------------------
    def close(self, *, cancel: bool = False) -> None:
        """Wait for the tasks sent (or, with ``cancel``, revoke them), then release the app."""
        self._cancel = self._cancel or cancel
        self._closing = True
        self._wake.set()
        with self._start_lock:
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.join()
        self.app.close()


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


# -- the worker entry point -------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m etherealfabric.backends._celery worker [--concurrency N] [--loglevel L]``.

    Other options are passed to ``celery worker`` as they are (``--pool``, ``-Q``, ...).
    """
    parser = argparse.ArgumentParser(
        prog="python -m etherealfabric.backends._celery",
        description="Start a Celery worker that runs EtherealFabric nodes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="start a worker (other options go to Celery)")
    worker.add_argument("-c", "--concurrency", type=int, help="processes (default: CPUs)")
    worker.add_argument("-l", "--loglevel", help="default: ETHEREALFABRIC_LOG_LEVEL or INFO")
    worker.add_argument("--broker-url", help=f"default: {ENV['celery_broker_url']}")
    worker.add_argument("--result-backend", help=f"default: {ENV['celery_result_backend']}")
    args, extra = parser.parse_known_args(argv)
    try:
        app = make_app(args.broker_url, args.result_backend)
        level = args.loglevel or Settings.resolve().log_level
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    celery_argv = ["worker", f"--loglevel={level}", *extra]
    if args.concurrency:
        celery_argv.append(f"--concurrency={args.concurrency}")
    if not any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in extra):
        celery_argv.append(f"--hostname=etherealfabric-{os.getpid()}@%h")
    app.worker_main(celery_argv)
    return 0


if __name__ == "__main__":
    # run the module's importable copy, not this ``__main__`` one, so there is a single app
    from etherealfabric.backends._celery import main as _main

    sys.exit(_main())
