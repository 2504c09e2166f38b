"""The states of nodes and runs, and the kinds of run events: defined once, here.

They are ``str`` enums: a member equals its value (``NodeStatus.CACHED == "cached"``), prints as
its value and is stored as its value in the journal and in JSON, so rows written by older
versions read back as members (``NodeStatus(row["status"])``).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["EventKind", "NodeStatus", "PlanAction", "RunStatus"]


class _StrEnum(str, Enum):
    """A ``str`` enum that formats as its value on every Python version."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class NodeStatus(_StrEnum):
    """Where one node stands in a run (and the status of its ``node_runs`` rows)."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"  # an attempt that failed and was followed by another
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    FALLBACK = "fallback"  # on_error supplied the outputs
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the run's process died while the node ran
    #: the node succeeded but an input file changed while it ran: its outputs served this run
    #: and were not cached (the journal row's error names the file)
    DRIFTED = "drifted"

    @property
    def done(self) -> bool:
        """The node has outputs downstream nodes can use."""
        return self in _DONE

    @property
    def final(self) -> bool:
        """The node will not change state again in this run."""
        return self not in (NodeStatus.PENDING, NodeStatus.RUNNING, NodeStatus.RETRYING)


_DONE = frozenset(
    {NodeStatus.SUCCEEDED, NodeStatus.CACHED, NodeStatus.FALLBACK, NodeStatus.DRIFTED}
)


class RunStatus(_StrEnum):
    """Where a whole run stands."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class EventKind(_StrEnum):
    """The kinds of run events, in the order a run produces them (see ``run/_events.py``)."""

    RUN_STARTED = "run_started"
    NODE_CACHED = "node_cached"
    NODE_STARTED = "node_started"
    NODE_RETRYING = "node_retrying"
    NODE_SUCCEEDED = "node_succeeded"
    NODE_FAILED = "node_failed"
    NODE_FALLBACK = "node_fallback"
    NODE_SKIPPED = "node_skipped"
    NODE_UPSTREAM_FAILED = "node_upstream_failed"
    NODE_CANCELLED = "node_cancelled"
    #: a mapped node's items are known: how many, how many cached (data: items, children,
    #: cached, to_run)
    MAP_STARTED = "map_started"
    #: some children of a mapped node finished (data: ``children``, a list of
    #: ``run._mapping.ChildDone``); the journal records them as node rows ``map[label]``
    MAP_ITEMS = "map_items"
    #: a mapped node's children are all done (data: counts, the failed items and their errors)
    MAP_FINISHED = "map_finished"
    RUN_FINISHED = "run_finished"

    @property
    def final_status(self) -> NodeStatus | None:
        """The node status this event puts its node in for good, if any."""
        return _FINAL.get(self)


_FINAL = {
    EventKind.NODE_CACHED: NodeStatus.CACHED,
    EventKind.NODE_SUCCEEDED: NodeStatus.SUCCEEDED,
    EventKind.NODE_FAILED: NodeStatus.FAILED,
    EventKind.NODE_FALLBACK: NodeStatus.FALLBACK,
    EventKind.NODE_SKIPPED: NodeStatus.SKIPPED,
    EventKind.NODE_UPSTREAM_FAILED: NodeStatus.UPSTREAM_FAILED,
    EventKind.NODE_CANCELLED: NodeStatus.CANCELLED,
}


class PlanAction(_StrEnum):
    """What a run would do with a node."""

    CACHED = "cached"
    RUN = "run"
