"""Capture what a node prints and logs, per attempt, without hiding it.

``sys.stdout`` and ``sys.stderr`` are process-wide, but nodes run in parallel threads, so the
streams are replaced (once, on first use) by routers that append each write to the buffer of
the attempt running in the current thread (a context variable) and pass it on to the original
stream: output still appears live. A root logging handler does the same for log records.
Output written below Python (C extensions, child processes) is not captured.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["MAX_CAPTURE", "capture"]

MAX_CAPTURE = 1024 * 1024  # characters kept per attempt: the last ones, if more

_buffer: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "etherealfabric_capture", default=None
)
_installed = False
_install_lock = threading.Lock()


class _Router(io.TextIOBase):
    """A text stream that copies writes into the current attempt's buffer."""

    def __init__(self, original: TextIO) -> None:
        super().__init__()
        self.original = original

    def write(self, text: str) -> int:
        buffer = _buffer.get()
        if buffer is not None:
            buffer.append(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")


class _LogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        buffer = _buffer.get()
        if buffer is not None:
            buffer.append(self.format(record) + "\n")


def _install() -> None:
    """Route the current streams (again, if someone replaced them) and add the log handler."""
    global _installed
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router) and _installed:
        return
    with _install_lock:
        if sys.stdout is not None and not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout)
        if sys.stderr is not None and not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr)
        if not _installed:
            handler = _LogHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
            _installed = True


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect this thread's prints and log records into the yielded list of chunks."""
    _install()
    chunks: list[str] = []
    token = _buffer.set(chunks)
    try:
        yield chunks
    finally:
        _buffer.reset(token)


def joined(chunks: list[str]) -> str | None:
    """The captured text (its last ``MAX_CAPTURE`` characters), or ``None`` when empty."""
    text = "".join(chunks)
    if not text:
        return None
    return text if len(text) <= MAX_CAPTURE else "[...]\n" + text[-MAX_CAPTURE:]
