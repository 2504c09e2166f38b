"""A node whose worker process died is retried like any other failure.

A node's retries run inside its worker (``run/_worker.py``), so a worker that dies (the
out-of-memory killer's SIGKILL) takes them with it: the process backend then fails the task with
a :class:`~etherealfabric.errors.WorkerDiedError` (``backends/_procpool.py``), which carries
what the task reported before it died: the start of each attempt, and the error of each one
that failed (``backends/_base.py: report_progress``). :func:`watch_deaths` turns those into
the node's attempts (the one that was running ends, as it did, when its process died, with the
death as its error and, as its output, what the worker passed on of what it printed: up to
the last quarter second, ``run/_capture.py``) and, while the node's retry policy allows
another attempt, sends the task again, numbered from there on (``Task.attempts_before``),
after the policy's backoff for that attempt (in a timer: no thread waits): a node that kills
its worker every time fails once its attempts are spent, like the Celery backend's lost
tasks, never loops. A lost attempt that is retried is told as a retry then
(``Task.on_retry``: its journal row), and the attempt sent again as it begins. The result the
node ends with carries every attempt, the lost ones first. A map's child whose worker died
(alone in its chunk: ``run/_mapping.py`` sends a failed chunk's children again one by one) is
retried the same way, under the map node's policy (:func:`lost_child`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any

from ..define._policies import RetryPolicy
from ..errors import WorkerDiedError
from ._capture import MAX_CAPTURE, joined
from ._messages import Attempt, OnRetry, OnStart, Task, TaskResult
from ._retrying import retryable
from ._worker import execute

if TYPE_CHECKING:
    from ._context import DriverDispatch
    from ._mapstate import Child

__all__ = ["backoff", "later", "lost_attempts", "lost_child", "send", "watch_deaths"]


def send(
    dispatch: DriverDispatch,
    on_driver: bool,
    task: Task,
    on_retry: OnRetry | None = None,
    printing: dict[str, list[str]] | None = None,
    on_start: OnStart | None = None,
) -> Any:
    """Submit a node's task to run (:func:`~._worker.execute`); one run out of process is sent
    again if its worker dies (:func:`watch_deaths`). ``on_retry``: ``Task.on_retry`` for a
    task run out of process, called as its worker retries it when the backend passes the
    task's notes on (processes: ``backends/_local.py``, ``listen``), else never; ``printing``:
    ``Task.printing``, filled from those notes with what its running attempt printed;
    ``on_start``: ``Task.on_start``, the same way (in this process: the task's own)."""
    if on_driver or dispatch.backend.in_process:  # (a thread cannot die alone)
        task.on_start = on_start
        return dispatch.submit(on_driver, execute, task)
    submit = functools.partial(dispatch.submit, False, execute)
    return watch_deaths(submit, task, on_retry, printing, on_start)


def watch_deaths(
    submit: Callable[[Task], Any],
    task: Task,
    on_retry: OnRetry | None = None,
    printing: dict[str, list[str]] | None = None,
    on_start: OnStart | None = None,
) -> Future[Any]:
    """``submit(task)``, sent again after a worker death while its retry policy allows."""
    return _Watched(submit, task, on_retry, printing, on_start)


def _noted(
    on_retry: OnRetry | None,
    printing: dict[str, list[str]] | None,
    on_start: OnStart | None,
    node: str,
    note: Any,
) -> None:
    """A note a running task reported (``run/_worker.py``): a retry (with what the journal
    keeps of the failed attempt when a worker process sent it: its start, traceback and
    output) and a start are passed on, the start of an attempt after the first as a retry's
    next attempt beginning; what an attempt printed is kept in ``printing`` while it runs (its
    last ``MAX_CAPTURE`` characters, give or take), from its start on."""
    if not isinstance(note, tuple) or not note:
        return
    if note[0] == "retrying" and len(note) in (4, 7) and on_retry is not None:
        started, traceback, output = note[4:] if len(note) == 7 else (0.0, None, None)
        failed = Attempt(note[1], started, note[2], note[3], traceback, output)
        on_retry(node, failed)
    elif note[0] == "attempt" and len(note) == 3:
        if on_start is not None and isinstance(note[2], float):
            on_start(node, note[2])  # (the scheduler takes the first only)
        if on_retry is not None and isinstance(note[1], int) and note[1] > 1:
            on_retry(node, Attempt(note[1], note[2], 0.0))  # a retry (or a resend) begins
        if printing is not None:
            printing[node] = []
    elif printing is not None and note[0] == "printed" and len(note) == 2:
        chunks = printing.setdefault(node, [])
        chunks.append(str(note[1]))
        if len(chunks) > 64:  # joined every 64 chunks: linear however small the chunks
            chunks[:] = ["".join(chunks)[-MAX_CAPTURE:]]


class _Watched(Future[Any]):
    """The future of a node's task across the workers that ran it."""

    def __init__(
        self,
        submit: Callable[[Task], Any],
        task: Task,
        on_retry: OnRetry | None,
        printing: dict[str, list[str]] | None = None,
        on_start: OnStart | None = None,
    ) -> None:
        super().__init__()
        self._submit = submit
        self._on_retry = on_retry
        self._printing = printing
        self._on_start = on_start
        self._lost: list[Attempt] = []
        self._inner: Any = None
        self._send(task)

    def _send(self, task: Task) -> None:
        self._task = task
        self._inner = self._submit(task)
        listen = getattr(self._inner, "listen", None)
        noted = (self._on_retry, self._printing, self._on_start)
        if listen is not None and noted != (None, None, None):
            listen(functools.partial(_noted, *noted, task.node))
        self._inner.add_done_callback(self._resolve)

    def cancel(self) -> bool:
        """Cancel the task if it has not started (the backend's own future says)."""
        inner = self._inner
        if inner is None or not hasattr(inner, "cancel") or not inner.cancel():
            return False
        return super().cancel() or self.cancelled()

    def _resolve(self, inner: Any) -> None:
        printed = None  # (it ended: its result carries what it printed, or its death does)
        if self._printing is not None:
            printed = self._printing.pop(self._task.node, None)
        try:
            result = inner.result()
        except WorkerDiedError as exc:
            self._died(exc, joined(printed or []))
            return
        except CancelledError:
            super().cancel()
            return
        except BaseException as exc:
            self.set_exception(exc)
            return
        if self._lost and isinstance(result, TaskResult):
            result.attempts[:0] = self._lost
        self.set_result(result)

    def _died(self, exc: WorkerDiedError, printed: str | None = None) -> None:
        task = self._task
        attempts = lost_attempts(exc, task.attempts_before, printed)
        self._lost.extend(attempts)
        made = max([task.attempts_before, *(a.number for a in attempts)])
        policy = task.retry
        if policy is not None and made < policy.attempts and retryable(policy, exc):
            again = dataclasses.replace(task, attempts_before=made)
            if self._on_retry is not None:  # the attempt it died in failed: retried, now
                with contextlib.suppress(Exception):
                    self._on_retry(task.node, attempts[-1])

            def resend() -> None:
                try:
                    self._send(again)
                except Exception as error:  # the backend is closed, say
                    with contextlib.suppress(Exception):  # (or this was cancelled meanwhile)
                        self.set_exception(error)

            # after the policy's wait, as a retry in the worker would (a timer: the scheduler's
            # thread, or the pool's, is not held meanwhile)
            _after(backoff(policy, made), resend)
            return
        text = f"{type(exc).__name__}: {exc}"
        result = TaskResult(node=task.node, key=task.key, ok=False, pid=exc.pid)
        result.attempts = self._lost
        result.error, result.traceback, result.exception = text, text, exc
        self.set_result(result)


def lost_attempts(exc: WorkerDiedError, before: int, printed: str | None = None) -> list[Attempt]:
    """The attempts a task reported before its worker died (at least the one it died in,
    whose output is ``printed``: what the worker passed on of it until then)."""
    text = f"{type(exc).__name__}: {exc}"
    attempts: dict[int, Attempt] = {}
    for note in exc.notes:
        if note[0] == "attempt":
            attempts[note[1]] = Attempt(number=note[1], started_at=note[2], finished_at=0.0)
        elif note[0] == "failed" and note[1] in attempts:
            attempts[note[1]].finished_at, attempts[note[1]].error = note[2], note[3]
    if not attempts:  # it died before the node started (loading its inputs)
        attempts[before + 1] = Attempt(number=before + 1, started_at=exc.started_at, finished_at=0)
    for attempt in attempts.values():
        if not attempt.finished_at:  # the one that ran when its process died
            attempt.finished_at, attempt.error, attempt.traceback = exc.died_at, text, text
            attempt.output = printed
    return [attempts[n] for n in sorted(attempts)]


def lost_child(child: Child, policy: RetryPolicy | None, exc: BaseException) -> float | None:
    """A map's child whose chunk failed with ``exc`` (it ran alone in it). When its worker
    died, its lost attempts are kept on ``child`` (its result gets them, first) and, while
    ``policy`` allows another attempt, the seconds to wait before it is sent again (numbered
    from there on) are returned, as for a plain node; None: it failed."""
    if not isinstance(exc, WorkerDiedError):
        return None
    attempts = lost_attempts(exc, child.attempts_before)
    child.lost.extend(attempts)
    made = max([child.attempts_before, *(a.number for a in attempts)])
    if policy is not None and made < policy.attempts and retryable(policy, exc):
        child.attempts_before = made
        return backoff(policy, made)
    return None


def backoff(policy: RetryPolicy, made: int) -> float:
    """The wait after attempt ``made`` failed, as the worker's retries wait (``run/_worker.py``:
    tenacity's ``wait_exponential`` plus ``wait_random`` jitter)."""
    try:
        wait = policy.backoff * policy.multiplier ** max(0, made - 1)
    except OverflowError:
        wait = policy.max_backoff
    import random  # (only for a retried lost task: not on every run's import)

    return max(0.0, min(wait, policy.max_backoff)) + random.uniform(0, policy.jitter)


def _after(delay: float, fn: Callable[[], None]) -> None:
    if delay <= 0:
        fn()
        return
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()


def later(delay: float, submit: Callable[..., Any], *args: Any) -> Future[Any]:
    """A future of ``submit(*args)``'s, called ``delay`` seconds from now (in a timer)."""
    outer: Future[Any] = Future()

    def settle(inner: Any) -> None:
        try:
            outer.set_result(inner.result())
        except BaseException as exc:
            outer.set_exception(exc)

    def send() -> None:
        try:
            submit(*args).add_done_callback(settle)
        except BaseException as exc:  # the backend is closed, say
            outer.set_exception(exc)

    _after(delay, send)
    return outer
