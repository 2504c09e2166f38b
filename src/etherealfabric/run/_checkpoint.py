"""Intra-node checkpoints: a long node saves its progress and a retry continues from it.

A node that runs for hours (a training loop, a big crawl) saves its state now and then; if
the attempt dies (an exception, a killed process, a lost machine), the next attempt, whether
a retry in the same run or a new run of the same workflow, loads the last state and continues
from there instead of starting over::

    from etherealfabric import node
    from etherealfabric import checkpoint

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
- The active checkpoint lives in a :class:`contextvars.ContextVar` (``define/_context.py``)
  set by the worker around each attempt, so it is per thread and per node. Threads that a node starts
  itself do not inherit it; run them with ``contextvars.copy_context().run`` if they must
  save checkpoints.

Save at a granularity where the cost of pickling and writing the state is small compared with
the work it protects (every epoch, not every batch).
"""

from __future__ import annotations

import logging
from typing import Any

from ..define._secret import refusing_secrets
from ..errors import SerializationError
from ..store import Store
from ..store._base import check_name

__all__ = ["Checkpoint"]

log = logging.getLogger("etherealfabric.checkpoint")


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
            with refusing_secrets():  # a Secret in the state raises: secrets are never stored
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
