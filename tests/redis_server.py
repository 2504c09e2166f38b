"""A private ``redis-server`` for tests (imported, not run).

It listens on a free port of 127.0.0.1 and keeps nothing on disk, so tests never touch a shared
instance (such as the one on 6379) and leave nothing behind::

    server = start_redis(tmp_folder)
    try:
        use(server.url(0))
    finally:
        server.stop()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "RedisServer",
    "free_port",
    "private_redis",
    "redis_server_path",
    "silent_listener",
    "start_redis",
    "stop_process",
]

START_ATTEMPTS = 3


@dataclass
class RedisServer:
    """A running redis-server we started."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def ping(self) -> bool:
        return _ping(self.port)

    def stop(self, timeout: float = 5.0) -> None:
        stop_process(self.process, timeout)


def redis_server_path() -> str | None:
    """The redis-server executable, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[RedisServer]:
    """A test's own redis-server (a fixture's body), stopped at the end; the test is skipped
    where redis-server is not installed, and fails under CI, which must install it."""
    if redis_server_path() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; CI must install it (redis-server)")
        pytest.skip("redis-server is not installed")
    server = start_redis(folder)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port of 127.0.0.1 that accepts connections and never answers (another service's
    port, a hung server): yields the port; every connection is closed at the end."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listening socket closed: the end
            while True:
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes accept()
        server.close()
        thread.join(5)
        for conn in accepted:
            conn.close()


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(folder: Path, *, timeout: float = 15.0) -> RedisServer:
    """Start redis-server on a free port; return once it answers PING."""
    exe = redis_server_path()
    if exe is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "redis.log"
    for _ in range(START_ATTEMPTS):  # another process may take the port between bind and start
        port = free_port()
        process = subprocess.Popen(
            [
                exe,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
                *("--dir", str(folder), "--logfile", str(log)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if _ping(port):
                return RedisServer(port, process, log)
            time.sleep(0.05)
        stop_process(process)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"redis-server did not start; its log ends with:\n{tail}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate ``process``; kill it if it is still there after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
