"""A failed node's way out: its ``on_error`` handler, and its descendants blocked.

A node's ``on_error`` (or the run's) may answer a failure with fallback outputs, which are
stored like a node's and stand for it (``fallback``), or with ``SKIP``, which skips it and
its descendants. Either way the node ran and failed: the journal keeps its attempts (key,
times, errors, tracebacks, output), the last one ``fallback`` or ``skipped``. Otherwise the
failure stands, and every node below it that has not run is ``upstream_failed``.

:class:`Fallbacks` is a part of the :class:`~._scheduler.Scheduler` (a base class).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..define._policies import SKIP, ErrorHandler, NodeError
from ..plan._graph import Graph
from ..plan._keys import KeyInfo
from ..states import EventKind, NodeStatus
from ..store import Store
from ._cache import ArtifactCache
from ._outcome import RunOutcome

if TYPE_CHECKING:
    from ._messages import TaskResult

__all__ = ["Fallbacks", "ask_handler"]


def ask_handler(handler: ErrorHandler, name: str, result: TaskResult) -> Any:
    """What ``on_error`` answers to the failure of node ``name`` (a node, or a map's child):
    ``SKIP``, fallback outputs, or None (the failure stands). A handler that raises, or
    answers anything else, is noted in ``result.error`` and answers None."""
    error = NodeError(
        node=name,
        error=result.error or "",
        attempts=max(1, len(result.attempts)),
        traceback=result.traceback or "",
        exception=result.exception,
    )
    try:
        answer = handler(error)
    except Exception as exc:
        result.error = f"{result.error}; on_error handler raised {type(exc).__name__}: {exc}"
        return None
    if answer is not None and answer is not SKIP and not isinstance(answer, Mapping):
        result.error = (
            f"{result.error}; on_error handler returned {type(answer).__name__} "
            f"{answer!r:.60}, which is no answer: return a dict of fallback outputs by name "
            "({'result': value} for a function node), SKIP or None"
        )
        return None
    return answer


class Fallbacks:
    """The scheduler's handling of failures (see the module docstring)."""

    graph: Graph
    store: Store
    cache: ArtifactCache
    outcome: RunOutcome
    inline_limit: int
    _leased_elsewhere: dict[str, KeyInfo]
    _index: dict[str, int]

    def _emit(self, kind: EventKind, node: str | None = None, **data: Any) -> None:
        raise NotImplementedError  # Scheduler._emit

    def _release(self, name: str) -> None:
        raise NotImplementedError  # Scheduler._release

    def _handle_error(
        self, name: str, result: TaskResult, info: KeyInfo | None, handler: ErrorHandler
    ) -> bool:
        """Let ``on_error`` supply fallback outputs or skip the node; True when it did."""
        answer = ask_handler(handler, name, result)
        if answer is SKIP:
            self.outcome.status[name] = NodeStatus.SKIPPED
            # it ran: its attempts, key and input edges are kept as a fallback's; and its data
            # upstreams, as a blocked node's (the run graph draws its input edges from them)
            self._emit(
                EventKind.NODE_SKIPPED, name, error=result.error, upstreams=self._data_ups(name),
                key=result.key or None, result=result,
                components=info.components() if info is not None else None,
            )  # fmt: skip
            self._block_descendants(name, NodeStatus.SKIPPED)
            return True
        if not isinstance(answer, Mapping):
            return False
        spec = self.graph.specs[name]
        try:
            if missing := [o for o in spec.outputs if o not in answer]:
                raise ValueError(f"the fallback of node {name!r} lacks output(s) {missing}")
            if extra := [o for o in answer if o not in spec.outputs]:  # (as run() may not)
                raise ValueError(
                    f"the fallback of node {name!r} names output(s) {extra} it does not "
                    f"declare (its outputs: {list(spec.outputs)})"
                )
            from ._worker import store_values  # (a fallback only: not on every import)

            outputs, inline = store_values(
                name, spec.outputs, answer, spec.serializers, self.store, self.inline_limit
            )
        except Exception as exc:
            result.error = f"{result.error}; its on_error fallback is unusable: {exc}"
            return False
        self.cache.remember_inline(inline)
        self.outcome.status[name] = NodeStatus.FALLBACK
        self.outcome.outputs[name] = outputs
        self._emit(
            EventKind.NODE_FALLBACK,
            name,
            key=result.key or None,
            result=result,
            inline=inline,
            outputs=outputs,
            components=info.components() if info is not None else None,  # (its input edges)
        )
        self._release(name)
        return True

    def _block_descendants(self, name: str, status: NodeStatus) -> None:
        kind = (
            EventKind.NODE_UPSTREAM_FAILED
            if status == NodeStatus.UPSTREAM_FAILED
            else EventKind.NODE_SKIPPED
        )
        for child in sorted(self.graph.descendants(name), key=self._index.__getitem__):
            if self.outcome.status[child] == NodeStatus.PENDING:
                self.outcome.status[child] = status
                self._leased_elsewhere.pop(child, None)
                # its data upstreams: it has no key components, the run graph draws these
                self._emit(kind, child, upstream=name, upstreams=self._data_ups(child))

    def _data_ups(self, name: str) -> list[str]:
        """The nodes whose outputs ``name`` reads (not its ordering-only upstreams)."""
        order = self.graph.ordering_edges
        return [u for u in self.graph.upstream(name) if (u, name) not in order]
