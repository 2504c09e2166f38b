"""Prometheus metrics of runs: a subscriber to the run-event stream.

Usage::

    from etherealfabric.observe._metrics import Metrics

    metrics = Metrics()             # its own registry, never prometheus_client's global one
    port = metrics.serve(9108)      # http://127.0.0.1:9108/metrics; serve(0) picks a free port
    try:
        workflow.execute(subscribers=[metrics])
        print(metrics.text())       # the same exposition text, without HTTP
    finally:
        metrics.close()             # stops the HTTP server

Metrics (all labelled with ``workflow``):

=============================================  =========  =========================================
name                                           type       meaning
=============================================  =========  =========================================
``etherealfabric_nodes_total{status}``         counter    nodes by final status: succeeded, cached,
                                                          failed, fallback, upstream_failed,
                                                          cancelled, skipped
``etherealfabric_node_duration_seconds``       histogram  wall time of executed nodes (succeeded,
                                                          failed or fallback), first attempt start
                                                          to last attempt end
``etherealfabric_cache_hits_total``            counter    nodes found in the cache
``etherealfabric_cache_misses_total``          counter    nodes that had to run
``etherealfabric_bytes_written_total``         counter    serialized size of executed nodes' outputs
``etherealfabric_bytes_read_total``            counter    serialized size of executed nodes' inputs
``etherealfabric_retries_total``               counter    attempts beyond the first
``etherealfabric_runs_in_progress``            gauge      runs started and not finished
``etherealfabric_runs_total{status}``          counter    finished runs: succeeded, failed, cancelled, interrupted
=============================================  =========  =========================================

``bytes_read_total`` is exact when ``node_started`` events carry ``input_bytes`` (the summed
``size`` of the upstream output records a task reads). Without it, the only sizes the events
reveal are those of outputs produced earlier in the same run, so inputs that come from cached
nodes are not counted.

Handlers run in the scheduler's thread and only increment pre-bound metric children.
prometheus_client is an optional extra (``pip install 'etherealfabric[metrics]'``), imported
when a :class:`Metrics` is created.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..run._events import Event
from ..states import EventKind, NodeStatus, RunStatus

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DURATION_BUCKETS", "Metrics"]

PREFIX = "etherealfabric_"
#: Histogram buckets for node durations: from milliseconds to six hours.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, float("inf"),
)  # fmt: skip
#: event kinds that put a node in its final state, and that state
NODE_STATUSES = {kind: kind.final_status for kind in EventKind if kind.final_status}
#: the statuses of ``nodes_total``: those, and ``drifted`` (a node_succeeded whose input files
#: changed while it ran)
NODE_SERIES = (*dict.fromkeys(NODE_STATUSES.values()), NodeStatus.DRIFTED)

#: Run statuses whose ``runs_total`` series exist (at 0) as soon as a workflow is seen.
RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


@dataclass
class _Children:
    """One workflow's metric children, bound once so events only increment."""

    nodes: dict[str, Counter]
    duration: Histogram
    hits: Counter
    misses: Counter
    written: Counter
    read: Counter
    retries: Counter
    in_progress: Gauge


@dataclass
class _Run:
    """What a run in progress needs: its workflow's children and the sizes it has seen."""

    workflow: str
    m: _Children
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> size, for bytes_read
    exact_reads: bool = False  # node_started carries input_bytes


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigError(
            "Prometheus metrics need the prometheus-client package: "
            "pip install 'etherealfabric[metrics]'",
            setting="metrics",
        ) from exc
    return prometheus_client


class Metrics:
    """Counts run events into Prometheus metrics held in a registry of its own."""

    def __init__(self) -> None:
        prom = _import_prometheus()
        self._prom = prom
        self.registry: CollectorRegistry = prom.CollectorRegistry()
        wf, reg = ["workflow"], self.registry

        def counter(name: str, doc: str, labels: Iterable[str] = ("workflow",)) -> Counter:
            return prom.Counter(PREFIX + name, doc, list(labels), registry=reg)  # type: ignore[no-any-return]

        self.nodes = counter("nodes", "Nodes by final status.", ("workflow", "status"))
        self.node_duration = prom.Histogram(
            PREFIX + "node_duration_seconds",
            "Wall time of executed nodes, first attempt start to last attempt end.",
            wf,
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.cache_hits = counter("cache_hits", "Nodes whose outputs came from the cache.")
        self.cache_misses = counter("cache_misses", "Nodes not in the cache, handed to a backend.")
        self.bytes_written = counter("bytes_written", "Serialized bytes of executed outputs.")
        self.bytes_read = counter("bytes_read", "Serialized bytes of executed nodes' inputs.")
        self.retries = counter("retries", "Node attempts beyond the first.")
        self.runs_in_progress = prom.Gauge(
            PREFIX + "runs_in_progress", "Runs started and not finished.", wf, registry=reg
        )
        self.runs = counter("runs", "Finished runs by status.", ("workflow", "status"))
        self.map_items = counter(
            "map_items",
            "Children of mapped nodes, by map and status (cached, succeeded, failed, ...).",
            ("workflow", "node", "status"),
        )
        self._children: dict[str, _Children] = {}
        self._runs: dict[str, _Run] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[Event, _Run], None]] = {
            EventKind.NODE_CACHED: self._on_cached,
            EventKind.NODE_STARTED: self._on_started,
            EventKind.NODE_SUCCEEDED: self._on_succeeded,
            EventKind.NODE_FAILED: self._on_failed,
            EventKind.NODE_FALLBACK: self._on_failed,
            EventKind.NODE_UPSTREAM_FAILED: self._on_not_run,
            EventKind.NODE_CANCELLED: self._on_not_run,
            EventKind.NODE_SKIPPED: self._on_not_run,
            EventKind.MAP_STARTED: self._on_map_started,
            EventKind.MAP_ITEMS: self._on_map_items,
        }

    # -- the subscriber -------------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        """Take one event; unknown kinds, and events of runs not seen starting, are ignored."""
        if event.kind == EventKind.RUN_STARTED:
            self._on_run_started(event)
            return
        run = self._runs.get(event.run_id)
        if run is None:
            return
        if event.kind == EventKind.RUN_FINISHED:
            self._on_run_finished(event, run)
            return
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event, run)

    def _bind(self, workflow: str) -> _Children:
        children = self._children.get(workflow)
        if children is None:
            children = _Children(
                nodes={s: self.nodes.labels(workflow, s) for s in NODE_SERIES},
                duration=self.node_duration.labels(workflow),
                hits=self.cache_hits.labels(workflow),
                misses=self.cache_misses.labels(workflow),
                written=self.bytes_written.labels(workflow),
                read=self.bytes_read.labels(workflow),
                retries=self.retries.labels(workflow),
                in_progress=self.runs_in_progress.labels(workflow),
            )
            for status in RUN_STATUSES:
                self.runs.labels(workflow, status)
            self._children[workflow] = children
        return children

    def _on_run_started(self, event: Event) -> None:
        workflow = str(event.data.get("workflow", ""))
        run = _Run(workflow, self._bind(workflow))
        self._runs[event.run_id] = run
        run.m.in_progress.inc()

    def _on_run_finished(self, event: Event, run: _Run) -> None:
        del self._runs[event.run_id]
        run.m.in_progress.dec()
        self.runs.labels(run.workflow, str(event.data.get("status", "unknown"))).inc()

    def _on_cached(self, event: Event, run: _Run) -> None:
        run.m.nodes[NodeStatus.CACHED].inc()
        run.m.hits.inc()
        outputs = event.data.get("outputs")
        if outputs and not run.exact_reads:
            _remember_sizes(run.sizes, outputs)

    def _on_started(self, event: Event, run: _Run) -> None:
        run.m.misses.inc()
        input_bytes = event.data.get("input_bytes")
        if input_bytes is not None:
            run.exact_reads = True
            run.m.read.inc(input_bytes)

    def _on_succeeded(self, event: Event, run: _Run) -> None:
        result = event.data.get("result")
        drifted = getattr(result, "drifted", None)
        run.m.nodes[NodeStatus.DRIFTED if drifted else NodeStatus.SUCCEEDED].inc()
        outputs: Mapping[str, Mapping[str, Any]] = getattr(result, "outputs", None) or {}
        written = sum(int(o.get("size") or 0) for o in outputs.values())
        if written:
            run.m.written.inc(written)
        self._executed(event, run, result)
        if not run.exact_reads:
            _remember_sizes(run.sizes, outputs)

    def _on_failed(self, event: Event, run: _Run) -> None:
        """``node_failed``, or ``node_fallback`` (failed, then replaced by on_error's outputs)."""
        run.m.nodes[NODE_STATUSES[event.kind]].inc()
        self._executed(event, run, event.data.get("result"))

    def _on_map_started(self, event: Event, run: _Run) -> None:
        cached = int(event.data.get("cached", 0))
        if cached:
            self.map_items.labels(run.workflow, event.node or "", NodeStatus.CACHED).inc(cached)

    def _on_map_items(self, event: Event, run: _Run) -> None:
        """A map's children as one series per status (not one per child)."""
        counts: dict[str, int] = {}
        for child in event.data.get("children", ()):
            counts[str(child.status)] = counts.get(str(child.status), 0) + 1
        for status, n in counts.items():
            self.map_items.labels(run.workflow, event.node or "", status).inc(n)

    def _on_not_run(self, event: Event, run: _Run) -> None:
        run.m.nodes[NODE_STATUSES[event.kind]].inc()

    def _executed(self, event: Event, run: _Run, result: Any) -> None:
        """Duration, retries and (without ``input_bytes``) inputs read of a node that ran."""
        attempts = getattr(result, "attempts", None)
        if attempts:
            run.m.duration.observe(max(0.0, result.finished_at - result.started_at))
            if len(attempts) > 1:
                run.m.retries.inc(len(attempts) - 1)
        if not run.exact_reads:
            read = _known_input_bytes(event.data.get("components"), run.sizes)
            if read:
                run.m.read.inc(read)

    # -- exposition -----------------------------------------------------------------------------
    def text(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        data: bytes = self._prom.generate_latest(self.registry)
        return data.decode("utf-8")

    @property
    def port(self) -> int | None:
        """The port the HTTP endpoint listens on, or ``None`` when not serving."""
        return None if self._server is None else int(self._server.server_port)

    def serve(self, port: int, addr: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP in a daemon thread; returns the bound port (0: any free)."""
        if self._server is not None:
            raise ConfigError(
                f"metrics are already served on port {self.port}; call close() first",
                setting="metrics_port",
            )
        try:
            started = self._prom.start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {addr}:{port}: {exc}. "
                "Choose another port (0 picks a free one).",
                setting="metrics_port",
            ) from exc
        if not isinstance(started, tuple):  # prometheus-client < 0.20 returned nothing
            raise ConfigError(
                "this prometheus-client cannot stop its server; "
                "pip install 'prometheus-client>=0.20'",
                setting="metrics",
            )
        self._server, self._thread = started
        return int(started[0].server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint, if serving; safe to call more than once."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Metrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remember_sizes(sizes: dict[str, int], outputs: Mapping[str, Mapping[str, Any]]) -> None:
    for record in outputs.values():
        digest, size = record.get("digest"), record.get("size")
        if digest is not None and size is not None:
            sizes[str(digest)] = int(size)


def _known_input_bytes(components: Any, sizes: Mapping[str, int]) -> int:
    """Sizes of the distinct inputs in ``components['inputs']`` whose size this run has seen."""
    if not isinstance(components, Mapping):
        return 0
    digests = {
        ref.rpartition("@")[2] for refs in (components.get("inputs") or {}).values() for ref in refs
    }
    return sum(sizes.get(d, 0) for d in digests)
