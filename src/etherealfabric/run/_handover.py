"""In-memory hand-over: outputs made in this process reach their consumers without the store.

On a backend whose tasks run in the scheduler's process (threads, ``Backend.in_process``),
the worker returns a node's large numpy outputs with its result (``TaskResult.values``,
frozen: read-only). :meth:`HandOvers.succeeded` holds each one in memory under its digest
(``store/_loading.py``) for as many loads as the graph has references to it, so consumers
load it from memory: nothing is read back from the store. A value is dropped once its last
consumer took it, and whatever is left (consumers that were cached, blocked or never ran) at
the end of the run (:meth:`HandOvers.close`): a long pipeline never holds every output.

The outputs are stored all the same. With durability "safe" the worker writes them (and
fsyncs) before it returns, as for any backend. With durability "fast" (the default) it
returns their digests computed in memory and writes them in a background thread
(``TaskResult.writing``); the node's consumers are released at once, and the node counts as
running until the write is done and checked against those digests. Only then is its
success event emitted, so the journal's record of it is committed after its objects are
stored: a run killed during the write leaves a temp file (collected by ``cache gc``) and no
record, and the node simply runs again next time. A failed write fails the node (its
consumers that already ran keep their results: theirs are stored on their own).
Each held value also counts one load for its write, so that a late load of its digest (a
map, a rewind) finds it in memory while the object is not in the store yet.
"""

from __future__ import annotations

import functools
import queue
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ..define._refs import replace_refs
from ..plan._graph import Graph, InputRef
from ..plan._keys import KeyInfo
from ..store._loading import hold, release
from ._cache import ArtifactCache
from ._messages import TaskResult
from ._outcome import RunOutcome

__all__ = ["HandOvers", "Stored"]


class HandOverHost(Protocol):
    """The part of the scheduler hand-overs use."""

    graph: Graph
    run_id: str
    outcome: RunOutcome
    cache: ArtifactCache
    _done: queue.SimpleQueue[Any]
    _running: dict[str, KeyInfo]

    def _release(self, name: str) -> None: ...
    def _succeeded(
        self, name: str, info: KeyInfo, result: TaskResult, *, release: bool = True
    ) -> None: ...
    def _failed(self, name: str, result: TaskResult, info: KeyInfo | None = None) -> None: ...


@dataclass(frozen=True, eq=False)
class Stored:
    """The completion-queue item of a node whose background write ended."""

    name: str
    info: KeyInfo
    result: TaskResult


class HandOvers:
    """The values one run hands over in memory, and its nodes being written."""

    def __init__(self, host: HandOverHost) -> None:
        self.host = host
        self._held: set[str] = set()  # digests this run holds values under

    def succeeded(self, name: str, info: KeyInfo, result: TaskResult) -> bool:
        """Hold the result's handed-over values for the node's consumers. True when its
        outputs are still being written: the consumers are released now, and its success
        comes through the completion queue as a :class:`Stored` item once they are stored."""
        host = self.host
        writing = result.writing
        for output, value in result.values.items():
            digest = result.outputs[output]["digest"]
            loads = self._references(name, output) + (writing is not None)
            hold(digest, value, loads, owner=host.run_id)
            self._held.add(digest)
        result.values = {}  # the result is kept until the run ends; the values need not be
        if writing is None:
            return False
        host._running[name] = info  # running until its objects are stored
        host.cache.remember_inline(result.inline)  # its consumers can be keyed and started
        host.outcome.outputs[name] = result.outputs
        host._release(name)
        item = Stored(name, info, result)
        writing.add_done_callback(functools.partial(_queue, host._done, item))
        return True

    @staticmethod
    def owns(item: object) -> bool:
        """Whether a completion-queue item is one of :meth:`succeeded`'s :class:`Stored`."""
        return isinstance(item, Stored)

    def stored(self, item: Stored, future: Any) -> None:
        """A background write ended: the node succeeded, or failed if the write did."""
        host, name, result = self.host, item.name, item.result
        del host._running[name]
        for output in result.outputs.values():  # the store has it now: one load less to wait for
            if output["digest"] in self._held:
                release(output["digest"], owner=host.run_id, consumers=1)
        error = future.exception()
        if error is None:
            host._succeeded(name, item.info, result, release=False)
            return
        result.ok = False
        result.error = f"{type(error).__name__}: {error}"
        result.traceback = "".join(traceback.format_exception(error))
        result.exception = error if isinstance(error, Exception) else None
        host._failed(name, result, item.info)

    def close(self) -> None:
        """Drop every value this run still holds (the run is over)."""
        for digest in self._held:
            release(digest, owner=self.host.run_id)
        self._held.clear()

    def _references(self, name: str, output: str) -> int:
        """How many times the node's consumers refer to one of its outputs."""
        specs = self.host.graph.specs
        return sum(
            1
            for child in self.host.graph.succs[name]
            for ref in _refs(specs[child].call_args, specs[child].call_kwargs)
            if ref.node == name and ref.output == output
        )


def _refs(args: tuple[Any, ...], kwargs: Any) -> Iterator[InputRef]:
    found: list[InputRef] = []

    def note(ref: InputRef) -> InputRef:
        found.append(ref)
        return ref

    for value in (*args, *kwargs.values()):
        replace_refs(value, note, kind=InputRef)
    return iter(found)


def _queue(done: queue.SimpleQueue[Any], item: Stored, future: Any) -> None:
    done.put((item, future))
