"""The Spark backend: nodes run as Spark tasks; short ones in groups, a few jobs at once.

Where the cluster comes from, first match wins:

1. ``session=``: an existing :class:`pyspark.sql.SparkSession`; the backend never stops it;
2. a SparkSession already active in this process (a notebook's ``spark``); never stopped (a
   process holds one SparkContext only, so a different master is then an error);
3. ``master=`` or ``ETHEREALFABRIC_SPARK_MASTER`` (``spark://host:7077``, ``local[4]``,
   ``yarn``...), else ``local[N]`` with ``N`` = ``max_workers`` (default: the CPU count). The
   session is started when the first node is submitted (a fully cached run starts no JVM) and
   stopped when the run ends.

Nodes travel as Spark tasks of ``sc.parallelize(groups, len(groups)).map(run_group)``: each
node's payload is the cloudpickled ``(fn, task)``, exactly as on the process backend, and each
comes back as the cloudpickled result, or the node's exception, which is raised again here (a
Spark error would only carry its text). :meth:`SparkBackend.submit` only pickles and queues; an
I/O thread sends what was queued since its last round. While the tasks are long (and before
the first results), each node is a job of its own, and driver threads (two per task slot,
``max_workers``) run one job each, so independent nodes run at once and a slot that frees
finds the next job scheduled already. Once the recent tasks turn out to be short, a Spark
job and a Spark task cost far more than the node (tens of milliseconds each on a small
machine), so the nodes queued at once go as one job of one task per slot, each task running
its share of them one after another (:class:`SparkPacing`, :mod:`._grouping`); two such jobs
run at once, and the nodes queued meanwhile make the next one. Each job is in its own job
group, so closing with ``cancel`` cancels the running ones. A job of several nodes that fails
as a whole (a Python worker died) sends its nodes again each in a job of its own, so only a
node that takes its worker down fails. Spark itself retries a task only when its Python worker
dies (``spark.task.maxFailures``; once on ``local[N]``); a node's own exception is never
retried by Spark, the run's retry policy decides. A lone node whose job failed because its
Python worker died (or its executor was lost: :data:`~._spark_errors.WORKER_DEATHS`) fails with a
:class:`~etherealfabric.errors.WorkerDiedError`, which the run retries under the node's policy
(``run/_lost.py``: ``send`` watches the futures of every backend that is not in process), as
on the process backend. Fail-fast reaches the retries of nodes running on the
executors through a stop signal the driver serves (``_spark_stop.py``).

Executors read inputs from and write outputs to the store, so each must reach it: a local
folder for ``local[N]`` (or a shared file system), an object store for a cluster on other
machines. A session the backend starts for a ``local`` master runs its Python workers with
this interpreter (unless ``PYSPARK_PYTHON`` says otherwise) and gives them this process's
``sys.path`` (``spark.executorEnv.PYTHONPATH``), as the process backend's workers get them,
and a Python daemon that imports the engine before it forks the Python workers
(``_spark_daemon.py``), so that no worker imports it on its first node. Starting the JVM
costs seconds (5-15 s on a small machine): choose this backend where the data already lives
in a Spark cluster. The JVM that PySpark starts exits when this process
dies, even by SIGKILL (it watches its stdin), and takes its local executors with it.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from ..config import ENV, SPARK_MASTER_ENV, strict_options
from ..errors import ConfigError, ExecutionError, WorkerDiedError
from ._base import Backend, TaskFuture, default_workers
from ._grouping import GroupPacing, run_captured, run_group, settle
from ._local import ThreadBackend
from ._spark_errors import first_line, reason, worker_death
from ._spark_stop import SparkStop, StopServer, driver_address
from ._taskpickle import dumps_task

__all__ = ["MASTER_ENV", "SparkBackend", "run_spark_task"]

log = logging.getLogger("etherealfabric.backends.spark")
T = TypeVar("T")

#: The environment variable naming the Spark master.
MASTER_ENV = SPARK_MASTER_ENV
APP_NAME = "etherealfabric"
#: Spark jobs running at once per task slot (``max_workers``) while the tasks are long, one
#: node each: a slot that frees finds the next job's task scheduled already
JOBS_PER_SLOT = 2
#: Spark jobs running at once once the tasks are short, each of many nodes: one runs while
#: the next is being scheduled, and the nodes queued meanwhile make the one after
JOBS_WHEN_SHORT = 2


class SparkPacing(GroupPacing):
    """:class:`GroupPacing` sized for Spark, whose fixed cost per task (tens of milliseconds
    on a small machine: the task is scheduled, sent to a Python worker and its result back)
    and per job (more) are ten times Dask's: short nodes travel in larger groups, one group
    per task slot, so that a job of short nodes is one wave of tasks."""

    group_max = 256
    group_seconds = 0.25
    groups_per_worker = 1

    @property
    def short(self) -> bool:
        """The recent tasks were short: nodes travel in groups, several per job."""
        return self._short


#: The Spark task: ``(True, pickled result)``, or ``(False, pickled exception)``; the exception
#: travels as a value so the driver raises the node's own error, not a ``Py4JJavaError``
#: holding its text (``backends/_grouping.py``, which Dask and Celery use too)
run_spark_task = run_captured


class SparkBackend(Backend):
    """Runs tasks as Spark jobs: a given session, the active one, or one on a master URL."""

    name = "spark"

    @strict_options
    def __init__(
        self,
        *,
        max_workers: int | None = None,
        master: str | None = None,
        session: Any = None,
    ) -> None:
        self._master = master or os.environ.get(MASTER_ENV, "").strip() or None
        self._setting = "master" if master else MASTER_ENV
        super().__init__(max_workers=max_workers or _local_cores(self._master) or default_workers())
        self._session: Any = session
        self._owns_session = False
        self._lock = threading.Lock()
        # the session's own: its start (seconds) must not hold up submit
        self._session_lock = threading.Lock()
        self._pacing = SparkPacing()
        self._jobs = 0  # Spark jobs submitted and not ended
        self._jobs_done = threading.Condition(self._lock)
        # driver threads, one Spark job each at a time, so that jobs overlap
        self._drivers = ThreadBackend(max_workers=JOBS_PER_SLOT * (self.max_workers or 1))
        self._spark_groups: set[str] = set()  # the job groups of the jobs running now
        self._open: set[Future[Any]] = set()  # our futures not settled yet
        # the I/O thread's inbox: tasks to send, None to stop
        self._inbox: queue.SimpleQueue[_Send | None] = queue.SimpleQueue()
        self._io: threading.Thread | None = None
        self._cancelled = False
        self._stop = SparkStop()  # fail-fast, as the tasks carry it (served on first submit)
        self._stop_server: StopServer | None = None
        self._stop_unserved = False  # the server could not start: not tried again

    @property
    def in_flight(self) -> int | None:
        """Tasks kept submitted: a few per task slot, many once the tasks turn out to be
        short (:class:`~._base.Pacing`), so that no slot waits for a round trip."""
        return self._pacing.window(self.max_workers)

    # -- the session ---------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The ``SparkSession``; started here on first use unless one was given or is active."""
        with self._session_lock:
            if self._session is None:
                self._session, self._owns_session = self._start_session()
            return self._session

    def _start_session(self) -> tuple[Any, bool]:
        SparkSession = _pyspark_session()
        # the active session of this thread, else the process's default one (a notebook's)
        active = SparkSession.getActiveSession() or getattr(
            SparkSession, "_instantiatedSession", None
        )
        if active is not None:  # the user's (a notebook's): used, never stopped
            running = str(active.sparkContext.master)
            if self._master is not None and self._master != running:
                raise ConfigError(
                    f"{self._setting} asks for the Spark master {self._master!r}, but this "
                    f"process already runs a Spark session on {running!r}, and a process can "
                    f"hold one only: unset {self._setting} to use that session, or stop it",
                    setting=self._setting,
                )
            return active, False
        master = self._master or f"local[{self.max_workers}]"
        log.info("starting a Spark session on %s", master)
        builder = (
            SparkSession.builder.master(master)
            .appName(APP_NAME)
            .config("spark.ui.showConsoleProgress", "false")  # progress is ours to show
        )
        if master.startswith("local"):
            builder = (
                builder.config("spark.pyspark.python", sys.executable)
                .config("spark.executorEnv.PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
                # Python workers fork with the engine imported (see _spark_daemon.py)
                .config("spark.python.daemon.module", "etherealfabric.backends._spark_daemon")
            )
        try:
            session = builder.getOrCreate()
        except Exception as exc:
            raise ConfigError(
                f"cannot start a Spark session on {master!r} (from {self._setting}): "
                f"{reason(exc)}. "
                "Check the master URL, and that Java 17+ is installed (java -version)",
                setting=self._setting if self._master else ENV["backend"],
            ) from exc
        if master.startswith("local") and not os.environ.get("PYSPARK_PYTHON"):
            # PySpark starts its Python workers with PYSPARK_PYTHON, else whatever ``python3``
            # is on PATH (spark.pyspark.python is for spark-submit): not this interpreter, nor
            # its virtualenv, whose packages then came only through PYTHONPATH (and which the
            # engine took for user code, checking each imported file: ~0.1 s per worker)
            session.sparkContext.pythonExec = sys.executable
        return session, True

    # -- fail-fast -----------------------------------------------------------------------------
    @property
    def retry_stop(self) -> SparkStop:
        """The driver's stop server, as the tasks reach it (``._spark_stop``)."""
        return self._stop

    def stop_retries(self) -> None:
        """The run stops: the retries of the nodes running on executors end."""
        with self._lock:
            server = self._stop_server
        if server is not None:
            server.stopped.set()

    def _serve_stop(self) -> None:
        """Start the stop server (once, before the first task is pickled with its address)."""
        with self._lock:
            if self._stop_server is not None or self._stop_unserved:
                return
            try:
                self._stop_server = StopServer(driver_address(self._known_master()))
            except OSError as exc:  # the nodes' retries then run their course
                log.warning("cannot serve fail-fast to the Spark executors: %s", exc)
                self._stop_unserved = True
                return
            self._stop.address = self._stop_server.address

    def _known_master(self) -> str:
        """The master the nodes will run on, as far as known without starting a session."""
        if self._session is not None:
            return str(self._session.sparkContext.master)
        if self._master is None and "pyspark.sql" in sys.modules:
            active = sys.modules["pyspark.sql"].SparkSession.getActiveSession()
            if active is not None:
                return str(active.sparkContext.master)
        return self._master or "local"

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        """Queue ``fn(task)`` for Spark; the future resolves to its return value."""
        future: Future[Any] = Future()
        self._serve_stop()
        try:
            payload = dumps_task((fn, task))
        except Exception as exc:  # reported as the node's failure, not the scheduler's
            future.set_exception(exc)
            return future
        label = str(getattr(task, "node", getattr(fn, "__name__", "task")))
        with self._lock:
            if self._io is None:
                self._io = threading.Thread(
                    target=self._serve, name="etherealfabric-spark-io", daemon=True
                )
                self._io.start()
            self._open.add(future)
        future.add_done_callback(self._settled)
        self._inbox.put(_Send(label, payload, future))
        return future

    def cancel(self, future: TaskFuture[Any]) -> bool:
        """Drop a task not sent to Spark yet (True); one already in a job is left alone."""
        return isinstance(future, Future) and future.cancel()

    def _settled(self, future: Future[Any]) -> None:
        with self._lock:
            self._open.discard(future)

    def _serve(self) -> None:
        """The I/O thread: once a job may start (:meth:`_job_limit`), send everything queued
        since its last round. While the jobs run, the next batch gathers in the inbox."""
        while True:
            with self._jobs_done:
                self._jobs_done.wait_for(lambda: self._jobs < self._job_limit() or self._cancelled)
            if (first := self._inbox.get()) is None:
                return
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

    def _job_limit(self) -> int:
        """Jobs running at once: one per node while the tasks are long (as many as
        :data:`JOBS_PER_SLOT` per slot), :data:`JOBS_WHEN_SHORT` batches once they are short."""
        if self._pacing.short:
            return JOBS_WHEN_SHORT
        return JOBS_PER_SLOT * (self.max_workers or 1)

    def _send(self, sends: list[_Send]) -> None:
        """Send ``sends`` as Spark jobs: short tasks together, cut into one task per slot
        (:class:`SparkPacing`), in one job; others one job each, on the driver threads."""
        if self._cancelled:  # closed with cancel: what was not sent is never sent
            for send in sends:
                _cancelled(send.future)
            return
        sends = [s for s in sends if s.again or s.future.set_running_or_notify_cancel()]
        if not sends:
            return
        try:
            self.session  # noqa: B018 -- started here (a cached run never gets this far)
        except Exception as exc:  # a bad master, no Java: these nodes fail with its error
            for send in sends:
                send.future.set_exception(exc)
            return
        jobs = [[[s]] for s in sends if s.again]  # sent again after their job failed: alone
        groups = self._pacing.split([s for s in sends if not s.again], self.max_workers)
        if any(len(group) > 1 for group in groups):
            jobs.append(groups)
        else:
            jobs += [[group] for group in groups]
        for job in jobs:
            with self._jobs_done:
                self._jobs += 1
            ran = self._drivers.submit(self._run_job, job)
            ran.add_done_callback(functools.partial(self._job_ended, job))

    def _job_ended(self, groups: list[list[_Send]], ran: Future[Any]) -> None:
        with self._jobs_done:
            self._jobs -= 1
            self._jobs_done.notify_all()
        _unsettled(groups, ran)

    def _run_job(self, groups: list[list[_Send]]) -> None:
        """On a driver thread: one Spark job, a task per group, in a job group of its own;
        each node's future gets its own outcome."""
        sends = [send for group in groups for send in group]
        label = sends[0].label + (f" and {len(sends) - 1} more" if len(sends) > 1 else "")
        sc = self.session.sparkContext
        spark_group = f"etherealfabric-{uuid.uuid4().hex}"
        with self._lock:
            cancelled = self._cancelled
            if not cancelled:
                self._spark_groups.add(spark_group)
        if cancelled:  # (settled outside the lock: a future's callbacks take it)
            for send in sends:
                _cancelled(send.future)
            return
        sc.setJobGroup(spark_group, f"etherealfabric {label}", interruptOnCancel=True)
        started = time.time()
        try:
            payloads = [[send.payload for send in group] for group in groups]
            outcomes = sc.parallelize(payloads, len(payloads)).map(run_group).collect()
        except Exception as exc:
            self._job_failed(sends, exc, started)
            return
        finally:
            with self._lock:
                self._spark_groups.discard(spark_group)
        for group, captured in zip(groups, outcomes, strict=True):
            for send, one in zip(group, captured, strict=True):
                settle(send.future, one, self._observe)

    def _job_failed(self, sends: list[_Send], exc: Exception, started: float = 0.0) -> None:
        """A job failed as a whole (a Python worker died, the job was cancelled): a job of
        several nodes sends them again one by one, so only a node that takes its worker down
        fails; a lone node fails with the job's error: a :class:`WorkerDiedError` when its
        Python worker (or executor) died, which the run retries under the node's retry policy
        (``run/_lost.py``), as on the process backend."""
        with self._lock:
            cancelled = self._cancelled
            again = len(sends) > 1 and not cancelled
            if again:  # (queued before close's stop, so sent or cancelled by the I/O thread)
                for send in sends:
                    self._inbox.put(_Send(send.label, send.payload, send.future, again=True))
        if again:
            log.warning(
                "a Spark job of %d nodes failed (%s); sending them again one by one",
                len(sends),
                first_line(exc),
            )
            return
        died = None if cancelled else worker_death(exc)
        for send in sends:
            if send.future.done():
                continue
            error: ExecutionError
            if died is not None:
                error = WorkerDiedError(
                    f"node {send.label!r}: its Spark task's Python worker died (killed, by the "
                    f"out-of-memory killer say, or crashed); Spark said: {died}",
                    pid=0,  # (Spark does not say which process it was)
                    exitcode=None,
                    started_at=started,
                    died_at=time.time(),
                )
            else:
                error = ExecutionError(
                    f"node {send.label!r}: its Spark job failed: {first_line(exc)}"
                )
            error.__cause__ = exc
            send.future.set_exception(error)

    def _observe(self, result: Any) -> Any:
        with self._lock:
            return self._pacing.observe(result)

    # -- shutting down -------------------------------------------------------------------------
    def close(self, *, cancel: bool = False) -> None:
        """Wait for the jobs (or, with ``cancel``, cancel them), then stop a session we started."""
        if not cancel:  # what was submitted runs to its end (jobs that failed are re-sent)
            with self._lock:
                running = list(self._open)
            wait(running)
        with self._lock:
            self._cancelled = self._cancelled or cancel
            self._jobs_done.notify_all()
            session, groups = self._session, set(self._spark_groups)
            io, self._io = self._io, None
        if io is not None:
            self._inbox.put(None)  # what was queued before is sent (or cancelled) first
            io.join()
        if cancel and session is not None:
            for group in groups:  # ours only: the session may run other jobs too
                try:
                    session.sparkContext.cancelJobGroup(group)
                except Exception as exc:
                    log.warning("could not cancel Spark job group %s: %s", group, exc)
        self._drivers.close(cancel=cancel)
        with self._session_lock:
            session, owns = self._session, self._owns_session
            self._session, self._owns_session = None, False
        if owns and session is not None:
            session.stop()
        with self._lock:
            server, self._stop_server = self._stop_server, None
            self._stop.address, self._stop_unserved = None, False
        if server is not None:
            server.close()


@dataclass(frozen=True)
class _Send:
    """A task queued for Spark: its node, its payload and the future it settles."""

    label: str
    payload: bytes
    future: Future[Any]
    again: bool = False  # its job failed: it goes alone now


def _cancelled(future: Future[Any]) -> None:
    if not future.cancel() and not future.done():
        future.set_exception(CancelledError("the Spark backend was closed"))


def _unsettled(groups: list[list[_Send]], ran: Future[Any]) -> None:
    """A job the driver threads dropped (closed with cancel) or that broke: its nodes end."""
    error = None if ran.cancelled() else ran.exception()
    if not ran.cancelled() and error is None:  # it ran: it settled them (or sent them again)
        return
    for group in groups:
        for send in group:
            if send.future.done():
                continue
            if error is None:
                _cancelled(send.future)
            else:
                send.future.set_exception(error)


def _local_cores(master: str | None) -> int | None:
    """``N`` of a ``local[N]`` master (the CPU count for ``local[*]``); None for other masters."""
    if master is None or not master.startswith("local"):
        return None
    inside = master[len("local") :].strip("[]").split(",")[0]
    if inside in ("", "*"):
        return default_workers()
    return int(inside) if inside.isdigit() and int(inside) > 0 else None


def _pyspark_session() -> Any:
    try:
        with warnings.catch_warnings():  # pyspark warns about pandas versions it has not seen
            warnings.simplefilter("ignore", FutureWarning)
            from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            f"the spark backend needs PySpark ({exc}); install it with "
            "pip install 'etherealfabric[spark]' (and Java 17+)",
            setting=ENV["backend"],
        ) from exc
    return SparkSession
