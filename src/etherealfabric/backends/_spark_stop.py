"""Fail-fast for nodes running on Spark executors: a stop signal served by the driver.

Spark gives a task no channel back to the driver's Python (a broadcast is a snapshot, an
accumulator is write-only), so the backend serves its fail-fast signal itself: a small TCP
server in the driver process (:class:`StopServer`), on the address the executors reach the
driver by (loopback for a ``local`` master), tells whether the run stops. A task asks only
when a retry is due (``run/_retrying.py``); one waiting out a backoff holds its connection
open until the stop or the backoff's end. A task that cannot reach the server (a firewall
between the executors and the driver) retries as its policy says, as before.
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import threading
import time
from urllib.parse import urlsplit

__all__ = ["SparkStop", "StopServer", "driver_address"]

log = logging.getLogger("etherealfabric.backends.spark")

#: seconds a task waits to reach the driver's stop server before it goes on retrying
CONNECT_TIMEOUT = 5.0
#: the longest wait one connection holds (a longer backoff asks again)
LONGEST_WAIT = 3600.0


class SparkStop:
    """The backend's fail-fast signal as its tasks carry it (a
    :class:`~._base.RetryStop`): the address of the driver's :class:`StopServer`, filled in
    when the backend starts serving it (before the first task is pickled)."""

    def __init__(self) -> None:
        self.address: tuple[str, int] | None = None

    def is_set(self) -> bool:
        return bool(self._ask(0.0))

    def wait(self, timeout: float) -> bool:
        started = time.monotonic()
        answer = self._ask(max(0.0, min(timeout, LONGEST_WAIT)))
        if answer is None:  # out of reach: the backoff is slept here
            time.sleep(max(0.0, timeout - (time.monotonic() - started)))
            return False
        return answer

    def _ask(self, timeout: float) -> bool | None:
        """Whether the run stops, waiting up to ``timeout`` for it; None: no answer."""
        if self.address is None:
            return None
        try:
            with socket.create_connection(self.address, timeout=CONNECT_TIMEOUT) as conn:
                conn.settimeout(timeout + CONNECT_TIMEOUT)
                conn.sendall(f"{timeout:.3f}\n".encode())
                answer = conn.recv(1)
        except OSError:
            return None
        return {b"1": True, b"0": False}.get(answer)


class _Handler(socketserver.StreamRequestHandler):
    server: StopServer

    def handle(self) -> None:
        line = self.rfile.readline(64)
        try:
            timeout = min(max(float(line.decode("ascii")), 0.0), LONGEST_WAIT)
        except (UnicodeDecodeError, ValueError):  # not one of our tasks
            return
        self.wfile.write(b"1" if self.server.stopped.wait(timeout) else b"0")


class StopServer(socketserver.ThreadingTCPServer):
    """The driver's side: answers the tasks' :class:`SparkStop` until :meth:`close`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self.stopped = threading.Event()
        self._thread = threading.Thread(
            target=self.serve_forever, name="etherealfabric-spark-stop", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving; a task still waiting (none, unless the run was cancelled) stops too."""
        self.stopped.set()
        self.shutdown()
        self.server_close()
        self._thread.join()


def driver_address(master: str) -> str:
    """The address executors of ``master`` reach this process by: loopback for ``local``;
    else ``SPARK_LOCAL_IP``'s, or the interface that routes to the master's host."""
    if master.startswith("local"):
        return "127.0.0.1"
    if os.environ.get("SPARK_LOCAL_IP"):
        return os.environ["SPARK_LOCAL_IP"]
    parts = urlsplit(master.split(",")[0]) if "://" in master else None
    if parts is not None and parts.hostname:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((parts.hostname, parts.port or 7077))  # (no packet is sent)
                return str(probe.getsockname()[0])
        except OSError as exc:
            log.debug("no route to the Spark master %s: %s", master, exc)
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
