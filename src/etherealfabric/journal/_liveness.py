"""Is the process that wrote a journal row still running? (Runs and leases name their writer.)

A writer is identified by host, pid and the pid's start time: pids are reused, quickly in
containers, so a live process with the same pid is not proof that the writer lives.
"""

from __future__ import annotations

import os
import socket

__all__ = ["HOST", "PID_START", "alive", "process_start"]

#: This machine's name, as written in the ``host`` column of runs and leases.
HOST = socket.gethostname()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after it
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


#: When this process started (``None`` where /proc is not available).
PID_START = process_start(os.getpid())


def alive(pid: int | None, start: int | None = None) -> bool:
    """Whether the process of this host that wrote a row still runs (a reused pid does not count)."""
    if not pid:
        return False
    if pid == os.getpid():
        return start is None or start == PID_START
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is None:
        return True
    now = process_start(pid)
    return now is None or now == start
