"""Single-flight for a map's children: two runs of one home never compute one child twice.

A static node is computed under its key's lease (``run/_leases.py``). A map's children take
theirs too, but a chunk at a time: just before a chunk is sent, the leases of its children are
taken in one journal transaction (:func:`take`), and each child's lease ends with the commit of
its row. A child whose lease another live run holds waits in ``MapRun.elsewhere``; every
:data:`POLL_SECONDS` the waiting children are looked up in bulk (:func:`recheck`): those the
other run finished are cached, the rest go back to be leased again. So two runs mapping the
same items split them between them instead of both computing all of them. The journal is
checked again for the children leased, as for a node: a run that finished one between our
lookup and our lease committed its record with the lease's release.
"""

from __future__ import annotations

import time
from typing import Any

from ..states import NodeStatus
from ._mapstate import MapHost, MapRun

__all__ = ["POLL_SECONDS", "recheck", "take"]

#: How often children leased by another run are looked at again.
POLL_SECONDS = 0.1


def take(host: MapHost, run: MapRun, indexes: list[int]) -> list[int]:
    """Lease the children at ``indexes`` (one transaction); those to send now."""
    children = run.children
    taken = host.leases.acquire_many([children[i].key for i in indexes], run.name)
    mine = [i for i in indexes if children[i].key in taken]
    if len(mine) < len(indexes):
        run.elsewhere.extend(i for i in indexes if children[i].key not in taken)
        run.recheck_at = time.monotonic() + POLL_SECONDS
    if not mine or run.name in host.policy.force:
        return mine
    done = host.cache.journal.get_actions([children[i].key for i in mine])
    send = []
    for i in mine:
        record = host.cache.lookup(children[i].key) if children[i].key in done else None
        if record is None:
            send.append(i)
        else:  # another run finished it after our lookup
            host.leases.release_now(children[i].key)
            _cached(run, i, record)
    return send


def recheck(host: MapHost, run: MapRun) -> list[int]:
    """Children that waited for another run: the ones it finished (now cached) are returned,
    the others go back to be leased."""
    if not run.elsewhere or time.monotonic() < run.recheck_at:
        return []
    waiting, run.elsewhere = run.elsewhere, []
    found = host.cache.lookup_many([run.children[i].key for i in waiting])
    cached = []
    for i in waiting:
        record = found.get(run.children[i].key)
        if record is None:
            run.todo.appendleft(i)
        else:
            _cached(run, i, record)
            cached.append(i)
    return cached


def _cached(run: MapRun, index: int, record: dict[str, Any]) -> None:
    child = run.children[index]
    child.status, child.outputs = NodeStatus.CACHED, record["outputs"]
    child.checked = bool(record.get("reads") or record.get("files"))
    run.report.cached += 1
