"""What the running code can see: the workflow being defined, and the running node's checkpoint.

Two context variables, so both are per thread and per task:

- the workflow of the innermost ``with Workflow():`` block, which ``@node`` calls add to;
- the checkpoint of the node running in this thread, set by the worker around each attempt
  (see ``run/_checkpoint.py`` for how checkpoints are stored). ``checkpoint`` is the proxy users
  call from function nodes: ``checkpoint.save(state)``, ``checkpoint.load(default)``.

Nothing here does I/O: the checkpoint object is whatever the worker activates.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from ..errors import ExecutionError

__all__ = [
    "CheckpointLike",
    "NodeCollector",
    "Setting",
    "activate_checkpoint",
    "checkpoint",
    "current_checkpoint",
    "current_collector",
    "defining",
    "outside_definition",
]


T = TypeVar("T")
Y = TypeVar("Y")


class Setting(Generic[T, Y]):
    """``with Setting(var, value, given):`` sets the context variable ``var`` to ``value``
    inside the block, which receives ``given``. A class, not a ``@contextmanager``
    generator: the worker enters four such blocks per node, and a generator's costs
    about a microsecond more each."""

    __slots__ = ("_given", "_token", "_value", "_var")

    def __init__(self, var: contextvars.ContextVar[T], value: T, given: Y) -> None:
        self._var, self._value, self._given = var, value, given

    def __enter__(self) -> Y:
        self._token = self._var.set(self._value)
        return self._given

    def __exit__(self, *exc: object) -> None:
        self._var.reset(self._token)


class NodeCollector(Protocol):
    """What ``@node`` calls need from the workflow being defined."""

    def add_node(self, node: Any, name: str | None = None) -> Any: ...


class CheckpointLike(Protocol):
    """What a node can do with its checkpoint."""

    saves: int

    def save(self, state: object) -> None: ...
    def load(self, default: Any = None) -> Any: ...
    def exists(self) -> bool: ...
    def clear(self) -> None: ...


_collector: contextvars.ContextVar[NodeCollector | None] = contextvars.ContextVar(
    "etherealfabric_workflow", default=None
)
_checkpoint: contextvars.ContextVar[CheckpointLike | None] = contextvars.ContextVar(
    "etherealfabric_checkpoint", default=None
)


def current_collector() -> NodeCollector | None:
    """The workflow of the innermost ``with Workflow():`` block, if any."""
    return _collector.get()


@contextlib.contextmanager
def defining(collector: NodeCollector) -> Iterator[None]:
    """Make ``collector`` the workflow that ``@node`` calls add to, inside the block."""
    token = _collector.set(collector)
    try:
        yield
    finally:
        _collector.reset(token)


def outside_definition() -> Setting[NodeCollector | None, None]:
    """No workflow is being defined inside the block: a run's nodes call ``@node`` functions
    as plain functions, and build class nodes without adding them anywhere, even when
    ``execute()`` is called inside a ``with Workflow():`` block (short nodes may run in the
    caller's thread, which is in that block)."""
    return Setting(_collector, None, None)


def activate_checkpoint(cp: CheckpointLike) -> Setting[CheckpointLike | None, CheckpointLike]:
    """Make ``cp`` the current checkpoint (of the current thread/context) inside the block."""
    return Setting(_checkpoint, cp, cp)


def current_checkpoint() -> CheckpointLike:
    """The checkpoint of the node running in this thread; :class:`ExecutionError` if none."""
    cp = _checkpoint.get()
    if cp is None:
        raise ExecutionError(
            "no checkpoint is active: checkpoints exist only while a node runs (inside a "
            "node's function or run() during workflow.execute()), not when a node function "
            "is called directly or in a thread the node started without copying its context"
        )
    return cp


class _CurrentCheckpoint:
    """``checkpoint``: the running node's checkpoint, for function nodes."""

    __slots__ = ()

    def save(self, state: object) -> None:
        """Save ``state`` as the running node's checkpoint, replacing the previous one."""
        current_checkpoint().save(state)

    def load(self, default: Any = None) -> Any:
        """The running node's last saved state, or ``default``."""
        return current_checkpoint().load(default)

    def exists(self) -> bool:
        """True if the running node has an intact saved state."""
        return current_checkpoint().exists()

    def clear(self) -> None:
        """Delete the running node's saved state."""
        current_checkpoint().clear()

    @property
    def saves(self) -> int:
        """How many saves the running node's current attempt made."""
        return current_checkpoint().saves

    def __reduce__(self) -> str:
        return "checkpoint"  # pickled by reference: the one proxy of this module

    def __repr__(self) -> str:
        cp = _checkpoint.get()
        return f"<current checkpoint: {cp!r}>" if cp else "<current checkpoint: none active>"


#: The running node's checkpoint: ``checkpoint.save(state)``, ``checkpoint.load(default)``.
checkpoint = _CurrentCheckpoint()
