"""Short tasks travel together: several nodes in one task of the cluster.

A cluster charges each of its tasks a fixed cost that has nothing to do with the node: the
Dask scheduler assigns it, a worker reports it finished and the result is fetched; a Celery
message goes through Redis and back. On a small machine that is 2-5 ms per task, ten times
what the engine spends around a trivial node. So once the recent tasks turn out to be short
(:class:`~etherealfabric.backends._base.Pacing`), a remote backend sends the tasks that are
queued at once in groups: one cluster task runs a group's nodes one after another
(:func:`run_group`) and returns each node's own outcome (:func:`run_captured`), which settles
that node's own future. Tasks that take longer than :attr:`GroupPacing.group_seconds` / 2, and
every task before the first results are in, still travel alone.

What a group does not change: each node succeeds or fails on its own (its exception travels
as a value, :func:`outcome` raises it again on the driver), and its result is stored by the
worker and recorded by the run exactly as when it travels alone. What it does change: the
results of a group come back together, when its last node ends (a group is sized to run for
about :attr:`GroupPacing.group_seconds`), and a cluster-level failure of the task (its worker
died, Dask gave up on it) hits the whole group, so the backend then sends the group's nodes
again one by one, and only the node that really takes its worker down fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..errors import ExecutionError
from ..journal._history import median
from ._base import Pacing, portable_exception, run_pickled, worker_error

__all__ = ["GroupPacing", "outcome", "run_captured", "run_group", "settle"]

T = TypeVar("T")


class GroupPacing(Pacing):
    """:class:`Pacing` that also says how to group the tasks queued at once (:meth:`sizes`)."""

    #: at most this many nodes per cluster task
    group_max = 16
    #: a group is sized to run for about this long on its worker (by the recent tasks' median)
    group_seconds = 0.02
    #: cluster tasks in flight per worker thread that grouping keeps, when there are enough
    #: tasks queued: a worker that ends one finds the next one there
    groups_per_worker = 2

    def sizes(self, count: int, threads: int | None) -> list[int]:
        """How to split ``count`` tasks queued at once: the sizes of the groups, in order."""
        per_group = self._per_group(count, threads)
        full, rest = divmod(count, per_group)
        return [per_group] * full + ([rest] if rest else [])

    def split(self, items: list[T], threads: int | None) -> list[list[T]]:
        """``items`` (tasks queued at once) cut into groups of :meth:`sizes`, in order."""
        groups, start = [], 0
        for size in self.sizes(len(items), threads):
            groups.append(items[start : start + size])
            start += size
        return groups

    def _per_group(self, count: int, threads: int | None) -> int:
        if not self._short or count < 2 or not self._durations:
            return 1
        typical = median(self._durations)
        by_time = round(self.group_seconds / typical) if typical > 0 else self.group_max
        spread = math.ceil(count / (self.groups_per_worker * (threads or 1)))
        return max(1, min(self.group_max, by_time, spread))


def run_captured(payload: bytes) -> tuple[bool, bytes]:
    """Run a cloudpickled ``(fn, task)``: ``(True, pickled result)`` or ``(False, pickled error)``.

    The error travels as a value, so the driver raises the node's own exception (and only that
    node's, in a group); one that cannot be pickled becomes an :class:`ExecutionError` with
    its text, and one that cannot be rebuilt on the driver a
    :class:`~etherealfabric.errors.RemoteError` (:func:`~._base.portable_exception`).
    """
    import cloudpickle

    try:
        return True, run_pickled(payload)
    except Exception as exc:
        if isinstance(exc, (ImportError, AttributeError)):  # its code did not load here
            exc = worker_error(exc)  # names the worker, says how to fix it
        try:
            return False, cloudpickle.dumps(portable_exception(exc))
        except Exception:
            text = f"{type(exc).__name__}: {exc}"
            return False, cloudpickle.dumps(ExecutionError(text))


def run_group(payloads: list[bytes]) -> list[tuple[bool, bytes]]:
    """The cluster task of a group: each payload's :func:`run_captured` outcome, in order."""
    return [run_captured(payload) for payload in payloads]


def outcome(captured: tuple[bool, bytes]) -> Any:
    """On the driver: the result that :func:`run_captured` returned, or raise its error."""
    import cloudpickle

    ok, data = captured
    value = cloudpickle.loads(data)
    if not ok:
        raise value
    return value


def settle(future: Future[Any], captured: Any, observe: Callable[[Any], Any]) -> None:
    """``future`` gets the :func:`outcome` of ``captured`` (through ``observe``), or the error
    it raises; a cancelled one is left as it is."""
    if future.done():
        return
    try:
        value = observe(outcome(captured))
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(value)
