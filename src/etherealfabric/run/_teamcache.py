"""What a run does with the team cache once it is over: publish this home's roots (what a shared
store's collection must keep for it, ``store/_sharedgc.py``), keep the local layer within its
budget, and say what a ``push-on-demand`` run left to push (see ``store/_layered.py``).

None of it can fail the run: a problem is logged as a warning. The home's id (``home-id``) and
its pinned runs (``pinned-runs``, one id a line: ``cache pin``) are small files in the home.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..config import Settings
from ..errors import StoreUnreachableError
from ..hashing._digest import digest_bytes
from ..journal import Journal
from ..journal._team import keys_in_use, oldest_live_run, run_keys
from ..store import LayeredStore, Store
from ..store._budget import Eviction, evict
from ..store._sharedgc import home_id, publish_roots
from ..store._smallfiles import write_small_file

__all__ = [
    "KEEP_RUNS",
    "after_run",
    "enforce_budget",
    "home_id",
    "pins",
    "publish",
    "roots_keys",
    "set_pins",
]

#: The runs per workflow whose results a home's roots protect in a shared store.
KEEP_RUNS = 5

log = logging.getLogger("etherealfabric.cache")


def after_run(store: Store, journal: Journal, settings: Settings, run_id: str) -> None:
    """Once run ``run_id`` is recorded: notice of results to push, then the budget."""
    if not isinstance(store, LayeredStore):
        return
    try:
        if store.writes_remote and store.offline is None:
            try:
                publish(store, journal, settings.home)
            except StoreUnreachableError as exc:
                store.offline = str(exc)
                log.warning(
                    "the shared store %s did not answer when this home published what its "
                    "runs keep there (its roots, which `cache gc` of the shared store reads); "
                    "the next run that reaches the store publishes them: %s",
                    store.remote.url, exc,
                )  # fmt: skip
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


def publish(
    store: LayeredStore,
    journal: Journal,
    home: Path,
    keep_runs: int = KEEP_RUNS,
    *,
    force: bool = False,
) -> bool:
    """Publish this home's roots to the shared store; True if written.

    Unless ``force``, nothing is asked of the store when the keys are those this home last
    published there (remembered in ``roots-published``): a warm run makes no request.
    """
    keys = roots_keys(journal, home, keep_runs)
    stamp = digest_bytes("\n".join([store.remote.url, *keys]).encode())
    memo = Path(home) / "roots-published"
    if not force and memo.exists() and memo.read_text().strip() == stamp:
        return False
    import socket  # only when a shared store is published to

    written = publish_roots(store.remote, home_id(home), keys, host=socket.gethostname())
    write_small_file(memo, stamp + "\n")
    return written


def roots_keys(journal: Journal, home: Path, keep_runs: int = KEEP_RUNS) -> list[str]:
    """The keys this home's roots name: its last ``keep_runs`` runs per workflow, its runs
    going and its pinned runs used (sorted)."""
    return sorted(keys_in_use(journal, keep_runs, pins(home)))


def pins(home: Path) -> list[str]:
    """The run ids pinned in this home (their results are never collected)."""
    try:
        lines = (Path(home) / "pinned-runs").read_text().split()
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(line for line in lines if line))


def set_pins(home: Path, run_ids: list[str]) -> None:
    """Replace the pinned runs of this home."""
    path = Path(home) / "pinned-runs"
    write_small_file(path, "".join(f"{r}\n" for r in dict.fromkeys(run_ids)))
