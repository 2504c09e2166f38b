"""The process backend's pool: worker processes that die alone.

``concurrent.futures.ProcessPoolExecutor`` treats the death of one worker (the out-of-memory
killer's SIGKILL) as the death of the pool: every task running or queued fails with
``BrokenProcessPool``, the other workers are terminated, and nobody is told which process died,
nor which task it ran. Here each worker process has its own pipe and a thread in this process
that feeds it one task at a time and waits for the result: a worker that dies fails only the
task it ran, with a :class:`~etherealfabric.errors.WorkerDiedError` that names its pid and the
signal that killed it and carries what the task reported meanwhile
(:func:`~._base.report_progress`: the run layer notes its attempts), and the next task gets a
new process. Processes start on demand, with the pool's ``initializer``.

A fail-fast stop reaches the retries of the tasks running in the workers through an event
the pool shares with them (:meth:`WorkerPool.stop_retries`, :class:`PoolStop`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any

from ..errors import WorkerDiedError
from . import _base

__all__ = ["PoolStop", "WorkerPool", "death_cause"]

_STOP = b""  # sent to a worker process: exit
_RESENDS = 2  # times a task is sent again to a new worker when the last died before taking it
#: How long a worker told to stop may take to exit before it is stopped by a signal: one that
#: waits for processes of its own (a pool a node made and kept open, as Python's exit joins
#: the children it did not end) held the run's end for good.
EXIT_SECONDS = 10.0

log = logging.getLogger("etherealfabric.backends")


def death_cause(exitcode: int | None) -> str:
    """How a process ended, in words: ``killed by SIGKILL (out of memory?)``, ``exited with
    code 3``."""
    if exitcode is None:
        return "ended (its exit status is unknown)"
    if exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    hint = (
        " (out of memory? the kernel's OOM killer sends SIGKILL: see dmesg)"
        if -exitcode == signal.SIGKILL
        else ""
    )
    return f"killed by {name}{hint}"


#: in a worker process: the pool's fail-fast event (:class:`PoolStop`)
_stopped: Any = None


class PoolStop:
    """The pool's fail-fast signal, as its tasks carry it (:class:`~._base.RetryStop`):
    nothing travels but the class; in a worker it is the event the pool gave the process."""

    def is_set(self) -> bool:
        return _stopped is not None and bool(_stopped.is_set())

    def wait(self, timeout: float) -> bool:
        if _stopped is None:
            time.sleep(timeout)
            return False
        return bool(_stopped.wait(timeout))


def _serve(
    conn: Any,
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
    stopped: Any = None,
) -> None:
    """A worker process: run the pickled tasks received on ``conn`` until told to stop
    (``stopped``: the pool's fail-fast event)."""
    import pickle

    global _stopped
    _stopped = stopped
    _leave_interrupts_to_the_run()
    if initializer is not None:
        initializer(*initargs)
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        data = pickle.dumps(message)
        with lock:
            conn.send_bytes(data)

    _base.progress_sink = lambda note, keep: send(("note" if keep else "live", note))
    while True:
        try:
            payload = conn.recv_bytes()
        except (EOFError, OSError):
            return _end_children()
        if payload == _STOP:
            return _end_children()
        send(("started",))  # the task is in: a death from here on is the task's
        try:
            send(("done", True, _base.run_pickled(payload)))
        except BaseException as exc:  # the task did not load, or fn raised (SystemExit too:
            # a node's sys.exit() fails the node, as on threads, and the worker goes on)
            import cloudpickle

            try:
                data = cloudpickle.dumps(_base.guarded(_base.portable_exception(exc)))
            except Exception:
                data = cloudpickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
            send(("done", False, data))


def _leave_interrupts_to_the_run() -> None:
    """Ctrl-C reaches every process of the terminal's process group: the run cancels itself
    and ends its workers, which died of it on their own before, each printing a
    ``KeyboardInterrupt`` traceback. A worker now lets it pass (a Python handler: a program
    a node starts gets the default action back, and with it Ctrl-C), and takes the signal
    again, held back while it was forked (:func:`_interrupts_held`)."""
    signal.signal(signal.SIGINT, _let_pass)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _let_pass(signum: int, frame: Any) -> None:
    """A worker's SIGINT handler: nothing (the run decides what Ctrl-C stops)."""


@contextlib.contextmanager
def _interrupts_held() -> Any:
    """Hold SIGINT back in this thread while a worker starts: the forkserver (started then,
    the first time) and the worker inherit it held back, so a Ctrl-C while they start up
    prints no traceback of theirs (the run's other threads still take it at once)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _end_children() -> None:
    """As a worker exits: end the processes its nodes started and left running (a
    ``ProcessPoolExecutor`` a node keeps for later, ``lru_cache``d): multiprocessing's exit
    waits for each, and their executor is never told to stop (Python ends executors at the
    interpreter's exit, which a worker process skips), so the worker never exited."""
    import multiprocessing

    for child in multiprocessing.active_children():
        with contextlib.suppress(Exception):
            child.terminate()


class WorkerPool:
    """Up to ``max_workers`` worker processes of ``context``, each fed by its own thread here,
    started as tasks wait for one (a ``max_workers`` of thousands costs nothing until that
    many nodes run at once; it started as many threads up front, and failed the first node
    with "can't start new thread")."""

    def __init__(
        self,
        max_workers: int,
        context: Any,
        initializer: Callable[..., None] | None = None,
        initargs: Callable[[], tuple[Any, ...]] = tuple,
    ) -> None:
        self._context = context
        self._initializer = initializer
        self._initargs = initargs  # called at each start (a fresh lifeline() is cheap)
        self._tasks: queue.SimpleQueue[tuple[Future[Any], bytes] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._slots = max_workers
        self._threads: list[threading.Thread] = []
        self._idle = 0  # feeding threads waiting for a task
        self._waiting = 0  # tasks submitted that no thread took yet
        self._processes: dict[int, Any] = {}  # by slot: the live process
        self._closing = False
        self._stopped: Any = None  # the fail-fast event shared with the workers, once one starts

    def submit(self, payload: bytes) -> Future[Any]:
        """Run ``payload`` (a cloudpickled ``(fn, task)``); a future of its pickled result."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("the process pool is closed")
            self._waiting += 1
            if self._waiting > self._idle and len(self._threads) < self._slots:
                slot = len(self._threads)
                thread = threading.Thread(
                    target=self._feed, args=(slot,), name=f"etherealfabric-proc-{slot}"
                )
                thread.daemon = True
                thread.start()
                self._threads.append(thread)
        self._tasks.put((future, payload))
        return future

    def stop_retries(self) -> None:
        """Have the tasks running in the workers make no further attempt (fail-fast)."""
        with self._lock:
            if self._stopped is None:  # no worker yet: the next ones start with it set
                self._stopped = self._context.Event()
        self._stopped.set()

    def _start(self, slot: int) -> tuple[Any, Any]:
        with self._lock:
            if self._stopped is None:
                self._stopped = self._context.Event()
        receiver, sender = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_serve,
            args=(sender, self._initializer, self._initargs(), self._stopped),
            name=f"etherealfabric-worker-{slot}",
        )
        with _base.no_main_reimport(), _interrupts_held():
            process.start()
        sender.close()
        with self._lock:
            self._processes[slot] = process
            closing = self._closing
        if closing:  # close(cancel=True) ran meanwhile: it did not see this one
            process.kill()
        return process, receiver

    def _feed(self, slot: int) -> None:
        """A slot's thread: hand tasks to its worker process, one at a time; start a new
        process when the last one died."""
        process = conn = None
        try:
            while (item := self._taken()) is not None:
                future, payload = item
                if not future.set_running_or_notify_cancel():
                    continue
                resends = 0
                while True:
                    if process is not None and not process.is_alive():  # it died while idle
                        self._bury(process, conn)
                        process = conn = None
                    fresh = process is None
                    if fresh:
                        try:
                            process, conn = self._start(slot)
                        except Exception as exc:
                            future.set_exception(exc)
                            break
                    # A worker that dies before it took the task in (it died idle, between the
                    # check above and the send) never started it: a new one is started and the
                    # task sent again. One just started for it that does so fails the task (its
                    # initializer died, say), so this cannot loop.
                    last = fresh or resends >= _RESENDS
                    outcome = self._run(process, conn, future, payload, last=last)
                    if outcome != "done":
                        process = conn = None  # it died: the next task gets a new one
                    if outcome != "again":
                        break
                    resends += 1
        finally:
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.send_bytes(_STOP)
            if process is not None:
                _join_or_stop(process)
                if conn is not None:
                    conn.close()

    def _taken(self) -> tuple[Future[Any], bytes] | None:
        """A feeding thread's next task (None: stop), counted out of the waiting ones."""
        with self._lock:
            self._idle += 1
        item = self._tasks.get()
        with self._lock:
            self._idle -= 1
            if item is not None:
                self._waiting -= 1
        return item

    @staticmethod
    def _bury(process: Any, conn: Any) -> None:
        process.join()
        conn.close()

    def _run(
        self, process: Any, conn: Any, future: Future[Any], payload: bytes, *, last: bool
    ) -> str:
        """Run one task on ``process``: ``done``; ``died`` when the process died meanwhile
        (the future then says so); ``again`` when it died before it took the task in and
        ``last`` is false (the future is left alone: the task never started)."""
        import pickle

        started = time.time()
        notes: list[Any] = []
        taken = False
        try:
            conn.send_bytes(payload)
            while True:
                message = pickle.loads(conn.recv_bytes())
                if message[0] == "started":
                    taken, started = True, time.time()
                    continue
                if message[0] in ("note", "live"):  # a live note is passed on, not kept
                    if message[0] == "note":
                        notes.append(message[1])
                    listener = getattr(future, "ef_listener", None)  # (_local._Unpickling.listen)
                    if listener is not None:
                        with contextlib.suppress(Exception):
                            listener(message[1])
                    continue
                _, ok, data = message
                if ok:
                    future.set_result(data)
                else:
                    future.set_exception(_load_error(data))
                return "done"
        except (EOFError, OSError):
            pass
        died = time.time()
        self._bury(process, conn)
        if self._closing:
            future.set_exception(CancelledError("the process backend was closed"))
            return "died"
        if not taken and not last:
            return "again"
        cause = death_cause(process.exitcode)
        code = process.exitcode
        future.set_exception(
            WorkerDiedError(
                f"its worker process (pid {process.pid}) died: {cause}",
                pid=process.pid,
                exitcode=code,
                signal=_signal_name(code),
                notes=notes,
                started_at=started,
                died_at=died,
            )
        )
        return "died"

    def close(self, *, cancel: bool = False) -> None:
        """Stop the workers once their tasks end; with ``cancel`` drop the queued tasks and
        kill the workers at once."""
        with self._lock:
            self._closing = self._closing or cancel
            threads, self._threads = self._threads, []
            processes = list(self._processes.values())
        if cancel:
            while True:
                try:
                    item = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in threads:
            self._tasks.put(None)
        if cancel:
            for process in processes:
                with contextlib.suppress(Exception):
                    process.kill()
        for thread in threads:
            thread.join()
        with self._lock:
            self._closing = True


def _signal_name(exitcode: int | None) -> str | None:
    if exitcode is None or exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return None


def _load_error(data: bytes) -> BaseException:
    import cloudpickle

    try:
        error = cloudpickle.loads(data)
    except Exception as exc:
        return RuntimeError(f"the worker's error could not be loaded here: {exc}")
    return error if isinstance(error, BaseException) else RuntimeError(repr(error))


def _join_or_stop(process: Any) -> None:
    """Wait for a worker told to stop; one still there after :data:`EXIT_SECONDS` gets
    SIGTERM, then SIGKILL, with a warning that says why it may have stayed."""
    process.join(EXIT_SECONDS)
    if process.exitcode is not None:
        return
    log.warning(
        "worker process %s did not exit within %gs of the run's end (does a node keep a "
        "process pool of its own open, whose processes it waits for at exit? close it, e.g. "
        "with `with ProcessPoolExecutor() as pool:`); stopping it",
        process.pid,
        EXIT_SECONDS,
    )
    for stop in (process.terminate, process.kill):
        with contextlib.suppress(Exception):
            stop()
        process.join(5.0)
        if process.exitcode is not None:
            return
