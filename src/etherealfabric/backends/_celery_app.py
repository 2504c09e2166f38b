"""The Celery app both sides build: its settings, its one task, and the workers' entry point.

The scheduler side (:mod:`._celery`) and every worker call :func:`make_app` with the same URLs,
so they agree on the queue, the serializer and the lost-worker settings: tasks are acknowledged
late and rejected when their worker dies, so a killed worker's task is delivered again.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..config import ENV, Settings, parse_log_level
from ..errors import ConfigError
from ._base import run_pickled, worker_error
from ._celery_live import guarded, register_sees_command
from ._grouping import run_group

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "GROUP_TASK_NAME",
    "QUEUE",
    "TASK_NAME",
    "celery_urls",
    "check_urls",
    "main",
    "make_app",
    "run_task",
    "safe_url",
]

TASK_NAME = "etherealfabric.run_task"
#: several short nodes in one message (``backends/_grouping.py``)
GROUP_TASK_NAME = "etherealfabric.run_group"
QUEUE = "etherealfabric"
WORKER_LOST_RETRIES = 2
#: Redis redelivers an unacknowledged message after this long. The run re-dispatches lost
#: tasks itself, so a short one buys nothing and would give a node that runs longer to a
#: second worker while the first still runs it.
VISIBILITY_SECONDS = 12 * 3600


# -- the app and its task ---------------------------------------------------------------------
def celery_urls(
    broker_url: str | None = None, result_backend: str | None = None
) -> tuple[str, str]:
    """The broker and result-backend URLs: arguments, else environment; missing ones raise."""
    settings = Settings.resolve(celery_broker_url=broker_url, celery_result_backend=result_backend)
    for key, value in (
        ("celery_broker_url", settings.celery_broker_url),
        ("celery_result_backend", settings.celery_result_backend),
    ):
        if not value:
            what = "broker" if key == "celery_broker_url" else "result backend"
            raise ConfigError(
                f"the celery backend needs {ENV[key]}: set it to the URL of the Celery "
                f"{what} the workers use, e.g. redis://localhost:6379/0",
                setting=ENV[key],
            )
    broker, backend = str(settings.celery_broker_url), str(settings.celery_result_backend)
    check_urls(broker, backend)
    return broker, backend


#: how long the first node waits for the broker or result backend to answer (a host that drops
#: packets, a port that accepts the connection but never answers); a refused connection fails
#: at once. Also every connection's bound on its TCP connect and TLS handshake.
REACH_SECONDS = 5.0
#: the bound on one read or write of a connection to the broker or result backend once it is
#: open (a server that hung, or vanished without closing it): far above what a command takes.
#: No wait meant to block is affected: Celery and kombu read the broker's BRPOP (1 s) and the
#: result notifications with short timeouts of their own.
SOCKET_SECONDS = 30.0


def check_reachable(app: Any, results: Any) -> None:
    """Raise a ConfigError naming the setting if the broker or a Redis result backend
    (``results``, the calling thread's) does not answer: checked once, before the first task is
    sent, so that a server that is down fails the nodes at once with its URL and variable
    (Celery retried sending for ~20 s, then said "Retry limit exceeded while trying to
    reconnect to the Celery result store")."""
    checks: tuple[tuple[str, str, Any, Callable[[Any], None], Any], ...] = (
        ("celery_broker_url", "broker", app.conf.broker_url, _reach_broker, app),
        ("celery_result_backend", "result backend", app.conf.result_backend, _reach_results,
         results),
    )  # fmt: skip
    for key, what, url, reach, target in checks:
        try:
            reach(target)
        except Exception as exc:
            why = " ".join(str(exc).split())
            raise ConfigError(
                f"cannot reach the Celery {what} {safe_url(str(url))} ({ENV[key]}): "
                f"{type(exc).__name__}: {why}; is the server running, and is the URL right?",
                setting=ENV[key],
            ) from exc


def _reach_broker(app: Any) -> None:
    # the socket timeouts bound each attempt (kombu's Redis transport PINGs on connecting:
    # without them a silent peer held it forever); ``timeout`` bounds only the retry loop
    bounded = {"socket_timeout": REACH_SECONDS, "socket_connect_timeout": REACH_SECONDS}
    with app.connection_for_write(transport_options=bounded) as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, timeout=REACH_SECONDS
        )


def _reach_results(results: Any) -> None:
    """PING a Redis result backend on a connection of its own whose every step is bounded by
    :data:`REACH_SECONDS` (the backend's own waits :data:`SOCKET_SECONDS` per read)."""
    create = getattr(results, "_create_client", None)
    params = getattr(results, "connparams", None)
    if callable(create) and isinstance(params, dict):
        client = create(
            **{**params, "socket_timeout": REACH_SECONDS, "socket_connect_timeout": REACH_SECONDS}
        )
        try:
            client.ping()
        finally:
            client.close()
            client.connection_pool.disconnect()
        return
    client = getattr(results, "client", None)  # Redis result backends (others: no check)
    ping = getattr(client, "ping", None)
    if callable(ping):
        ping()


#: broker and result-backend schemes kombu and Celery have shipped for years (their alias
#: tables: ``kombu.transport.TRANSPORT_ALIASES``, ``celery.app.backends.BACKEND_ALIASES``)
COMMON_SCHEMES = (
    frozenset({"redis", "rediss", "amqp", "amqps", "pyamqp", "sentinel", "sqs", "memory"}),
    frozenset({"redis", "rediss", "rpc", "sentinel", "s3", "mongodb", "cache", "file"}),
)


def check_urls(broker: str, backend: str) -> None:
    """Raise a ConfigError naming the setting if Celery would not know what the URL names:
    looked up the way kombu and Celery do (a transport, a result backend), nothing connects.

    Without it a bad result backend killed the poller thread (the run waited forever) and a
    broker URL without ``transport://`` was taken by kombu for an AMQP host name. The usual
    schemes (:data:`COMMON_SCHEMES`) are known without importing Celery (about 0.2 s, which a
    fully cached run would pay for nothing); any other is looked up as Celery does.
    """
    if (
        all(
            "://" in url and url.partition("://")[0] in COMMON_SCHEMES[i]
            for i, url in enumerate((broker, backend))
        )
        and ";" not in broker
    ):
        return
    from celery.app.backends import by_url
    from celery.loaders.base import BaseLoader
    from kombu.connection import Connection
    from kombu.transport import resolve_transport

    def broker_ok(url: str) -> None:
        for part in url.split(";"):  # kombu's failover list
            if "://" not in part:
                raise ValueError("no transport://, kombu would take it for an AMQP host name")
            resolve_transport(Connection(part).transport_cls)  # type: ignore[no-untyped-call]

    for key, url, check in (
        ("celery_broker_url", broker, broker_ok),
        ("celery_result_backend", backend, lambda u: by_url(u, BaseLoader)),
    ):
        try:
            check(url)
        except Exception as exc:
            what = "broker" if key == "celery_broker_url" else "result backend"
            reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            known = _known_schemes(key == "celery_broker_url")
            scheme = url.partition("://")[0].lower() if "://" in url else ""
            if isinstance(exc, (KeyError, ImportError)) and scheme and scheme not in known:
                # kombu's "No such transport", Celery's "No module named 'rdis'": the scheme
                close = difflib.get_close_matches(scheme, known, n=1)
                reason = f"unknown scheme {scheme!r}" + (
                    f"; did you mean {close[0]}://?" if close else ""
                )
            raise ConfigError(
                f"{ENV[key]}={safe_url(url)!r} is not a Celery {what} URL ({reason}): set it "
                f"to the URL of the {what} the workers use, e.g. redis://localhost:6379/0 "
                f"(known schemes: {', '.join(known)})",
                setting=ENV[key],
            ) from exc


def _known_schemes(broker: bool) -> list[str]:
    """Every URL scheme kombu (a broker) or Celery (a result backend) knows."""
    from celery.app.backends import BACKEND_ALIASES
    from kombu.transport import TRANSPORT_ALIASES

    return sorted(
        {str(name).lower() for name in (TRANSPORT_ALIASES if broker else BACKEND_ALIASES)}
    )


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
        task_acks_late=True,  # a task whose worker dies is not lost with it
        task_reject_on_worker_lost=True,
        task_track_started=True,  # STARTED and not held by a live worker: lost
        broker_transport_options={
            "visibility_timeout": VISIBILITY_SECONDS,
            # a peer that accepts the connection and never answers: bounded, not forever
            "socket_connect_timeout": REACH_SECONDS,
            "socket_timeout": SOCKET_SECONDS,
        },
        redis_socket_connect_timeout=REACH_SECONDS,
        redis_socket_timeout=SOCKET_SECONDS,
    )
    # both skip a message whose run has ended (``._celery_live``): bound, to reach the backend
    app.task(
        name=TASK_NAME,
        bind=True,
        resultrepr_maxsize=48,  # workers log results: short
        retry_on_worker_lost=True,  # a dead pool process: run it again, then fail
        max_retries=WORKER_LOST_RETRIES,
        default_retry_delay=0,
    )(guarded(run_task))
    app.task(
        name=GROUP_TASK_NAME,
        bind=True,
        resultrepr_maxsize=48,
        retry_on_worker_lost=True,
        max_retries=WORKER_LOST_RETRIES,
        default_retry_delay=0,
    )(guarded(run_group))
    return app


def run_task(payload: bytes) -> bytes:
    """The Celery task: run a cloudpickled ``(fn, task)`` and return the pickled result."""
    try:
        return run_pickled(payload)
    except Exception as exc:  # the payload did not load, or ``fn`` itself raised
        # the chain shows in the worker traceback; only this error is pickled
        raise worker_error(exc) from exc


def safe_url(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


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
        level = (
            parse_log_level(args.loglevel, setting="--loglevel")
            if args.loglevel is not None and args.loglevel.strip()
            else Settings.resolve().log_level
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    celery_argv = ["worker", f"--loglevel={level}", *extra]
    if args.concurrency:
        celery_argv.append(f"--concurrency={args.concurrency}")
    if not any(a in ("-n", "--hostname") or a.startswith("--hostname=") for a in extra):
        celery_argv.append(f"--hostname=etherealfabric-{os.getpid()}@%h")
    register_sees_command()  # the driver asks whether it shares its result backend
    app.worker_main(celery_argv)
    return 0
