"""Run mapped nodes: one child per item, sent in chunks, then the collection.

The scheduler starts a mapped node (``square.map(items)``) like any node: its own key (code,
broadcast arguments, the digest of the whole ``items``) is looked up first, so a warm re-run
of a map is one lookup (and one of each child whose hit checks files, ``run/_mapcheck.py``:
a child whose read file changed makes it a miss). On a miss the scheduler hands it to
:class:`Maps`::

    load the items ─► one key per distinct item (its content) ─► one bulk lookup
          │                                      cached children are done, no backend asked
          ▼ the rest, in chunks sized to take ~0.1 s in a worker (slow children go one by one)
    backend.submit(run_chunk) ─► … ─► completion queue ─► children rows, failures counted
          │ every child done (or more failed than max_failures: the map fails)
          ▼
    the collection's key (the ordered children's output digests) ─► cached, or
    backend.submit(collect_values) ─► the map succeeds with the collected outputs

Each child has its own retries, timeout, ``on_error``, record, journal row ``map[label]`` and
lease (taken a chunk at a time, ``run/_mapleases.py``) and checkpoint (deleted once its success
is committed; one a kill left after that is never resumed: ``run/_maptasks.py``); a failed child never makes a succeeded sibling run again. ``max_failures`` lets a map succeed with the items that did (only the
collection's key gets a record: the next run tries the failed items again). Chunks and the
collection come back through the scheduler's queue with a token (:class:`ChunkToken`).
Keys and names: ``plan/_maps.py``; the worker side: ``run/_mapwork.py``; a map over a map's
result is fed item by item: ``run/_mapstream.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import traceback
from collections.abc import Mapping
from typing import Any

from ..errors import ArtifactMissingError, CorruptArtifactError
from ..plan._keys import KeyInfo
from ..plan._maps import child_key, children_index, collect_key, holds_files, item_label, map_keys
from ..states import EventKind, NodeStatus
from ..store._links import LinkedOutputError
from ._lost import later, lost_child
from ._mapcheck import checked_records
from ._maperrors import child_failed
from ._mapleases import recheck, take
from ._mapstate import (
    Child,
    ChildDone,
    ChunkToken,
    CollectToken,
    MapHost,
    MapRun,
    failure,
    load_items,
)
from ._mapstream import Streams
from ._maptasks import child_tasks
from ._mapwork import Chunk, ChunkResult, collect_values, run_chunk
from ._messages import Attempt, Task, TaskResult
from ._records import action_record
from ._worker import execute

__all__ = ["Maps"]

log = logging.getLogger("etherealfabric.scheduler")
CHUNK_SECONDS = 0.1  # how long a chunk should take in a worker
MAX_CHUNK = 2000
_OUT = (NodeStatus.SUCCEEDED, NodeStatus.CACHED, NodeStatus.FALLBACK, NodeStatus.DRIFTED)


class Maps:
    """The scheduler's part that runs mapped nodes (see the module docstring)."""

    def __init__(self, host: MapHost) -> None:
        self.host = host
        self.active: dict[str, MapRun] = {}
        self.streams = Streams(self)  # maps over a map's result, fed item by item
        self.in_flight = 0

    @property
    def busy(self) -> bool:
        """Whether a map has chunks out, or children to send or waiting for another run."""
        return any(r.in_flight or r.elsewhere or self._sendable(r) for r in self._runs())

    @property
    def waiting(self) -> bool:
        """Whether children wait for another run that holds their leases."""
        return any(run.elsewhere for run in self._runs())

    def _runs(self) -> list[MapRun]:
        # maps streamed into go first: an item goes down the chain before the next one starts
        return [*self.streams.early.values(), *self.active.values()]

    def _sendable(self, run: MapRun) -> bool:
        if not run.todo or run.stopped or self.host._stopping:
            return False
        return run.started or self.streams.sendable(run)

    # -- starting -------------------------------------------------------------------------
    def start(self, name: str, info: KeyInfo) -> None:
        """Run the map ``name`` whose own key ``info`` missed the cache (its lease is held)."""
        host = self.host
        try:
            run = self._prepare(name, info)
        except (ArtifactMissingError, CorruptArtifactError) as exc:
            host.leases.release_now(info.key)
            if not host._rewind_inputs(name, exc.digests, exc):
                host._fail_before_start(name, exc)
            return
        except Exception as exc:
            host.leases.release_now(info.key)
            host._fail_before_start(name, exc)
            return
        self.active[name] = run
        host.outcome.status[name] = NodeStatus.RUNNING
        host.outcome.maps[name] = run.report
        extra = (
            {"stale": host.cache.refused.pop(info.key)} if info.key in host.cache.refused else {}
        )
        host._emit(EventKind.NODE_STARTED, name, key=info.key, input_bytes=0, **extra)
        report = run.report
        host._emit(
            EventKind.MAP_STARTED,
            name,
            items=report.items,
            children=report.children,
            cached=report.cached,
            to_run=len(run.todo),
            done=sum(c.status is not NodeStatus.PENDING for c in run.children),
        )
        host._dirty = True
        self._check(run)

    def _prepare(self, name: str, info: KeyInfo) -> MapRun:
        spec, host = info.spec, self.host
        items, labels = load_items(host, name, spec)
        run = self.streams.adopt(name, info)  # already streamed into: keep what it has
        if run is None:
            keys = map_keys(spec, host.outcome.outputs, file_cache=host.recorder,
                            secrets=host.secrets)  # fmt: skip
            run = MapRun(name, info, keys)
        run.labels, run.files = labels, holds_files(items)
        new = self.add_children(run, items, labels, place=True)
        run.report.items, run.report.children = len(items), len(run.children)
        self.look_up(run, new)
        if run.todo:  # a map over this one's result starts on the cached items now
            self.streams.feed(run, [c for c in map(run.children.__getitem__, new) if c.outputs])
        return run

    def add_children(
        self, run: MapRun, items: list[Any], labels: list[Any] | None = None, place: bool = False
    ) -> list[int]:
        """One child per item not seen yet (by key); ``place``: the items' positions too."""
        prefix, name = run.keys.prefix, run.name
        new: list[int] = []
        for position, item in enumerate(items):
            keyed_at = time.time() if run.files else None  # (before its files are read)
            key, digest = child_key(run.keys, item, prefix)
            index = run.by_key.get(key)
            if index is None:
                label = item_label(item, digest, None if labels is None else labels[position])
                child = f"{name}[{label}]"
                if child in run.names:  # two items with one label: the digest tells them apart
                    child = f"{name}[{digest[:10] if f'{name}[{digest[:10]}]' not in run.names else digest}]"
                run.names.add(child)
                index = run.by_key[key] = len(run.children)
                run.children.append(Child(key, child, item, digest, keyed_at=keyed_at))
                new.append(index)
            if place:
                run.slots.append(index)
        return new

    def look_up(self, run: MapRun, new: list[int]) -> None:
        """Find new children in the cache (one bulk lookup); the others are to be sent."""
        forced, cache = run.name in self.host.policy.force, self.host.cache
        keys = [run.children[i].key for i in new]
        found = {} if forced else checked_records(cache, run.info.key, keys)
        if not forced and len(found) < len(keys):
            found.update(cache.lookup_many([k for k in keys if k not in found]))
        for index in new:
            child = run.children[index]
            record = found.get(child.key)
            if record is None:
                run.todo.append(index)
            else:
                child.status, child.outputs = NodeStatus.CACHED, record["outputs"]
                child.checked = bool(record.get("reads") or record.get("files"))
                run.report.cached += 1

    # -- sending chunks ---------------------------------------------------------------------
    def pump(self) -> None:
        """Send children while the backend has room (called by the scheduler's loop)."""
        for run in self._runs():
            cached = recheck(self.host, run)  # children another run held: done by now?
            if cached:
                self.streams.feed(run, [run.children[i] for i in cached])
                self._check(run)
            while self._sendable(run) and self.host._room():
                self._send(run)

    def _send(self, run: MapRun) -> None:
        size = min(run.chunk_size, max(1, math.ceil(len(run.todo) / 4)))
        indexes = [run.todo.popleft() for _ in range(min(size, len(run.todo)))]
        indexes = take(self.host, run, indexes)  # their leases, in one transaction
        if refused := self._linked(run, indexes):  # their hits' files lie behind a link
            indexes = [i for i in indexes if i not in dict(refused)]
            self._ended(run, refused)
        if not indexes:  # leased by another run, or finished by it
            self._check(run)
            return
        try:
            tasks = self._child_tasks(run, [run.children[i] for i in indexes])
            future = self.host._dispatch.submit(
                run.spec.on_driver, run_chunk, Chunk(run.name, tasks)
            )
        except Exception as exc:  # e.g. an item cannot be pickled for a process or a cluster
            self._unsendable(run, indexes, exc)
            return
        self._out(run, ChunkToken(run, indexes), future)

    def _linked(self, run: MapRun, indexes: list[int]) -> list[tuple[int, TaskResult]]:
        """Children whose hit was refused for a symbolic link (``ArtifactCache.linked``): they
        fail, naming it, and do not run (their code would write through it)."""
        refused = []
        for index in indexes:
            child = run.children[index]
            if (linked := self.host.cache.linked.pop(child.key, None)) is not None:
                error = LinkedOutputError(f"node {child.name!r}: {linked}", node=child.name)
                refused.append((index, failure(child, error)))
        return refused

    def _out(self, run: MapRun, token: ChunkToken | CollectToken, future: Any) -> None:
        run.in_flight += 1
        self.in_flight += 1
        done = self.host._done
        future.add_done_callback(lambda f: done.put((token, f)))

    def _base(self, run: MapRun) -> Task:
        """The task every child's is a copy of: the node with its item left out."""
        if run.base is None:
            spec, keys = run.spec, run.keys.template
            template = dataclasses.replace(spec, call_args=(None, *spec.call_args[1:]), map=None)
            info = KeyInfo(
                run.info.key, template, keys.param_hashes, keys.inputs, hashed_at=keys.hashed_at
            )
            run.base = self.host._task(info)[0]
        return run.base

    def _child_tasks(self, run: MapRun, children: list[Child]) -> list[Task]:
        forced, journal = run.name in self.host.policy.fresh, self.host.cache.journal
        return child_tasks(self._base(run), children, forced=forced, journal=journal)

    def _unsendable(self, run: MapRun, indexes: list[int], exc: BaseException) -> None:
        if len(indexes) > 1:  # find which items cannot travel: send them one by one
            run.todo.extendleft(reversed(indexes))
            run.chunk_size = 1
            self._send(run)
            return
        child = run.children[indexes[0]]
        backend = self.host._dispatch.backend.name
        error = RuntimeError(
            f"item {child.name} of node {run.name!r} cannot be sent to the {backend} backend: "
            f"{type(exc).__name__}: {exc}"
        )
        self._ended(run, [(indexes[0], failure(child, error))])

    # -- results --------------------------------------------------------------------------
    def collect(self, token: ChunkToken | CollectToken, future: Any) -> None:
        """A chunk or a collection is back (from the scheduler's completion queue)."""
        run = token.run
        run.in_flight -= 1
        self.in_flight -= 1
        if isinstance(token, CollectToken):
            self._collected(run, future)
            return
        try:
            got: ChunkResult = future.result()
        except BaseException as exc:  # the backend failed (a worker died, ...)
            if len(token.children) > 1:  # again one by one: only the culprit fails
                run.todo.extendleft(reversed(token.children))
                run.chunk_size = 1
                self._check(run)
                return
            index, child = token.children[0], run.children[token.children[0]]
            if (wait := lost_child(child, self._base(run).retry, exc)) is not None:
                chunk = Chunk(run.name, self._child_tasks(run, [child]))  # its worker died
                submit = self.host._dispatch.submit
                self._out(run, token, later(wait, submit, run.spec.on_driver, run_chunk, chunk))
                return
            self._ended(run, [(index, failure(child, exc))])
            return
        mean = got.seconds / max(1, len(got.results))
        run.chunk_size = max(1, min(MAX_CHUNK, int(CHUNK_SECONDS / max(mean, 1e-6))))
        self._ended(run, list(zip(token.children, got.results, strict=True)))

    def _ended(self, run: MapRun, ended: list[tuple[int, TaskResult]]) -> None:
        done = [self._child_ended(run, index, result) for index, result in ended]
        self.host._emit(EventKind.MAP_ITEMS, run.name, children=done)
        self.host._dirty = True
        succeeded = [run.children[i] for i, _ in ended]
        self.streams.feed(run, [c for c in succeeded if c.status is NodeStatus.SUCCEEDED])
        self._check(run)

    def _child_ended(self, run: MapRun, index: int, result: TaskResult) -> ChildDone:
        child = run.children[index]
        result.attempts[:0], child.lost = child.lost, []  # those lost with a worker first
        child.result = result
        stale = self.host.cache.refused.pop(result.key, None)  # a file it read had changed
        if result.ok:
            self.host.cache.remember_inline(result.inline)
            child.outputs = result.outputs
            child.checked = bool(result.reads or result.files)
            child.status = NodeStatus.DRIFTED if result.drifted else NodeStatus.SUCCEEDED
            run.report.executed.append(child.name)
            if result.checkpointed:  # deleted once its success is committed (Scheduler._flush)
                self.host._checkpoints_to_clear.append(child.key)
            record = action_record(
                child.name, result.outputs, result.files, result.reads, result.host
            )
            components = run.keys.components(child.item, child.digest, run.name)
            return ChildDone(child.name, child.status, result, record, components, stale=stale)
        return child_failed(self.host, run, child, result)

    def _check(self, run: MapRun) -> None:
        """Stop sending after too many failures; once nothing is out, fail or collect."""
        if not run.started:  # streamed into: the map decides when it starts
            self.streams.settle(run)
            return
        allowed = run.spec.map.allowed_failures(len(run.children))
        if run.failures > allowed and not self.host.policy.keep_going:
            run.stopped = True
        going = not run.stopped and not self.host._stopping
        if run.in_flight or ((run.todo or run.elsewhere) and going):
            return  # more to come back, to send, or to wait for
        if run.failures > allowed:
            self._fail(run, allowed)
        elif not run.todo:
            self._collect_start(run)
        elif self.host._stopping:
            del self.active[run.name]  # another node failed: the map is cancelled with the rest

    # -- the collection --------------------------------------------------------------------
    def _collect_start(self, run: MapRun) -> None:
        host = self.host
        kept = [i for i, index in enumerate(run.slots) if run.children[index].status in _OUT]
        run.collected = [run.children[run.slots[i]] for i in kept]
        labels = None if run.labels is None else [run.labels[i] for i in kept]
        records = [c.outputs or {} for c in run.collected]
        run.collect_key = key = collect_key(run.spec.outputs, records, labels)
        forced = run.name in host.policy.force
        record = None if forced else host.cache.lookup(key, whole_map=False)
        if record is not None:
            run.found = record
            self._finish(run, record["outputs"], None)
            return
        try:
            task = self._collect_task(run, key, labels)
        except (ArtifactMissingError, CorruptArtifactError) as exc:
            self._redo(run, [exc.digest] if exc.digest else [], exc)
            return
        future = host._dispatch.submit(run.spec.on_driver, execute, task)
        self._out(run, CollectToken(run), future)

    def _collect_task(self, run: MapRun, key: str, labels: list[Any] | None) -> Task:
        cache, outputs = self.host.cache, run.spec.outputs
        cache.prefetch_inline([r for c in run.collected for r in (c.outputs or {}).values()])
        columns = {
            o: [cache.input_for((c.outputs or {})[o]) for c in run.collected] for o in outputs
        }
        return dataclasses.replace(
            self._base(run), node=run.name, key=key, code=collect_values, is_class=False,
            args=(labels, columns, len(outputs) == 1), kwargs={}, serializers={}, retry=None,
            timeout=None, kill_on_timeout=False, writes=(), inputs_seen={},
        )  # fmt: skip

    def _collected(self, run: MapRun, future: Any) -> None:
        try:
            result: TaskResult = future.result()
        except BaseException as exc:
            result = TaskResult(node=run.name, key=run.collect_key or "", ok=False)
            result.error = f"{type(exc).__name__}: {exc}"
            result.traceback = "".join(traceback.format_exception(exc))
        if result.ok:
            self.host.leases.finished(run.info.key)
            self._finish(run, result.outputs, result)
        elif result.bad_inputs:
            self._redo(run, result.bad_inputs, result.error)
        else:
            self._fail(run, run.spec.map.allowed_failures(len(run.children)), result)

    def _redo(self, run: MapRun, digests: list[str], error: object) -> None:
        """Children's stored outputs are unusable: forget them and run those children again."""
        bad = set(digests)
        redone = False
        for index, child in enumerate(run.children):
            outputs = child.outputs or {}
            if child.redone < 2 and any(o["digest"] in bad for o in outputs.values()):
                log.warning("%s: its output is unusable (%s); running it again", child.name, error)
                self.host.cache.forget(child.key, outputs)
                child.redone += 1
                child.status, child.outputs = NodeStatus.PENDING, None
                run.todo.append(index)
                redone = True
        if redone:
            return
        cause = TaskResult(node=run.name, key=run.collect_key or "", ok=False, error=str(error))
        self._fail(run, 0, cause)

    # -- the end --------------------------------------------------------------------------
    def _finish(
        self, run: MapRun, outputs: Mapping[str, Mapping[str, Any]], collected: TaskResult | None
    ) -> None:
        """The map succeeded: record its outputs under the collection's key (and its own key
        when every item succeeded and none holds a file), with the index of its children."""
        host, report = self.host, run.report
        del self.active[run.name]
        report.collected = len(run.collected)
        complete = not (report.failed or report.skipped or report.fallback or run.files)
        index = self._index(run, [c for c in run.collected if c.status is not NodeStatus.FALLBACK])
        record = {**action_record(run.name, outputs), "children": index}
        # how many children a whole-map hit must check first (run/_mapcheck.py)
        record["checks"] = len({c.key for c in run.collected if c.checked})
        actions = [(run.collect_key, record)] if collected is not None else []
        if complete:
            actions.append((run.info.key, record))
            if host.cache.shared:  # teammates get the whole map in one lookup too
                host.cache.store.put_action(run.info.key, record)
        # the map's row names the key its outputs are recorded under (gc keeps that record)
        info = run.info if complete else dataclasses.replace(run.info, key=run.collect_key or "")
        if not complete:  # its own key's lease ends with the commit of its records (a run
            # let in before would miss the collection's record and compute it again)
            host.leases.release_with_commit(run.info.key)
        self._finished_event(run, actions, index["digest"])
        if report.cached == report.children and collected is None:  # nothing ran at all
            host._cached(run.name, info, record if complete else run.found or {"outputs": outputs})
            return
        records = {k: dict(v) for k, v in outputs.items()}
        result = TaskResult(node=run.name, key=info.key, ok=True, outputs=records)
        if collected is not None:
            result.inline = collected.inline
        result.attempts = [Attempt(1, run.started_at, time.time())]
        host._succeeded(run.name, info, result, no_record=True)  # recorded above

    def _index(self, run: MapRun, children: list[Child]) -> dict[str, Any]:
        """The stored index of ``children`` (``plan/_maps.py``): ``cache gc`` keeps the
        children of every map it keeps (``journal/_gc.py``); ``show --items`` lists them."""
        pairs = dict.fromkeys((c.key, c.name) for c in children if c.outputs is not None)
        digest = self.host.cache.store.put_bytes(children_index(pairs))
        return {"digest": digest, "count": len(pairs)}

    def _fail(self, run: MapRun, allowed: int, cause: TaskResult | None = None) -> None:
        del self.active[run.name]
        failed = [c for c in run.children if c.status is NodeStatus.FAILED]
        first = cause or next((c.result for c in failed if c.result is not None), None)
        names = ", ".join(c.name for c in failed[:5]) + (" ..." if len(failed) > 5 else "")
        if cause is not None:
            error = f"collecting its items failed: {cause.error}"
        else:
            error = (
                f"{len(failed)} of {len(run.children)} items failed (max_failures allows "
                f"{allowed}): {names}; first error: {first.error if first else '?'}"
            )
        result = TaskResult(node=run.name, key=run.info.key, ok=False, error=error)
        if first is not None:
            result.traceback, result.exception = first.traceback, first.exception
        result.attempts = [Attempt(1, run.started_at, time.time(), error=error)]
        try:  # what did succeed, for show --items
            index = self._index(run, [c for c in run.children if c.status in _OUT])["digest"]
        except Exception as exc:
            log.warning("%s: could not store the index of its items: %s", run.name, exc)
            index = None
        self._finished_event(run, [], index)
        self.host.leases.finished(run.info.key)
        self.host._failed(run.name, result, run.info, handle=False)

    def _finished_event(
        self, run: MapRun, actions: list[tuple[str | None, dict[str, Any]]], index: str | None
    ) -> None:
        report = run.report
        self.host._emit(
            EventKind.MAP_FINISHED,
            run.name,
            items=report.items,
            children=report.children,
            cached=report.cached,
            executed=len(report.executed),
            failed=len(report.failed),
            skipped=len(report.skipped),
            fallback=len(report.fallback),
            collected=report.collected,
            failed_items=dict(list(report.failed.items())[:100]),
            index=index,
            actions=[(k, r) for k, r in actions if k is not None],
        )
