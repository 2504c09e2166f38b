"""Is the process that wrote a journal row still running? (Runs and leases name their writer.)

A writer is identified by host, pid and the pid's start time: pids are reused, quickly in
containers, so a live process with the same pid is not proof that the writer lives. A zombie
(a process that exited but whose parent has not reaped it yet, state ``Z`` in
``/proc/<pid>/stat``) is dead: it runs no code and never will again, although ``kill(pid, 0)``
still succeeds on it. A process of another host cannot be checked at all: leases carry an
expiry for that (see ``Journal.acquire_lease``).
"""

from __future__ import annotations

import os

__all__ = ["HOST", "PID_START", "alive", "gone", "process_start"]


def host_name() -> str:
    """This machine's name, as ``socket.gethostname()`` gives it (``uname``'s node name, which
    is what it reads on POSIX: no need to import ``socket`` for it)."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket

    return socket.gethostname()


#: This machine's name, as written in the ``host`` column of runs and leases.
HOST = host_name()

#: The largest pid a process can have (``pid_t`` is a signed 32-bit int).
_PID_MAX = 2**31 - 1
_DEAD_STATES = (b"Z", b"X", b"x")  # zombie, dead (being reaped)


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    end = stat.rfind(b")")
    return None if end < 0 else stat[end + 2 :].split()


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if unknown."""
    fields = _stat_fields(pid)
    try:
        return None if fields is None else int(fields[19])
    except (ValueError, IndexError):
        return None


#: When this process started (``None`` where /proc is not available).
PID_START = process_start(os.getpid())


def alive(pid: int | None, start: int | None = None) -> bool:
    """Whether the process of this host that wrote a row still runs.

    A reused pid (another start time) and a zombie do not count as running; nor does a pid
    that no process can have (not a positive int of a C ``pid_t``: an edited journal row, a
    forged store lease), which ``kill`` would refuse with an ``OverflowError``.
    """
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= _PID_MAX:
        return False
    if pid == os.getpid():
        return start is None or start == PID_START
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:  # the process just went, or there is no /proc: then trust kill(0)
        return not os.path.isdir("/proc/self")
    if not fields or fields[0] in _DEAD_STATES:
        return False
    if start is None:
        return True
    try:
        return int(fields[19]) == start
    except (ValueError, IndexError):
        return True


def gone(pid: int) -> bool:
    """Whether process ``pid`` of this host is gone (for files that name their writer's pid)."""
    return not alive(pid)
