"""Nodes of one run with equal keys: the first one computes, the others wait for its outputs.

Two nodes of a workflow can have the same key: the same function called twice with the same
arguments (``[transform(df, n) for n in names]`` with a repeated name), or two instances of a
class node built alike. The cache would serve the second once the first's result is
committed, but both are ready at once, and the leases cannot keep them apart: both are this
run's. So while a node of the run computes a key, another node of that key waits
(:meth:`SameKeys.wait`) and, when the first succeeds, takes its outputs as a cache hit
(:meth:`SameKeys.settle`). When the first does not succeed (it failed, fell back, was skipped
or must re-run after a bad input), the waiting nodes start again on their own: they run,
or fail, like any node. Map children are keyed per item and leased by chunks
(``run/_mapping.py``); they are not covered here.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from ..plan._keys import KeyInfo
from ..states import NodeStatus
from ._outcome import RunOutcome

__all__ = ["SameKeys"]

log = logging.getLogger("etherealfabric.scheduler")


class SameKeysHost(Protocol):
    """The part of the scheduler :class:`SameKeys` uses."""

    outcome: RunOutcome
    _ready: deque[str]

    def _cached(self, name: str, info: KeyInfo, record: Mapping[str, Any]) -> None: ...


class SameKeys:
    """Which node of the run computes each key, and the nodes of that key waiting for it."""

    def __init__(self, host: SameKeysHost) -> None:
        self.host = host
        self._computing: dict[str, str] = {}  # key -> the node computing it
        self._waiting: dict[str, list[tuple[str, KeyInfo]]] = {}  # key -> nodes waiting

    def computing(self, name: str, info: KeyInfo) -> None:
        """``name`` was submitted to compute ``info.key``."""
        self._computing[info.key] = name

    def wait(self, name: str, info: KeyInfo) -> bool:
        """True when another node of this run is computing ``info.key``: ``name`` waits for
        it instead of doing the same work again."""
        computing = self._computing.get(info.key)
        if computing is None or computing == name:
            return False
        log.info(
            "%s: node %r of this run is computing key %s; waiting for it",
            name,
            computing,
            info.key[:12],
        )
        self._waiting.setdefault(info.key, []).append((name, info))
        return True

    def settle(self, key: str, outputs: Mapping[str, Any] | None) -> None:
        """The node computing ``key`` ended: the nodes waiting for it take its ``outputs``
        (it succeeded), or are ready to start on their own again (``None``: it did not)."""
        self._computing.pop(key, None)
        host = self.host
        for name, info in self._waiting.pop(key, ()):
            if host.outcome.status[name] != NodeStatus.PENDING:
                continue  # cancelled or blocked meanwhile
            if outputs is not None:
                host._cached(name, info, {"outputs": outputs})
            else:
                host._ready.appendleft(name)
