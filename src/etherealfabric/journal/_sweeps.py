"""Whether a run should sweep up after the dead writers of this host as it starts.

A process killed while it wrote leaves temp files in the store (``run/_session.py`` removes
those whose writer, a process of this host, is gone). Listing the temp folders on every run
costs a scan of each (over the network for a shared folder) to find, nearly always, nothing.
So a run sweeps only when something could have died since the last sweep:

- the journal marked a run of this host ``interrupted`` (its process is gone): whoever marked
  it (a run starting, ``runs``, ``show``, ``resume``, ``cache gc``) removes the stamp below, so
  the next run sweeps; so does a run that ends badly by itself (failed, or stopped by SIGTERM
  or Ctrl-C: the workers it ends may have been writing);
- or the last sweep began over :data:`SWEEP_EVERY` ago (a writer that is not a run, killed:
  ``cache gc`` removes its temp files too), or the stamp is missing, in the future, or not a
  regular file (a folder, link or FIFO in its place: then each run sweeps; none is followed).

The stamp is a file in the home (:data:`STAMP`) whose modification time is when the last
sweep began: one ``stat`` for a warm run, which lists no folder.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

__all__ = ["STAMP", "SWEEP_EVERY", "begin_sweep", "sweep_due", "sweep_needed"]

#: How long after a sweep began the next run sweeps anyway (seconds).
SWEEP_EVERY = 3600.0
#: The stamp's name, in the home.
STAMP = ".temps-swept"


def sweep_due(home: Path, now: float) -> bool:
    """Whether a run starting at ``now`` should sweep (see the module docstring)."""
    try:
        info = os.lstat(os.path.join(home, STAMP))
    except OSError:
        return True
    if not stat.S_ISREG(info.st_mode):  # a folder, link or FIFO there: it says nothing
        return True
    return not 0 <= now - info.st_mtime < SWEEP_EVERY


def begin_sweep(home: Path, now: float) -> None:
    """Record that a sweep begins at ``now`` (a home that cannot be written sweeps each run)."""
    path = os.path.join(home, STAMP)
    # never through a link (what it points to is not ours), never blocked on a FIFO
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    with contextlib.suppress(OSError):
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):  # (else sweep_due says due: each run)
                os.utime(fd if os.utime in os.supports_fd else path, (now, now))
        finally:
            os.close(fd)


def sweep_needed(home: Path) -> None:
    """A process of this host died (a run marked interrupted): the next run sweeps."""
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(home, STAMP))
