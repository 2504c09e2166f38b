"""Keep secrets out of what a node run leaves behind: errors, tracebacks, captured output.

The worker knows the plain values of a task's :class:`~etherealfabric.define._secret.Secret`
parameters (it unwraps them for the node). A :class:`Redactor` made of them replaces every
occurrence of their text with ``***``: in what the node prints and logs while it runs (live and
captured, see :mod:`._capture`), and in the error, traceback and output of every attempt in the
:class:`~etherealfabric.run._messages.TaskResult`, before the result leaves the worker. The
exception object travels with the result (``on_error`` handlers and ``RunFailedError`` use it):
its string arguments are redacted in place.

Exact text only: the value as it is, and its escaped form inside a ``repr`` (``'a\\\\nb'``). A
secret that a node transforms (base64, reversed, sliced) before printing it is not recognised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..define._secret import MASK
from ..errors import ExecutionError

if TYPE_CHECKING:
    from ._messages import TaskResult

__all__ = ["Redactor"]

_CHAIN_DEPTH = 16


class Redactor:
    """Replaces the text of some secret values with ``***``; a no-op without secrets."""

    __slots__ = ("_texts",)

    def __init__(self, values: Iterable[str | bytes] = ()) -> None:
        if type(values) in (list, tuple) and not values:  # (most nodes: twice per node)
            self._texts: tuple[str, ...] = ()
            return
        texts: set[str] = set()
        for value in values:
            if isinstance(value, bytes):
                texts.add(repr(value)[2:-1])
                with contextlib.suppress(UnicodeDecodeError):
                    texts.add(value.decode("utf-8"))
            else:
                texts.add(value)
                texts.add(repr(value)[1:-1])
        # longest first: a secret that contains another is replaced whole
        self._texts = tuple(sorted((t for t in texts if t), key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._texts)

    @property
    def texts(self) -> tuple[str, ...]:
        """The texts replaced (the secrets' own and their reprs')."""
        return self._texts

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self._texts:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)

    def leaks(self, text: str) -> bool:
        """True if ``text`` holds a secret."""
        return any(secret in text for secret in self._texts)

    def exception(self, exc: BaseException) -> BaseException:
        """``exc`` with the string arguments of it and its causes redacted in place.

        Returns a plain :class:`ExecutionError` with the redacted message instead when the
        message still shows a secret (a ``__str__`` that does not come from ``args``).
        """
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen and len(seen) < _CHAIN_DEPTH:
            seen.add(id(current))
            try:
                current.args = tuple(self(a) if isinstance(a, str) else a for a in current.args)
                for name, value in list(vars(current).items()):
                    if isinstance(value, str):
                        setattr(current, name, self(value))
            except Exception:  # an exception type that refuses: caught by the check below
                pass
            current = current.__cause__ or current.__context__
        try:
            text = f"{exc}{exc!r}"
        except Exception:
            return ExecutionError(f"{type(exc).__name__} (its message could not be shown)")
        if self.leaks(text):
            return ExecutionError(self(f"{type(exc).__name__}: {exc}"))
        return exc

    def result(self, result: TaskResult) -> None:
        """Redact everything textual in ``result`` (errors, tracebacks, captured output)."""
        if not self:
            return
        result.error = self.optional(result.error)
        result.traceback = self.optional(result.traceback)
        if result.exception is not None:
            result.exception = self.exception(result.exception)
        for attempt in result.attempts:
            attempt.error = self.optional(attempt.error)
            attempt.traceback = self.optional(attempt.traceback)
            attempt.output = self.optional(attempt.output)
