"""Intra-node checkpoints: a long node saves its progress and a retry continues from it.

A node that runs for hours (a training loop, a big crawl) saves its state now and then; if
the attempt dies (an exception, a killed process, a lost machine), the next attempt, whether
a retry in the same run or a new run of the same workflow, loads the last state and continues
from there instead of starting over::

    from etherealfabric import node
    from etherealfabric.run._checkpoint import checkpoint

    @node
    def train(data, epochs):
        state = checkpoint.load(default={"epoch": 0, "weights": init()})
        for epoch in range(state["epoch"], epochs):
            state["weights"] = step(state["weights"], data)
            state["epoch"] = epoch + 1
            checkpoint.save(state)
        return state["weights"]

Class nodes use ``self.checkpoint.save(state)`` and ``self.checkpoint.load()`` the same way.

How it works:

- A checkpoint is stored **under the node's cache key** (``checkpoints/<2 hex>/<key>`` in a
  local store). Each :meth:`Checkpoint.save` replaces the previous state atomically, so a crash
  while saving leaves the previous checkpoint intact. The scheduler deletes the checkpoint once
  the node's success is committed.
- Because the key covers the node's code and inputs, **editing the node's code or its inputs
  starts fresh**: the new key has no checkpoint, and the old one is orphaned (left in the
  store, never loaded with code or data it does not match). Orphans are ordinary files under
  ``checkpoints/`` and may be deleted at any time.
- States are serialized with **cloudpickle**, and loading one unpickles it, which can run
  arbitrary code. Only load checkpoints from stores you trust (your own home; a shared store
  only if everyone who can write to it is trusted).
- A stored checkpoint carries a digest of its bytes: a damaged one, or one that no longer
  unpickles, is ignored with a warning and the node starts from the beginning.
- The active checkpoint lives in a :class:`contextvars.ContextVar` set by the worker around
  each attempt (:func:`activate`), so it is per thread and per node. Threads that a node starts
  itself do not inherit it; run them with ``contextvars.copy_context().run`` if they must
  save checkpoints.

Save at a granularity where the cost of pickling and writing the state is small compared with
the work it protects (every epoch, not every batch).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

from ..errors import ExecutionError, SerializationError
from ..store import Store
from ..store._base import check_name

__all__ = ["Checkpoint", "activate", "checkpoint", "current_checkpoint"]

log = logging.getLogger("etherealfabric.checkpoint")

_current: contextvars.ContextVar[Checkpoint | None] = contextvars.ContextVar(
    "etherealfabric_checkpoint", default=None
)


class Checkpoint:
    """The checkpoint of one node: its saved state, stored under the node's cache key."""

    def __init__(self, store: Store, key: str, node: str) -> None:
        self.store = store
        self.key = check_name(key, "cache key")
        self.node = node
        self.saves = 0  # saves made by this attempt
        self.used = False  # whether the node touched its checkpoint at all (then it is removed)

    def save(self, state: object) -> None:
        """Store ``state`` (cloudpickled), replacing the previously saved one atomically."""
        import cloudpickle

        try:
            data = cloudpickle.dumps(state)
        except Exception as exc:
            raise SerializationError(
                f"node {self.node!r}: cannot save a checkpoint: the state of type "
                f"{type(state).__qualname__} cannot be pickled ({type(exc).__name__}: {exc})",
                node=self.node,
                type_name=f"{type(state).__module__}.{type(state).__qualname__}",
            ) from exc
        self.used = True
        self.store.put_checkpoint(self.key, data)
        self.saves += 1
        log.debug(
            "node %r: checkpoint %d saved (%d bytes, key %s)",
            self.node,
            self.saves,
            len(data),
            self.key,
        )

    def load(self, default: Any = None) -> Any:
        """The last saved state, or ``default`` if there is none (or it cannot be read back)."""
        self.used = True
        data = self.store.get_checkpoint(self.key)
        if data is None:
            return default
        import cloudpickle

        try:
            state = cloudpickle.loads(data)
        except Exception as exc:
            log.warning(
                "node %r: ignoring its checkpoint (key %s): it cannot be unpickled "
                "(%s: %s); the node starts from the beginning",
                self.node,
                self.key,
                type(exc).__name__,
                exc,
            )
            return default
        log.info("node %r: resuming from its checkpoint (key %s)", self.node, self.key)
        return state

    def exists(self) -> bool:
        """True if a saved state is present and intact."""
        self.used = True
        return self.store.get_checkpoint(self.key) is not None

    def clear(self) -> None:
        """Delete the saved state; the next :meth:`load` returns its default."""
        self.store.delete_checkpoint(self.key)

    def __repr__(self) -> str:
        return f"<Checkpoint of node {self.node!r} key {self.key} in {self.store.url}>"


@contextlib.contextmanager
def activate(cp: Checkpoint) -> Iterator[Checkpoint]:
    """Make ``cp`` the current checkpoint (of the current thread/context) inside the block."""
    token = _current.set(cp)
    try:
        yield cp
    finally:
        _current.reset(token)


def current_checkpoint() -> Checkpoint:
    """The checkpoint of the node running in this thread; :class:`ExecutionError` if none."""
    cp = _current.get()
    if cp is None:
        raise ExecutionError(
            "no checkpoint is active: checkpoints exist only while a node runs (inside a "
            "node's function or run() during workflow.execute()), not when a node function "
            "is called directly or in a thread the node started without copying its context"
        )
    return cp


class _CurrentCheckpoint:
    """``checkpoint``: the running node's :class:`Checkpoint`, for function nodes."""

    __slots__ = ()

    def save(self, state: object) -> None:
        """Save ``state`` as the running node's checkpoint (see :meth:`Checkpoint.save`)."""
        current_checkpoint().save(state)

    def load(self, default: Any = None) -> Any:
        """The running node's last saved state, or ``default`` (see :meth:`Checkpoint.load`)."""
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
        cp = _current.get()
        return f"<current checkpoint: {cp!r}>" if cp else "<current checkpoint: none active>"


#: The running node's checkpoint: ``checkpoint.save(state)``, ``checkpoint.load(default)``.
checkpoint = _CurrentCheckpoint()
