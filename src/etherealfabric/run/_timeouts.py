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

import contextvars
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import NodeTimeoutError

__all__ = ["call_with_timeout"]

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
        raise NodeTimeoutError(node, timeout, stopped=False)
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[no-any-return]
    raise value


def _child(payload: bytes, conn: Any, run: Any, forkserver: bool) -> None:
    import cloudpickle

    from ..backends._base import portable_exception, watch_run

    watch_run(run, forkserver)  # the process that started this one dies: so does this one
    fn = cloudpickle.loads(payload)
    try:
        message = (True, fn())
    except BaseException as exc:
        message = (False, portable_exception(exc))  # one its parent can load
    try:
        conn.send_bytes(cloudpickle.dumps(message))
    except Exception as exc:  # an unpicklable result or exception
        conn.send_bytes(cloudpickle.dumps((False, RuntimeError(f"cannot send result back: {exc}"))))
    conn.close()


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
    try:
        if not receiver.poll(timeout):
            raise NodeTimeoutError(node, timeout, stopped=True)
        ok, value = cloudpickle.loads(receiver.recv_bytes())
    except EOFError:
        raise RuntimeError(
            f"the process running node {node!r} died (exit code {process.exitcode})"
        ) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receiver.close()
    if ok:
        return value  # type: ignore[no-any-return]
    raise value
