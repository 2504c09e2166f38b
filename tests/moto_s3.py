"""A moto S3 server whose conditional writes are atomic, as S3's are: ``python moto_s3.py PORT``.

moto checks ``If-None-Match: *`` and then stores the object, with other requests served by
other threads in between: two writers racing to create one key could both be told they
created it (a CI flake of ``test_team_cache``: one signer's record replaced by the other's).
Here each conditional request runs alone; the rest stay concurrent.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

_CONDITIONAL = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH")


class AtomicConditionalWrites:
    """WSGI middleware: one conditional request at a time, its whole response included."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not any(h in environ for h in _CONDITIONAL):
            return self.app(environ, start_response)
        with self.lock:
            return list(self.app(environ, start_response))


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))  # (as moto.server's main)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        host, port, AtomicConditionalWrites(app), threaded=True,
        request_handler=MotoRequestHandler,
    )  # fmt: skip


if __name__ == "__main__":
    main()
