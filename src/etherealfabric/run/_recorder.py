"""The run's one journal writer: turns run events into rows, and carries every other write.

Everything a run writes to the journal goes through one :class:`JournalRecorder`: the run's own
row (start, finish), node rows and events (from the event stream), action records and inline
blobs, leases, the cache index of records found in a shared store, file digests. The scheduler,
the artifact cache and the session hold this object, never the journal's write methods.

Event rows are buffered and written in one transaction per :meth:`JournalRecorder.flush`: the
scheduler commits in groups (``run/_scheduler.py``: finished nodes at most every
``GROUP_SECONDS``, cache hits every ``FLUSH_SECONDS``, and at the end of a run), so a thousand
nodes cost a few commits, not a thousand; a kill loses at most the rows of the last group
window, whose nodes simply run again. Every event becomes an ``events`` row
except ``node_cached``, whose ``node_runs`` row holds the same facts. Within a transaction the
write order is inline blobs, then action records, then the node rows that name them, so a
committed ``succeeded`` row always points at outputs that exist. A node row keeps the outputs
the node had in this run (``outputs``, ``record_at``: ``journal/_runoutputs.py``). A node has
a row per attempt (``run/_noderows.py``): a retried node's failed attempts are written as they
fail, and the attempt that follows as it begins, not only once the node ends.

With ``present`` (the home's own store, which ``cache gc`` collects), an action record is
committed only if every stored object it names is still there, checked inside the commit's
transaction: gc deletes objects inside a transaction of its own, so a committed record never
names an object gc removed. A record whose object went is left out (the node's outputs are
then not cached; a consumer that misses them has the node recomputed).

A mapped node's children (``map_items`` events) get node rows named ``map[label]`` and
action records like any node, but no ``events`` rows; ``map_finished`` adds the records of the
map's collection (and of the whole map when every item succeeded).

A node whose input files changed while it ran (``TaskResult.drifted``) gets a ``drifted`` row
naming them, a warning, and no action record: its outputs served this run only.

Leases (``journal/_leases.py``): while no other run of the home holds or wants one, the run
holds the *home lease* and a node's lease costs no transaction and no row to delete when it
ends (the recorder remembers the keys it covers); every commit, and
:meth:`JournalRecorder.check_home` while the scheduler waits, looks for another run that wants
to compute, and gives the home lease up in the same transaction, leasing the keys still being
computed one by one.

The recorder subscribes to the event bus as a *critical* subscriber: if it raises, the run
fails loudly instead of carrying on with a journal that misses rows.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..journal import Journal
from ..journal._liveness import HOST
from ..states import EventKind, NodeStatus, RunStatus
from ..store._trees import entry_objects
from ._events import Event
from ._noderows import _VALUES, NodeRows, _Made
from ._records import LateSerializers
from ._rowjson import dumps as _dumps
from ._rowjson import event_json as _json

if TYPE_CHECKING:
    from ._messages import TaskResult

__all__ = ["JournalRecorder"]

log = logging.getLogger("etherealfabric.cache")

_SKIP_DATA = ("result", "record", "components", "inline", "actions", "output")
# the kinds whose node_runs rows say all there is (see __call__), as a set of plain members:
# on Python 3.11 reading one from EventKind costs about 0.3 us, and this is per event
_ROWS_ONLY = frozenset((EventKind.NODE_CACHED, EventKind.MAP_ITEMS))
#: a ``node_started`` event with nothing but these has no events row: its node's ``running``
#: row holds its key and start (``input_bytes`` is for live subscribers); one that says why
#: the node ran (``stale``, ``forced``: ``journal/_history.start_marks``) has its row
_PLAIN_START, _STARTED = frozenset(("key", "input_bytes")), EventKind.NODE_STARTED


class JournalRecorder(NodeRows):
    """The only writer of the journal during one run."""

    def __init__(self, journal: Journal, *, present: Callable[[str], bool] | None = None) -> None:
        self.journal = journal
        self._present = present
        self._objects: dict[str, list[str]] = {}  # key -> stored digests its record names
        self._node_runs: list[tuple[Any, ...]] = []
        self._row_at: dict[tuple[Any, ...], int] = {}  # (run, node, attempt) -> its buffered row
        self._events: list[tuple[Any, ...]] = []
        self._actions: list[tuple[str, str, str, str | None, float]] = []
        self._blobs: list[tuple[str, bytes]] = []
        self._release: list[str] = []
        self._home: str | None = None  # the run holding the home lease (journal/_leases.py)
        self._held: dict[str, str] = {}  # key -> node: computed under the home lease, no row
        self._started = {}  # (run, node) -> its running attempt (run/_noderows.py)
        self._late = LateSerializers()  # (knows the serializers registered by now)
        self._handlers: dict[EventKind, Callable[[Event], None]] = {
            EventKind.NODE_CACHED: self._on_cached,
            EventKind.NODE_STARTED: self._on_started,
            EventKind.NODE_SUCCEEDED: self._on_succeeded,
            EventKind.MAP_ITEMS: self._on_map_items,
            EventKind.MAP_FINISHED: self._on_map_finished,
            **self._node_row_handlers(),  # retries, failures, handlers, stops (_noderows.py)
        }

    # -- the event stream ------------------------------------------------------------------
    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)
        if event.kind in _ROWS_ONLY:
            return  # their node_runs rows say all there is; a warm run writes half the rows
        data = {k: v for k, v in event.data.items() if k not in _SKIP_DATA}
        if event.kind is _STARTED and data.keys() <= _PLAIN_START:
            return  # its running row says it (key, start); kept when it says why it ran
        self._events.append(
            (event.run_id, event.ts, _VALUES[event.kind], event.node, _json(data) if data else None)
        )

    @property
    def buffered(self) -> int:
        """How many rows wait for the next :meth:`flush`."""
        return len(self._node_runs) + len(self._events) + len(self._release)

    def flush(self) -> None:
        """Write everything buffered in one transaction (which also gives the home lease up
        if another run wants to compute)."""
        if not (self._node_runs or self._events or self._release):
            return
        held, release = self._held, self._release
        if self._home is not None:  # a key computed under the home lease has no row to delete
            release = [key for key in release if held.pop(key, None) is None]
        with self.journal.write():  # one transaction: the presence check and the commit
            self.journal.write_batch(
                node_runs=self._node_runs,
                events=self._events,
                actions=self._still_present(self._actions),
                blobs=self._blobs,
                release=release,
            )
            for key in release:
                held.pop(key, None)
            self._share_if_contended()
        self._node_runs, self._events, self._actions, self._blobs = [], [], [], []
        self._release, self._objects, self._row_at = [], {}, {}

    def _still_present(
        self, actions: list[tuple[str, str, str, str | None, float]]
    ) -> list[tuple[str, str, str, str | None, float]]:
        """The action rows whose stored objects all exist (see the module docstring)."""
        if self._present is None:
            return actions
        kept = []
        for row in actions:
            missing = [d for d in self._objects.get(row[0], ()) if not self._present(d)]
            if missing:
                log.warning(
                    "%s: its output %s was removed (by cache gc?) before the run recorded it; "
                    "the result is not cached",
                    row[1],
                    missing[0],
                )
                continue
            kept.append(row)
        return kept

    # -- the run's own row -----------------------------------------------------------------
    def mark_interrupted(self) -> list[str]:
        """Mark runs whose process is gone as interrupted (before this run starts)."""
        return self.journal.mark_interrupted()

    def start_run(self, run_id: str, **row: Any) -> None:
        """Record the run as running, committed at once so other processes see it; the
        journal's log is checkpointed in the background until the run finishes."""
        self.journal.start_run(run_id, **row)
        self.journal.start_checkpoints()

    def finish_run(
        self, run_id: str, *, status: RunStatus, counts: Mapping[str, int], error: str | None
    ) -> None:
        """Commit what is buffered, release the run's leases and record how it ended."""
        self.flush()
        self.journal.stop_checkpoints()
        self.journal.release_leases(run_id)
        if self._home == run_id:
            self._home, self._held = None, {}
        self.journal.finish_run(run_id, status=status, counts=dict(counts), error=error)

    # -- leases ------------------------------------------------------------------------------
    @property
    def holds_home(self) -> bool:
        """Whether the run holds the home lease (its nodes' leases cost no transaction)."""
        return self._home is not None

    def acquire_lease(self, key: str, *, node: str, run_id: str) -> bool:
        """Take the lease of ``key``; ``False`` while another live run holds it (or holds the
        home lease: it gives it up within a group window or a poll)."""
        if self._home == run_id:
            self._held[key] = node
            return True
        got = self.journal.claim_lease(key, node=node, run_id=run_id)
        if got == "home":
            self._home = run_id
            self._held[key] = node
        return bool(got)

    def check_home(self) -> None:
        """Give the home lease up if another run wants to compute (the scheduler calls this
        while it waits; a read when nobody does)."""
        if self._home is not None and self.journal.lease_contended(self._home):
            with self.journal.write():
                self._share_if_contended()

    def _share_if_contended(self) -> None:
        """Inside a write transaction: lease the keys computed under the home lease one by
        one and drop it, if another live run holds or wants a lease."""
        if self._home is None or not self.journal.lease_contended(self._home):
            return
        self.journal.share_home(self._home, self._held)
        log.info("another run computes in this home: leasing key by key from now on")
        self._home, self._held = None, {}

    def acquire_leases(self, keys: list[str], *, node: str, run_id: str) -> set[str]:
        """The leases of many keys (a chunk of a map's children), in one transaction at most
        (none under the home lease); those taken."""
        if self._home != run_id:
            got, taken = self.journal.claim_leases(keys, node=node, run_id=run_id)
            if got != "home":
                return taken
            self._home = run_id
        self._held.update(dict.fromkeys(keys, node))
        return set(keys)

    def renew_leases(self, run_id: str) -> int:
        """The heartbeat: extend the leases ``run_id`` holds (the scheduler calls it)."""
        return self.journal.renew_leases(run_id)

    def release_with_commit(self, key: str) -> None:
        """Give a lease back in the next :meth:`flush`, with the rows and records buffered
        (a run waiting for the key then finds its records as soon as the lease is gone)."""
        self._release.append(key)

    def release_now(self, key: str) -> None:
        """Give a lease back at once (the node will not run under it)."""
        if self._held.pop(key, None) is not None and self._home is not None:
            return  # covered by the home lease: no row to delete
        self.journal.write_batch(release=[key])

    # -- the cache index (ArtifactCache's writes) ---------------------------------------------
    def index_action(
        self, key: str, record: Mapping[str, Any], blobs: Sequence[tuple[str, bytes]]
    ) -> None:
        """Index an action record found in a shared store, with its inline blobs."""
        row = (
            key,
            str(record.get("node", "")),
            _dumps(record),
            None,
            record.get("created_at", 0.0),
        )
        self.journal.write_batch(actions=[row], blobs=blobs)

    def drop_action(self, key: str) -> None:
        """Forget an action record whose outputs turned out missing or corrupt."""
        self.journal.delete_action(key)

    def drop_blob(self, digest: str) -> None:
        """Forget a corrupt inline output."""
        self.journal.delete_blob(digest)

    # -- remembered file digests (the FileHashCache protocol of hashing) ---------------------
    def get(self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str | None:
        return self.journal.get(path, size, mtime_ns, inode, ctime_ns)

    def put(
        self, path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int, digest: str
    ) -> None:
        self.journal.put(path, size, mtime_ns, inode, ctime_ns, digest)

    # -- one handler per event kind that makes node rows (more in run/_noderows.py) ----------
    def _on_cached(self, event: Event) -> None:
        key = event.data["key"]
        if "components" in event.data:  # a hit from the shared store (scheduler._cached):
            # its local index row has no key components, so the row carries them (the graph,
            # explain), and the index row gets them for the runs that hit it locally later
            components = _dumps(event.data["components"])
            record = event.data["record"]
            created, text = float(record.get("created_at") or time.time()), _dumps(record)
            self._row(event, NodeStatus.CACHED, key=key, components=components, started=event.ts,
                      finished=event.ts, made=(text, created))  # fmt: skip
            self._actions.append((key, event.node or "", text, components, created))
            return
        # the row _row(event, CACHED, key=..., started=ts, finished=ts) would make, short (a
        # warm run makes one per node): write_batch fills in the columns all such rows share
        self._buffer((event.run_id, event.node, key, event.ts, HOST), 1)

    def node_cached(self, run_id: str, node: str, key: str, ts: float) -> None:
        """A ``node_cached`` event without its :class:`Event` (``EventBus.node_cached``): the
        short row of a hit indexed here, as :meth:`_on_cached` writes it."""
        rows = self._node_runs  # (_buffer(row, 1), inline: once per node of a warm run)
        at = self._row_at.setdefault((run_id, node, 1), len(rows))
        if at < len(rows):
            rows[at] = (run_id, node, key, ts, HOST)
        else:
            rows.append((run_id, node, key, ts, HOST))

    def _on_started(self, event: Event) -> None:
        self._running(event.run_id, event.node or "", event.data["key"], event.ts)

    def node_started(self, run_id: str, node: str, key: str, input_bytes: int, ts: float) -> None:
        """``node_started`` without its :class:`Event` (``EventBus.node_started``): its
        ``running`` row (a plain start has no events row, see :data:`_PLAIN_START`)."""
        self._running(run_id, node, key, ts)

    def _on_succeeded(self, event: Event) -> None:
        result: TaskResult = event.data["result"]
        components = _dumps(event.data["components"])
        self._blobs.extend(result.inline.items())
        self._release.append(result.key)
        if result.drifted:
            self._drifted(event, result, components)
            return
        if event.data.get("no_record"):  # a map: its records come with map_finished
            self._attempt_rows(event, result, NodeStatus.SUCCEEDED, components)
            return
        made = self._index(result.key, event.node or "", event.data["record"], components)
        self._attempt_rows(event, result, NodeStatus.SUCCEEDED, components, made=made)

    def _index(
        self, key: str, node: str, record: Mapping[str, Any], components: str | None = None
    ) -> _Made:
        """Buffer the action record of ``key`` (committed if its objects are still there);
        the ``outputs`` and ``record_at`` of the node row that made it."""
        self._late.check(key, node, record)  # a serializer registered while the run went on
        outputs = record.get("outputs", {})
        children = record.get("children") or {}  # a map's index of its children's keys
        self._objects[key] = (
            [str(out["digest"]) for out in outputs.values() if not out.get("inline")]
            + entry_objects(record.get("files"))
            + ([children["digest"]] if children else [])
        )
        now, text = time.time(), _dumps(record)
        self._actions.append((key, node, text, components, now))
        return text, now  # (the row keeps the whole record: no second encoding per node)

    def _on_map_items(self, event: Event) -> None:
        """Rows and records of a map's children, as if each were a node of its own.

        A child's key components go into its action record's row only (``explain`` reads them
        there); a child's lease (taken with its chunk's) ends with the commit of its row.
        """
        for done in event.data["children"]:
            child = Event(EventKind.MAP_ITEMS, event.run_id, done.name, ts=event.ts)
            result = done.result
            if done.stale:  # what ``explain`` says of it, as of a node's start
                start = (event.run_id, event.ts, EventKind.NODE_STARTED.value, done.name)
                self._events.append((*start, _json({"stale": done.stale})))
            if result.key:
                self._release.append(result.key)
            self._blobs.extend(result.inline.items())
            self._blobs.extend(done.inline.items())
            components = _dumps(done.components) if done.components else None
            if done.status is NodeStatus.SUCCEEDED and done.record is not None:
                made = self._index(result.key, done.name, done.record, components)
                self._attempt_rows(child, result, NodeStatus.SUCCEEDED, None, made=made)
            elif done.status is NodeStatus.DRIFTED:
                self._drifted(child, result, components or "")
            elif done.status is NodeStatus.FALLBACK:
                self._attempt_rows(child, result, NodeStatus.FALLBACK, None, fallback=True)
            else:
                self._attempt_rows(child, result, done.status, components)

    def _on_map_finished(self, event: Event) -> None:
        for key, record in event.data.get("actions", ()):
            self._index(key, event.node or "", record)

    def _drifted(self, event: Event, result: TaskResult, components: str) -> None:
        """An input changed while the node ran: no action record, a ``drifted`` row."""
        shown = ", ".join(result.drifted[:3]) + (" ..." if len(result.drifted) > 3 else "")
        note = f"input changed while the node ran: {shown}; its result was not cached"
        log.warning("%s: %s (it runs again next time)", event.node, note)
        noted = dataclasses.replace(result, error=note)  # the row's error column says why
        self._attempt_rows(event, noted, NodeStatus.DRIFTED, components)
