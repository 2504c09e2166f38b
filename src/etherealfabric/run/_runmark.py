"""A read-write run's mark in the shared store: "this run of this home is going, since T".

A home's roots (what a shared store's ``cache gc`` keeps for it) are published when a run
ends, so they cannot protect the records a run still going has finished so far. The mark does:
while it is fresh, the collection keeps every entry written since the run began
(``store/_sharedgc.py``). It costs one small write, made just before the first node the run
computes (a warm run, every node cached, writes none), one more every
:data:`~etherealfabric.store._sharedgc.RUN_MARK_REFRESH` seconds on the lease heartbeat, and a
delete at the end. Only a run that writes the shared store (mode ``read-write``) marks itself.
Best effort: a store that cannot be written is warned about once, never a failed run.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..journal._liveness import HOST

if TYPE_CHECKING:  # (a run on the home's own store never loads the shared store's modules)
    from ..store import LayeredStore, Store

__all__ = ["RunMark"]

log = logging.getLogger("etherealfabric.cache")


class RunMark:
    """The mark of run ``run_id`` in ``shared`` (a :class:`LayeredStore` that writes its shared
    store; anything else: no mark)."""

    def __init__(self, shared: Store | None, run_id: str) -> None:
        self.store: LayeredStore | None = None
        if getattr(shared, "writes_remote", False):  # a LayeredStore writing its shared store
            self.store = shared  # type: ignore[assignment]
        self.run_id = run_id
        self.started_at = time.time()
        self._written_at: float | None = None  # when last written (monotonic); None: not yet
        self._failed = False

    def ensure(self) -> None:
        """Write the mark unless it was (once per run; cheap to call before every node)."""
        if self._written_at is None and self.store is not None and not self._failed:
            self._write()

    def refresh(self) -> None:
        """Rewrite the mark if it is due (called on the lease heartbeat)."""
        if self._written_at is None:
            return
        from ..store._sharedgc import RUN_MARK_REFRESH

        if time.monotonic() - self._written_at >= RUN_MARK_REFRESH:
            self._write()

    def close(self) -> None:
        """The run ends: its mark goes (its roots, published next, take over)."""
        store, self.store = self.store, None
        if store is None or self._written_at is None or store.offline is not None:
            return  # (a store found out of reach is not asked again: the mark expires there)
        from ..store._sharedgc import run_mark_name

        try:
            store.remote.delete_entry(run_mark_name(self._home(store), self.run_id))
        except Exception as exc:  # a leftover mark expires: gc removes it then
            log.debug("could not remove the mark of run %s: %s", self.run_id, exc)

    def _home(self, store: LayeredStore) -> str:
        from ..store._sharedgc import home_id

        if store.home is None:
            store.home = home_id(store.local.root)
        return store.home

    def _write(self) -> None:
        store = self.store
        if store is None or store.offline is not None:
            return
        from ..store._sharedgc import mark_run

        self._written_at = time.monotonic()
        home = self._home(store)
        try:  # (through ask: a store refusing writes turns the run read-only, warned once)
            store.ask(
                lambda: mark_run(store.remote, home, self.run_id, self.started_at, host=HOST),
                default=None,
            )
            if not store.writes_remote or store.offline is not None:  # (said by ask, once)
                self._failed, self._written_at = True, None  # nothing written: nothing to delete
        except Exception as exc:  # housekeeping: never fail a run
            self._failed = True
            log.warning(
                "could not tell the shared store %s that run %s is going (`cache gc` there "
                "then protects its results only by their age, --grace): %s",
                store.url, self.run_id, exc,
            )  # fmt: skip
