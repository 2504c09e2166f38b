"""Local backends: a thread pool (the default) and a process pool.

Threads share memory, so a large output is handed to the nodes that need it in memory (it is
still stored, and a large input loaded once serves every node that needs it); they suit
nodes that release the GIL (numpy, pandas, I/O). Processes suit pure-Python CPU work: tasks and
results cross the process boundary with cloudpickle, so nodes defined in ``__main__``, in a
notebook or in a workflow file loaded by the CLI work too. Worker processes are started with
``forkserver`` (``spawn`` where that is missing), never ``fork``, which is unsafe in a process
that runs threads. New workers never re-run the user's script (see
:func:`~etherealfabric.backends._base.no_main_reimport`), so no ``__main__`` guard is needed.
Workers, the forkserver and multiprocessing's resource tracker exit when the run's process dies,
even by SIGKILL (see :func:`~etherealfabric.backends._base.watch_run`).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from ..config import strict_options
from ._base import (
    WORKER_MODULES,
    Backend,
    Pacing,
    RetryStop,
    TaskFuture,
    default_workers,
    lifeline,
    watch_run,
)
from ._taskpickle import dumps_task

__all__ = ["ProcessBackend", "ThreadBackend"]

T = TypeVar("T")
log = logging.getLogger("etherealfabric.backends")
#: threads the pool starts at its first task (more start while tasks wait, up to max_workers)
EAGER_THREADS = 32


class _ThreadPacing(Pacing):
    """The window of the thread pool: one task per thread while tasks are long (a fail-fast
    run then has nothing queued to drop), a deep queue once they are short, so that no
    thread waits for the scheduler's round trip between two tasks of a millisecond."""

    per_worker = 1


class ThreadBackend(Backend):
    """Runs tasks on a pool of daemon threads in this process.

    The threads are daemons (``concurrent.futures.ThreadPoolExecutor``'s are not) so that a
    Ctrl-C ends the program at once instead of waiting for running nodes, which threads
    cannot interrupt: what they were writing is in temporary files, never under a final name.

    The scheduler keeps :attr:`in_flight` tasks submitted (:class:`_ThreadPacing`): one per
    thread for long tasks, 64 per thread once the recent ones ran for less than 50 ms each.
    Otherwise every short node costs a round trip between threads (the scheduler wakes, takes
    the result, submits the next task, a thread wakes), during which the pool stands idle:
    a fan-out of 200 trivial nodes spent half its time so. A task not started yet can be
    dropped (:meth:`cancel`), which the scheduler does when a failure stops the run.
    """

    name = "local"
    in_process = True
    runs_inline = True
    reports_starts = True

    @strict_options
    def __init__(self, *, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers or default_workers())
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[Any], Any], Any] | None]
        self._queue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pacing = _ThreadPacing()
        self._pacing_lock = threading.Lock()
        self._waiting = 0  # tasks submitted and not done (under _pacing_lock)

    @property
    def in_flight(self) -> int | None:
        """Tasks kept submitted: see the class's docstring."""
        return self._pacing.window(self.max_workers)

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        future: Future[Any] = Future()
        with self._pacing_lock:
            self._waiting += 1
            more = min(self._waiting, self.max_workers or 1) - len(self._threads)
        if more > 0:
            self._start_threads(more if self._threads else max(more, EAGER_THREADS))
        self._queue.put((future, fn, task))
        return future

    def _start_threads(self, count: int) -> None:
        """Start ``count`` more threads (up to ``max_workers``). The first submit starts up to
        :data:`EAGER_THREADS` at once, while none has a task: each new thread waits for one
        (and lets go of the GIL); a thread started once others run tasks costs the scheduler
        up to a GIL switch interval (5 ms) in ``Thread.start``. More start only while tasks
        wait for one: a ``max_workers`` of thousands for a run of five nodes starts five."""
        for _ in range(min(count, (self.max_workers or 1) - len(self._threads))):
            thread = threading.Thread(
                target=self._work, name=f"etherealfabric-{len(self._threads)}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # the system's limit of threads: the pool stays as it is
                if self._threads:
                    log.warning("the thread pool stays at %d threads: %s", len(self._threads),
                                "the system refuses more")  # fmt: skip
                    return
                raise
            self._threads.append(thread)

    def cancel(self, future: TaskFuture[Any]) -> bool:
        """Drop a task that has not started (True); one that runs or ran is left alone."""
        return isinstance(future, Future) and future.cancel()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, task = item
            if not future.set_running_or_notify_cancel():
                with self._pacing_lock:
                    self._waiting -= 1
                continue
            try:
                result = fn(task)
            except BaseException as exc:
                with self._pacing_lock:
                    self._waiting -= 1
                future.set_exception(exc)
                continue
            with self._pacing_lock:
                self._waiting -= 1
                self._pacing.observe(result)
            future.set_result(result)

    def close(self, *, cancel: bool = False) -> None:
        """Stop the threads; with ``cancel`` (Ctrl-C) drop queued tasks and do not wait."""
        if cancel:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in self._threads:
            self._queue.put(None)
        if not cancel:
            for thread in self._threads:
                thread.join()
        self._threads = []


class _Unpickling(Future[Any]):
    """A future that unpickles the result of the inner one."""

    def __init__(self, inner: Future[bytes]) -> None:
        super().__init__()
        self._inner = inner
        inner.add_done_callback(self._resolve)

    def listen(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(note)`` (in a thread of the pool) with each note the task reports
        while it runs (:func:`~._base.report_progress`)."""
        self._inner.ef_listener = callback  # type: ignore[attr-defined]

    def _resolve(self, inner: Future[bytes]) -> None:
        import cloudpickle

        try:
            self.set_result(cloudpickle.loads(inner.result()))
        except BaseException as exc:
            self.set_exception(exc)


#: The longest Unix socket path the forkserver's may be (108 bytes on Linux, 104 on macOS).
_SOCKET_PATH_MAX = 100
#: What multiprocessing adds to TMPDIR for it (``/pymp-xxxxxxxx/listener-xxxxxxxx``).
_SOCKET_NAME_LENGTH = 40


def _short_socket_folder() -> None:
    """The forkserver listens on a Unix socket in multiprocessing's temp folder, made under
    TMPDIR: with a TMPDIR too long for a socket path, every node failed ("OSError: AF_UNIX
    path too long"). Then this process's multiprocessing folder is made under ``/tmp``
    instead (what Python 3.13's multiprocessing does itself), removed at exit as its own."""
    import tempfile
    from multiprocessing import process, util

    if len(tempfile.gettempdir()) + _SOCKET_NAME_LENGTH <= _SOCKET_PATH_MAX:
        return
    config = process.current_process()._config  # type: ignore[attr-defined]  # (get_temp_dir)
    if config.get("tempdir") is not None or not os.access("/tmp", os.W_OK | os.X_OK):
        return
    import shutil

    folder = tempfile.mkdtemp(prefix="pymp-", dir="/tmp")
    util.Finalize(None, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True},
                  exitpriority=-100)  # fmt: skip
    config["tempdir"] = folder


def _preload_worker(context: Any) -> None:
    """Have the forkserver (when it starts) import :data:`WORKER_MODULES`, besides what it
    preloads already. A module that fails to import there is skipped by the forkserver."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    current = list(getattr(server, "_preload_modules", None) or ["__main__"])
    missing = [m for m in WORKER_MODULES if m not in current]
    if missing:
        context.set_forkserver_preload([*current, *missing])


class ProcessBackend(Backend):
    """Runs tasks on a pool of worker processes (:class:`~._procpool.WorkerPool`).

    A worker process that dies (killed by the out-of-memory killer, say) fails only the task
    it ran, with a :class:`~etherealfabric.errors.WorkerDiedError` naming its pid and signal
    (the run retries the node under its retry policy: ``run/_lost.py``); the tasks of the
    other workers go on, and the next task gets a new process.
    """

    name = "processes"
    can_kill = True
    reports_starts = True

    @strict_options
    def __init__(self, *, max_workers: int | None = None) -> None:
        import multiprocessing

        from ._procpool import WorkerPool  # (and signal: only the process backend's)

        super().__init__(max_workers=max_workers or default_workers())
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context(
            "forkserver" if "forkserver" in methods else "spawn"
        )
        forkserver = self._context.get_start_method() == "forkserver"
        if forkserver:
            _preload_worker(self._context)
            _short_socket_folder()
        # workers exit when this process dies (see watch_run)
        self._pool = WorkerPool(
            self.max_workers or 1,
            self._context,
            initializer=watch_run,
            initargs=lambda: (lifeline(), forkserver),
        )

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        return _Unpickling(self._pool.submit(dumps_task((fn, task))))

    @property
    def retry_stop(self) -> RetryStop:
        from ._procpool import PoolStop

        return PoolStop()

    def stop_retries(self) -> None:
        self._pool.stop_retries()

    def close(self, *, cancel: bool = False) -> None:
        """Stop the workers; with ``cancel`` (Ctrl-C) they are killed and queued tasks dropped."""
        self._pool.close(cancel=cancel)
