"""What a node's checkpoint depends on besides its cache key: a state is resumed only with the
data it was made from, and with the files the node had written by then.

The key covers the node's code and declared inputs, not the data files it reads by path
(run/_reads.py: checked before a hit), nor what it wrote into its declared outputs
(``writes=``: emptied before each attempt, run/_files.py). So each save stores, beside the
state, its :meth:`Resumable.context`:

- ``reads``: the files the node read so far (those the state it resumed from was made with
  too), as a record lists them. Before a load resumes the state they are hashed again
  (run/_readcheck.py): one that holds something else now (the user fixed the data after a
  crash) means the state mixes old data in, so it is not resumed: a warning, and the node
  starts from the beginning. The record of the attempt that succeeds lists them as its reads,
  so a later change to a file only an earlier attempt read refuses the hit as well.
- ``files``: the declared outputs as they were at the save, stored like a record's ``files``.
  A load puts them back (what the dead attempt wrote after the save goes; a folder is
  restored exactly), so a node that writes a file per epoch into a declared folder keeps the
  epochs before the checkpoint. One that cannot be put back (an object collected by
  ``cache gc`` meanwhile, a damaged one) means the state is not resumed either: the outputs
  are emptied again and the node starts from the beginning.

The context travels in the checkpoint's bytes (:func:`pack`), read back by :func:`unpack`;
a checkpoint saved before contexts existed has none and is resumed as it was.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import OutputError, StoreError
from ..journal._liveness import HOST
from ..store._trees import capture_path, restore_entry
from ._audit import Opened
from ._files import clear_writes
from ._readcheck import changed_read
from ._reads import reads_of

if TYPE_CHECKING:
    from ._messages import Task

__all__ = ["Resumable", "pack", "unpack"]

#: what starts the bytes of a checkpoint stored with its context (a pickle never does: it
#: starts with the PROTO opcode, 0x80), followed by the context as one line of JSON
_MAGIC = b"EFRESUME1\n"


def pack(context: Mapping[str, Any] | None, state: bytes) -> bytes:
    """The bytes a checkpoint stores: the pickled ``state``, after its ``context`` if any."""
    if context is None:
        return state
    return _MAGIC + json.dumps(context, separators=(",", ":")).encode() + b"\n" + state


def unpack(data: bytes) -> tuple[dict[str, Any] | None, bytes]:
    """``(context, pickled state)`` of stored checkpoint bytes (no context: an older one).
    ValueError when the context cannot be read (damaged: the state is not resumed)."""
    if not data.startswith(_MAGIC):
        return None, data
    end = data.find(b"\n", len(_MAGIC))
    if end < 0:
        raise ValueError("its context line is cut off")
    context = json.loads(data[len(_MAGIC) : end])
    if not isinstance(context, dict):
        raise ValueError("its context is not a mapping")
    return context, data[end + 1 :]


class _Digests:
    """File digests by path and stat, for the saves of one attempt (a file read once and
    unchanged is hashed once, however many saves follow)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int, int, int], str] = {}

    def get(self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str | None:
        return self._known.get((path, size, mtime_ns, inode, ctime_ns))

    def put(
        self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int, digest: str
    ) -> None:
        self._known[path, size, mtime_ns, inode, ctime_ns] = digest


class Resumable:
    """The context of one attempt's checkpoint: the files its node read and wrote so far."""

    def __init__(
        self,
        task: Task,
        opened: dict[str, bool | None],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        started: float,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._task, self._opened, self._started = task, opened, started
        self._args, self._kwargs, self._secrets = args, kwargs, secrets
        self._digests = _Digests()

    def context(self, resumed: Mapping[str, Any]) -> dict[str, Any]:
        """What a save stores beside the state now (``resumed``: the reads of the state the
        attempt went on from)."""
        task = self._task
        opened = self._opened.frozen() if isinstance(self._opened, Opened) else dict(self._opened)
        reads = dict(resumed)
        reads.update(
            reads_of(task, opened, self._args, self._kwargs, self._secrets,
                     started=self._started, file_cache=self._digests)
        )  # fmt: skip
        context: dict[str, Any] = {"reads": reads, "read_on": HOST, "read_in": os.getcwd()}
        if task.root is not None and task.writes:
            files = {}
            for relative in task.writes:  # (a declared file not written yet: nothing to keep)
                if relative.endswith("/") or os.path.isfile(os.path.join(task.root, relative)):
                    files[relative] = capture_path(task.store, task.root, relative)
            context["files"] = files
        return context

    def refusal(self, context: Mapping[str, Any]) -> str | None:
        """Why a state saved with ``context`` cannot be resumed now (a file it was made from
        changed since), or None."""
        changed = changed_read(context, root=self._task.root, file_cache=None)
        if changed is not None:
            return f"{changed}, which it was made from, holds something else now"
        return None

    def restore(self, context: Mapping[str, Any]) -> str | None:
        """Put back the declared outputs as they were at the save; why that failed (they are
        emptied again), or None."""
        task, files = self._task, context.get("files")
        if not files or task.root is None:
            return None
        try:
            if not isinstance(files, Mapping):
                raise StoreError("its files are not a mapping")
            for relative, entry in files.items():
                if relative not in task.writes:
                    raise StoreError(f"{relative!r} is not one of the node's declared outputs")
                restore_entry(task.store, task.root, relative, entry, verify=True)
        except (OSError, StoreError, OutputError, KeyError, TypeError, ValueError) as exc:
            clear_writes(task.root, task.writes, node=task.node)
            return f"its declared outputs cannot be put back ({type(exc).__name__}: {exc})"
        return None
