"""The backend interface: submit a picklable task, get a future of its result, shut down.

A backend runs ``fn(task)`` somewhere — a thread, a process, a cluster — and returns a
future. The scheduler only calls ``future.add_done_callback`` and ``future.result()``, so any
object with those two methods will do (``concurrent.futures.Future`` has both).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol, TypeVar

from ..config import check_options

__all__ = ["Backend", "TaskFuture", "default_workers", "no_main_reimport", "run_pickled"]

T = TypeVar("T")
R = TypeVar("R", covariant=True)


class TaskFuture(Protocol[R]):
    """The part of a future the scheduler uses."""

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...

    def result(self, timeout: float | None = None) -> R: ...


class Backend(ABC):
    """Runs tasks. Subclasses set ``name`` and implement :meth:`submit` and :meth:`close`."""

    name: ClassVar[str]
    #: True when a running task can be stopped (so node timeouts really stop the work).
    can_kill: ClassVar[bool] = False

    def __init__(self, *, max_workers: int | None = None, **options: Any) -> None:
        check_options(options, ("max_workers",), where=f"{type(self).__name__}()")
        self.max_workers = max_workers

    @abstractmethod
    def submit(self, fn: Callable[[T], Any], task: T) -> TaskFuture[Any]:
        """Start ``fn(task)``; return a future of its return value."""

    @abstractmethod
    def close(self, *, cancel: bool = False) -> None:
        """Release the workers; with ``cancel``, drop tasks that have not started."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)


_main_lock = threading.Lock()


@contextlib.contextmanager
def no_main_reimport() -> Iterator[None]:
    """Start worker processes without re-running the user's script in them.

    ``multiprocessing`` (``spawn`` and ``forkserver``, which Dask and the process backend use)
    re-imports the main script in every new process, so a script that runs a workflow at
    module level, without an ``if __name__ == "__main__":`` guard (the seed's own example),
    would run the workflow again inside each worker. Tasks carry their code with cloudpickle,
    so workers never need the script: while this is active, new processes import an empty
    module as their ``__main__`` instead.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield  # run with -m or interactively: multiprocessing imports it by name, safely
        return
    with _main_lock:
        main.__spec__ = importlib.machinery.ModuleSpec("etherealfabric._spawn_main", None)
        try:
            yield
        finally:
            main.__spec__ = None


def default_workers() -> int:
    """How many tasks a local pool runs at once by default: the CPU count."""
    return max(1, os.cpu_count() or 1)


def run_pickled(payload: bytes) -> bytes:
    """Worker side of every out-of-process backend: cloudpickled ``(fn, task)`` in, result out.

    cloudpickle both ways, so node code from ``__main__`` or a workflow file travels by value.
    """
    import cloudpickle

    fn, task = cloudpickle.loads(payload)
    result = fn(task)
    try:
        return cloudpickle.dumps(result)  # type: ignore[no-any-return]
    except Exception:
        if hasattr(result, "exception"):  # an unpicklable exception: keep its text only
            result.exception = None
        return cloudpickle.dumps(result)  # type: ignore[no-any-return]
