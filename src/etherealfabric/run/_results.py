"""``Results``: what a run produced, loaded lazily from the store on first access."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..define._definition import Definition
from ..define._node import Node, OutputRef, OutputRefs, Outputs
from ..errors import ArtifactMissingError, CorruptArtifactError
from ..states import NodeStatus, RunStatus
from ._cache import ArtifactCache
from ._scheduler import RunOutcome

if TYPE_CHECKING:
    from ._mapreport import MapReport

__all__ = ["NodeResults", "Results"]

log = logging.getLogger("etherealfabric.results")


class Results(Mapping[str, "NodeResults"]):
    """The outcome of one run.

    ``results[node]`` (a node, its name, or a multi-output ``@node`` call) is a mapping of its
    outputs; ``results[ref]`` (an output reference) is that value. Values load on first access,
    so a run whose big intermediate results are never asked for never loads them. A value
    whose stored bytes turn out missing or damaged is never returned: its node is recomputed
    (a new run, limited to that node and what it needs) and the fresh value returned.
    ``run_id``, ``status``, ``executed``, ``cached``, ``failed`` and ``statuses`` summarise it.
    """

    def __init__(
        self,
        workflow: Definition,
        run_id: str,
        outcome: RunOutcome,
        cache: ArtifactCache,
        rerun: Callable[[str], Results] | None = None,
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.statuses: dict[str, NodeStatus] = dict(outcome.status)
        self.errors = {name: r.error or "" for name, r in outcome.errors.items()}
        self._unstarted = frozenset(outcome.unstarted)
        self._records = outcome.outputs
        self._cache = cache
        self._values: dict[tuple[str, str], Any] = {}
        self._keys = dict(outcome.keys)
        self._maps = dict(outcome.maps)
        self._rerun = rerun
        self._recomputed: set[str] = set()
        self.status = RunStatus.FAILED if outcome.failed else RunStatus.SUCCEEDED
        if outcome.interrupted:
            self.status = RunStatus.CANCELLED

    @property
    def executed(self) -> int:
        """Nodes whose code ran in this run (succeeded, or failed after starting)."""
        statuses = list(self.statuses.values())  # (list.count: no Python call per node)
        unstarted = sum(1 for n in self._unstarted if self.statuses.get(n) in _EXECUTED)
        return sum(statuses.count(s) for s in _EXECUTED) - unstarted

    @property
    def cached(self) -> int:
        """Nodes whose outputs came from the cache."""
        return list(self.statuses.values()).count(NodeStatus.CACHED)

    @property
    def failed(self) -> int:
        """Nodes that failed."""
        return list(self.statuses.values()).count(NodeStatus.FAILED)

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    def counts(self) -> dict[str, int]:
        return {"executed": self.executed, "cached": self.cached, "failed": self.failed}

    @property
    def maps(self) -> dict[str, MapReport]:
        """The reports of the maps that started in this run, by node name."""
        return dict(self._maps)

    def map_report(self, key: Node | OutputRef | Outputs | OutputRefs | str) -> MapReport:
        """What a mapped node did with its items: counts, the children that ran, the failed
        items with their errors (a :class:`~etherealfabric.run._mapreport.MapReport`)."""
        name = self._name(key.node if isinstance(key, OutputRef) else key)
        report = self._maps.get(name)
        if report is not None:
            return report
        if self.statuses.get(name) is NodeStatus.CACHED:
            from ._mapreport import MapReport

            return MapReport(name, whole=True)  # a whole-map hit: no item ran nor was counted
        raise KeyError(f"node {name!r} of run {self.run_id} is not a map that started")

    def _name(self, key: Node | Outputs | OutputRefs | str) -> str:
        return key if isinstance(key, str) else self.workflow.name_of(key)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, OutputRef):
            return self.value(self._name(key.node), key.name)
        name = self._name(key)
        self.record(name)  # (a node without results: a KeyError that says why)
        return NodeResults(self, name)

    def value(self, node: str, output: str) -> Any:
        """One output's value, loaded (and verified) on first access."""
        cache_key = (node, output)
        if cache_key not in self._values:
            record = self.record(node)[output]
            try:
                self._values[cache_key] = self._cache.load(record)
            except (ArtifactMissingError, CorruptArtifactError) as exc:
                if node in self._recomputed or self._rerun is None:
                    raise
                self._values[cache_key] = self._recompute(node, output, exc, self._rerun)
        return self._values[cache_key]

    def _recompute(
        self, node: str, output: str, error: Exception, rerun: Callable[[str], Results]
    ) -> Any:
        """The stored output is gone or damaged: drop it, run the node again, load that."""
        log.warning(
            "output %r of node %r is unusable (%s); recomputing node %r", output, node, error, node
        )
        self._recomputed.add(node)
        self._cache.forget(self._keys.get(node), self._records[node])
        fresh = rerun(node)
        self._records[node] = fresh.record(node)
        return fresh.value(node, output)

    def stored_bytes(self, node: str, output: str) -> bytes:
        """One output's bytes as its serializer stored them (verified), without loading it."""
        return self._cache.read_bytes(self._records[node][output])

    def record(self, node: str) -> Mapping[str, Mapping[str, Any]]:
        """The output records (digest, serializer, size, type) of a node; a KeyError that
        says why for a node without results (not in the run, failed, not run)."""
        records = self._records.get(node)
        if records is None:
            status = self.statuses.get(node)
            if status is None:
                raise KeyError(f"node {node!r} was not part of run {self.run_id}")
            raise KeyError(f"node {node!r} has no results in run {self.run_id}: it {status}")
        return records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: object) -> bool:
        try:
            return self._name(key.node if isinstance(key, OutputRef) else key) in self._records  # type: ignore[arg-type]
        except Exception:
            return False

    def __repr__(self) -> str:
        return (
            f"<Results run={self.run_id} {self.status}: executed={self.executed} "
            f"cached={self.cached} failed={self.failed}>"
        )


_EXECUTED = (NodeStatus.SUCCEEDED, NodeStatus.DRIFTED, NodeStatus.FAILED)


class NodeResults(Mapping[str, Any]):
    """The outputs of one node, by name, loaded lazily."""

    def __init__(self, results: Results, node: str) -> None:
        self._results = results
        self.node = node

    def __getitem__(self, output: str) -> Any:
        if output not in self._results.record(self.node):
            raise KeyError(f"node {self.node!r} has no output {output!r}")
        return self._results.value(self.node, output)

    def __iter__(self) -> Iterator[str]:
        return iter(self._results.record(self.node))

    def __len__(self) -> int:
        return len(self._results.record(self.node))

    def __repr__(self) -> str:
        return f"<outputs of {self.node!r}: {list(self)}>"
