"""The end of a command whose run was stopped (SIGTERM, Ctrl-C): what the run's nodes left
running must not keep it alive.

On the threads backend a stopped node's thread cannot be stopped, and what it started goes on:
a node waiting on its own ``ProcessPoolExecutor`` kept the command alive after it had printed
"interrupted", until the pool's work ended (the interpreter joins the executor's manager
thread as it exits), and for good when a worker was stuck. So once the run is recorded and its
summary printed, :func:`end_what_nodes_started` ends the processes the run's nodes started
through ``multiprocessing`` in this process (their work is abandoned with the run: SIGTERM,
then SIGKILL after a grace period), and :func:`exit_within` bounds what remains of the exit
(another thread the node started that never ends).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

__all__ = ["end_what_nodes_started", "exit_within"]

#: how long the processes a stopped run's nodes started get to end after SIGTERM
GRACE_SECONDS = 3.0
#: how long the exit of a stopped run's command may take once its processes are ended
EXIT_SECONDS = 10.0


def end_what_nodes_started(grace: float = GRACE_SECONDS) -> int:
    """End the live processes started through ``multiprocessing`` in this process (a stopped
    node's pools): SIGTERM, then SIGKILL for those alive after ``grace`` seconds. How many."""
    mp = sys.modules.get("multiprocessing")
    if mp is None:
        return 0
    try:
        children = mp.active_children()
    except Exception:
        return 0
    for child in children:
        try:
            child.terminate()
        except Exception:
            continue
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join(1.0)
        except Exception:
            continue
    return len(children)


def exit_within(code: int, seconds: float = EXIT_SECONDS) -> None:
    """Exit with ``code`` after ``seconds`` if the interpreter has not exited by then (a
    thread a stopped node started that the interpreter waits for), output flushed first."""

    def last_resort() -> None:
        time.sleep(seconds)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    threading.Thread(target=last_resort, name="etherealfabric-exit", daemon=True).start()
