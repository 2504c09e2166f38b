"""Intra-node checkpoints: a long node saves its progress and a retry continues from it.

A node that runs for hours (a training loop, a big crawl) saves its state now and then; if
the attempt dies (an exception, a killed process, a lost machine), the next attempt, whether
a retry in the same run or a new run of the same workflow, loads the last state and continues
from there instead of starting over::

    from etherealfabric import node
    from etherealfabric import checkpoint

    @node
    def train(data, epochs):
        state = checkpoint.load(default={"epoch": 0, "weights": init()})
        for epoch in range(state["epoch"], epochs):
            state["weights"] = step(state["weights"], data)
            state["epoch"] = epoch + 1
            checkpoint.save(state)
        return state["weights"]

Class nodes use ``self.checkpoint.save(state)`` and ``self.checkpoint.load()`` the same way.

How it works:

- A checkpoint is stored **under the node's cache key** (``checkpoints/<2 hex>/<key>`` in a
  local store). Each :meth:`Checkpoint.save` replaces the previous state atomically, so a crash
  while saving leaves the previous checkpoint intact. The scheduler deletes the checkpoint once
  the node's success is committed.
- Because the key covers the node's code and inputs, **editing the node's code or its inputs
  starts fresh**: the new key has no checkpoint, and the old one is orphaned (left in the
  store, never loaded with code or data it does not match). Orphans are ordinary files under
  ``checkpoints/`` and may be deleted at any time.
- What the key does not cover travels with each save (run/_resumable.py): the data files
  the node read by path (a state made from a file changed since is not resumed) and its
  declared outputs as they were (put back before the state is resumed).
- States are serialized with **cloudpickle**, and loading one unpickles it, which can run
  arbitrary code. Only load checkpoints from stores you trust (your own home; a shared store
  only if everyone who can write to it is trusted).
- A stored checkpoint carries a digest of its bytes: a damaged one, or one that no longer
  unpickles, is ignored with a warning and the node starts from the beginning.
- Each attempt has a checkpoint handle of its own, which the worker closes when the attempt
  is over: when it ends, and at once when it is abandoned at its timeout (on the thread
  backend the attempt's thread runs on). A closed handle refuses to save, load or clear:
  it raises :class:`~etherealfabric.errors.AttemptOverError`, which ends the abandoned work
  at its next save, so an abandoned attempt never overwrites the state of the retry that
  replaced it, nor recreates a checkpoint after the node's success deleted it. A save in
  progress when the handle is closed completes first (closing waits for it).
- A run killed between committing a node's success and deleting its checkpoint leaves the
  checkpoint behind: the node's final state. It is never resumed: before a key runs, the
  driver asks the journal when the key last succeeded, and a checkpoint saved before then
  is deleted before the first attempt (:func:`finished_checkpoint`; a map's children are
  checked a chunk at a time, :func:`finished_checkpoints`), so an execution of a
  key whose record was forgotten, collected or damaged starts from the beginning. One saved
  after it (a later execution of the key, killed in its turn) is resumed as usual. Which keys
  have a checkpoint at all is read from listings of the home's folders while the run holds
  its home's lease (:class:`CheckpointListing`), not asked key by key.
  ``cache gc`` removes such a checkpoint even if its key stays a cache hit and never runs
  again (``journal/_gccheckpoints.py``).
- ``--force`` recomputes a node from scratch: the worker deletes its checkpoint before the
  forced node's first attempt (``Task.fresh``); its retries resume as usual.
- The active checkpoint lives in a :class:`contextvars.ContextVar` (``define/_context.py``)
  set by the worker around each attempt, so it is per thread and per node. Threads that a node starts
  itself do not inherit it; run them with ``contextvars.copy_context().run`` if they must
  save checkpoints.

Save at a granularity where the cost of pickling and writing the state is small compared with
the work it protects (every epoch, not every batch).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol, TypeGuard

from ..define._secret import refusing_secrets
from ..errors import AttemptOverError, SerializationError, StoreError
from ..journal import Journal
from ..store import LocalStore, Store
from ..store._base import check_name, checkpoint_name
from ._resumable import Resumable, pack, unpack

__all__ = [
    "Checkpoint",
    "CheckpointListing",
    "end_attempts",
    "finished_checkpoint",
    "finished_checkpoints",
    "open_attempt",
]

log = logging.getLogger("etherealfabric.checkpoint")

#: The checkpoint handles of the attempts running in this process, by run: a run that is
#: cancelled (Ctrl-C in a notebook, whose kernel lives on) ends them, so a node thread that
#: goes on computing cannot save over the attempt that the next run starts.
_RUNNING: dict[str, set[Checkpoint]] = {}
_RUNNING_LOCK = threading.Lock()


def open_attempt(run_id: str, checkpoint: Checkpoint) -> None:
    """Count ``checkpoint`` among the attempts of run ``run_id`` running here (until closed)."""
    with _RUNNING_LOCK:
        _RUNNING.setdefault(run_id, set()).add(checkpoint)
        checkpoint._run_id = run_id


def end_attempts(run_id: str, why: str) -> None:
    """Close the checkpoint of every attempt of run ``run_id`` still running in this process:
    their next ``checkpoint.save`` or ``load`` raises AttemptOverError (``why`` says why)."""
    with _RUNNING_LOCK:
        running = _RUNNING.pop(run_id, set())
    for checkpoint in running:
        checkpoint.close(why)


class Checkpoint:
    """The checkpoint of one node: its saved state, stored under the node's cache key.

    One handle per attempt (``attempt`` is its number); :meth:`close` ends its use.
    """

    def __init__(self, store: Store, key: str, node: str, attempt: int = 1) -> None:
        self.store = store
        self.key = check_name(key, "cache key")
        self.node = node
        self.attempt = attempt
        self.saves = 0  # saves made by this attempt
        self.used = False  # whether the node touched its checkpoint at all (then it is removed)
        self._lock = threading.Lock()  # held by a save or load; close() waits for them
        self._over: str | None = None  # why the attempt is over, once it is
        self._refused = False  # a call was refused (logged once)
        self._run_id: str | None = None  # counted among a run's attempts (open_attempt)
        #: what the state depends on besides the key: the attempt's task, files opened,
        #: arguments, start and redactor, set by the worker (made a Resumable on first use)
        self.made_with: tuple[Any, ...] | None = None
        self._resumable: Resumable | None = None
        self.resumed: dict[str, Any] = {}  # the reads of the state loaded (run/_resumable.py)

    def close(self, why: str) -> None:
        """End this attempt's use of the checkpoint (``why``: how the attempt ended). A save
        or load in progress completes first; every later call raises AttemptOverError."""
        with self._lock:
            if self._over is None:
                self._over = why
        if self._run_id is not None:
            with _RUNNING_LOCK:
                running = _RUNNING.get(self._run_id)
                if running is not None:
                    running.discard(self)
                    if not running:  # (a notebook makes many runs: none kept once over)
                        del _RUNNING[self._run_id]

    def _check_open(self, what: str) -> None:
        """Raise AttemptOverError once the attempt is over (logged once per attempt)."""
        if self._over is None:
            return
        if not self._refused:  # the first refusal is logged; later ones only raise
            self._refused = True
            log.info(
                "node %r: attempt %d is over (%s): its checkpoint.%s is refused and the "
                "attempt's work stops here",
                self.node,
                self.attempt,
                self._over,
                what,
            )
        raise AttemptOverError(self.node, self.attempt, self._over)

    def __getstate__(self) -> dict[str, Any]:  # sent to a child process: no lock
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def save(self, state: object) -> None:
        """Store ``state`` (cloudpickled), replacing the previously saved one atomically."""
        import cloudpickle

        try:
            with refusing_secrets():  # a Secret in the state raises: secrets are never stored
                data = cloudpickle.dumps(state)
        except Exception as exc:
            raise SerializationError(
                f"node {self.node!r}: cannot save a checkpoint: the state of type "
                f"{type(state).__qualname__} cannot be pickled ({type(exc).__name__}: {exc})",
                node=self.node,
                type_name=f"{type(state).__module__}.{type(state).__qualname__}",
            ) from exc
        with self._lock:  # checked and written under the lock: close() waits for the write
            self._check_open("save")
            self.used = True
            resumable = self.resumable()
            context = resumable.context(self.resumed) if resumable else None
            self.store.put_checkpoint(self.key, pack(context, data))
            self.saves += 1
        log.debug(
            "node %r: checkpoint %d saved (%d bytes, key %s)",
            self.node,
            self.saves,
            len(data),
            self.key,
        )

    def load(self, default: Any = None) -> Any:
        """The last saved state, or ``default`` if there is none, it cannot be read back, or a
        file it was made from changed since (run/_resumable.py)."""
        with self._lock:
            self._check_open("load")
            self.used = True
            data = self.store.get_checkpoint(self.key)
            if data is None:
                return default
            import cloudpickle

            try:
                context, pickled = unpack(data)
                state = cloudpickle.loads(pickled)
            except Exception as exc:
                self._ignored(f"it cannot be unpickled ({type(exc).__name__}: {exc})")
                return default
            resumable = self.resumable()
            if context is not None and resumable is not None:
                why = resumable.refusal(context) or resumable.restore(context)
                if why is not None:
                    self._ignored(why)
                    return default
                reads = context.get("reads")
                self.resumed = dict(reads) if isinstance(reads, Mapping) else {}
        log.info("node %r: resuming from its checkpoint (key %s)", self.node, self.key)
        return state

    def resumable(self) -> Resumable | None:
        """What this attempt's states depend on (run/_resumable.py), once the worker said."""
        if self._resumable is None and self.made_with is not None:
            task, opened, args, kwargs, started, redact = self.made_with
            self._resumable = Resumable(task, opened, args, kwargs, started, redact.texts)
        return self._resumable

    def _ignored(self, why: str) -> None:
        log.warning(
            "node %r: ignoring its checkpoint (key %s): %s; the node starts from the beginning",
            self.node,
            self.key,
            why,
        )

    def exists(self) -> bool:
        """True if a saved state is present, intact and made from the files as they are."""
        with self._lock:
            self._check_open("exists")
            self.used = True
            data = self.store.get_checkpoint(self.key)
        if data is None:
            return False
        try:
            context, _ = unpack(data)
        except ValueError:
            return False
        resumable = self.resumable()
        return context is None or resumable is None or not resumable.refusal(context)

    def clear(self) -> None:
        """Delete the saved state; the next :meth:`load` returns its default."""
        with self._lock:
            self._check_open("clear")
            self.store.delete_checkpoint(self.key)

    def __repr__(self) -> str:
        return f"<Checkpoint of node {self.node!r} key {self.key} in {self.store.url}>"


class _HomeLease(Protocol):
    """What :class:`CheckpointListing` asks of the run's leases (``run/_leases.RunLeases``)."""

    @property
    def exclusive(self) -> bool: ...  # the run holds its home's lease now

    @property
    def home_taken(self) -> int: ...  # how many times the run took it


class CheckpointListing:
    """Which keys may have a checkpoint in a local store: read from listings of its folders
    (the root's, then a ``checkpoints/<2 hex>`` folder's when a key of it is asked), not a
    stat per key. A stat releases the GIL: in a cold fan-out on threads, each one handed the
    scheduler's turn to a worker, which kept it for a while (10,000 context switches a run).

    A listing is trusted only while the run holds its home's lease, the same one as when the
    listing was made: no other run of the home can then commit a success (that takes a lease).
    A checkpoint that appears later was saved by this run (every key asked is about to run:
    it is asked by stat from then on) or by a worker a dead run left (no success in the journal
    follows its save). Without the home lease, or for another store, every key is asked."""

    def __init__(self, store: Store, leases: _HomeLease) -> None:
        self._root = os.path.join(store.root, "checkpoints") if _cheap_to_ask(store) else None
        self._leases = leases
        self._taken = -1  # the home lease the listings were made under (RunLeases.home_taken)
        self._listed: dict[str, frozenset[str] | None] = {}  # folder -> names (None: unknown)
        self._asked: set[str] = set()

    def may_have(self, key: str) -> bool:
        """False when ``key`` surely has no checkpoint now; True when it may (ask the store).
        Called once before each execution of ``key``."""
        leases, again = self._leases, key in self._asked
        self._asked.add(key)
        if self._root is None or again or not leases.exclusive:
            return True
        if self._taken != leases.home_taken:  # a new home lease: older listings are void
            self._taken, self._listed = leases.home_taken, {}
        folders = self._listing("")
        if folders is None or key[:2] not in folders:
            return folders is None
        names = self._listing(key[:2])
        return names is None or key in names

    def _listing(self, folder: str) -> frozenset[str] | None:
        if folder not in self._listed:
            try:
                self._listed[folder] = frozenset(os.listdir(f"{self._root}/{folder}"))
            except (FileNotFoundError, NotADirectoryError):
                self._listed[folder] = frozenset()
            except OSError:  # unreadable: each key is asked
                self._listed[folder] = None
        return self._listed[folder]


def finished_checkpoint(
    journal: Journal, store: Store, key: str, node: str, listing: CheckpointListing | None = None
) -> bool:
    """Whether the checkpoint under ``key`` is one an execution that succeeded left behind (a
    kill between the commit of its success and the checkpoint's deletion): see
    :func:`finished_checkpoints`."""
    return bool(finished_checkpoints(journal, store, {key: node}, listing))


def finished_checkpoints(
    journal: Journal,
    store: Store,
    nodes: Mapping[str, str],
    listing: CheckpointListing | None = None,
) -> set[str]:
    """Those of ``nodes`` (cache key -> node name: a node, or a chunk of a map's children)
    whose checkpoint an execution that succeeded left behind: saved before the key's last
    success in the journal (or at a time the store cannot tell). Such a state is the end of a
    finished execution, never a point to resume a new one from. One query of the journal's
    index of succeeded keys per 500 keys; the store is asked only for keys that succeeded
    before (a key whose record was forgotten, collected or damaged). A store on this machine
    (:func:`_cheap_to_ask`) is asked first instead, a stat per key: most keys that run have no
    checkpoint, and a stat costs far less than a query (a cold fan-out asked once per node);
    with a ``listing`` of the store, a key it lists no checkpoint for is not asked at all."""
    finished: set[str] = set()
    if _cheap_to_ask(store):  # only a key with a checkpoint can have a finished one
        if listing is not None:  # a key it lists no checkpoint for is not asked
            nodes = {k: n for k, n in nodes.items() if listing.may_have(k)}
            if not nodes:
                return finished
        root = os.path.join(store.root, "checkpoints")  # (checkpoint_path's, unvalidated)
        nodes = {k: n for k, n in nodes.items() if _lexists(f"{root}/{k[:2]}/{k}")}
        if not nodes:
            return finished
    for key, success in journal.last_successes(list(nodes)).items():
        if _saved_before(store, key, success):
            finished.add(key)
            log.info(
                "node %r: not resuming the checkpoint of key %s: it was saved before the "
                "key's success at %s (a run killed before deleting it); the node starts from "
                "the beginning",
                nodes[key],
                key,
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(success)),
            )
    return finished


def _lexists_no_raise(path: str) -> bool:
    """``os.path.lexists`` without the exception it raises and catches for a missing path
    (most keys have no checkpoint: a cold fan-out asks once per node)."""
    return os.access(path, os.F_OK, follow_symlinks=False)


_lexists = _lexists_no_raise if os.access in os.supports_follow_symlinks else os.path.lexists


def _cheap_to_ask(store: Store) -> TypeGuard[LocalStore]:
    """Whether ``store`` is a plain local folder (a stat per entry), not a remote or layered
    one."""
    return type(store) is LocalStore


def _saved_before(store: Store, key: str, success: float) -> bool:
    """Whether the store holds a checkpoint under ``key`` saved before ``success`` (or at a
    time it cannot tell)."""
    layered = sys.modules.get("etherealfabric.store._layered")  # (none before it is imported)
    local = store.local if layered and isinstance(store, layered.LayeredStore) else None
    try:  # a layered store loads its local layer's first
        info = local.entry_info(checkpoint_name(key)) if local is not None else None
        info = info or store.entry_info(checkpoint_name(key))
    except (OSError, StoreError):
        return False  # the attempt's own load reports what is wrong with the store
    return info is not None and (info.modified is None or info.modified <= success)
