"""The journal's subscriber: turns run events into ``node_runs``, ``events``, ``actions`` rows.

Rows are buffered and written in one transaction per :meth:`JournalRecorder.flush` (the
scheduler flushes before it waits for workers, every 50 ms otherwise, and at the end of a run):
a thousand cached nodes cost one commit, not a thousand. Every event becomes an ``events`` row
except ``node_cached``, whose ``node_runs`` row holds the same facts. Within a transaction the write order is inline blobs, then action
records, then the node rows that name them, so a committed ``succeeded`` row always points at
outputs that exist.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..journal._journal import HOST, Journal
from ._events import Event
from ._worker import TaskResult

__all__ = ["JournalRecorder"]

_SKIP_DATA = ("result", "record", "components", "inline")


class JournalRecorder:
    """Buffers journal rows for the events of one run."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._node_runs: list[tuple[Any, ...]] = []
        self._events: list[tuple[Any, ...]] = []
        self._actions: list[tuple[str, str, str, str | None, float]] = []
        self._blobs: list[tuple[str, bytes]] = []
        self._release: list[str] = []

    def __call__(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is not None:
            handler(event)
        if event.kind == "node_cached":
            return  # its node_runs row says all there is; a warm run writes half the rows
        data = {k: v for k, v in event.data.items() if k not in _SKIP_DATA}
        self._events.append(
            (
                event.run_id,
                event.ts,
                event.kind,
                event.node,
                _json(data) if data else None,
            )
        )

    def flush(self) -> None:
        """Write everything buffered in one transaction."""
        if not (self._node_runs or self._events or self._release):
            return
        self.journal.write_batch(
            node_runs=self._node_runs,
            events=self._events,
            actions=self._actions,
            blobs=self._blobs,
            release=self._release,
        )
        self._node_runs, self._events, self._actions, self._blobs = [], [], [], []
        self._release = []

    # -- one handler per event kind that makes node rows ---------------------------------------
    def _row(
        self,
        event: Event,
        status: str,
        *,
        attempt: int = 1,
        key: str | None = None,
        components: str | None = None,
        started: float | None = None,
        finished: float | None = None,
        error: str | None = None,
        traceback: str | None = None,
        host: str = HOST,
        pid: int | None = None,
        output: str | None = None,
        fallback: bool = False,
    ) -> None:
        duration = None if started is None or finished is None else finished - started
        self._node_runs.append(
            (
                event.run_id, event.node, attempt, status, key, components, started, finished,
                duration, error, traceback, host, pid, output, int(fallback),
            )
        )  # fmt: skip

    def _on_node_cached(self, event: Event) -> None:
        self._row(event, "cached", key=event.data["key"], started=event.ts, finished=event.ts)

    def _on_node_started(self, event: Event) -> None:
        self._row(event, "running", key=event.data["key"], started=event.ts)

    def _on_node_succeeded(self, event: Event) -> None:
        result: TaskResult = event.data["result"]
        components = json.dumps(event.data["components"], separators=(",", ":"))
        self._blobs.extend(result.inline.items())
        record = json.dumps(event.data["record"], separators=(",", ":"))
        self._actions.append((result.key, event.node or "", record, components, time.time()))
        self._release.append(result.key)
        self._attempt_rows(event, result, "succeeded", components)

    def _on_node_failed(self, event: Event) -> None:
        result: TaskResult = event.data["result"]
        if result.key:
            self._release.append(result.key)
        components = event.data.get("components")
        text = json.dumps(components, separators=(",", ":")) if components else None
        self._attempt_rows(event, result, "failed", text)

    def _attempt_rows(
        self,
        event: Event,
        result: TaskResult,
        final: str,
        components: str | None,
        *,
        fallback: bool = False,
    ) -> None:
        if not result.attempts:
            self._row(event, final, key=result.key or None, components=components,
                      started=event.ts, finished=event.ts, error=result.error,
                      traceback=result.traceback, fallback=fallback)  # fmt: skip
            return
        last = len(result.attempts)
        for attempt in result.attempts:
            is_last = attempt.number == last
            self._row(
                event,
                final if is_last else "retrying",
                attempt=attempt.number,
                key=result.key,
                components=components if is_last else None,
                started=attempt.started_at,
                finished=attempt.finished_at,
                error=(result.error if is_last and final != "succeeded" else attempt.error),
                traceback=(
                    result.traceback if is_last and final != "succeeded" else attempt.traceback
                ),
                host=result.host,
                pid=result.pid,
                output=attempt.output,
                fallback=fallback and is_last,
            )

    def _on_node_fallback(self, event: Event) -> None:
        result: TaskResult = event.data["result"]
        if result.key:
            self._release.append(result.key)
        self._blobs.extend(event.data["inline"].items())
        self._attempt_rows(event, result, "fallback", None, fallback=True)

    def _on_node_skipped(self, event: Event) -> None:
        upstream = event.data.get("upstream")
        reason = f"skipped with upstream node {upstream!r}" if upstream else event.data.get("error")
        self._row(event, "skipped", error=reason, finished=event.ts)

    def _on_node_upstream_failed(self, event: Event) -> None:
        self._row(
            event, "upstream_failed", error=f"upstream node {event.data['upstream']!r} failed"
        )

    def _on_node_cancelled(self, event: Event) -> None:
        self._row(event, "cancelled", finished=event.ts)


def _json(data: dict[str, Any]) -> str:
    """Event data as JSON; the C encoder's fast path, ``str()`` for odd values."""
    try:
        return json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(data, separators=(",", ":"), default=str)
