"""Run one attempt of a node with a time limit.

On the process backend the attempt runs in a child process that is killed when the time is up:
the work really stops. Python threads cannot be stopped, so on the thread backend an attempt
that runs past its limit is *abandoned*: it is reported as a :class:`NodeTimeoutError` (and
retried if the policy says so) while the thread runs on until the function returns, its result
discarded, and ``abandon`` is called (the worker closes the attempt's checkpoint with it:
its saves are refused from then on). Use the process backend for nodes that must be stopped. The child watches the
lifeline of the process that started it (:func:`~etherealfabric.backends._base.watch_run`), so
it dies with the run even when the run is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import NodeTimeoutError
from ._capture import MAX_CAPTURE, joined

__all__ = ["STARTUP_SECONDS", "call_with_timeout"]

#: how long a child process may take to start running the node (spawn it, load the node and
#: import what it needs) before it is killed; the node's own ``timeout`` counts from then on
STARTUP_SECONDS = 300.0

T = TypeVar("T")


def call_with_timeout(
    fn: Callable[[], T],
    timeout: float,
    *,
    node: str,
    kill: bool,
    abandon: Callable[[str], object] = lambda why: None,
) -> T:
    """``fn()``, or :class:`NodeTimeoutError` after ``timeout`` seconds; a thread left
    running is reported to ``abandon`` (with why) before the error is raised."""
    if kill:
        return _in_child_process(fn, timeout, node)
    return _in_thread(fn, timeout, node, abandon)


def _in_thread(
    fn: Callable[[], T], timeout: float, node: str, abandon: Callable[[str], object]
) -> T:
    outcome: list[Any] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.append((True, context.run(fn)))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name=f"etherealfabric-{node}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        abandon(f"abandoned after its timeout of {timeout:g}s")
        error = NodeTimeoutError(node, timeout, stopped=False)
        with contextlib.suppress(Exception):  # where it was: what its traceback shows
            from ._messages import node_stack

            error.where = node_stack(sys._current_frames()[thread.ident])  # type: ignore[index]
        raise error
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _child(payload: bytes, conn: Any, run: Any, forkserver: bool) -> None:
    """Load the attempt, say so (its clock starts), stream what it prints, send its outcome."""
    import cloudpickle

    from ..backends._base import portable_exception, watch_run
    from ._capture import tee_to

    watch_run(run, forkserver)  # the process that started this one dies: so does this one
    lock = threading.Lock()

    def send(message: tuple[Any, ...]) -> None:
        data = cloudpickle.dumps(message)
        with lock:
            conn.send_bytes(data)

    fn = cloudpickle.loads(payload)  # (imports what the node needs: part of the start-up)
    send(("started",))
    tee_to(lambda chunk: send(("out", chunk)))  # kept by the parent if this one is killed
    try:
        message = ("done", True, fn())
    except BaseException as exc:
        message = ("done", False, portable_exception(exc))  # one its parent can load
    tee_to(None)
    try:
        send(message)
    except Exception as exc:  # an unpicklable result or exception
        send(("done", False, RuntimeError(f"cannot send result back: {exc}")))
    conn.close()


class _Printed:
    """What the child printed so far (its last ``MAX_CAPTURE`` characters, give or take)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.size = 0

    def add(self, chunk: str) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size > 2 * MAX_CAPTURE:  # keep the memory bounded: joined() keeps the last ones
            kept = joined(self.chunks) or ""
            self.chunks, self.size = [kept], len(kept)

    def attach(self, exc: BaseException) -> BaseException:
        """``exc`` carrying this output (the worker records it), unless it carries its own."""
        with contextlib.suppress(Exception):
            if exc.__dict__.get("_ef_output") is None:
                exc.__dict__["_ef_output"] = joined(self.chunks)
        return exc


def _in_child_process(fn: Callable[[], T], timeout: float, node: str) -> T:
    import multiprocessing

    import cloudpickle

    from ..backends._base import lifeline, no_main_reimport

    forkserver = "forkserver" in multiprocessing.get_all_start_methods()
    ctx: Any = multiprocessing.get_context("forkserver" if forkserver else "spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    args = (cloudpickle.dumps(fn), sender, lifeline(), forkserver)
    process = ctx.Process(target=_child, args=args, name=f"ef-{node}")

    with no_main_reimport():
        process.start()
    sender.close()
    printed = _Printed()
    deadline = time.monotonic() + STARTUP_SECONDS  # until it says it runs the node
    started = False
    try:
        while True:
            if not receiver.poll(max(0.0, deadline - time.monotonic())):
                error = NodeTimeoutError(node, timeout if started else STARTUP_SECONDS,
                                         stopped=True, starting=not started)  # fmt: skip
                raise printed.attach(error)
            message = cloudpickle.loads(receiver.recv_bytes())
            if message[0] == "out":
                printed.add(message[1])
            elif message[0] == "started":
                started, deadline = True, time.monotonic() + timeout
            else:
                _, ok, value = message
                break
    except EOFError:
        from ..backends._procpool import death_cause

        process.join(5)  # (its exit status: None until it is reaped)
        died = RuntimeError(
            f"the process running node {node!r} (pid {process.pid}) died: "
            f"{death_cause(process.exitcode)}"
        )
        raise printed.attach(died) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receiver.close()
    if ok:
        return value  # type: ignore[no-any-return]
    raise printed.attach(value)
