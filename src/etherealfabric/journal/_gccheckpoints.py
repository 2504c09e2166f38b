"""``cache gc``'s part about checkpoints: those that finished executions left behind.

A node's checkpoint is deleted once its success is committed; a run killed between the two
leaves it behind (the key's final state), and a key that stays a cache hit never runs again
to clear it. :func:`collect_finished_checkpoints` removes a checkpoint once the journal holds
a succeeded execution of its key that finished **after** the checkpoint was saved, and no
live run holds a lease on the key (nor the home lease, which covers every key its run
computes). Any other checkpoint is kept: one whose key never succeeded (a crashed training
run, resumed days later), or one saved after the key's last success (a later execution,
killed in its turn). The decision and the deletions happen inside one journal write
transaction, so no run can lease the key and start computing it meanwhile.
"""

from __future__ import annotations

import contextlib
import time

from ..hashing._digest import is_digest
from ..store import Store
from ..store._base import checkpoint_name
from ._journal import Journal
from ._leases import HOME_LEASE

__all__ = ["collect_finished_checkpoints"]


def collect_finished_checkpoints(
    journal: Journal, store: Store, *, cutoff: float, dry_run: bool
) -> tuple[list[str], int]:
    """The keys of the finished checkpoints removed (``dry_run``: to remove), and their bytes;
    checkpoints modified at ``cutoff`` or later (``--older-than``) are kept."""
    keys = [
        name
        for prefix, name in store.list_entries("checkpoints")
        if is_digest(name) and name.startswith(prefix)
    ]
    if not keys:
        return [], 0
    removed: list[str] = []
    freed = 0
    # no run leases a key (to compute it) until the deletions are done; a dry run writes nothing
    with contextlib.nullcontext() if dry_run else journal.write():
        held = journal.live_leases()
        now = time.time()
        if HOME_LEASE in held:
            return [], 0  # a run computes under the home lease: any key may be its
        successes = journal.last_successes([k for k in keys if k not in held])
        for key, success in successes.items():
            info = store.entry_info(checkpoint_name(key))
            if info is None or info.modified is None:
                continue
            if success > now:  # a success in the future (a damaged row, a clock set back):
                continue  # it proves nothing, and the deletion cannot be undone
            if info.modified < min(success, cutoff):  # saved before that success, and old
                removed.append(key)
                freed += info.size
                if not dry_run:
                    store.delete_checkpoint(key)
    return removed, freed
