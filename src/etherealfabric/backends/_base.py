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
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from ..config import check_options
from ..errors import ExecutionError, RemoteError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

__all__ = [
    "WORKER_MODULES",
    "Backend",
    "Listening",
    "Pacing",
    "RetryStop",
    "TaskFuture",
    "default_workers",
    "exit_with_parent",
    "guarded",
    "lifeline",
    "no_main_reimport",
    "portable_exception",
    "progress_listened",
    "report_progress",
    "reporting_to",
    "run_pickled",
    "watch_run",
    "worker_error",
]

T = TypeVar("T")
R = TypeVar("R", covariant=True)


class TaskFuture(Protocol[R]):
    """The part of a future the scheduler uses."""

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...

    def result(self, timeout: float | None = None) -> R: ...


class RetryStop(Protocol):
    """A backend's fail-fast signal as a running task sees it (picklable: it travels with the
    task): set when the run stops, so that the task's retries end (``run/_retrying.py``)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, less when set meanwhile; whether it is set."""
        ...


class Backend(ABC):
    """Runs tasks. Subclasses set ``name`` and implement :meth:`submit` and :meth:`close`."""

    name: ClassVar[str]
    #: True when a running task can be stopped (so node timeouts really stop the work).
    can_kill: ClassVar[bool] = False
    #: True when tasks run in this process: outputs are then handed to their consumers in
    #: memory (``run/_handover.py``) instead of being read back from the store.
    in_process: ClassVar[bool] = False
    #: True when the scheduler may run a short task in its own thread instead of submitting
    #: it, while the backend has nothing else to run (``run/_inline.py``): tasks run in this
    #: process anyway, and no thread hand-off is then paid for a trivial node.
    runs_inline: ClassVar[bool] = False
    #: True when the scheduler learns when a task begins (in this process, or through the
    #: task's notes: :func:`report_progress`): a task queued behind ``max_workers`` busy
    #: ones is reported started only then, not when it is submitted.
    reports_starts: ClassVar[bool] = False

    def __init__(self, *, max_workers: int | None = None, **options: Any) -> None:
        check_options(options, ("max_workers",), where=f"{type(self).__name__}()")
        self.max_workers = max_workers

    @property
    def in_flight(self) -> int | None:
        """How many tasks the scheduler keeps submitted at once (None: no limit).

        ``max_workers`` here: a local pool gains nothing from a longer queue, and fail-fast
        can stop what was not submitted. Remote backends keep more in flight, so that the
        round trip to the cluster never leaves a worker idle.
        """
        return self.max_workers

    @abstractmethod
    def submit(self, fn: Callable[[T], Any], task: T) -> TaskFuture[Any]:
        """Start ``fn(task)``; return a future of its return value."""

    @abstractmethod
    def close(self, *, cancel: bool = False) -> None:
        """Release the workers; with ``cancel``, drop tasks that have not started."""

    @property
    def retry_stop(self) -> RetryStop | None:
        """What the tasks sent here carry for a fail-fast stop to reach their retries where
        they run (:meth:`stop_retries`); None: it cannot, they retry until their policy gives
        up."""
        return None

    def stop_retries(self) -> None:
        """The run stops (fail-fast): tasks running out of this process start no further
        attempt and cut a backoff under way short (through :attr:`retry_stop`). The default
        does nothing: a backend without a :attr:`retry_stop` cannot reach them."""
        return None

    def cancel(self, future: TaskFuture[Any]) -> bool:
        """Drop the task of ``future`` if it has not started; True when it was dropped (its
        future is then cancelled and done). The default drops nothing: a backend whose window
        (:attr:`in_flight`) is deep may say otherwise, so fail-fast stops what waits."""
        return False

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)


#: The modules every worker process imports to run a node: a task's ``fn`` is
#: ``etherealfabric.run._worker.execute``, pickled by reference, so unpickling the first task
#: imports it. Process pools preload them (the forkserver, the Spark Python daemon), so that
#: the workers forked from there start with them. Named, not imported: backends sit below
#: the run layer.
WORKER_MODULES = (
    "cloudpickle",
    "etherealfabric.backends._procpool",
    "etherealfabric.run._worker",
    "etherealfabric.run._timeouts",  # (the worker imports it for a node with a timeout only)
)


class Pacing:
    """How many tasks a remote backend keeps in flight: enough to keep its workers busy.

    A worker that finishes a task waits a whole round trip (result back to the run, the next
    task out) unless more tasks wait for it. For tasks that take seconds a few per worker
    thread cover that; for tasks of milliseconds the round trip dominates and only a deep
    queue keeps the workers busy. The window therefore starts at :attr:`per_worker` tasks per
    worker thread and opens to :attr:`short_per_worker` once the recent tasks turn out to run
    for less than :attr:`short_seconds` each (their attempts' time on the worker). A run of
    long nodes keeps a short queue, so fail-fast has little submitted to wait for.
    """

    per_worker = 4
    short_per_worker = 64
    short_seconds = 0.05
    #: how many recent tasks are looked at
    recent = 16

    def __init__(self) -> None:
        self._durations: deque[float] = deque(maxlen=self.recent)
        self._short = False

    def observe(self, result: Any) -> Any:
        """Note how long the task of ``result`` (a ``TaskResult``) ran; return ``result``."""
        attempts = getattr(result, "attempts", None)
        if attempts:
            self._durations.append(attempts[-1].finished_at - attempts[0].started_at)
            ordered = sorted(self._durations)
            self._short = ordered[len(ordered) // 2] < self.short_seconds
        return result

    def window(self, threads: int | None) -> int | None:
        """Tasks to keep in flight on ``threads`` worker threads (None: unknown, no limit)."""
        if not threads:
            return None
        return threads * (self.short_per_worker if self._short else self.per_worker)


_main_lock = threading.RLock()  # re-entrant: a start inside a start (same thread)


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
    # The lock is taken before ``__spec__`` is looked at: another thread's start may have set
    # the stand-in spec for a moment, and a start that saw it (and so skipped the lock) would
    # run while that thread resets it to None, re-importing the user's script in the worker.
    with _main_lock:
        main = sys.modules.get("__main__")
        if main is None or getattr(main, "__spec__", None) is not None:
            yield  # run with -m or interactively: multiprocessing imports it by name, safely
            return
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
    A result's ``exception`` (a failed node's) travels as :func:`portable_exception` makes it.
    """
    import cloudpickle

    fn, task = cloudpickle.loads(payload)
    result = fn(task)
    if getattr(result, "exception", None) is not None:
        result.exception = guarded(portable_exception(result.exception))
    try:
        return cloudpickle.dumps(result)  # type: ignore[no-any-return]
    except Exception:
        if hasattr(result, "exception"):  # (portable_exception found it safe to pickle)
            result.exception = None
        return cloudpickle.dumps(result)  # type: ignore[no-any-return]


#: what a remote worker adds to an error of loading a task's code (a module it cannot import)
IMPORT_HINT = (
    ". The node's code must be importable on the workers (install it there or put it on "
    "their PYTHONPATH), or be sent by value: cloudpickle.register_pickle_by_value(module)"
)


def worker_error(exc: BaseException) -> ExecutionError:
    """A remote worker's error for ``exc``, naming the worker; for an ``ImportError`` or
    ``AttributeError`` (the task's code did not load there) with :data:`IMPORT_HINT`."""
    import socket

    hint = IMPORT_HINT if isinstance(exc, (ImportError, AttributeError)) else ""
    where = f"on worker {socket.gethostname()} (pid {os.getpid()})"
    error = ExecutionError(f"{where}: {type(exc).__name__}: {exc}{hint}")
    error.__cause__ = exc
    return error


def portable_exception(exc: BaseException) -> BaseException:
    """``exc`` if it survives a cloudpickle round trip, else a :class:`RemoteError` with its
    type name, text and traceback text (and the output it carries, ``_ef_output``).

    Checked where it was raised: an exception whose class takes other ``__init__`` arguments
    than its ``args`` pickles fine and fails only when it is loaded, on the driver, where the
    error would replace the node's result (its attempts, their output, its real error).
    """
    import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
        return exc
    except Exception:
        pass
    return _stand_in(exc)


def _stand_in(exc: BaseException) -> RemoteError:
    import traceback

    text = "".join(traceback.format_exception(exc))
    stand_in = RemoteError.standing_in(exc, text)
    output = getattr(exc, "__dict__", {}).get("_ef_output")
    if isinstance(output, str):
        stand_in.__dict__["_ef_output"] = output
    return stand_in


class _Guarded(Exception):
    """Pickles as its exception where that loads, else as a stand-in (never loads as itself)."""

    def __init__(self, data: bytes, stand_in: RemoteError) -> None:
        super().__init__()
        self.data, self.stand_in = data, stand_in

    def __reduce__(self) -> tuple[Any, ...]:
        return _load_guarded, (self.data, self.stand_in)


def _load_guarded(data: bytes, stand_in: RemoteError) -> BaseException:
    import cloudpickle

    try:
        loaded = cloudpickle.loads(data)
    except Exception:  # its class is importable in the worker only, say
        return stand_in
    return loaded if isinstance(loaded, BaseException) else stand_in


def guarded(exc: BaseException) -> BaseException:
    """``exc``, to be pickled in a worker, so that where it does not load (on the driver: its
    class comes from a module only the worker can import) a :class:`RemoteError` stand-in with
    its type name, text and traceback loads instead of failing what carries it (the node's
    result, with its attempts). A stand-in already is returned as it is."""
    if isinstance(exc, RemoteError):
        return exc
    import cloudpickle

    try:
        return _Guarded(cloudpickle.dumps(exc), _stand_in(exc))
    except Exception:
        return exc


#: Where a worker process sends what a running task reports (:func:`report_progress`): set
#: by the process backend's workers (``backends/_procpool.py``); None elsewhere.
progress_sink: Callable[[Any, bool], None] | None = None


def progress_listened() -> bool:
    """Whether the process that submitted the running task listens to
    :func:`report_progress` (a worker of the process backend)."""
    return progress_sink is not None


class Listening(Future[Any]):
    """A remote backend's future whose task's notes (:func:`report_progress`) reach the
    callback given to :meth:`listen`, as the process backend's do (``run/_lost.py``)."""

    ef_listener: Any = None

    def listen(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(note)`` (in a thread of the backend) with each note that comes."""
        self.ef_listener = callback

    def noted(self, note: Any) -> None:
        """Pass ``note`` to the listener, if any, while the task is not done."""
        listener = self.ef_listener
        if listener is not None and not self.done():
            listener(note)


#: per thread: where the task running in it sends its notes, before :data:`progress_sink`
#: (a node alone in a Dask task: ``backends/_dask_notes.py``)
_task_sink = threading.local()


@contextlib.contextmanager
def reporting_to(sink: Callable[[Any, bool], None]) -> Iterator[None]:
    """Send what the task running in this thread reports (:func:`report_progress`) to
    ``sink`` while the block runs."""
    _task_sink.sink = sink
    try:
        yield
    finally:
        _task_sink.sink = None


def report_progress(note: Any, keep: bool = True) -> None:
    """Tell the process that submitted the running task ``note`` (picklable), if it listens:
    the process backend passes each note to the task's listener as it comes, and hands those
    kept (``keep``: small ones) to the :class:`WorkerDiedError` of a worker that died while
    running it (the run layer notes each attempt's start and end; what it prints goes by
    unkept). The Dask backend passes on the kept notes of a node sent alone."""
    sink = getattr(_task_sink, "sink", None) or progress_sink
    if sink is not None:
        with contextlib.suppress(Exception):
            sink(note, keep)


# -- workers die with the run ---------------------------------------------------------------------
# A run killed with SIGKILL cannot stop its workers, so they watch it: through the read end of a
# pipe whose write end only the run holds (the kernel closes it when the run dies, on every OS),
# and on Linux through a parent-death signal, which needs no help from the worker's Python code
# (a node stuck in a long C call that holds the GIL dies too).
_lifeline_lock = threading.Lock()
_lifeline: tuple[Connection, Connection] | None = None


def lifeline() -> Connection:
    """The read end of this process's lifeline: it reaches end-of-file when this process dies.

    One pipe per process, created on first use and never closed. Its write end is not inherited
    by exec'd children, and a child forked without exec closes it at once, so that only this
    process keeps it open.
    """
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            from multiprocessing.connection import Pipe

            _lifeline = Pipe(duplex=False)  # (reader, writer)
        return _lifeline[0]


def _drop_lifeline() -> None:
    """In a forked child: close the parent's lifeline (the child gets its own if it needs one)."""
    global _lifeline, _lifeline_lock
    _lifeline_lock = threading.Lock()  # another thread may have held it at the fork
    if _lifeline is not None:
        for end in _lifeline:
            end.close()
    _lifeline = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_lifeline)


def exit_with_parent() -> bool:
    """Linux: have the kernel SIGKILL this process when its parent dies; False elsewhere.

    The "parent" is the *thread* that created this process: call this only in a process whose
    creating thread lives as long as the process should (a forkserver's; the thread Dask
    keeps for each worker process). If the parent is already gone, nothing is sent.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        import signal  # (here: a run on threads needs neither)

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig, zero = 1, ctypes.c_ulong(0)
        sig = ctypes.c_ulong(signal.SIGKILL)
        return int(libc.prctl(pr_set_pdeathsig, sig, zero, zero, zero)) == 0
    except (OSError, AttributeError):
        return False


def watch_run(run: Connection, forkserver: bool) -> None:
    """Worker initializer: exit as soon as the run that started this worker dies.

    ``run`` is the run's :func:`lifeline`: a daemon thread waits for its end-of-file and then
    exits the process at once. A worker started by a forkserver (``forkserver=True``) also lets
    go of the forkserver's own "alive" pipe, so that the forkserver exits with the run (not
    with its last worker), and, on Linux, is killed by the kernel when the forkserver exits:
    the forkserver forks from its only thread, so the parent-death signal is safe there (with
    ``spawn`` the parent would be whichever thread of the run started the worker).
    """
    if forkserver:
        _release_forkserver()
        exit_with_parent()

    def wait() -> None:
        try:
            while True:
                run.recv_bytes()  # nobody writes: this returns only at end-of-file
        except (EOFError, OSError):
            os._exit(1)

    threading.Thread(target=wait, name="etherealfabric-watch-run", daemon=True).start()


def _release_forkserver() -> None:
    """Close the write end of the forkserver's "alive" pipe this process inherited.

    A child of a forkserver holds it only so that it could use the same forkserver, which it
    cannot (it is not told the forkserver's address; it would start its own).
    """
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int) and getattr(server, "_forkserver_pid", 0) is None:
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None
