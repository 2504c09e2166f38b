"""The plan: which nodes a run would take from the cache, which it would run, and why.

:func:`make_plan` walks the graph in run order without running anything. A node whose upstream
nodes are all cached gets its key (:func:`~etherealfabric.plan._keys.node_key`) and one lookup;
its :class:`PlanEntry` keeps both, the :class:`~etherealfabric.plan._keys.KeyInfo` (key and
components) and the record found, so whoever reads the plan (a dry run, a resume) never
computes a key or looks it up again. A node with an upstream node that runs first has no key
yet (it depends on what that node will produce): its entry names that node.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..define._files import path_values
from ..define._node import NodeSpec
from ..define._refs import replace_refs
from ..hashing._files import FileHashCache
from ..hashing._secret import SecretHasher
from ..states import PlanAction
from ._graph import Graph, InputRef
from ._keys import KeyInfo, node_key

__all__ = ["Lookup", "Plan", "PlanEntry", "make_plan", "maps_over"]

Lookup = Callable[[str], Mapping[str, Any] | None]  # cache key -> action record, or None


@dataclass(frozen=True)
class PlanEntry:
    """What a run would do with one node, and what the plan computed to decide it.

    ``key_info`` is ``None`` only when an upstream node runs first (the key cannot be known
    yet); ``record`` is the action record found in the cache (``None`` unless ``cached``).
    """

    node: str
    action: PlanAction
    reason: str
    key_info: KeyInfo | None = None
    record: Mapping[str, Any] | None = None
    #: a mapped node: the outputs it maps over (``items.result``), else None
    maps_over: str | None = None
    #: ``run`` only if a node ordered before it (``add_dependency``), which runs, changes a
    #: file it reads: its cached result is there for the files as they are now
    maybe: bool = False

    @property
    def key(self) -> str | None:
        """The node's cache key, if it could be computed."""
        return None if self.key_info is None else self.key_info.key

    @property
    def outputs(self) -> Mapping[str, Mapping[str, Any]] | None:
        """The output records of a cached node (output name -> record), else ``None``."""
        return None if self.record is None else self.record["outputs"]


@dataclass(frozen=True)
class Plan:
    """The plan of a whole graph: one entry per node, in run order."""

    workflow: str
    entries: tuple[PlanEntry, ...]
    _by_node: dict[str, PlanEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_node", {e.node: e for e in self.entries})

    def __getitem__(self, node: str) -> PlanEntry:
        return self._by_node[node]

    def __iter__(self) -> Iterator[PlanEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def to_run(self) -> list[str]:
        """The nodes a run would execute, in run order."""
        return [e.node for e in self.entries if e.action is PlanAction.RUN]

    @property
    def cached(self) -> list[str]:
        """The nodes a run would take from the cache, in run order."""
        return [e.node for e in self.entries if e.action is PlanAction.CACHED]


def maps_over(spec: NodeSpec) -> str | None:
    """What a mapped node maps over, for people: ``items.result``, or ``a literal list``."""
    if spec.map is None:
        return None
    refs: list[InputRef] = []
    replace_refs(spec.params[spec.map.item_param], refs.append, kind=InputRef)
    if not refs:
        return "a literal list"
    return ", ".join(f"{r.node}.{r.output}" for r in refs)


def make_plan(
    graph: Graph,
    lookup: Lookup,
    *,
    file_cache: FileHashCache | None = None,
    secrets: SecretHasher | None = None,
) -> Plan:
    """Decide, without running anything, which nodes are cached and which must run.

    ``lookup`` is called once per node whose key can be known (``ArtifactCache.lookup``; a
    dry run passes one made with ``read_only=True``). ``file_cache`` remembers file digests;
    ``secrets`` keys Secret parameters (see :func:`~etherealfabric.plan._keys.node_key`).
    """
    known: dict[str, Mapping[str, Mapping[str, Any]]] = {}
    entries: list[PlanEntry] = []
    for name in graph.order:
        spec = graph.specs[name]
        over = maps_over(spec)
        waiting = [u for u in spec.upstream if u not in known]
        if waiting:
            reason = f"upstream {sorted(waiting)[0]!r} runs first"
            if over is not None:  # its items are not known yet
                reason = f"maps over the output of {over} ({sorted(waiting)[0]!r} runs first)"
            entries.append(PlanEntry(name, PlanAction.RUN, reason, maps_over=over))
            continue
        info = node_key(spec, known, file_cache=file_cache, secrets=secrets)
        record = lookup(info.key)
        if record is None:
            reason = "no cached result for its key"
            if over is not None:
                reason = f"maps over the output of {over}: item by item (no result for the whole)"
            entries.append(PlanEntry(name, PlanAction.RUN, reason, info, maps_over=over))
        elif (before := _ordered_first(graph, name, known)) and (
            reads := _files_read(spec, record)
        ):
            reason = (
                f"may run: {before!r}, ordered before it, runs first and may rewrite "
                f"{reads}, which it reads (cached if the content stays the same)"
            )
            entries.append(PlanEntry(name, PlanAction.RUN, reason, info, maybe=True))
        else:
            known[name] = record["outputs"]
            entries.append(PlanEntry(name, PlanAction.CACHED, "cached result found", info, record))
    return Plan(graph.workflow, tuple(entries))


def _ordered_first(graph: Graph, name: str, known: Mapping[str, Any]) -> str | None:
    """A node ordered before ``name`` by an ordering edge (not an input) that is not cached."""
    data = graph.specs[name].upstream
    return next((u for u in graph.upstream(name) if u not in data and u not in known), None)


def _files_read(spec: NodeSpec, record: Mapping[str, Any]) -> str:
    """The files ``spec``'s cached result depends on, for a message ("" if none): its
    ``File``/``Directory`` inputs and the files its run was seen to read (``run/_reads.py``)."""
    paths = [_shown(item.path, spec.root) for v in spec.params.values() for item in path_values(v)]
    reads = record.get("reads")
    if isinstance(reads, Mapping):
        paths += [str(path) for path in reads]
    if not paths:
        return ""
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def _shown(path: str, root: str | None) -> str:
    relative = os.path.relpath(path, root) if root else path
    return path if relative.startswith("..") else relative
