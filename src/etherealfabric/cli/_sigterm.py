"""SIGTERM stops a run from the command line (``kill PID``, a scheduler or a container
stopping it) as a Ctrl-C does, recorded ``interrupted``: :func:`stop_on_sigterm`.

A process forked from the driver while the handler is on (a node's own ``multiprocessing``
pool, on the threads backend) inherits it. There it must not stop a run but die of the signal,
as it would have: the child puts the default action back as it starts. Until then the forking
thread holds SIGTERM back (blocked across the fork, released in the child once the default is
back): CPython clears the signals that reached a child still starting, so a
``Pool.terminate()`` right after the pool was made (``with Pool() as pool: pool.map(...)``
ends so) was lost on a worker that was still starting, and the node waited for it for good.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["EXIT_TERMINATED", "stop_on_sigterm", "terminated"]

#: the exit code of a run stopped by SIGTERM: the shell's for a process the signal killed
EXIT_TERMINATED = 128 + signal.SIGTERM

_handler: Callable[[int, Any], None] | None = None  # the run's, while it is on
_forking = threading.local()  # the forking thread's signal mask, while SIGTERM is held back
_hooked = False


def stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise :class:`~etherealfabric.run._session.Terminated` in this, the
    driver's, main thread; a second SIGTERM while the run stops is ignored. Returns what puts
    the former handler back."""
    global _handler, _hooked
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    from ..run._session import Terminated

    driver = os.getpid()
    stopping: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != driver:  # a forked child that ran Python before its fork hook did
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if not stopping:
            stopping.append(True)
            raise Terminated()

    former = signal.signal(signal.SIGTERM, handler)
    _handler = handler
    if not _hooked and hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_in_parent, after_in_child=_in_child
        )
        _hooked = True

    def restore() -> None:
        global _handler
        _handler = None
        signal.signal(signal.SIGTERM, former)

    return restore


def terminated(exc: BaseException) -> bool:
    """Whether ``exc`` is the stop a SIGTERM asked for."""
    from ..run._session import Terminated

    return isinstance(exc, Terminated)


def _before_fork() -> None:
    if _handler is not None and signal.getsignal(signal.SIGTERM) is _handler:
        _forking.mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _after_in_parent() -> None:
    mask = getattr(_forking, "mask", None)
    if mask is not None:
        _forking.mask = None
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _in_child() -> None:
    global _handler
    mask = getattr(_forking, "mask", None)
    if mask is None:
        return
    _forking.mask, _handler = None, None
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (the forking thread is the child's main)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGTERM held back kills it now
