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
Nothing is imported, started or contacted until the first task is submitted: a fully cached
run never imports ``distributed``, never opens a client and never asks the cluster its size
(an unreachable ``address`` is reported by the first submission, naming the setting).

One I/O thread per backend sends, in batches. :meth:`DaskBackend.submit` only pickles the task
and queues it; the thread sends every task queued since its last round with one ``client.map``
(one graph update for the scheduler, instead of one per node). Once the recent tasks turn out
to be short, the tasks of a batch travel in groups, several nodes in one Dask task
(:mod:`._grouping`): Dask's own cost per task (the scheduler assigning it, the worker
reporting it, the result fetched), 2-5 ms on a small machine, is then paid once per group. A
group whose Dask task fails as a whole (its worker died) is sent again node by node.
Results are collected on the client's event loop as they complete (one coroutine per Dask
task, whose fetches the client batches while one is under way), never by a blocking call
per node. The scheduler keeps :attr:`DaskBackend.in_flight` tasks submitted: a few per
worker thread, many once the tasks turn out to be short
(:class:`~etherealfabric.backends._base.Pacing`), so a worker never waits for the next
task's round trip.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config import DASK_ADDRESS_ENV, ENV, strict_options
from ..errors import ConfigError
from ._base import (
    Backend,
    Listening,
    default_workers,
    exit_with_parent,
    no_main_reimport,
    reporting_to,
)
from ._dask_connect import connect, unreachable
from ._dask_notes import Notes
from ._dask_notes import sink as note_sink
from ._grouping import GroupPacing, run_group, settle
from ._taskpickle import dumps_task

__all__ = ["ADDRESS_ENV", "DaskBackend", "DaskStop", "dask_setup"]

log = logging.getLogger("etherealfabric.backends.dask")
T = TypeVar("T")

#: The environment variable naming the scheduler of a running cluster.
ADDRESS_ENV = DASK_ADDRESS_ENV


class DaskBackend(Backend):
    """Runs tasks on a Dask cluster: a given client, a scheduler address, or a LocalCluster."""

    name = "dask"
    #: a node sent alone tells when a worker begins it (``_dask_notes.py``)
    reports_starts = True

    @strict_options
    def __init__(
        self,
        *,
        max_workers: int | None = None,
        address: str | None = None,
        client: Any = None,
    ) -> None:
        if client is None and importlib.util.find_spec("distributed") is None:
            _distributed()  # raises the ConfigError that says what to install
        self._max_workers: int | None = None
        super().__init__(max_workers=max_workers)  # None: asked of the cluster when needed
        self._cluster: Any = None
        self._client: Any = client
        self._owns_client = client is None
        self._setting = "address" if address else ADDRESS_ENV
        self._address = address or os.environ.get(ADDRESS_ENV, "").strip() or None
        self._unreachable: ConfigError | None = None
        self._groups: dict[Any, list[_Send]] = {}  # distributed future -> what it runs
        self._open: set[Future[Any]] = set()  # our futures not settled yet
        self._lock = threading.Lock()
        # the I/O thread's inbox: tasks to send, None to stop
        self._inbox: queue.SimpleQueue[_Send | None] = queue.SimpleQueue()
        self._io: threading.Thread | None = None
        self._cancelling = False
        self._pacing = GroupPacing()
        self._notes = Notes()
        self._stop = DaskStop(f"etherealfabric-stop-{uuid.uuid4().hex}")
        self._stopped = False
        if self._client is None and self._address is None:  # a LocalCluster, on first use
            self._max_workers = max_workers or default_workers()

    @property
    def max_workers(self) -> int | None:
        """The given ``max_workers``, else the cluster's worker threads, asked when first
        needed (once something runs: a fully cached run never contacts the cluster)."""
        if self._max_workers is None:
            self._max_workers = self._cluster_threads()
        return self._max_workers

    @max_workers.setter
    def max_workers(self, value: int | None) -> None:
        self._max_workers = value

    @property
    def client(self) -> Any:
        """The ``distributed.Client``, opened (or its LocalCluster started) on first use."""
        with self._lock:
            if self._client is None:
                if self._unreachable is not None:
                    raise self._unreachable
                distributed = _distributed()
                if self._address is not None:
                    try:
                        self._client = connect(distributed, self._address)
                    except Exception as exc:
                        self._unreachable = unreachable(self._address, self._setting, exc)
                        raise self._unreachable from exc
                else:
                    self._cluster = _local_cluster(self._max_workers or default_workers())
                    self._client = distributed.Client(self._cluster, set_as_default=False)
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
    def retry_stop(self) -> DaskStop:
        """A ``distributed.Event`` of this backend's, by name (set by :meth:`stop_retries`)."""
        return self._stop

    def stop_retries(self) -> None:
        """Set the event the running tasks' retries look at (only once a task was sent)."""
        with self._lock:
            client = self._client
        if client is not None:
            _distributed().Event(self._stop.name, client=client).set()
            self._stopped = True

    @property
    def in_flight(self) -> int | None:
        """Tasks kept submitted: enough that no worker waits for a round trip (:class:`Pacing`)."""
        return self._pacing.window(self.max_workers)

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        """Queue ``fn(task)`` for the cluster; the future resolves to its return value.

        The first submission opens the client (or starts the LocalCluster); an unreachable
        scheduler raises :class:`~etherealfabric.errors.ConfigError` here.
        """

        future: Future[Any] = Listening()
        try:
            payload = dumps_task((fn, task))
        except Exception as exc:  # reported as the node's failure, not the scheduler's
            future.set_exception(exc)
            return future
        label = str(getattr(task, "node", getattr(fn, "__name__", "task")))
        self.client  # noqa: B018 -- opened here, so that its errors are the caller's
        with self._lock:
            if self._io is None:
                self._io = threading.Thread(
                    target=self._serve, name="etherealfabric-dask-io", daemon=True
                )
                self._io.start()
            self._open.add(future)
        future.add_done_callback(self._settled)
        self._inbox.put(_Send(label, payload, future))
        return future

    def _settled(self, future: Future[Any]) -> None:
        with self._lock:
            self._open.discard(future)

    def _serve(self) -> None:
        """The I/O thread: send what was queued since its last round, in one batch."""
        while (first := self._inbox.get()) is not None:
            batch, stop = [first], False
            while True:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._send(batch)
            if stop:
                return

    def _send(self, sends: list[_Send]) -> None:
        """Submit ``sends`` with one ``client.map`` (one graph update for the whole batch),
        short tasks in groups (:mod:`._grouping`)."""
        if self._cancelling:  # closed with cancel: what was not sent is never sent
            for send in sends:  # (one sent again after its group failed is running already)
                if not send.future.cancel() and not send.future.done():
                    send.future.set_exception(CancelledError("the Dask backend was closed"))
            return
        sends = [s for s in sends if s.again or s.future.set_running_or_notify_cancel()]
        if not sends:
            return
        alone = [s for s in sends if s.again]  # sent again after their group failed
        together = [s for s in sends if not s.again]
        groups = [[send] for send in alone] + self._pacing.split(together, self.max_workers)
        keys = [_key(group) for group in groups]
        try:
            client = self.client
            self._notes.subscribe(client)
            for key, group in zip(keys, groups, strict=True):
                if len(group) == 1:  # (a group's nodes send no notes)
                    self._notes.expect(key, group[0].future)
            inners = client.map(
                run_group_on_worker,
                [[s.payload for s in group] for group in groups],
                key=keys,
                pure=False,
            )
        except Exception as exc:  # the cluster went away: these nodes fail with its error
            for key in keys:
                self._notes.forget(key)
            for send in sends:
                send.future.set_exception(exc)
            return
        with self._lock:
            self._groups.update(zip(inners, groups, strict=True))
        for inner in inners:
            client.loop.add_callback(self._collect, inner)

    async def _collect(self, inner: Any) -> None:
        """On the client's event loop: wait for ``inner``, fetch its result, settle ours.

        Fetches that overlap share one request (the client batches concurrent gathers), and
        none blocks a thread: the loop keeps receiving completions meanwhile.
        """
        try:
            outcomes: Any = await inner._result()
        except BaseException as exc:  # lost, cancelled, or Dask gave up on its workers
            outcomes = exc
        failed = isinstance(outcomes, BaseException)
        self._notes.forget(inner.key)
        with self._lock:  # whoever takes it from the table settles it (see close)
            group = self._groups.pop(inner, None)
            again = failed and group is not None and len(group) > 1 and not self._cancelling
            if again:  # each alone: one fails, not its group (queued before close's stop)
                for send in group or ():
                    self._inbox.put(_Send(send.label, send.payload, send.future, again=True))
        if group is None:
            return
        if not failed:
            for send, captured in zip(group, outcomes, strict=True):
                settle(send.future, captured, self._pacing.observe)
        elif again:
            log.warning(
                "a Dask task of %d nodes failed (%s: %s); sending them again one by one",
                len(group),
                type(outcomes).__name__,
                outcomes,
            )
        else:
            for send in group:
                if not send.future.done():
                    send.future.set_exception(outcomes)

    def close(self, *, cancel: bool = False) -> None:
        """Close what this backend opened; with ``cancel``, cancel the tasks still running."""
        if not cancel:  # what was submitted runs to its end (groups that failed are re-sent)
            with self._lock:
                running = list(self._open)
            wait(running)
        with self._lock:
            self._cancelling = self._cancelling or cancel
            io, self._io = self._io, None
        if io is not None:
            self._inbox.put(None)  # what was queued before is sent (or cancelled) first
            io.join()
        with self._lock:
            left, self._groups = list(self._groups.items()), {}
        if left:
            try:
                self._client.cancel([inner for inner, _ in left])
            except Exception as exc:  # the cluster may be gone already
                log.warning("could not cancel %d Dask task(s): %s", len(left), exc)
            for _inner, group in left:  # they settle as cancelled, not through the cluster
                for send in group:
                    if not send.future.cancel() and not send.future.done():
                        send.future.set_exception(CancelledError("the Dask backend was closed"))
        if self._stopped and self._client is not None:  # (a set event stays on the scheduler)
            try:
                _distributed().Event(self._stop.name, client=self._client).clear()
            except Exception as exc:
                log.debug("could not clear the Dask event %s: %s", self._stop.name, exc)
        if self._owns_client and self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


@dataclass(frozen=True)
class _Send:
    """A task queued for the cluster: its node, its payload and the future it settles."""

    label: str
    payload: bytes
    future: Future[Any]
    again: bool = False  # its group failed: it goes alone now


def _key(group: list[_Send]) -> str:
    """The Dask key of a group's task: its first node's name, and how many more it runs."""
    more = f"+{len(group) - 1}" if len(group) > 1 else ""
    return f"etherealfabric-{group[0].label}{more}-{uuid.uuid4().hex}"


#: per worker thread: whether the node it runs left the worker's thread pool (``worker_client``)
_seceded = threading.local()


@dataclass(frozen=True)
class DaskStop:
    """The backend's fail-fast signal as its tasks carry it (a
    :class:`~._base.RetryStop`): a ``distributed.Event`` by name, asked of the scheduler by the
    worker running the task (only when a retry is due). Off a worker, never set."""

    name: str

    def _event(self) -> Any | None:
        distributed = _distributed()
        try:
            distributed.get_worker()
        except ValueError:
            return None
        return distributed.Event(self.name)

    def is_set(self) -> bool:
        try:
            event = self._event()
            return event is not None and bool(event.is_set())
        except Exception:  # the scheduler out of reach: the retries go on
            return False

    def wait(self, timeout: float) -> bool:
        started = time.monotonic()
        try:
            event = self._event()
            if event is not None:
                return bool(event.wait(timeout))
        except Exception:
            pass
        time.sleep(max(0.0, timeout - (time.monotonic() - started)))
        return False


def worker_client() -> Any | None:
    """On a Dask worker: the worker's client, for a node that runs Dask work of its own.

    The node's thread first leaves the worker's thread pool (``distributed.secede``, once per
    task), so that the tasks it submits get a slot while it waits for them: else a node on a
    cluster of single-threaded workers waited forever for work queued behind itself. The thread
    rejoins the pool when its task ends (:func:`run_group_on_worker`). ``None`` off a worker.
    """
    distributed = _distributed()
    try:
        distributed.get_worker()
    except ValueError:
        return None
    client = distributed.get_client()
    if not getattr(_seceded, "active", False):
        distributed.secede()
        _seceded.active = True
    return client


def run_group_on_worker(payloads: list[bytes]) -> list[tuple[bool, bytes]]:
    """:func:`run_group` as a Dask task: a thread that left the pool for its node's own Dask
    work (:func:`worker_client`) rejoins it at the end."""
    try:
        if len(payloads) > 1:
            return run_group(payloads)
        with reporting_to(note_sink):  # a node alone tells when it begins (_dask_notes.py)
            return run_group(payloads)
    finally:
        if getattr(_seceded, "active", False):
            _seceded.active = False
            _distributed().rejoin()


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
