"""Capture what a node prints and logs, per attempt, without hiding it or leaving a trace.

``sys.stdout`` and ``sys.stderr`` are process-wide, but nodes run in parallel threads, so while
at least one attempt runs the streams are wrapped by routers that append each write to the
buffer of the attempt running in the current context (a context variable) and pass it on to
the stream they wrap: output still appears live. Log records are captured where they are made
(a wrapper around the log record factory), so no handler is added anywhere: the user's logging
prints exactly what it would print without us (``logging.lastResort`` included) and
``logging.basicConfig`` inside a node still works. A line a logging handler writes to a routed
stream is not captured a second time.

The first :func:`capture` entered installs the routers and the factory, the last one to exit
removes them and gives back what it found. A run on an in-process backend holds them for its
whole duration (:func:`held`), so that its nodes do not install and remove them one by one (a
few microseconds per node, most of a trivial node's capture cost); outside a node's context
they only pass writes and records on. Whatever someone else installed in between (pytest's
``capsys``, the user) is left in place; our wrappers inside it turn into plain pass-throughs.
An attempt abandoned on timeout on the thread backend keeps the routing installed until its
thread ends. Output written below Python (C extensions, child processes) is not captured.

``capture(redact=...)`` (the worker passes a :class:`~etherealfabric.run._redact.Redactor` when
the node has secret parameters) replaces secrets in what the attempt writes, both in the buffer
and on its way to the real stream, and in its log records before any handler formats them
(message and traceback text). A secret split across two writes is caught only in the buffer.

A child process killed at its node's timeout cannot hand its buffer back: it calls
:func:`tee_to` first, and every chunk its attempt captures is also passed to that sink (the
parent keeps them as they come, run/_timeouts.py). A worker process of the process backend
passes them on in batches (:func:`stream_printed`, at most every :data:`STREAM_SECONDS`), so
that a run stopped while the node runs keeps what it printed so far (run/_stopping.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["MAX_CAPTURE", "capture", "held", "joined", "stream_printed", "tee_to"]

MAX_CAPTURE = 1024 * 1024  # characters kept per attempt: the last ones, if more
#: how often a worker process passes on what its running attempt printed (:func:`stream_printed`)
STREAM_SECONDS = 0.25

_buffer: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "etherealfabric_capture", default=None
)
_redact: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar(
    "etherealfabric_redact", default=None
)
_FORMATTER = logging.Formatter()
_tee: Callable[[str], object] | None = None  # this process's sink of every captured chunk


def tee_to(sink: Callable[[str], object] | None) -> None:
    """Pass every chunk captured in this process from now on to ``sink`` too (or stop)."""
    global _tee
    _tee = sink


class _Stream:
    """A worker process's captured chunks, passed on to ``sink`` as ``("printed", text)``
    (not kept: ``sink(message, keep)``) every :data:`STREAM_SECONDS` by a daemon thread (one
    message for many writes)."""

    def __init__(self, sink: Callable[[Any, bool], object]) -> None:
        self._sink = sink
        self._lock = threading.Lock()  # held while sending: nothing overtakes a batch
        self._pending: list[str] = []
        self._thread: threading.Thread | None = None

    def add(self, chunk: str) -> None:
        with self._lock:
            self._pending.append(chunk)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="etherealfabric-printed", daemon=True
                )
                self._thread.start()

    def begin(self, note: Any) -> None:
        """A new attempt starts: send what the last one printed, then ``note`` (its start)."""
        with self._lock:
            self._send()
            self._sink(note, True)

    def _send(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            with contextlib.suppress(Exception):  # (the parent is gone: this one dies with it)
                self._sink(("printed", text), False)

    def _loop(self) -> None:
        while True:
            time.sleep(STREAM_SECONDS)
            with self._lock:
                self._send()


_stream: _Stream | None = None


def stream_printed(sink: Callable[[Any, bool], object], note: Any) -> None:
    """In a worker process whose parent listens (``sink``): send ``note`` (an attempt's start)
    after what the last attempt printed, and from now on pass what attempts print on to
    ``sink`` in batches."""
    global _stream
    if _stream is None:
        _stream = _Stream(sink)
        tee_to(_stream.add)
    _stream.begin(note)


class _Kept(list):  # type: ignore[type-arg]
    """An attempt's capture: the chunks it printed and logged, about the last
    ``2 * MAX_CAPTURE`` characters of them (a node printing gigabytes holds no more in
    memory); :attr:`dropped` counts what went (:func:`joined` says so)."""

    dropped = 0
    size = 0

    def append(self, chunk: str) -> None:
        super().append(chunk)
        self.size += len(chunk)
        if self.size > 2 * MAX_CAPTURE:
            text = "".join(self)
            self[:] = [text[-MAX_CAPTURE:]]
            self.dropped += len(text) - MAX_CAPTURE
            self.size = MAX_CAPTURE


class _Teed(_Kept):
    """A buffer that passes each chunk appended on to a sink as well."""

    def __init__(self, sink: Callable[[str], object]) -> None:
        super().__init__()
        self.sink = sink

    def append(self, chunk: str) -> None:
        super().append(chunk)
        with contextlib.suppress(Exception):  # (the parent is gone: this one dies with it)
            self.sink(chunk)


class _Router(io.TextIOBase):
    """A text stream that copies writes into the current attempt's buffer while active."""

    def __init__(self, original: TextIO) -> None:
        super().__init__()
        self.original = original
        self.active = True

    def write(self, text: str) -> int:
        if not self.active:
            return self.original.write(text)
        redact = _redact.get()
        shown = redact(text) if redact is not None and isinstance(text, str) else text
        buffer = _buffer.get()
        # a handler's line: its record was captured when it was made
        if buffer is not None and sys._getframe(1).f_globals.get("__name__") != "logging":
            buffer.append(shown)
        written = self.original.write(shown)
        return written if shown is text else len(text)

    def flush(self) -> None:
        self.original.flush()

    def close(self) -> None:
        """Dropping a router never flushes or closes the stream it wraps."""

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:  # buffer, errors, reconfigure, ...
        if name == "original":  # not set yet
            raise AttributeError(name)
        return getattr(self.original, name)


class _RecordCapture:
    """A log record factory that copies each record made in an attempt into its buffer."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous
        self.active = True

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        if self.active:
            redact = _redact.get()
            if redact is not None:
                _redact_record(record, redact)
            buffer = _buffer.get()
            if buffer is not None:
                buffer.append(_render(record))
        return record


def _redact_record(record: logging.LogRecord, redact: Callable[[str], str]) -> None:
    """Replace secrets in a record's message and traceback, before any handler formats it."""
    try:
        message = record.getMessage()
    except Exception:  # bad arguments: the handlers report them (with what was given)
        return
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and not record.exc_text:
        text = _FORMATTER.formatException(record.exc_info)
        clean = redact(text)
        if clean != text:
            record.exc_text = clean  # formatters use it instead of formatting exc_info


def _render(record: logging.LogRecord) -> str:
    """``LEVEL name: message`` and any traceback, leaving the record untouched for handlers."""
    try:
        message = record.getMessage()
    except Exception:  # the handlers report the bad arguments; keep what was given
        message = f"{record.msg!r} % {record.args!r}"
    lines = [f"{record.levelname} {record.name}: {message}"]
    if record.exc_text:
        lines.append(record.exc_text)
    elif record.exc_info:
        lines.append(_FORMATTER.formatException(record.exc_info))
    if record.stack_info:
        lines.append(_FORMATTER.formatStack(record.stack_info))
    return "\n".join(lines) + "\n"


@dataclass(eq=False)
class _Installed:
    stdout: _Router | None
    stderr: _Router | None
    factory: _RecordCapture


_lock = threading.Lock()
_users = 0
_installed: _Installed | None = None


def _install() -> _Installed:
    out = _Router(sys.stdout) if sys.stdout is not None else None
    err = _Router(sys.stderr) if sys.stderr is not None else None
    factory = _RecordCapture(logging.getLogRecordFactory())
    if out is not None:
        sys.stdout = out
    if err is not None:
        sys.stderr = err
    logging.setLogRecordFactory(factory)
    return _Installed(out, err, factory)


def _uninstall(installed: _Installed) -> None:
    """Give back what we found, unless someone replaced it since: theirs stays."""
    out, err, factory = installed.stdout, installed.stderr, installed.factory
    if out is not None:
        out.active = False
        if sys.stdout is out:
            sys.stdout = out.original
    if err is not None:
        err.active = False
        if sys.stderr is err:
            sys.stderr = err.original
    factory.active = False
    if logging.getLogRecordFactory() is factory:
        logging.setLogRecordFactory(factory.previous)


def _acquire() -> None:
    global _users, _installed
    with _lock:
        if _users == 0:
            _installed = _install()
        _users += 1


def _release() -> None:
    global _users, _installed
    with _lock:
        _users -= 1
        if _users == 0 and _installed is not None:
            _uninstall(_installed)
            _installed = None


@contextmanager
def held() -> Iterator[None]:
    """Keep the routers installed for the duration (a run on an in-process backend)."""
    _acquire()
    try:
        yield
    finally:
        _release()


def capture(redact: Callable[[str], str] | None = None) -> _Capture:
    """Collect this context's prints and log records into the list of chunks the block gets.

    ``redact`` rewrites each write and log record of this context (secrets become ``***``).
    """
    return _Capture(redact)


class _Capture:
    """:func:`capture`'s block: a class, not a ``@contextmanager`` generator (one per node
    attempt; a generator costs about a microsecond more)."""

    __slots__ = ("_redact", "_tokens")

    def __init__(self, redact: Callable[[str], str] | None) -> None:
        self._redact = redact

    def __enter__(self) -> list[str]:
        _acquire()
        try:
            chunks: list[str] = _Kept() if _tee is None else _Teed(_tee)
            self._tokens = (_buffer.set(chunks), _redact.set(self._redact))
        except BaseException:
            _release()
            raise
        return chunks

    def __exit__(self, *exc: object) -> None:
        token, redacting = self._tokens
        try:
            _redact.reset(redacting)
            _buffer.reset(token)
        finally:
            _release()


def joined(chunks: list[str]) -> str | None:
    """The captured text (its last ``MAX_CAPTURE`` characters), or ``None`` when empty."""
    text = "".join(chunks)
    if not text:
        return None
    dropped = getattr(chunks, "dropped", 0)  # (a capture's: what it let go already)
    if len(text) <= MAX_CAPTURE and not dropped:
        return text
    kept = text[-MAX_CAPTURE:]
    cut = len(text) - len(kept) + dropped
    return (
        f"[... {cut:,} characters before these were not kept: the last {len(kept):,} are]\n{kept}"
    )
