"""The Dask backend: nodes run on the workers of a ``distributed`` cluster.

Where the cluster comes from, first match wins:

1. ``client=``: an existing :class:`distributed.Client`; the backend never closes it;
2. ``address=`` or ``ETHEREALFABRIC_DASK_ADDRESS``: the scheduler of a running cluster
   (``tcp://host:8786``); the backend opens a client to it and closes only that client;
3. otherwise a :class:`distributed.LocalCluster` of ``max_workers`` (default: the CPU count)
   single-threaded worker processes, started when the first node is submitted (a fully cached
   run starts none) and closed after the run. Its workers are spawned processes, so a script
   that uses it needs the usual ``if __name__ == "__main__":`` guard.

Tasks travel as cloudpickle bytes, exactly as on the process backend, and results come back the
same way. Distributed would pickle them itself, but with plain ``pickle`` first: a node from a
module registered with ``cloudpickle.register_pickle_by_value`` (as workflow files loaded by the
CLI are) would then be sent by reference and fail to import on the workers.

Workers read inputs from and write outputs to the store, so every worker must reach it: a local
folder works for a cluster on this machine (or a shared file system); a cluster on other
machines needs an object store. The workers of a LocalCluster exit when the run's process dies,
even by SIGKILL: Dask's own watch pipe, and on Linux a parent-death signal (:func:`dask_setup`).
The futures returned by :meth:`DaskBackend.submit` call their done-callbacks on a Dask thread;
the scheduler only puts the future into a queue there.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..config import DASK_ADDRESS_ENV, ENV, strict_options
from ..errors import ConfigError
from ._base import (
    Backend,
    TaskFuture,
    default_workers,
    exit_with_parent,
    no_main_reimport,
    run_pickled,
)

__all__ = ["ADDRESS_ENV", "DaskBackend", "dask_setup"]

log = logging.getLogger("etherealfabric.backends.dask")
T = TypeVar("T")

#: The environment variable naming the scheduler of a running cluster.
ADDRESS_ENV = DASK_ADDRESS_ENV


class _DaskFuture:
    """A distributed future of cloudpickle bytes, seen as a future of the unpickled value."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None:
        self.inner.add_done_callback(lambda _inner: fn(self))

    def result(self, timeout: float | None = None) -> Any:
        import cloudpickle

        return cloudpickle.loads(self.inner.result(timeout=timeout))

    def done(self) -> bool:
        return bool(self.inner.done())


class DaskBackend(Backend):
    """Runs tasks on a Dask cluster: a given client, a scheduler address, or a LocalCluster."""

    name = "dask"

    @strict_options
    def __init__(
        self,
        *,
        max_workers: int | None = None,
        address: str | None = None,
        client: Any = None,
    ) -> None:
        distributed = _distributed()
        super().__init__(max_workers=max_workers)
        self._cluster: Any = None
        self._client: Any = client
        self._owns_client = client is None
        self._futures: set[Any] = set()
        self._lock = threading.Lock()
        setting = "address" if address else ADDRESS_ENV
        address = address or os.environ.get(ADDRESS_ENV, "").strip() or None
        if client is None and address is not None:
            try:
                self._client = distributed.Client(address, set_as_default=False)
            except OSError as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {address!r} (from {setting}): {exc}. "
                    "Start one (dask scheduler; dask worker ADDRESS) or unset "
                    f"{ADDRESS_ENV} to run on a local cluster",
                    setting=setting,
                ) from exc
        if self._client is None:  # a LocalCluster, started on first use (not for cached runs)
            self.max_workers = max_workers or default_workers()
        elif self.max_workers is None:
            self.max_workers = self._cluster_threads()

    @property
    def client(self) -> Any:
        """The ``distributed.Client``; a LocalCluster backend starts its cluster here."""
        with self._lock:
            if self._client is None:
                self._cluster = _local_cluster(self.max_workers or default_workers())
                self._client = _distributed().Client(self._cluster, set_as_default=False)
            return self._client

    def _cluster_threads(self) -> int | None:
        """Worker threads of the cluster: how many tasks it runs at once (None: no workers yet)."""
        threads = sum(self.client.nthreads().values())
        if threads:
            return int(threads)
        log.warning(
            "the Dask cluster at %s has no workers yet; nodes wait until workers join",
            self.client.scheduler.address,
        )
        return None

    def submit(self, fn: Callable[[T], Any], task: T) -> TaskFuture[Any]:
        """Send ``fn(task)`` to the cluster; the future resolves to its return value."""
        import cloudpickle

        try:
            payload = cloudpickle.dumps((fn, task))
        except Exception as exc:  # reported as the node's failure, not the scheduler's
            failed: Future[Any] = Future()
            failed.set_exception(exc)
            return failed
        label = str(getattr(task, "node", getattr(fn, "__name__", "task")))
        inner = self.client.submit(
            run_pickled, payload, key=f"etherealfabric-{label}-{uuid.uuid4().hex}", pure=False
        )
        with self._lock:
            self._futures.add(inner)
        inner.add_done_callback(self._forget)
        return _DaskFuture(inner)

    def _forget(self, inner: Any) -> None:
        with self._lock:
            self._futures.discard(inner)

    def close(self, *, cancel: bool = False) -> None:
        """Close what this backend opened; with ``cancel``, cancel the tasks still running."""
        with self._lock:
            running, self._futures = list(self._futures), set()
        if cancel and running:
            try:
                self._client.cancel(running)
            except Exception as exc:  # the cluster may be gone already
                log.warning("could not cancel %d Dask task(s): %s", len(running), exc)
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(
            f"the dask backend needs Dask's distributed package ({exc}); install it with "
            "pip install 'etherealfabric[dask]'",
            setting=ENV["backend"],
        ) from exc
    return distributed


def dask_setup(worker: Any) -> None:
    """Preload of a LocalCluster's workers: the kernel kills them when the run's process dies.

    Dask already makes a worker exit when its nanny's process dies (a thread that waits on a
    pipe), but that thread needs the GIL, which a node stuck in a long C call never releases.
    The parent-death signal needs nothing from the worker. Its "parent" is the thread that
    started the worker: Dask's thread that watches that worker process, which lives as long
    as the worker is meant to.
    """
    exit_with_parent()


def _local_cluster(workers: int) -> Any:
    import dask

    log.info("starting a Dask LocalCluster of %d worker process(es)", workers)
    preload = dask.config.get("distributed.worker.preload", None) or []
    preload = [preload] if isinstance(preload, str) else list(preload)  # keep the user's
    with no_main_reimport():
        return _distributed().LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",  # any free port: 8787 may belong to another cluster
            preload=[*preload, __name__],  # dask_setup, in every worker process
        )
