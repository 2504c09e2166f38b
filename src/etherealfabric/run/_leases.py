"""The leases of one run: in its home's journal, and in a shared store across homes.

A key is computed under two leases. The journal's keeps the runs of one home apart (and is
released with the commit that records the result). A run alone in its home holds the home
lease instead (``journal/_leases.py``), which covers every key it computes without a
transaction per node, and which it gives up as soon as another run of the home wants to
compute; :meth:`RunLeases.poll` is how the scheduler looks for such a run while it waits. With a shared store, a store lease
(:class:`~etherealfabric.store._leases.StoreLeases`) keeps apart the drivers of other homes
that share it: a teammate, a CI machine. It is released as soon as the node's result is back,
since the worker has published the record to the store by then; a driver waiting for the key
then finds the record there, a cache hit.

A key leased in the store by another driver is looked at again every
:data:`STORE_POLL_SECONDS`, not at the scheduler's pace, to keep requests to a bucket few.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..journal._liveness import HOST, PID_START, alive
from ..store import Store
from ._recorder import JournalRecorder
from ._runmark import RunMark

if TYPE_CHECKING:
    from ..store._leases import StoreLeases

__all__ = ["STORE_POLL_SECONDS", "RunLeases"]

#: How often a key that another driver holds in the shared store is looked at again.
STORE_POLL_SECONDS = 1.0


class RunLeases:
    """Take, renew and give back the run's leases (the scheduler's one entry point to them)."""

    def __init__(self, recorder: JournalRecorder, run_id: str, shared: Store | None) -> None:
        self.recorder = recorder
        self.run_id = run_id
        self.store = _store_leases(shared, run_id) if shared is not None else None
        self.mark = RunMark(shared, run_id)  # "a run is going" for the shared store's gc
        self._not_before: dict[str, float] = {}  # key -> when to ask the store again
        #: whether the cache must be asked again now that the lease is ours: not when the home
        #: lease was held before the node was looked up (nobody else can have computed it since)
        self.recheck = True
        #: how many times the run took its home's lease (``run/_checkpoint.CheckpointListing``
        #: trusts a listing only under the home lease it was made under)
        self.home_taken = 0

    def acquire(self, key: str, node: str) -> bool:
        """Both leases of ``key``, or neither: False while another run or driver holds one."""
        held = self.recorder.holds_home
        self.recheck = self.store is not None or not held
        self.mark.ensure()  # before the node runs: its record is kept by gc from now on
        got = self.recorder.acquire_lease(key, node=node, run_id=self.run_id)
        self.home_taken += not held and self.recorder.holds_home
        if not got:
            return False
        if self.store is not None and not self.store.acquire(key):
            self.recorder.release_now(key)
            self._not_before[key] = time.monotonic() + STORE_POLL_SECONDS
            return False
        self._not_before.pop(key, None)
        return True

    def acquire_many(self, keys: list[str], node: str) -> set[str]:
        """The journal leases of many keys in one transaction (a chunk of the map ``node``'s
        children): those taken. No store lease: one request per child would cost more than
        the children; drivers of other homes may compute the same child (results agree)."""
        self.mark.ensure()
        held = self.recorder.holds_home
        taken = self.recorder.acquire_leases(keys, node=node, run_id=self.run_id)
        self.home_taken += not held and self.recorder.holds_home
        return taken

    def holder(self, key: str) -> str:
        """Who holds the shared store's lease of ``key``, as the wait's message says it
        (`` (the shared store's lease: pid 123 on host-a)``); "" when not known."""
        found = self.store.held_by.get(key) if self.store is not None else None
        if not isinstance(found, dict):
            return ""
        host, pid = (  # (as a teammate's entry says: printable text only)
            "".join(c if c.isprintable() else "?" for c in str(found.get(k, "?"))[:100])
            for k in ("host", "pid")
        )
        return f" (the shared store's lease of it: pid {pid} on {host})"

    def due(self, key: str) -> bool:
        """Whether a key that was leased elsewhere is worth asking about again now."""
        return time.monotonic() >= self._not_before.get(key, 0.0)

    def finished(self, key: str) -> None:
        """The node of ``key`` is done: its record is in the store, the store lease goes."""
        if self.store is not None:
            self.store.release(key)

    def release_with_commit(self, key: str) -> None:
        """Give the journal lease of ``key`` back with the run's next commit (the one that
        records what was computed under it), the store lease now: for a key whose result
        the node's own row does not release (a map recorded under its collection's key)."""
        self.recorder.release_with_commit(key)
        self.finished(key)

    def release_now(self, key: str) -> None:
        """Give both leases back at once (the node will not run under them)."""
        self.recorder.release_now(key)
        self.finished(key)

    @property
    def exclusive(self) -> bool:
        """Whether the run holds its home's lease (then :meth:`poll` must be called while it
        waits, so that another run wanting to compute is let in)."""
        return self.recorder.holds_home

    def poll(self) -> None:
        """Give the home lease up if another run of the home wants to compute."""
        self.recorder.check_home()

    def renew(self) -> None:
        """The heartbeat of the run's leases."""
        self.recorder.renew_leases(self.run_id)
        if self.store is not None:
            self.store.renew()
        self.mark.refresh()

    def close(self) -> None:
        """The run ends: every store lease goes (the journal's go with the run's last commit)."""
        if self.store is not None:
            self.store.release_all()
        self.mark.close()


def _store_leases(shared: Store, run_id: str) -> StoreLeases:
    """The run's leases in the shared store ``shared`` (their module: with such a store only)."""
    from ..store._leases import StoreLeases

    holder = {"host": HOST, "pid": os.getpid(), "start": PID_START}
    return StoreLeases(shared, run_id, holder=holder, abandoned=_abandoned)


def _abandoned(entry: Mapping[str, Any]) -> bool:
    """Whether the holder of a store lease was a process of this host that is gone (killed: a
    run resumed after ``kill -9`` takes its predecessor's leases over at once)."""
    pid, start = entry.get("pid"), entry.get("start")
    if entry.get("host") != HOST or not isinstance(pid, int) or isinstance(pid, bool):
        return False
    return not alive(pid, start if isinstance(start, int) else None)
