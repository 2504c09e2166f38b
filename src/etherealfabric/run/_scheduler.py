"""The run loop: key ready nodes, skip cached ones, submit the rest, collect results.

One thread (the caller's) runs the loop and is the only one that talks to the journal::

    ready ──► key it ──► cached? ──yes──► node_cached ──► children may become ready
                           │no
                           ├──► leased by another live run? wait, then look again
                           └──► backend.submit(worker.execute, task) ──► … ──► completion queue
    completion queue ──► node_succeeded / node_failed ──► children ready / descendants blocked

On the threads backend, a short task with nothing to run beside it runs in this thread
instead (``run/_inline.py``): its result goes through the same queue. Keys depend on upstream
output digests, so a node is keyed only when its inputs are done. Completions arrive through
``add_done_callback`` into a queue (any backend whose futures have that method). Every state
change is an event; the journal recorder, the log and the user's subscribers all listen to it.

The journal is written by group commit, like PostgreSQL's ``commit_delay``: a finished node's
rows are committed with everything else that finished within :data:`GROUP_SECONDS` of the
previous commit (or :data:`GROUP_ROWS` rows), cache hits at most :data:`FLUSH_SECONDS` later,
never one transaction per node; after a big commit the window is at least :data:`COMMIT_SHARE`
times its duration (up to :data:`MAX_GROUP_SECONDS`): slow commits (a big journal) come in
bigger groups instead of taking the scheduler's time. It waits for workers no longer than the
window left. A kill therefore loses at most the last window's finished nodes, which simply
run again (their outputs are in the store; only their rows were not committed), never a
committed result: a committed ``succeeded`` row and its action record serve every later run.
Checkpoints are deleted only after the commit that holds the success superseding them, and a
finished key's lease goes with that commit (another run waiting for it sees it released
within a window). A run alone in its home holds the home lease (``run/_leases.py``) and leases
its nodes without a transaction; it looks for another run wanting to compute at every commit
and every :data:`LEASE_POLL_SECONDS` while it waits.

If an input turns out missing or corrupt when a node needs it, the node that produced it is
recomputed (``run/_rewind.py``). Mapped nodes (``fn.map(items)``) are run by
``run/_mapping.py``: the scheduler starts them like any node, and their children travel in
chunks whose completions arrive through the same queue.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import time
from collections import deque
from collections.abc import Mapping
from itertools import compress
from operator import not_ as _none_waiting
from typing import TYPE_CHECKING, Any

from ..backends import Backend
from ..errors import ArtifactMissingError, CorruptArtifactError, StoreConfigError
from ..hashing._secret import SecretHasher
from ..plan._graph import Graph
from ..plan._keys import KeyInfo, node_key
from ..states import EventKind, NodeStatus
from ..store import Store
from ..store._serializers import default_registry
from ._cache import ArtifactCache
from ._context import DriverDispatch
from ._events import Event, EventBus
from ._fallback import Fallbacks
from ._leases import RunLeases
from ._lookahead import LookAhead
from ._nomaps import maps_for
from ._outcome import RunOutcome, RunPolicy
from ._recorder import JournalRecorder
from ._retries import Retries
from ._rewind import Rewinds
from ._samekey import SameKeys
from ._starts import Starts
from ._stopping import Stopping, hold_interrupts

if TYPE_CHECKING:
    from ._handover import HandOvers
    from ._inline import Inline
    from ._messages import Task, TaskResult

__all__ = ["RunOutcome", "RunPolicy", "Scheduler"]

log = logging.getLogger("etherealfabric.scheduler")
#: The group commit (module docstring): windows, early commit at GROUP_ROWS rows (a node makes
#: about three); commits of BUSY_ROWS rows or more take at most a fifth of a busy run's time.
GROUP_SECONDS, FLUSH_SECONDS, GROUP_ROWS = 0.01, 0.05, 6000
COMMIT_SHARE, MAX_GROUP_SECONDS, BUSY_ROWS = 4.0, 0.5, 300
LEASE_POLL_SECONDS, LEASE_RENEW_SECONDS = 0.1, 5.0  # (the heartbeat; leases expire after 60 s)
# members as plain names: on Python 3.11 one read from its enum costs 0.3 us (a __getattr__ hook)
_CACHED, _PENDING = NodeStatus.CACHED, NodeStatus.PENDING


class Scheduler(Rewinds, Fallbacks, Retries, Starts, Stopping):
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
        recorder: JournalRecorder,
        policy: RunPolicy | None = None,
        secrets: SecretHasher | None = None,
    ) -> None:
        self.graph = graph
        self.secrets = secrets  # keys Secret parameters (hashing/_secret.py)
        self.run_id = run_id
        self.backend = backend
        self.cache = cache
        self.store = store
        self.recorder = recorder  # the run's one journal writer (leases, file digests, rows)
        self.leases = RunLeases(recorder, run_id, store if cache.shared else None)
        self._dispatch = DriverDispatch(backend)  # on_driver nodes run in threads here
        self.bus = bus
        self.inline_limit = inline_limit
        self.policy = policy or RunPolicy()
        self._force = self.policy.force  # the nodes that run even when cached
        self._registered = default_registry.portable()  # the user's serializers travel
        self.outcome = RunOutcome(status=dict.fromkeys(graph.order, NodeStatus.PENDING))
        # (built by C loops, not a Python step per node: 100,000 nodes in a warm run)
        order = graph.order
        self._waiting = dict(
            zip(order, map(len, map(graph.preds.__getitem__, order)), strict=False)
        )
        self._ready: deque[str] = deque(compress(order, map(_none_waiting, self._waiting.values())))
        self._running: dict[str, KeyInfo] = {}
        self._futures: dict[str, Any] = {}  # of the running nodes; fail-fast drops queued ones
        self._unstarted: dict[str, tuple[str, int, dict[str, Any]]] = {}  # queued: not started
        self._leased_elsewhere: dict[str, KeyInfo] = {}
        self._init_rewinds()
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._dirty = False
        self._init_stopping()
        self._commit = 0.0  # the window the last commit's duration asks for (COMMIT_SHARE)
        self._checkpoints_to_clear: list[str] = []
        self._index = dict(zip(order, range(len(order)), strict=False))
        self._maps = maps_for(self, graph)  # mapped nodes: their children and collections
        self._same = SameKeys(self)  # nodes of this run with equal keys: computed once
        self._ahead = LookAhead(cache)  # with a shared store: ready nodes' records fetched at once
        self._held = contextlib.ExitStack()
        self._handovers: HandOvers | None = None  # outputs handed over in memory (threads)
        self._inline: Inline | None = None  # short tasks run here when nothing runs beside them

    # -- the loop ---------------------------------------------------------------------------
    def run(self, fail_first: Mapping[str, BaseException] | None = None) -> RunOutcome:
        """Run every node that is not cached; returns when nothing more can run. ``fail_first``:
        nodes known to fail (a missing input file), failed before anything runs."""
        try:
            for name, exc in (fail_first or {}).items():
                if name in self._ready:
                    self._ready.remove(name)
                self._fail_before_start(name, exc)
            with self._held:  # nodes' output routers, once one runs: for the run (_executing)
                self._loop()
        except BaseException as exc:
            hold_interrupts(exc)  # (a Ctrl-C: a second one would cut the stop short)
            self.outcome.interrupted = True
            self._cancel_rest()
            self._flush()
            raise
        finally:
            self.leases.close()
            self._dispatch.close(cancel=self.outcome.interrupted)
            if self._handovers is not None:
                self._handovers.close()
        self._cancel_rest()
        self._flush()
        return self.outcome

    def release(self) -> None:
        """Once :meth:`run` returned: drop the graph now, by reference count (the scheduler is
        in a cycle with its helpers: a 100,000-node graph waited a second for the collector)."""
        del self.graph

    def _loop(self) -> None:
        last_flush = last_renew = last_poll = time.monotonic()
        while self._ready or self._running or self._leased_elsewhere or self._maps.busy:
            while (
                self._ready
                and not self._stopping
                and ((not self._running and not self._maps.in_flight) or self._room())
            ):  # (nothing running: room, without _room's call; a warm run starts each so)
                ready = self._ready
                if len(ready) > 1 and ready[0] not in self._ahead.known:  # (fetch's own test)
                    self._ahead.fetch(ready, self._key_of)  # shared store: in batches
                self._start(ready.popleft())
            self._maps.pump()
            waiting = bool(self._leased_elsewhere) or self._maps.waiting
            waiting_for_others = waiting and not self._stopping
            if waiting_for_others:
                self._retry_leased()
            now = time.monotonic()
            window = max(GROUP_SECONDS if self._dirty else FLUSH_SECONDS, self._commit)
            rows = self.recorder.buffered
            if rows and (now - last_flush >= window or rows >= GROUP_ROWS):
                self._flush()  # one commit for the group window (see the module docstring)
                last_flush = last_poll = now = time.monotonic()
            elif self.leases.exclusive and now - last_poll >= LEASE_POLL_SECONDS:
                self.leases.poll()  # another run of the home may want to compute
                last_poll = now
            if now - last_renew > LEASE_RENEW_SECONDS:
                self.leases.renew()
                last_renew = time.monotonic()
            if self._running or self._maps.in_flight:
                slow = not (waiting_for_others or self.leases.exclusive)
                wait = LEASE_RENEW_SECONDS if slow else LEASE_POLL_SECONDS
                if self.recorder.buffered:  # no longer than the group window left
                    wait = min(wait, max(0.0, last_flush + window - time.monotonic()))
                self._drain(wait)
            elif waiting_for_others:
                time.sleep(LEASE_POLL_SECONDS)
            elif not self._ready or self._stopping:
                break

    def _room(self) -> bool:
        # the backend's window (Backend.in_flight), asked only once something runs (a cached
        # run never makes a cluster answer; fail-fast can stop what is not submitted yet) and
        # every time: a remote backend widens its window once it sees short tasks
        busy = len(self._running) + self._maps.in_flight
        return not busy or busy < (self.backend.in_flight or 1_000_000)

    def _drain(self, timeout: float | None) -> None:
        try:
            self._collect(self._done.get(timeout=timeout))
        except queue.Empty:
            return
        while True:
            try:
                self._collect(self._done.get_nowait())
            except queue.Empty:
                return

    def _flush(self) -> None:
        rows, started = self.recorder.buffered, time.monotonic()
        self.recorder.flush()
        took = time.monotonic() - started if rows >= BUSY_ROWS else 0.0  # (a big group's only)
        self._dirty, self._commit = False, min(COMMIT_SHARE * took, MAX_GROUP_SECONDS)
        keys, self._checkpoints_to_clear = self._checkpoints_to_clear, []
        for key in keys:  # the node's success is committed: its checkpoint has served
            try:
                self.store.delete_checkpoint(key)
            except Exception as exc:
                log.warning("could not remove the checkpoint of key %s: %s", key, exc)

    def _emit(self, kind: EventKind, node: str | None = None, **data: Any) -> None:
        self.bus.emit(Event(kind, self.run_id, node, data))

    # -- starting a node ----------------------------------------------------------------------
    def _start(self, name: str) -> None:
        try:  # (_key_of and _lookup, inline: once per node)
            info = self._ahead.known.pop(name, None) or node_key(  # (LookAhead.pop)
                self.graph.specs[name], self.outcome.outputs, file_cache=self.recorder,
                secrets=self.secrets,
            )  # fmt: skip
            record = None if name in self._force else self.cache.lookup(info.key)
        except StoreConfigError:  # no bucket, no credentials: the run's, not the node's
            raise
        except Exception as exc:
            self._fail_before_start(name, exc)
            return
        if record is not None:
            self._cached(name, info, record)
        elif not self._same.wait(name, info) and not self._lease_and_submit(name, info):
            log.info("%s: another run is computing key %s%s; waiting for it",
                     name, info.key[:12], self.leases.holder(info.key))  # fmt: skip
            self._leased_elsewhere[name] = info

    def _key_of(self, name: str) -> KeyInfo:
        spec = self.graph.specs[name]
        return node_key(spec, self.outcome.outputs, file_cache=self.recorder, secrets=self.secrets)

    def _lease_and_submit(self, name: str, info: KeyInfo) -> bool:
        """Take the key's lease and run the node; False while another run holds the lease.

        The cache is consulted again once the lease is ours: a run that finished the key
        between our lookup and our lease committed its result with the lease's release.
        """
        if not self.leases.acquire(info.key, name):
            return False
        record = self._lookup(name, info.key) if self.leases.recheck else None
        if record is not None:
            self.leases.release_now(info.key)
            self._cached(name, info, record)
        else:
            self._submit(name, info)
        return True

    def _lookup(self, name: str, key: str) -> Mapping[str, Any] | None:
        """The cache's record of ``key``; None for a node the run was told to force."""
        return None if name in self._force else self.cache.lookup(key)

    def _cached(self, name: str, info: KeyInfo, record: Mapping[str, Any]) -> None:
        outcome, key = self.outcome, info.key
        outcome.status[name] = _CACHED
        outcome.outputs[name] = record["outputs"]
        outcome.keys[name] = key
        shared = key in self.cache.fetched  # a hit from the shared store: no local parts
        extra = {"components": info.components(), "record": record} if shared else None
        self.bus.node_cached(self.run_id, name, key, extra)  # (an Event only if needed)
        self._release(name)

    def _retry_leased(self) -> None:
        for name, info in list(self._leased_elsewhere.items()):
            if not self.leases.due(info.key):
                continue
            record = self._lookup(name, info.key)
            if record is not None:
                del self._leased_elsewhere[name]
                self._cached(name, info, record)
            elif self._same.wait(name, info) or self._lease_and_submit(name, info):
                del self._leased_elsewhere[name]

    def _executing(self) -> tuple[HandOvers, Inline]:
        """The parts that only running a node needs, imported and made when the first node
        of the run has to run: a warm run (everything cached) never imports the worker, the
        output capture, the task builder, the hand-overs... (tests/test_first_execute.py).
        Their functions are kept here: an import in a function costs microseconds a call."""
        if self._handovers is None or self._inline is None:
            from ._capture import held
            from ._checkpoint import CheckpointListing
            from ._handover import HandOvers
            from ._inline import Inline, Settled
            from ._lost import send
            from ._records import action_record
            from ._tasks import build_task
            from ._worker import execute

            self._send, self._build_task, self._execute = send, build_task, execute
            self._settled = Settled
            self._action_record = action_record
            self._listing = CheckpointListing(self.store, self.leases)  # (of their checkpoints)
            if self.backend.in_process:  # nodes' output routers stay installed for the run
                self._held.enter_context(held())
            self._handovers, self._inline = HandOvers(self), Inline(self.backend)
        return self._handovers, self._inline

    def _submit(self, name: str, info: KeyInfo) -> None:
        _, inline = self._executing()
        self._submitted_at[name] = self._tick()
        if info.spec.map is not None:
            self._maps.start(name, info)
            return
        try:
            task, input_bytes = self._task(info)
        except (ArtifactMissingError, CorruptArtifactError) as exc:
            if self._rewind_inputs(name, exc.digests, exc):
                self.leases.release_now(info.key)
                return
            self._fail_before_start(name, exc)
            return
        except Exception as exc:
            self._fail_before_start(name, exc)
            return
        alone = not (self._running or self._ready or self._maps.busy)
        here = self._settled() if inline.wanted(info, alone=alone) else None
        queued = here is None and self.backend.reports_starts and self._queued(len(self._running))
        try:
            future = here or self._send(
                self._dispatch, info.spec.on_driver, task, self._retry_note, self._printing,
                self._start_note if queued else None,
            )  # fmt: skip
        except Exception as exc:  # e.g. the task cannot be pickled for a process or cluster
            self.leases.release_now(info.key)
            self._fail_before_start(name, exc)
            return
        self.outcome.status[name] = NodeStatus.RUNNING
        self._running[name] = info
        if info.spec.map is None:
            self._same.computing(name, info)
        self._dirty = True
        extra: dict[str, Any] = {"forced": True} if name in self.policy.force else {}
        if self.cache.refused and info.key in self.cache.refused:  # a data file it read changed
            extra["stale"] = self.cache.refused.pop(info.key)
        if queued:  # (started once it begins: run/_starts.py)
            self._unstarted[name] = (info.key, input_bytes, extra)
        else:  # (an Event if needed)
            self.bus.node_started(self.run_id, name, info.key, input_bytes, extra)
        self._futures[name] = future
        future.add_done_callback(functools.partial(self._on_done, name))
        if here is not None:  # a short task, nothing beside it: run here (run/_inline.py)
            inline.run(self._execute, task, here)

    def _on_done(self, name: str, future: Any) -> None:
        self._done.put((name, future))

    def _task(self, info: KeyInfo) -> tuple[Task, int]:
        """The task for a node (``run/_tasks.py``), and how many bytes of inputs it reads."""
        return self._build_task(
            info,
            run_id=self.run_id,
            outputs=self.outcome.outputs,
            cache=self.cache,
            store=self.store,
            inline_limit=self.inline_limit,
            default_retry=self.policy.default_retry,
            can_kill=self.backend.can_kill and not info.spec.on_driver,
            registered=self._registered,
            hand_over=self.backend.in_process,
            background=self.policy.durability == "fast",
            fresh=info.spec.name in self.policy.fresh,  # --force: from scratch, no checkpoint
            checkpoints=self._listing,
            on_retry=self._retry_note,  # (a task run in this process: run/_retries.py)
            stop_retrying=self._stop_retrying,  # (set by fail-fast: run/_retrying.py)
            retry_stop=self._retry_stop,  # (the backend's, for tasks run elsewhere)
            printing=self._printing,  # (what a node stopped while running printed: _cancel_rest)
        )

    # -- finishing a node ---------------------------------------------------------------------
    def _collect(self, item: tuple[Any, Any]) -> None:
        name, future = item
        if future is None:  # a note: a retry (run/_retries.py) or a start (run/_starts.py)
            name[0](*name[1:])  # (the method that handles it, with what it says)
            return
        handovers, inline = self._executing()  # (made already: something ran)
        if not isinstance(name, str) and handovers.owns(name):  # its outputs are stored now
            handovers.stored(name, future)
            self._dirty = True  # its record goes in this group, like any finished node
            return
        if not isinstance(name, str):  # a chunk of a map's children, or its collection
            self._maps.collect(name, future)
            return
        info = self._running.pop(name)
        if self._futures.pop(name, None) is None:  # dropped by fail-fast before it started
            self.leases.release_now(info.key)  # (it stays running: _cancel_rest says cancelled)
            return
        try:
            result: TaskResult = future.result()
        except BaseException as exc:  # the backend itself failed (worker died, unpicklable task)
            from ._messages import TaskResult

            result = TaskResult.failure(name, info.key, exc)
            result.exception = exc if isinstance(exc, Exception) else None
        if self._unstarted:  # (a queued node's start, when no note came: run/_starts.py)
            self._started_by_end(name, result)
        inline.observe(info, result)
        self.leases.finished(info.key)  # the worker published its record, if it made one
        self._dirty = True
        if len(result.attempts) > 1 or self._told:  # retries not told yet (run/_retries.py)
            self._retried_late(name, result)
        if result.ok:
            if not handovers.succeeded(name, info, result):
                self._succeeded(name, info, result)
        elif result.bad_inputs and self._rewind_inputs(name, result.bad_inputs, result.error):
            self.leases.release_now(info.key)
            self._same.settle(info.key, None)
        else:
            self._failed(name, result, info)

    def _succeeded(
        self, name: str, info: KeyInfo, result: TaskResult, *, release: bool = True, **data: Any
    ) -> None:
        self.cache.remember_inline(result.inline)
        # a file it read changed while it ran: its outputs are usable, its key unpublished
        self.outcome.status[name] = NodeStatus.DRIFTED if result.drifted else NodeStatus.SUCCEEDED
        self.outcome.outputs[name] = result.outputs
        self.outcome.keys[name] = info.key
        if result.checkpointed:
            self._checkpoints_to_clear.append(info.key)
        self._same.settle(info.key, result.outputs)
        self._emit(
            EventKind.NODE_SUCCEEDED,
            name,
            key=info.key,
            result=result,
            record=self._action_record(
                name, result.outputs, result.files, result.reads, result.host
            ),
            components=info.components(),
            **data,
        )
        if release:  # not when it was released already (run/_handover.py)
            self._release(name)

    def _failed(
        self, name: str, result: TaskResult, info: KeyInfo | None = None, *, handle: bool = True
    ) -> None:
        if info is not None:
            self._same.settle(info.key, None)
        handler = self.graph.specs[name].on_error or self.policy.on_error
        if handle and handler is not None and self._handle_error(name, result, info, handler):
            return
        self.outcome.status[name] = NodeStatus.FAILED
        self.outcome.errors[name] = result
        key, components = result.key or None, info.components() if info is not None else None
        self._emit(EventKind.NODE_FAILED, name, key=key, result=result, components=components)
        self._block_descendants(name, NodeStatus.UPSTREAM_FAILED)
        if not self.policy.keep_going and not self._stopping:
            self._fail_fast()  # (run/_stopping.py)

    def _release(self, name: str) -> None:
        clock = self._clock = self._clock + 1  # (the rewind's clock: _tick, inline)
        self._produced_at[name] = clock
        waiting, status = self._waiting, self.outcome.status
        for child in self.graph.succs[name]:
            left = waiting[child] = waiting[child] - 1
            if left == 0 and status[child] == _PENDING:
                self._ready.append(child)
