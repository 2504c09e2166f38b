"""A map's child that failed: its ``on_error`` answer (a fallback output, a skip) or its failure.

``on_error`` applies per child, with the child's name in the :class:`NodeError`: a fallback
replaces that item's output (stored like a node's), ``SKIP`` leaves the item out of the
collection; anything else (or a handler that raises) fails the child alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..define._policies import SKIP
from ..states import NodeStatus
from ._fallback import ask_handler
from ._mapstate import Child, ChildDone, MapHost, MapRun
from ._messages import TaskResult
from ._worker import store_values

__all__ = ["child_failed"]


def child_failed(host: MapHost, run: MapRun, child: Child, result: TaskResult) -> ChildDone:
    """``on_error`` per child: a fallback or a skip, else the child failed."""
    handler = run.spec.on_error or host.policy.on_error
    answer = None
    if handler is not None:
        answer = ask_handler(handler, child.name, result)
    if answer is SKIP:
        child.status = NodeStatus.SKIPPED
        run.report.skipped.append(child.name)
        return ChildDone(child.name, NodeStatus.SKIPPED, result)
    if isinstance(answer, Mapping):
        try:
            return _fallback(host, run, child, result, answer)
        except Exception as exc:
            result.error = f"{result.error}; its on_error fallback is unusable: {exc}"
    child.status = NodeStatus.FAILED
    run.failures += 1
    run.report.failed[child.name] = result.error or ""
    components = run.keys.components(child.item, child.digest, run.name)
    return ChildDone(child.name, NodeStatus.FAILED, result, components=components)


def _fallback(
    host: MapHost, run: MapRun, child: Child, result: TaskResult, answer: Mapping[str, Any]
) -> ChildDone:
    spec = run.spec
    missing = [o for o in spec.outputs if o not in answer]
    if missing:
        raise ValueError(f"the fallback of {child.name} lacks output(s) {missing}")
    outputs, inline = store_values(
        child.name, spec.outputs, answer, spec.serializers, host.cache.store,
        host.inline_limit,
    )  # fmt: skip
    host.cache.remember_inline(inline)
    child.status, child.outputs = NodeStatus.FALLBACK, outputs
    run.report.fallback.append(child.name)
    return ChildDone(child.name, NodeStatus.FALLBACK, result, inline=inline)
