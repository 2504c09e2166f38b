"""The worker side of a mapped node: run a chunk of its children, and collect their outputs.

A map's children are sent to the backend in chunks (:class:`Chunk`), so that a hundred
thousand trivial items cost a few hundred tasks, not a hundred thousand: each child is still
its own :class:`~._messages.Task`, run by :func:`~._worker.execute` with its own retries,
timeout, captured output and stored outputs, and comes back as its own
:class:`~._messages.TaskResult`. The scheduler sizes chunks from how long children take
(``run/_mapping.py``), so slow children travel one by one.

:func:`collect_values` is the code of a map's collection: it receives the children's outputs
(loaded by the worker like any inputs) and returns them as a list, or a dict by the items'
keys.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._messages import Task, TaskResult
from ._worker import execute

__all__ = ["Chunk", "ChunkResult", "collect_values", "run_chunk"]


@dataclass
class Chunk:
    """Some children of one map, run one after the other by one worker."""

    node: str
    tasks: list[Task] = field(default_factory=list)


@dataclass
class ChunkResult:
    """The children's results, in order, and how long the chunk took in the worker."""

    results: list[TaskResult]
    seconds: float


def run_chunk(chunk: Chunk) -> ChunkResult:
    """Run every child of ``chunk``; a failing child is reported in its result, never raised."""
    started = time.perf_counter()
    results = [execute(task) for task in chunk.tasks]
    return ChunkResult(results, time.perf_counter() - started)


def collect_values(
    labels: Sequence[Any] | None, columns: Mapping[str, Sequence[Any]], single: bool
) -> Any:
    """The collected outputs: per output, a list in item order or a dict by ``labels``."""
    shaped = {
        name: list(values) if labels is None else dict(zip(labels, values, strict=True))
        for name, values in columns.items()
    }
    return next(iter(shaped.values())) if single else shaped
