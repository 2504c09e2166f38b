"""Lost Celery tasks: sent again when their worker is gone, failed when no worker is there.

Tasks are acknowledged late, so a task whose pool process dies is sent again by its worker
(``retry_on_worker_lost``). A task whose whole worker is gone is found by the backend's
poller (:meth:`LostTasks._watch`): a task that no worker consuming the queue holds
(``inspect().query_task``) for ``redispatch_seconds``
(``ETHEREALFABRIC_CELERY_REDISPATCH_SECONDS``), and that has started or is no longer queued,
is revoked and sent again with a new id, at most :data:`MAX_REDISPATCHES` times. With no
worker at all for that long, the node fails naming the broker. Every copy of a submission
maps to the same future: the first result settles it, the other copies are revoked.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..config import CELERY_REDISPATCH_ENV
from ..errors import ConfigError, ExecutionError
from ._celery_app import QUEUE

__all__ = [
    "MAX_REDISPATCHES",
    "REDISPATCH_SECONDS",
    "LostTasks",
    "Submission",
    "resolve_redispatch_seconds",
]

log = logging.getLogger("etherealfabric.backends.celery")

REDISPATCH_SECONDS = 60.0  # the default of ETHEREALFABRIC_CELERY_REDISPATCH_SECONDS
MAX_REDISPATCHES = 3
INSPECT_SECONDS = 1.0


def resolve_redispatch_seconds(
    value: float | None = None, env: Mapping[str, str] | None = None
) -> float:
    """The re-dispatch time: ``value``, else the environment, else :data:`REDISPATCH_SECONDS`."""
    setting = "redispatch_seconds"
    if value is None:
        text = (os.environ if env is None else env).get(CELERY_REDISPATCH_ENV, "").strip()
        if not text:
            return REDISPATCH_SECONDS
        value, setting = text, CELERY_REDISPATCH_ENV  # type: ignore[assignment]
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(
            f"{setting}={value!r} must be a number of seconds > 0, e.g. 60", setting=setting
        )
    return seconds


@dataclass(eq=False)
class Submission:
    """One submitted task, or a group of them, and the copies of it sent to Celery (newest
    last). A group's payload is its members' payloads, and its future (ours only) resolves
    to their outcomes, which :meth:`CeleryBackend._fan_out` hands to the members' futures."""

    node: str
    future: Future[Any]
    payload: bytes | list[bytes]
    members: list[Submission] = field(default_factory=list)  # a group's nodes
    alone: bool = False  # its group failed as a whole: it travels alone now
    copies: list[Any] = field(default_factory=list)  # AsyncResults
    deadline: float = 0.0  # look for it then, unless it finished
    misses: int = 0  # looks in a row that found no worker holding it
    redispatches: int = 0

    def fail(self, reason: str) -> None:
        """Fail the node, or each node of a group, with an error naming it."""
        for sub in self.members or [self]:
            if not sub.future.done():
                sub.future.set_exception(ExecutionError(f"node {sub.node!r}: {reason}"))
        if not self.future.done():  # a group's own future (its members are settled)
            self.future.set_exception(ExecutionError(f"nodes {self.node}: {reason}"))


class LostTasks:
    """The part of :class:`~._celery.CeleryBackend` that finds lost tasks (a mixin: it runs
    on the backend's poller thread, with the backend's state)."""

    app: Any
    redispatch_seconds: float
    _pending: dict[str, Submission]
    _no_worker_since: float | None

    def _dispatch(self, sub: Submission) -> None:
        raise NotImplementedError

    def _drop(self, sub: Submission, keep: Any = None) -> None:
        raise NotImplementedError

    def _broker(self) -> str:
        raise NotImplementedError

    def _watch(self) -> None:
        """Look at the tasks nobody vouched for within ``redispatch_seconds``."""
        now = time.monotonic()
        overdue = [sub for sub in set(self._pending.values()) if now >= sub.deadline]
        if not overdue:
            return
        for sub in overdue:
            sub.deadline = now + self.redispatch_seconds
        hosts, held = self._workers_holding([c.id for sub in overdue for c in sub.copies])
        now = time.monotonic()
        if hosts:
            self._no_worker_since = None
        elif self._no_worker_since is None:
            self._no_worker_since = now
        no_worker = self._no_worker_since is not None and (
            now - self._no_worker_since >= self.redispatch_seconds
        )
        queued: int | None = None
        for sub in overdue:
            if sub.future.done() or any(copy.id in held for copy in sub.copies):
                sub.misses = 0
                continue
            state = sub.copies[-1].state  # a finished one settles itself here
            if sub.future.done() or state in ("SUCCESS", "FAILURE", "REVOKED"):
                continue
            if not hosts:  # none, or none answered in time: never re-dispatch on that alone
                if no_worker:
                    self._give_up(
                        sub,
                        f"no Celery worker consumes the queue {QUEUE!r} on the broker "
                        f"{self._broker()} (none for {self.redispatch_seconds:g}s); start "
                        "one there: etherealfabric celery-worker",
                    )
                continue
            if state != "STARTED":  # PENDING or RETRY: it may wait behind other tasks
                queued = self._queued() if queued is None else queued
                if queued:
                    sub.misses = 0
                    continue
            sub.misses += 1
            if sub.misses >= 2:  # twice in a row: not a worker slow to answer
                sub.misses = 0
                self._redispatch(sub, state)

    def _workers_holding(self, ids: list[str]) -> tuple[list[str], set[str]]:
        """The workers that consume our queue, and which of ``ids`` they hold."""
        replies = self.app.control.inspect(timeout=INSPECT_SECONDS).active_queues() or {}
        hosts = [h for h, qs in replies.items() if any(q.get("name") == QUEUE for q in qs or ())]
        if not hosts:
            return [], set()
        inspect = self.app.control.inspect(
            destination=hosts, timeout=INSPECT_SECONDS, limit=len(hosts)
        )
        held = inspect.query_task(*ids) or {}
        if len(held) < len(hosts):  # a worker did not say what it holds: assume it holds all
            return hosts, set(ids)
        return hosts, {task_id for tasks in held.values() for task_id in tasks or {}}

    def _queued(self) -> int:
        """How many messages wait in our queue on the broker."""
        with self.app.connection_for_read() as conn:
            try:
                return int(conn.default_channel.queue_declare(QUEUE, passive=True).message_count)
            except conn.channel_errors:  # no such queue: nothing waits
                return 0

    def _redispatch(self, sub: Submission, state: str) -> None:
        if sub.redispatches >= MAX_REDISPATCHES:
            self._give_up(
                sub,
                f"its Celery task was lost {sub.redispatches + 1} times (its worker died or "
                "left); see the workers' logs: a node that takes its whole worker down, "
                "e.g. by running out of memory, needs more memory or fewer at once",
            )
            return
        sub.redispatches += 1
        lost = sub.copies[-1]
        log.warning(
            "node %r: no Celery worker holds its task %s (%s) any more (the worker was lost?); "
            "sent it again (%d of %d)",
            sub.node,
            lost.id,
            state,
            sub.redispatches,
            MAX_REDISPATCHES,
        )
        try:
            self.app.control.revoke([lost.id])  # a redelivery of it is then skipped
        except Exception as exc:
            log.warning("could not revoke Celery task %s: %s", lost.id, exc)
        self._dispatch(sub)

    def _give_up(self, sub: Submission, reason: str) -> None:
        self._drop(sub)
        sub.fail(reason)
