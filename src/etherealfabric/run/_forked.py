"""Files read in processes a node forks (a ``multiprocessing`` pool of its own, a
``ProcessPoolExecutor``): noted in the child, handed back to the node's audit.

A forked child inherits the node's audit (the hook, and the node's ``opened`` in the forking
thread's context), but what it notes stays in the child's memory: a node that loaded its data
files in a pool recorded none of them, and a run after one of them was edited served the
result computed from the old content. So the first fork from a node's thread gives the node a
spill folder (:func:`_before_fork`); in the child the node's ``opened`` becomes a
:class:`Spilling` one, which also writes each entry it notes to a file of its own there, as it
notes it (a pool's workers are ended by SIGTERM: nothing of theirs runs at exit). When the
node ends, :meth:`Opened.frozen <etherealfabric.run._audit.Opened.frozen>` reads them back
(:func:`take_spilled`), in the order each child noted them, and removes the folder.

Processes multiprocessing starts afresh (``spawn``, ``forkserver``) spill into the same folder
(run/_spawned.py); those ``subprocess`` starts run interpreters that no audit follows: what they
read is not recorded (``docs/concepts.md``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_SPILL_BYTES",
    "SpillingNotes",
    "install",
    "spill_folder",
    "spill_into",
    "take_spilled",
]

#: At most this much of a child's spill file is read back (a few hundred thousand entries).
MAX_SPILL_BYTES = 64 * 1024 * 1024


_current: Callable[[], Any] = lambda: None  # noqa: E731  (the running node's Opened, or None)
_spilling: type | None = None  # Opened with SpillingNotes mixed in
_adopt: Callable[[Any], None] = lambda opened: None  # noqa: E731
_forking = threading.local()  # .opened: the node's Opened the fork in this thread is for
_installed = False


class SpillingNotes:
    """Mixed into a forked child's ``Opened``: each entry noted is written to the spill file."""

    spill_fd = -1
    moved: set[str]

    def __setitem__(self, key: str, value: bool | None) -> None:
        dict.__setitem__(self, key, value)  # type: ignore[index]
        self._put("s", key, value)

    def setdefault(self, key: str, default: bool | None = None) -> bool | None:
        found = dict.setdefault(self, key, default)  # type: ignore[call-overload]
        self._put("d", key, default)
        return found  # type: ignore[no-any-return]

    def moves(self, event: str, args: tuple[Any, ...]) -> None:
        before = set(self.moved)
        super().moves(event, args)  # type: ignore[misc]
        for path in self.moved - before:
            self._put("m", path, None)

    def _put(self, op: str, key: str, value: bool | None) -> None:
        # one write per entry: whole lines, in the order noted (never failing the child's
        # open: at worst the entry is not seen)
        with contextlib.suppress(Exception):
            os.write(self.spill_fd, (json.dumps([op, key, value]) + "\n").encode())


def install(current: Callable[[], Any], spilling: type, adopt: Callable[[Any], None]) -> None:
    """Follow the forks of running nodes from now on (once per process, with the audit hook):
    ``current`` gives the ``Opened`` of the node this thread works for (None: none; a thread
    the node started works for it), ``spilling`` is ``Opened`` with :class:`SpillingNotes`
    mixed in, ``adopt`` makes an ``Opened`` the one this thread notes into (in a child forked
    from a thread the node started: there it is the main thread, which no node owns)."""
    global _current, _spilling, _adopt, _installed
    _current, _spilling, _adopt = current, spilling, adopt
    if not _installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_in_parent, after_in_child=_in_child
        )
        _installed = True


def take_spilled(folder: str, into: Any) -> None:
    """Add what the node's forked children noted to ``into`` (an ``Opened`` of
    ``run/_audit.py``, which imports this module); the spill folder goes."""
    import shutil  # (only a node that forked has a spill folder)

    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        try:
            with open(os.path.join(folder, name), "rb") as fh:
                data = fh.read(MAX_SPILL_BYTES)
        except OSError:
            continue
        for line in data.splitlines():
            try:
                op, key, value = json.loads(line)
            except ValueError:  # (a child killed in the middle of a line)
                continue
            if not isinstance(key, str) or value not in (True, False, None):
                continue
            if op == "s":
                into[key] = value
            elif op == "d":
                into.setdefault(key, value)
            elif op == "m":
                into.moved.add(key)
    shutil.rmtree(folder, ignore_errors=True)


def _before_fork() -> None:
    """In the forking thread: a node that forks gets its spill folder (at its first fork)."""
    opened = _current()
    _forking.opened = opened
    if opened is not None:
        spill_folder(opened)


def spill_folder(opened: Any) -> str | None:
    """The folder where the processes the node of ``opened`` starts write what they note:
    made at the first one (None if it cannot be made)."""
    found = getattr(opened, "spill", "")  # ("": no Opened, a plain dict: no spill)
    if found is not None:
        return found or None
    import tempfile  # (only when a node starts processes)

    try:
        folder = tempfile.mkdtemp(prefix="etherealfabric-forked-")
    except OSError:
        return None
    opened.moved.discard(folder)  # (its own folder: not one the node made)
    opened.spill = folder
    return folder


def _after_in_parent() -> None:
    _forking.opened = None


def _in_child() -> None:
    opened, _forking.opened = getattr(_forking, "opened", None), None
    if opened is None or getattr(opened, "spill", None) is None or _spilling is None:
        return
    if not isinstance(opened, SpillingNotes):
        opened.__class__ = _spilling  # (what it noted before the fork, the parent has)
    spill_into(opened, opened.spill)


def spill_into(opened: Any, folder: str) -> bool:
    """In a child process: what the ``Opened`` ``opened`` (a :class:`SpillingNotes` one) notes
    from now on goes to this process's file in the spill ``folder`` too, and this thread notes
    into it (forked from a thread the node started: this thread is no one's). False if the
    file cannot be made (nothing is followed then)."""
    try:
        fd = os.open(
            os.path.join(folder, f"{os.getpid()}.jsonl"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
            0o600,
        )
    except OSError:
        return False
    opened.spill_fd = fd
    _adopt(opened)
    return True
