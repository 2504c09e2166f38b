"""Short tasks run in the scheduler's own thread when nothing could run beside them.

On the threads backend a task travels to a worker thread and its result back: two thread
wake-ups and two hand-overs of the GIL, 0.2-0.4 ms on a small virtual machine, more than a
trivial node's own work (a cold chain of 3,000 trivial nodes: 2.9 s with the hand-offs, 1.85 s
without). When no other node runs and none is ready (a chain, the sequential stretch of any
graph), nothing could run beside the task anyway, so the scheduler runs it itself
(:meth:`Inline.wanted`, then :meth:`Inline.run`): the same ``execute``, the same result
through the same completion queue, only no thread in between.

Only a task expected to be short: its definition (the node's function or class) ran before in
this run, the last time in less than :data:`INLINE_SECONDS` (a first run, on a worker thread,
measures it; a first run slowed by a one-off cost, an import say, lets the next one measure
again). A definition that takes longer, inline or not, goes back to the worker threads until
it is quick again. Never inline: a node with a timeout (one that may hang), an ``on_driver`` node, a
mapped node, and any node on a backend that does not allow it (``Backend.runs_inline``: only
the threads backend, whose tasks run in this process anyway).

While an inline task runs, the scheduler does nothing else: no group commit, no lease
heartbeat, no look at other runs of the home. That lasts one short task; a task that takes
far longer than its definition did before delays them by as much (a kill then loses the
rows of the window before it, which run again; a heartbeat late by a minute lets another run
take the key over, which computes it twice, never wrongly). A Ctrl-C during an inline task
interrupts the node itself (on a worker thread the node would run on, unstoppable) and then
the run, as it does while the scheduler waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backends import Backend
from ..plan._keys import KeyInfo
from ._messages import Task, TaskResult

__all__ = ["INLINE_SECONDS", "Inline", "Settled"]

#: A definition runs inline once it ran and always took less than this (the whole task:
#: loading inputs, the call, storing outputs).
INLINE_SECONDS = 0.005


class Inline:
    """Which tasks the scheduler runs itself, and the running of them."""

    def __init__(self, backend: Backend) -> None:
        self.enabled = backend.runs_inline
        #: definition -> whether its last run took less than INLINE_SECONDS
        self._short: dict[Any, bool] = {}

    def wanted(self, info: KeyInfo, *, alone: bool) -> bool:
        """Whether to run the node of ``info`` inline; ``alone``: nothing runs, none ready."""
        spec = info.spec
        return (
            alone
            and self.enabled
            and spec.timeout is None
            and not spec.on_driver
            and self._short.get(spec.code, False)
        )

    def observe(self, info: KeyInfo, result: TaskResult) -> None:
        """Learn from a finished task how long its definition takes."""
        if not self.enabled:
            return
        self._short[info.spec.code] = result.seconds < INLINE_SECONDS

    def run(self, execute: Callable[[Task], TaskResult], task: Task, future: Settled) -> None:
        """Run ``execute(task)`` here and settle ``future`` with what it returns.

        ``execute`` reports a node's failures in its result; anything it raises settles the
        future as a failure of the backend would, and a Ctrl-C also stops the run."""
        try:
            result = execute(task)
        except BaseException as exc:
            future.settle(None, exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return
        future.settle(result, None)


class Settled:
    """The future of an inline task (``backends.TaskFuture``): settled in this thread before
    anyone asks, so it needs none of ``concurrent.futures.Future``'s lock and condition
    (five of their round trips a node). Not cancellable (it runs at once): fail-fast finds
    it done, like a finished future."""

    __slots__ = ("_callbacks", "_error", "_result", "done")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Settled], object]] = []
        self._result: TaskResult | None = None
        self._error: BaseException | None = None
        self.done = False

    def add_done_callback(self, fn: Callable[[Settled], object], /) -> None:
        """Call ``fn(self)`` once settled (at once if it is)."""
        if self.done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def result(self, timeout: float | None = None) -> TaskResult:
        """The task's result, or the error ``execute`` raised; only once settled."""
        if not self.done:
            raise RuntimeError("an inline task's result was asked before it ran")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def settle(self, result: TaskResult | None, error: BaseException | None) -> None:
        """Settle with ``result`` or ``error`` and call the callbacks."""
        self._result, self._error, self.done = result, error, True
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)
