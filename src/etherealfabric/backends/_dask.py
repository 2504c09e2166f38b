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
Results are collected as they complete, in batches: a finished task's done-callback (on a Dask
thread) only queues it, and one collector thread fetches every finished result with a single
``client.gather`` call, instead of one blocking round trip through Dask's event loop per node.
The scheduler keeps :attr:`DaskBackend.in_flight` (4 per worker thread) tasks submitted, so a
worker never waits for the next task's round trip.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any, TypeVar

from ..config import DASK_ADDRESS_ENV, ENV, strict_options
from ..errors import ConfigError
from ._base import (
    Backend,
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
#: tasks kept submitted per worker thread of the cluster
IN_FLIGHT_PER_WORKER = 4


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
        self._futures: dict[Any, Future[Any]] = {}  # distributed future -> ours
        self._lock = threading.Lock()
        self._finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._collector: threading.Thread | None = None
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

    @property
    def in_flight(self) -> int | None:
        """Tasks kept submitted: a few per worker thread, so none waits for a round trip."""
        return IN_FLIGHT_PER_WORKER * self.max_workers if self.max_workers else None

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        """Send ``fn(task)`` to the cluster; the future resolves to its return value."""
        import cloudpickle

        future: Future[Any] = Future()
        try:
            payload = cloudpickle.dumps((fn, task))
        except Exception as exc:  # reported as the node's failure, not the scheduler's
            future.set_exception(exc)
            return future
        label = str(getattr(task, "node", getattr(fn, "__name__", "task")))
        client = self.client
        with self._lock:
            if self._collector is None:
                self._collector = threading.Thread(
                    target=self._collect, name="etherealfabric-dask-results", daemon=True
                )
                self._collector.start()
        inner = client.submit(
            run_pickled, payload, key=f"etherealfabric-{label}-{uuid.uuid4().hex}", pure=False
        )
        with self._lock:
            self._futures[inner] = future
        inner.add_done_callback(self._finished.put)  # on a Dask thread: only queue it
        return future

    def _collect(self) -> None:
        """The collector thread: settle finished tasks, one ``gather`` per batch."""
        while (first := self._finished.get()) is not None:
            batch = [first]
            while True:
                try:
                    more = self._finished.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._finished.put(None)  # stop after this batch
                    break
                batch.append(more)
            self._settle(batch)

    def _settle(self, batch: list[Any]) -> None:
        import cloudpickle

        with self._lock:
            found = [(inner, self._futures.pop(inner, None)) for inner in batch]
        pairs = [(inner, future) for inner, future in found if future is not None]
        finished = [(inner, future) for inner, future in pairs if inner.status == "finished"]
        values: list[Any] = []
        try:  # every finished result in one round trip
            if finished:
                values = self.client.gather([inner for inner, _ in finished], errors="raise")
        except Exception:  # one went away meanwhile: each is fetched on its own below
            finished, values = [], []
        for (_inner, future), data in zip(finished, values, strict=True):
            _settle_one(future, cloudpickle.loads, data)
        gathered = {id(inner) for inner, _ in finished}
        for inner, future in pairs:
            if id(inner) not in gathered:  # the task's error, or it was cancelled or lost
                _settle_one(future, _fetch, inner)

    def close(self, *, cancel: bool = False) -> None:
        """Close what this backend opened; with ``cancel``, cancel the tasks still running."""
        with self._lock:
            running = dict(self._futures)
            collector, self._collector = self._collector, None
        if cancel and running:
            try:
                self._client.cancel(list(running))
            except Exception as exc:  # the cluster may be gone already
                log.warning("could not cancel %d Dask task(s): %s", len(running), exc)
        if collector is not None:
            if cancel:  # what was cancelled settles as cancelled, not through the cluster
                with self._lock:
                    pending, self._futures = list(self._futures.values()), {}
                for future in pending:
                    if not future.cancel() and not future.done():
                        future.set_exception(CancelledError("the Dask backend was closed"))
            self._finished.put(None)
            collector.join()
            with self._lock:
                left, self._futures = list(self._futures.items()), {}
            for inner, future in left:  # still running at close: wait for them
                _settle_one(future, _fetch, inner)
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _settle_one(future: Future[Any], make: Callable[[Any], Any], arg: Any) -> None:
    """``future`` gets ``make(arg)``, or what it raised; a cancelled one is left as it is."""
    if future.done():
        return
    try:
        value = make(arg)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(value)


def _fetch(inner: Any) -> Any:
    import cloudpickle

    return cloudpickle.loads(inner.result())


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
