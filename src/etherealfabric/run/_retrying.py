"""A node's attempts under its retry policy (tenacity), as the worker makes them.

An attempt that fails with a retryable error is followed by another after the policy's backoff;
each retry is told to the scheduler when it happens (``run/_retries.py``), with the failed
attempt's start, end, error, traceback and output (the journal keeps them at once): through
``Task.on_retry`` in the scheduler's process, else over the backend's progress channel
(processes; a Dask task of one node sends the error only). The attempt that follows is told
as it begins (``run/_worker.py``; a worker process's start note: ``run/_lost.py``). A
fail-fast stop (``Task.stop_retrying``, set when another node failed) also ends the retries:
no further attempt starts, a backoff under way is cut short, and the node fails with its last
error. In the scheduler's process (the threads backend, ``on_driver`` nodes) that is a
``threading.Event``; elsewhere the backend's
:class:`~etherealfabric.backends._base.RetryStop` (processes, Dask); on a backend without one
(Celery, Spark) a node goes on retrying until its policy gives up.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..backends._base import RetryStop, progress_listened, report_progress
from ..define._policies import RetryPolicy
from ..errors import OutputError, SerializationError
from ._messages import Attempt, Task
from ._redact import Redactor

__all__ = ["call_with_retries", "retryable"]


def call_with_retries(
    task: Task,
    attempt: Callable[[], Mapping[str, Any]],
    attempts: list[Attempt],
    redact: Redactor,
) -> Mapping[str, Any]:
    """``attempt()`` (which appends to ``attempts``) until it succeeds or the policy, or a
    fail-fast stop, says no more; the last error is raised."""
    policy = task.retry
    left = (policy.attempts if policy is not None else 1) - task.attempts_before
    if policy is None or left <= 1:
        return attempt()
    import tenacity as t

    stop, failed = task.stop_retrying, list[BaseException]()

    def before(state: t.RetryCallState) -> None:
        if stop is not None and stop.is_set() and failed:  # the run stops: no next attempt
            raise failed[-1]

    def before_sleep(state: t.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if error is not None:
            failed.append(error)
        _told(task, attempts, redact)

    retrying = t.Retrying(
        stop=t.stop_after_attempt(left),
        wait=t.wait_exponential(
            multiplier=policy.backoff, exp_base=policy.multiplier, max=policy.max_backoff
        )
        + t.wait_random(0, policy.jitter),
        retry=t.retry_if_exception(lambda e: retryable(policy, e)),
        reraise=True,
        before=before,
        before_sleep=before_sleep,
        sleep=t.nap.sleep if stop is None else functools.partial(_nap, stop),
    )
    return retrying(attempt)


def _nap(stop: RetryStop | threading.Event, seconds: float) -> None:
    """The backoff, cut short by a fail-fast stop."""
    stop.wait(seconds)


def _told(task: Task, attempts: list[Attempt], redact: Redactor) -> None:
    """Tell the scheduler that the last attempt failed and another follows, with what the
    journal keeps of it (its start, end, error, traceback and output): directly in its
    process, else through the backend when it passes a task's notes on (processes)."""
    last = attempts[-1]
    told = Attempt(
        number=last.number,
        started_at=last.started_at,
        finished_at=last.finished_at,
        error=redact.optional(last.error),
        traceback=redact.optional(last.traceback),
        output=redact.optional(last.output),
    )
    if task.on_retry is not None:
        task.on_retry(task.node, told)
        return
    note = ("retrying", told.number, told.finished_at, told.error)
    if progress_listened():  # a worker process: all of it, passed on and not kept (its
        # output may be long; a death's notes need only the attempts' starts and errors)
        report_progress((*note, told.started_at, told.traceback, told.output), keep=False)
    else:  # (a Dask task: its kept notes only travel, as events; the short one)
        report_progress(note)


def retryable(policy: RetryPolicy, exc: BaseException) -> bool:
    """Whether ``policy`` retries ``exc`` (a bad output or an unserializable value: never)."""
    return not isinstance(exc, (OutputError, SerializationError)) and policy.should_retry(exc)
