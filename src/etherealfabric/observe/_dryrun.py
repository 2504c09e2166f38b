"""A dry run: the plan of a workflow, with what the journal's history adds to it.

The plan (:mod:`etherealfabric.plan._plan`) says which nodes are cached and which will run, and
carries each node's key, key components and cached record. A dry run adds only what history
knows, without computing a key or looking one up again:

- a cached node: the run that computed its key;
- a node that will run: what changed since its previous run in this workflow (the words of
  ``explain``, from :func:`~etherealfabric.observe._explain.diff_components`) and an estimate,
  the median duration of its past executions; a mapped node, how many items it had last time.

:func:`plan_workflow` plans a graph with the run's settings, writing nothing: the cache is read
only, remembered file digests are read but not written, and with no journal yet none is created.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..journal import _history as history
from ..journal import _maps as maps
from ..plan._plan import Plan, PlanEntry, make_plan
from ..states import PlanAction
from ._explain import Change, diff_components, previous_outcome

if TYPE_CHECKING:
    from ..config import Settings
    from ..journal._journal import Journal
    from ..plan._graph import Graph
    from ..plan._keys import KeyInfo

__all__ = ["DryRun", "PlannedNode", "dry_run", "plan_workflow"]


@dataclass(frozen=True)
class PlannedNode:
    """One node of a dry run: the plan's entry, with what history says (reason, changes, estimate).

    ``estimate`` is the median duration in seconds of the node's past executions (``None``: no
    history, or a cached node).
    """

    entry: PlanEntry
    reason: str
    changes: tuple[Change, ...] = ()
    estimate: float | None = None

    @property
    def node(self) -> str:
        return self.entry.node

    @property
    def action(self) -> PlanAction:
        return self.entry.action

    @property
    def key(self) -> str | None:
        return self.entry.key

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: ``node, action, maybe, reason, key, changes, estimate``."""
        return {
            "node": self.node,
            "action": self.action.value,
            "maybe": self.entry.maybe,
            "reason": self.reason,
            "key": self.key,
            "changes": [str(c) for c in self.changes],
            "estimate": self.estimate,
        }


@dataclass(frozen=True)
class DryRun:
    """The plan of a whole workflow, with reasons and estimated durations."""

    plan: Plan
    nodes: tuple[PlannedNode, ...]

    @property
    def workflow(self) -> str:
        return self.plan.workflow

    def __getitem__(self, node: str) -> PlannedNode:
        for planned in self.nodes:
            if planned.node == node:
                return planned
        raise KeyError(node)

    def __iter__(self) -> Iterator[PlannedNode]:
        return iter(self.nodes)

    @property
    def to_run(self) -> list[str]:
        return self.plan.to_run

    @property
    def cached(self) -> list[str]:
        return self.plan.cached

    @property
    def unestimated(self) -> list[str]:
        """Nodes that will run and have never run before in this workflow."""
        return [n.node for n in self.nodes if n.action is PlanAction.RUN and n.estimate is None]

    @property
    def estimate(self) -> float | None:
        """Sum of the estimates of the nodes that will run; None when none has history."""
        known = [
            n.estimate for n in self.nodes if n.action is PlanAction.RUN and n.estimate is not None
        ]
        if not known and self.unestimated:
            return None
        return sum(known)

    def __repr__(self) -> str:
        return (
            f"<plan of {self.workflow!r}: {len(self.cached)} cached, {len(self.to_run)} will run>"
        )

    def __str__(self) -> str:
        """What ``etherealfabric plan`` prints: a node a line (what a run would do, its
        estimated duration, why), with what changed under the nodes that run."""
        width = max((len(n.node) for n in self.nodes), default=0)
        lines = [repr(self)[1:-1]]
        for n in self.nodes:
            if n.action is PlanAction.CACHED:
                action, estimate = "cached", "-"
            else:
                action = "may run" if n.entry.maybe else "will run"
                estimate = "unknown" if n.estimate is None else f"{n.estimate:.2f}s"
            lines.append(f"  {n.node:<{width}}  {action:<8}  {estimate:>7}  {n.reason}")
            if len(n.changes) > 1:  # (one is the reason itself)
                lines.extend(f"  {'':<{width}}    - {change}" for change in n.changes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "workflow": self.workflow,
            "nodes": [n.to_dict() for n in self.nodes],
            "to_run": self.to_run,
            "cached": self.cached,
            "estimate": self.estimate,
            "unestimated": self.unestimated,
        }


def dry_run(
    plan: Plan, journal: Journal | None, refused: Mapping[str, str] | None = None
) -> DryRun:
    """Add to ``plan`` the reasons and estimates of ``journal``'s history (``None``: no journal).
    ``refused``: why the plan's lookups refused records of unchanged keys, by key (a data file
    the node read changed: ``ArtifactCache.refused``)."""
    refused = refused or {}
    durations = history.median_durations(journal, plan.workflow) if journal else {}
    nodes = []
    for entry in plan:
        if entry.action is PlanAction.CACHED:
            nodes.append(PlannedNode(entry, _why_cached(journal, entry.key)))
            continue
        reason = entry.reason
        changes: tuple[Change, ...] = ()
        # key_info None: an upstream node runs first; maybe: one ordered first may change a file
        # it reads (the plan says which)
        if entry.key_info is not None and not entry.maybe:
            if journal is None:
                reason = "no previous run (no journal yet)"
            else:
                reason, changes = _why_run(journal, plan.workflow, entry.key_info, refused)
                if entry.maps_over is not None and not changes and entry.key not in refused:
                    reason = entry.reason  # the same map: its items decide, one by one
        if entry.maps_over is not None and journal is not None:
            reason += _items_last_time(journal, plan.workflow, entry.node)
        nodes.append(PlannedNode(entry, reason, changes, durations.get(entry.node)))
    return DryRun(plan, tuple(nodes))


def _items_last_time(journal: Journal, workflow: str, node: str) -> str:
    last = maps.last_map(journal, workflow, node)
    if last is None:
        return "; never mapped before"
    ran = (last.get("executed") or 0) + (last.get("failed") or 0)
    return f"; {last.get('items')} items in run {last['run_id']} ({ran} ran, {last.get('cached')} cached)"


def _why_cached(journal: Journal | None, key: str | None) -> str:
    producer = history.producer_of(journal, key, before=float("inf")) if journal and key else None
    if producer is None:
        return "cached result found"
    return f"same key as run {producer['run_id']}"


def _why_run(
    journal: Journal, workflow: str, info: KeyInfo, refused: Mapping[str, str]
) -> tuple[str, tuple[Change, ...]]:
    previous = history.previous_keyed_run(journal, info.spec.name, workflow=workflow)
    if previous is None:
        return "no previous run of this node in this workflow", ()
    if previous["cache_key"] == info.key:
        if info.key in refused:  # a data file it read changed since its cached result
            return f"same key as run {previous['run_id']}, but {refused[info.key]}", ()
        # it failed, or its run stopped: nothing was cached
        ended = previous_outcome(previous, journal)
        why = ended or "but its cached result is gone"
        return f"same key as run {previous['run_id']}, {why}", ()
    old = history.components_of(journal, previous)
    if old is None:
        return f"key differs from run {previous['run_id']}'s (its components are not recorded)", ()
    changes = tuple(diff_components(old, info.components()))
    text = "; ".join(str(c) for c in changes) or "key changed"
    return f"{text} (since run {previous['run_id']})", changes


class _ReadOnlyDigests:
    """The journal's remembered file digests, read but never written (a dry run writes nothing)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def get(self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str | None:
        return self.journal.get(path, size, mtime_ns, inode, ctime_ns)

    def put(
        self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int, digest: str
    ) -> None:
        """Forget it: a dry run leaves the journal as it was."""


def plan_workflow(graph: Graph, settings: Settings, *, root: str | None = None) -> DryRun:
    """Plan a run of ``graph`` with ``settings`` without running or writing anything
    (``root``: the workflow's root folder, where the data files its nodes read are)."""
    from ..hashing._secret import secret_hasher
    from ..journal._journal import Journal
    from ..run._cache import ArtifactCache
    from ..store import open_run_store

    store = open_run_store(settings)
    exists = settings.journal_path.exists()  # planning creates nothing: no journal, a scratch one
    # a read-only home is read read-only (planning writes nothing anyway)
    with Journal(settings.journal_path if exists else ":memory:", read_only=None) as journal:
        digests = _ReadOnlyDigests(journal)
        cache = ArtifactCache(  # no writer: it only reads
            journal, store, shared=settings.shared_store, root=root, file_cache=digests
        )
        secrets = secret_hasher(settings.home, shared_store=settings.shared_store, read_only=True)
        plan = make_plan(graph, cache.lookup, file_cache=digests, secrets=secrets)
        return dry_run(plan, journal if exists else None, cache.refused)
