"""What a run does with the team cache once it is over: keep the local layer within its budget,
and say what a ``push-on-demand`` run left to push (see ``store/_layered.py``).

Neither can fail the run: a problem is logged as a warning.
"""

from __future__ import annotations

import logging
import time

from ..config import Settings
from ..journal import Journal
from ..journal._team import oldest_live_run, run_keys
from ..store import LayeredStore, Store
from ..store._layered import Eviction, evict

__all__ = ["after_run", "enforce_budget"]

log = logging.getLogger("etherealfabric.cache")


def after_run(store: Store, journal: Journal, settings: Settings, run_id: str) -> None:
    """Once run ``run_id`` is recorded: notice of results to push, then the budget."""
    if not isinstance(store, LayeredStore):
        return
    try:
        if store.mode == "push-on-demand":
            count = len(run_keys(journal, run_id, executed_only=True))
            if count:
                log.info(
                    "%d result(s) of run %s are only in this home; `etherealfabric cache push "
                    "%s` uploads them to %s",
                    count, run_id, run_id, store.remote.url,
                )  # fmt: skip
        if settings.local_cache_size is not None:
            enforce_budget(store, journal, settings.local_cache_size)
    except Exception as exc:  # housekeeping: never fail a run that succeeded
        log.warning("could not tidy the local cache after run %s: %s", run_id, exc)


def enforce_budget(
    store: LayeredStore, journal: Journal, budget: int, *, dry_run: bool = False
) -> Eviction:
    """Evict the local layer's least recently used objects down to ``budget`` bytes, keeping
    what runs still going (in this home) may use."""
    oldest = oldest_live_run(journal)
    report = evict(
        store, budget, keep_since=time.time() if oldest is None else oldest, dry_run=dry_run
    )
    if report.kept_unshared and report.size_after > budget and not dry_run:
        log.warning(
            "the local cache %s holds %d bytes, over its budget of %d, because %d object(s) "
            "are in no shared store yet: `etherealfabric cache push` uploads them (then they "
            "can be evicted)",
            store.local.root, report.size_after, budget, report.kept_unshared,
        )  # fmt: skip
    return report
