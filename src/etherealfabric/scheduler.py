"""The run loop: key ready nodes, skip cached ones, submit the rest, collect results.

One thread (the caller's) runs the loop and is the only one that talks to the journal::

    ready ──► key it ──► cached? ──yes──► node_cached ──► children may become ready
                           │no
                           └──► backend.submit(worker.execute, task) ──► … ──► completion queue
    completion queue ──► node_succeeded / node_failed ──► children ready / descendants blocked

Keys depend on upstream output digests, so a node is keyed only when its inputs are done.
Completions arrive through ``add_done_callback`` into a queue, which works for any backend
whose futures have that method. Every state change is an event; the journal recorder, the log
and the user's subscribers all listen to the same stream.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .backends import Backend
from .cache import ArtifactCache
from .events import Event, EventBus
from .graph import Graph, InputRef
from .node import replace_refs
from .plan import KeyInfo, node_key
from .policies import RetryPolicy
from .store import Store
from .worker import Task, TaskResult, action_record, execute

__all__ = ["RunOutcome", "Scheduler"]

log = logging.getLogger("etherealfabric.scheduler")
FLUSH_SECONDS = 0.05


@dataclass
class RunOutcome:
    """What happened to every node of a run."""

    status: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    errors: dict[str, TaskResult] = field(default_factory=dict)
    interrupted: bool = False

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.status.values() if s in statuses)

    @property
    def failed(self) -> bool:
        return self.interrupted or any(s == "failed" for s in self.status.values())


class Scheduler:
    """Runs one graph once. Create, call :meth:`run`, read the :class:`RunOutcome`."""

    def __init__(
        self,
        graph: Graph,
        *,
        run_id: str,
        backend: Backend,
        cache: ArtifactCache,
        store: Store,
        bus: EventBus,
        inline_limit: int,
        default_retry: RetryPolicy | None = None,
        fail_fast: bool = True,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self.graph = graph
        self.run_id = run_id
        self.backend = backend
        self.cache = cache
        self.store = store
        self.bus = bus
        self.inline_limit = inline_limit
        self.default_retry = default_retry
        self.fail_fast = fail_fast
        self.flush = flush or (lambda: None)
        self.outcome = RunOutcome(status=dict.fromkeys(graph.order, "pending"))
        self._waiting = {n: len(graph.preds[n]) for n in graph.order}
        self._ready: deque[str] = deque(n for n in graph.order if self._waiting[n] == 0)
        self._running: dict[str, KeyInfo] = {}
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = False
        self._index = {n: i for i, n in enumerate(graph.order)}

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        """Run every node that is not cached; returns when nothing more can run."""
        try:
            self._loop()
        except BaseException:
            self.outcome.interrupted = True
            self._cancel_rest()
            self.flush()
            raise
        self._cancel_rest()
        self.flush()
        return self.outcome

    def _loop(self) -> None:
        last_flush = time.monotonic()
        while self._ready or self._running:
            while self._ready and not self._stopping:
                self._start(self._ready.popleft())
            if not self._running:
                break
            self._collect(self._done.get())
            while True:
                try:
                    self._collect(self._done.get_nowait())
                except queue.Empty:
                    break
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                self.flush()
                last_flush = time.monotonic()

    def _emit(self, kind: str, node: str | None = None, **data: Any) -> None:
        self.bus.emit(Event(kind, self.run_id, node, data))

    # -- starting a node ----------------------------------------------------------------------
    def _start(self, name: str) -> None:
        spec = self.graph.specs[name]
        try:
            info = node_key(spec, self.outcome.outputs, file_cache=self.cache.journal)
            record = self.cache.lookup(info.key)
        except Exception as exc:
            self._fail_before_start(name, exc)
            return
        if record is not None:
            self.outcome.status[name] = "cached"
            self.outcome.outputs[name] = record["outputs"]
            self._emit("node_cached", name, key=info.key)
            self._release(name)
            return
        try:
            task = self._task(info)
        except Exception as exc:
            self._fail_before_start(name, exc)
            return
        self.outcome.status[name] = "running"
        self._running[name] = info
        self._emit("node_started", name, key=info.key)
        future = self.backend.submit(execute, task)
        future.add_done_callback(functools.partial(self._on_done, name))

    def _on_done(self, name: str, future: Any) -> None:
        self._done.put((name, future))

    def _task(self, info: KeyInfo) -> Task:
        spec = info.spec

        def handle(ref: InputRef) -> Any:
            return self.cache.handle(self.outcome.outputs[ref.node][ref.output])

        return Task(
            run_id=self.run_id,
            node=spec.name,
            key=info.key,
            code=spec.code,
            is_class=spec.is_class,
            outputs=spec.outputs,
            args=tuple(replace_refs(a, handle, kind=InputRef) for a in spec.call_args),
            kwargs={k: replace_refs(v, handle, kind=InputRef) for k, v in spec.call_kwargs.items()},
            store=self.store,
            serializers=spec.serializers,
            retry=spec.retry or self.default_retry,
            inline_limit=self.inline_limit,
            verify=self.cache.verify,
            publish=self.cache.shared,
        )

    def _fail_before_start(self, name: str, exc: Exception) -> None:
        import traceback

        result = TaskResult(node=name, key="", ok=False)
        result.error = f"{type(exc).__name__}: {exc}"
        result.traceback = traceback.format_exc()
        result.exception = exc
        self._failed(name, result)

    # -- finishing a node ---------------------------------------------------------------------
    def _collect(self, item: tuple[str, Any]) -> None:
        name, future = item
        info = self._running.pop(name)
        try:
            result: TaskResult = future.result()
        except BaseException as exc:  # the backend itself failed (worker died, unpicklable task)
            import traceback

            result = TaskResult(node=name, key=info.key, ok=False)
            result.error = f"{type(exc).__name__}: {exc}"
            result.traceback = "".join(traceback.format_exception(exc))
            result.exception = exc if isinstance(exc, Exception) else None
        if result.ok:
            self._succeeded(name, info, result)
        else:
            self._failed(name, result, info)

    def _succeeded(self, name: str, info: KeyInfo, result: TaskResult) -> None:
        self.cache.pending_blobs.update(result.inline)
        self.outcome.status[name] = "succeeded"
        self.outcome.outputs[name] = result.outputs
        self._emit(
            "node_succeeded",
            name,
            key=info.key,
            result=result,
            record=action_record(name, result.outputs),
            components=info.components(),
        )
        self._release(name)

    def _failed(self, name: str, result: TaskResult, info: KeyInfo | None = None) -> None:
        self.outcome.status[name] = "failed"
        self.outcome.errors[name] = result
        components = info.components() if info is not None else None
        self._emit(
            "node_failed", name, key=result.key or None, result=result, components=components
        )
        for child in sorted(self.graph.descendants(name), key=self._index.__getitem__):
            if self.outcome.status[child] == "pending":
                self.outcome.status[child] = "upstream_failed"
                self._emit("node_upstream_failed", child, upstream=name)
        self._stopping = self._stopping or self.fail_fast

    def _release(self, name: str) -> None:
        for child in self.graph.succs[name]:
            self._waiting[child] -= 1
            if self._waiting[child] == 0 and self.outcome.status[child] == "pending":
                self._ready.append(child)

    def _cancel_rest(self) -> None:
        for name, status in self.outcome.status.items():
            if status in ("pending", "running"):
                self.outcome.status[name] = "cancelled"
                self._emit("node_cancelled", name)
