"""What a running node can ask of the run: the backend's own cluster, to drive it itself.

Most nodes are one opaque task each. A node that is a distributed computation of its own (a
Spark aggregation over a partitioned dataset, a ``dask.dataframe`` pipeline) asks for the
cluster with :func:`context`::

    @node(on_driver=True)
    def totals(path):
        spark = etherealfabric.context().spark
        return spark.read.parquet(path).groupBy("region").sum("amount").toPandas()

``on_driver=True`` runs the node in a thread of the driver process (the process that called
``execute``), whatever the backend, because a Spark session exists only there. Its result is
cached like any other node's. :attr:`NodeContext.dask_client` also works in a node that runs on
a Dask worker (the worker's own client; Dask lets tasks submit tasks).

:class:`DriverDispatch` is the scheduler's side: it sends ``on_driver`` nodes to a thread pool
of this process (started on first use), with the run's backend in a context variable.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from ..backends import Backend, TaskFuture
from ..backends._local import ThreadBackend
from ..errors import ExecutionError

__all__ = ["DriverDispatch", "NodeContext", "context"]

T = TypeVar("T")
_backend: contextvars.ContextVar[Backend | None] = contextvars.ContextVar(
    "etherealfabric_run_backend", default=None
)


class NodeContext:
    """The run as seen from inside a node (see :func:`context`)."""

    @property
    def backend(self) -> Backend | None:
        """The run's backend, in an ``on_driver`` node; None elsewhere."""
        return _backend.get()

    @property
    def spark(self) -> Any:
        """A ``SparkSession``: the ``spark`` backend's, else the one active in this process.

        Only in the driver process: a node that uses it needs ``@node(on_driver=True)``.
        """
        backend = self.backend
        if backend is not None and backend.name == "spark":
            return backend.session  # type: ignore[attr-defined]
        try:
            from pyspark import TaskContext
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise ExecutionError(
                f"context().spark needs PySpark ({exc}): pip install 'etherealfabric[spark]'"
            ) from exc
        if TaskContext.get() is not None:
            raise ExecutionError(
                "context().spark was called inside a Spark task, where no session exists: give "
                "the node @node(on_driver=True) (class nodes: on_driver = True) so that it runs "
                "in the driver"
            )
        active = SparkSession.getActiveSession() or getattr(
            SparkSession, "_instantiatedSession", None
        )
        if active is None:
            raise ExecutionError(
                "context().spark: no Spark session here; run with the spark backend "
                "(ETHEREALFABRIC_EXECUTION_BACKEND=spark), or start a session before execute()"
            )
        return active

    @property
    def dask_client(self) -> Any:
        """A ``distributed.Client``: the ``dask`` backend's, or the worker's own on a worker."""
        backend = self.backend
        if backend is not None and backend.name == "dask":
            return backend.client  # type: ignore[attr-defined]
        try:
            import distributed
        except ImportError as exc:
            raise ExecutionError(
                f"context().dask_client needs distributed ({exc}): "
                "pip install 'etherealfabric[dask]'"
            ) from exc
        from ..backends._dask import worker_client  # (only a node that asks needs it)

        on_worker = worker_client()  # (leaves the worker's thread pool while the node waits)
        if on_worker is not None:
            return on_worker
        try:
            return distributed.get_client()
        except ValueError as exc:
            raise ExecutionError(
                "context().dask_client: no Dask cluster here; run with the dask backend "
                "(ETHEREALFABRIC_EXECUTION_BACKEND=dask), or create a distributed.Client "
                "before execute()"
            ) from exc


def context() -> NodeContext:
    """The run as seen from inside a node: ``context().spark``, ``context().dask_client``."""
    return NodeContext()


def _with_backend(backend: Backend, fn: Callable[[T], Any], task: T) -> Any:
    token = _backend.set(backend)
    try:
        return fn(task)
    finally:
        _backend.reset(token)


class DriverDispatch:
    """Sends each task to the backend, or, for an ``on_driver`` node, to a local thread."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._threads: ThreadBackend | None = None

    def submit(self, on_driver: bool, fn: Callable[[T], Any], task: T) -> TaskFuture[Any]:
        if not on_driver:
            return self.backend.submit(fn, task)
        if self._threads is None:
            self._threads = ThreadBackend()  # CPU-count threads, started on first use
        return self._threads.submit(functools.partial(_with_backend, self.backend, fn), task)

    def cancel(self, on_driver: bool, future: TaskFuture[Any]) -> bool:
        """Drop a task not started yet (``Backend.cancel``); True when it was dropped."""
        backend = self._threads if on_driver else self.backend
        return backend is not None and backend.cancel(future)

    def close(self, *, cancel: bool = False) -> None:
        if self._threads is not None:
            self._threads.close(cancel=cancel)
