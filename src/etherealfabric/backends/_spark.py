"""The Spark backend: each node runs as a Spark task, one job per node, several jobs at once.

Where the cluster comes from, first match wins:

1. ``session=``: an existing :class:`pyspark.sql.SparkSession`; the backend never stops it;
2. a SparkSession already active in this process (a notebook's ``spark``); never stopped (a
   process holds one SparkContext only, so a different master is then an error);
3. ``master=`` or ``ETHEREALFABRIC_SPARK_MASTER`` (``spark://host:7077``, ``local[4]``,
   ``yarn``...), else ``local[N]`` with ``N`` = ``max_workers`` (default: the CPU count). The
   session is started when the first node is submitted (a fully cached run starts no JVM) and
   stopped when the run ends.

Each node is one job of one task, ``sc.parallelize([payload], 1).map(...)``: the payload is the
cloudpickled ``(fn, task)``, exactly as on the process backend, and the task returns the
cloudpickled result, or the node's exception, which is raised again here (a Spark error would
only carry its text). Driver threads (two per task slot, ``max_workers``) each run one job at
a time, so independent nodes run concurrently and a slot that frees finds the next job
scheduled already; each job is in its own job group, so closing with
``cancel`` cancels the running ones. Spark itself retries a task only when its Python worker
dies (``spark.task.maxFailures``); a node's own exception is never retried by Spark, the run's
retry policy decides.

Executors read inputs from and write outputs to the store, so each must reach it: a local
folder for ``local[N]`` (or a shared file system), an object store for a cluster on other
machines. A session the backend starts for a ``local`` master gives its Python workers this
process's ``sys.path`` (``spark.executorEnv.PYTHONPATH``), as the process backend's workers
get it, and a Python daemon that imports the engine before it forks the Python workers
(``_spark_daemon.py``), so that no worker imports it on its first node. Starting the JVM costs seconds (5-15 s on a small machine): choose this backend where
the data already lives in a Spark cluster. The JVM that PySpark starts exits when this process
dies, even by SIGKILL (it watches its stdin), and takes its local executors with it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..config import ENV, SPARK_MASTER_ENV, strict_options
from ..errors import ConfigError, ExecutionError
from ._base import Backend, default_workers
from ._grouping import outcome, run_captured
from ._local import ThreadBackend

__all__ = ["MASTER_ENV", "SparkBackend", "run_spark_task"]

log = logging.getLogger("etherealfabric.backends.spark")
T = TypeVar("T")

#: The environment variable naming the Spark master.
MASTER_ENV = SPARK_MASTER_ENV
APP_NAME = "etherealfabric"
#: Spark jobs kept submitted per task slot (``max_workers``)
JOBS_PER_SLOT = 2


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
        # driver threads, one Spark job each at a time, so independent nodes run at once
        self._drivers = ThreadBackend(max_workers=self.in_flight)
        self._groups: set[str] = set()  # the job groups of the jobs running now
        self._cancelled = False

    @property
    def in_flight(self) -> int | None:
        """Jobs kept submitted: :data:`JOBS_PER_SLOT` per task slot, so that a slot that
        frees finds the next job scheduled already (a job's own start costs tens of
        milliseconds of driver and JVM work, which then overlaps the running job)."""
        return JOBS_PER_SLOT * self.max_workers if self.max_workers else None

    # -- the session ---------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The ``SparkSession``; started here on first use unless one was given or is active."""
        with self._lock:
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
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
                "Check the master URL, and that Java 17+ is installed (java -version)",
                setting=self._setting if self._master else ENV["backend"],
            ) from exc
        return session, True

    # -- submitting ----------------------------------------------------------------------------
    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        """Run ``fn(task)`` as a Spark job; the future resolves to its return value."""
        import cloudpickle

        try:
            payload = cloudpickle.dumps((fn, task))
        except Exception as exc:  # reported as the node's failure, not the scheduler's
            failed: Future[Any] = Future()
            failed.set_exception(exc)
            return failed
        label = str(getattr(task, "node", getattr(fn, "__name__", "task")))
        return self._drivers.submit(self._run_job, (payload, label))

    def _run_job(self, job: tuple[bytes, str]) -> Any:
        """On a driver thread: one Spark job of one task, in a job group of its own."""

        payload, label = job
        sc = self.session.sparkContext
        group = f"etherealfabric-{uuid.uuid4().hex}"
        with self._lock:
            if self._cancelled:
                raise ExecutionError(f"node {label!r}: cancelled (the Spark backend was closed)")
            self._groups.add(group)
        sc.setJobGroup(group, f"etherealfabric node {label}", interruptOnCancel=True)
        try:
            ok, data = sc.parallelize([payload], 1).map(run_spark_task).collect()[0]
        except Exception as exc:
            raise ExecutionError(
                f"node {label!r}: its Spark job failed: {_first_line(exc)}"
            ) from exc
        finally:
            with self._lock:
                self._groups.discard(group)
        return outcome((ok, data))

    # -- shutting down -------------------------------------------------------------------------
    def close(self, *, cancel: bool = False) -> None:
        """Wait for the jobs (or, with ``cancel``, cancel them), then stop a session we started."""
        with self._lock:
            self._cancelled = self._cancelled or cancel
            session, groups = self._session, set(self._groups)
        if cancel and session is not None:
            for group in groups:  # ours only: the session may run other jobs too
                try:
                    session.sparkContext.cancelJobGroup(group)
                except Exception as exc:
                    log.warning("could not cancel Spark job group %s: %s", group, exc)
        self._drivers.close(cancel=cancel)
        with self._lock:
            session, owns = self._session, self._owns_session
            self._session, self._owns_session = None, False
        if owns and session is not None:
            session.stop()


def _local_cores(master: str | None) -> int | None:
    """``N`` of a ``local[N]`` master (the CPU count for ``local[*]``); None for other masters."""
    if master is None or not master.startswith("local"):
        return None
    inside = master[len("local") :].strip("[]").split(",")[0]
    if inside in ("", "*"):
        return default_workers()
    return int(inside) if inside.isdigit() and int(inside) > 0 else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if "Exception" in line or "Error" in line:
            return line.strip()[:500]
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


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
