"""Every request to an object store is bounded, writes too: a server that stops answering in the
middle of a write (a network cut during a checkpoint's upload) is a store that did not answer,
after the store's timeout plus the time to move the bytes at 256 KiB/s, never a run held for
good (nor its SIGTERM, which waits for a save in progress)."""

from __future__ import annotations

import contextlib
import http.server
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("s3fs")

from etherealfabric.errors import StoreUnreachableError
from etherealfabric.store import ObjectStore


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Takes any request, then answers a byte at a time, each in time for the read timeout."""

    def _trickle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.25)

    do_PUT = do_DELETE = do_POST = _trickle

    def do_HEAD(self) -> None:  # no such object yet: an upload follows
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # (a listing: nothing below the object's name either)
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
            b"<Name>bucket</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>"
            b"</ListBucketResult>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ObjectStore(
            "s3://bucket/prefix",
            storage_options={
                "endpoint_url": f"http://127.0.0.1:{server.server_address[1]}",
                "key": "x", "secret": "y",
            },
            timeout=2,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()


def _bounded(call: Callable[[], object]) -> None:
    """``call`` fails as a store that did not answer, in far less than the trickle's 250 s
    (run in a thread: a hang fails the test instead of holding it)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(60)
    assert outcome, "the request was still waiting after 60 s"
    assert isinstance(outcome[0], StoreUnreachableError), outcome[0]
    assert "did not answer" in str(outcome[0])
    assert time.monotonic() - started < 45


def test_a_write_to_a_store_that_stops_answering_ends(store: ObjectStore) -> None:
    _bounded(lambda: store.write_entry("checkpoints/ab/" + "ab" * 16, b"state"))


def test_an_upload_to_a_store_that_stops_answering_ends(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "object"
    path.write_bytes(b"x" * 1000)
    _bounded(lambda: store.put_file("objects/ab/" + "cd" * 16, str(path), 1000))


def test_a_delete_on_a_store_that_stops_answering_ends(store: ObjectStore) -> None:
    _bounded(lambda: store.delete_entry("checkpoints/ab/" + "ab" * 16))
