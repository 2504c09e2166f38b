"""Local backends: a thread pool (the default) and a process pool.

Threads share memory, so a large input loaded once serves every node that needs it; they suit
nodes that release the GIL (numpy, pandas, I/O). Processes suit pure-Python CPU work: tasks and
results cross the process boundary with cloudpickle, so nodes defined in ``__main__``, in a
notebook or in a workflow file loaded by the CLI work too. Worker processes are started with
``forkserver`` (``spawn`` where that is missing), never ``fork``, which is unsafe in a process
that runs threads; like all of multiprocessing this needs the usual
``if __name__ == "__main__":`` guard around the code that runs the workflow in a script.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

from .base import Backend

__all__ = ["ProcessBackend", "ThreadBackend"]

T = TypeVar("T")


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


class ThreadBackend(Backend):
    """Runs tasks on a pool of threads in this process."""

    name = "local"
    in_process = True

    def __init__(self, *, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers or _default_workers())
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="etherealfabric")

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        return self._pool.submit(fn, task)

    def close(self, *, cancel: bool = False) -> None:
        """Shut the pool down; with ``cancel`` (Ctrl-C) do not wait for running nodes.

        Threads cannot be stopped: a running node finishes in the background and its result
        is discarded (the interpreter waits for it before exiting).
        """
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


def _run_pickled(payload: bytes) -> bytes:
    import cloudpickle

    fn, task = cloudpickle.loads(payload)
    result = fn(task)
    try:
        return cloudpickle.dumps(result)  # type: ignore[no-any-return]
    except Exception:
        if hasattr(result, "exception"):  # an unpicklable exception: keep its text only
            result.exception = None
        return cloudpickle.dumps(result)  # type: ignore[no-any-return]


class _Unpickling(Future[Any]):
    """A future that unpickles the result of the inner one."""

    def __init__(self, inner: Future[bytes]) -> None:
        super().__init__()
        inner.add_done_callback(self._resolve)

    def _resolve(self, inner: Future[bytes]) -> None:
        import cloudpickle

        try:
            self.set_result(cloudpickle.loads(inner.result()))
        except BaseException as exc:
            self.set_exception(exc)


class ProcessBackend(Backend):
    """Runs tasks on a pool of worker processes."""

    name = "processes"
    can_kill = True

    def __init__(self, *, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers or _default_workers())
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._pool = ProcessPoolExecutor(self.max_workers, mp_context=context)

    def submit(self, fn: Callable[[T], Any], task: T) -> Future[Any]:
        import cloudpickle

        payload = cloudpickle.dumps((fn, task))
        return _Unpickling(self._pool.submit(_run_pickled, payload))

    def close(self, *, cancel: bool = False) -> None:
        """Shut the pool down; with ``cancel`` (Ctrl-C) the worker processes are killed."""
        if not cancel:
            self._pool.shutdown(wait=True)
            return
        processes = list(getattr(self._pool, "_processes", {}).values())  # no public API for it
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()
        for process in processes:
            process.join()
