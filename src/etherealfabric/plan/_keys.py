"""Cache keys for nodes, and the plan: which nodes are cached, which will run, and why.

A node's key is known once every upstream output it reads is known (its digest is part of the
key: early cutoff). :func:`node_key` computes it; :func:`make_plan` walks the graph in order
and says, without running anything, ``cached``, ``run`` (with the reason) or ``run`` because an
upstream node runs first (its key cannot be known yet).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..define._node import NodeSpec, replace_refs
from ..hashing._values import (
    FileHashCache,
    RefDigest,
    cache_key,
    code_fingerprint,
    describe_value,
    hash_value,
)
from ._graph import Graph, InputRef

__all__ = ["KeyInfo", "Plan", "PlanEntry", "make_plan", "node_key"]

OutputRecords = Mapping[str, Mapping[str, Mapping[str, Any]]]  # node -> output -> record


@dataclass(frozen=True)
class KeyInfo:
    """A node's cache key and what went into it."""

    key: str
    spec: NodeSpec
    param_hashes: Mapping[str, str]
    inputs: Mapping[str, tuple[str, ...]]  # param -> "node.output@digest" it reads

    def components(self) -> dict[str, Any]:
        """The key's parts, as stored for ``explain``: code, version, params, inputs."""
        fp = code_fingerprint(self.spec.code)
        return {
            "kind": self.spec.kind,
            "code": fp.digest,
            "code_parts": dict(fp.parts),
            "code_source": fp.source,
            "version": self.spec.version,
            "params": dict(self.param_hashes),
            "params_repr": {
                k: describe_value(v) for k, v in self.spec.params.items() if k not in self.inputs
            },
            "inputs": {k: list(v) for k, v in self.inputs.items()},
        }


def node_key(
    spec: NodeSpec, upstream: OutputRecords, *, file_cache: FileHashCache | None = None
) -> KeyInfo:
    """The cache key of ``spec`` given the output records of the nodes it reads."""
    param_hashes: dict[str, str] = {}
    inputs: dict[str, tuple[str, ...]] = {}
    for name, value in spec.params.items():
        seen: list[str] = []

        def resolve(ref: InputRef, seen: list[str] = seen) -> RefDigest:
            record = upstream[ref.node][ref.output]
            seen.append(f"{ref.node}.{ref.output}@{record['digest']}")
            return RefDigest(record["serializer"], record["digest"])

        resolved = replace_refs(value, resolve, kind=InputRef)
        param_hashes[name] = hash_value(resolved, file_cache=file_cache)
        if seen:
            inputs[name] = tuple(seen)
    key = cache_key(
        kind=spec.kind,
        code=code_fingerprint(spec.code).digest,
        version=spec.version,
        params=param_hashes,
        outputs=spec.outputs,
    )
    return KeyInfo(key, spec, param_hashes, inputs)


@dataclass(frozen=True)
class PlanEntry:
    """What a run would do with one node."""

    node: str
    action: str  # "cached" or "run"
    reason: str
    key: str | None = None


@dataclass(frozen=True)
class Plan:
    """The plan of a whole graph, in topological order."""

    entries: tuple[PlanEntry, ...]

    def __getitem__(self, node: str) -> PlanEntry:
        for entry in self.entries:
            if entry.node == node:
                return entry
        raise KeyError(node)

    @property
    def to_run(self) -> list[str]:
        return [e.node for e in self.entries if e.action == "run"]

    @property
    def cached(self) -> list[str]:
        return [e.node for e in self.entries if e.action == "cached"]


def make_plan(
    graph: Graph,
    lookup: Callable[[str], Mapping[str, Any] | None],
    *,
    file_cache: FileHashCache | None = None,
) -> Plan:
    """Decide, without running anything, which nodes are cached and which must run."""
    known: dict[str, Mapping[str, Mapping[str, Any]]] = {}
    entries: list[PlanEntry] = []
    for name in graph.order:
        spec = graph.specs[name]
        waiting = [u for u in spec.upstream if u not in known]
        if waiting:
            entries.append(PlanEntry(name, "run", f"upstream {sorted(waiting)[0]!r} runs first"))
            continue
        info = node_key(spec, known, file_cache=file_cache)
        record = lookup(info.key)
        if record is None:
            entries.append(PlanEntry(name, "run", "no cached result for its key", info.key))
        else:
            known[name] = record["outputs"]
            entries.append(PlanEntry(name, "cached", "cached result found", info.key))
    return Plan(tuple(entries))
