"""A node's rows in the journal, one per attempt, as the run recorder buffers them.

A started node gets a ``running`` row for its first attempt (``node_started``). When an attempt
of a retried node fails and another follows (``node_retrying``, as it happens where the backend
tells it: ``run/_retries.py``), the failed attempt's row turns ``retrying`` with its start, end,
error, traceback and captured output (:meth:`NodeRows.attempt_failed`), and the next attempt
gets its ``running`` row as it begins, after the backoff (:meth:`NodeRows.attempt_started`):
``status`` and ``show`` name the attempt running, and a run killed meanwhile keeps the failed
attempts (the running one is then ``interrupted``). When the node ends, its result's attempts
give every row again (the same primary key: the commit replaces those written meanwhile):
each attempt but the last ``retrying``, the last one ``succeeded``, ``failed``, ``fallback``
or ``skipped`` (a node whose ``on_error`` handler answered ``SKIP`` ran and failed: it keeps
its attempts, key, times, output and traceback, as a fallback does). A node stopped while an
attempt ran (Ctrl-C) keeps that attempt's number, key and start, ``cancelled``; stopped in a
retry's backoff, the next attempt is ``cancelled``, from the failure on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..journal._liveness import HOST
from ..states import EventKind, NodeStatus
from ._events import Event
from ._rowjson import dumps as _dumps

if TYPE_CHECKING:
    from ._messages import Attempt, TaskResult

__all__ = ["NodeRows"]

#: the text of each kind and status (``member.value`` is a Python-level property: 0.25 us)
_VALUES: dict[EventKind | NodeStatus, str] = {m: m.value for m in (*EventKind, *NodeStatus)}
_RUNNING, _RETRYING = NodeStatus.RUNNING.value, EventKind.NODE_RETRYING
_NO_END = (None, None, None, None)  # a running row's finished, duration, error, traceback
_NO_OUTPUT = (None, None, 0, None, None)  # ...and its pid, output, fallback, outputs, record_at
#: a node row's ``outputs`` (JSON) and ``record_at``: the record it made (``_index``) or fetched
_Made = tuple[str | None, float | None]


class NodeRows:
    """The recorder's node rows of attempts (see the module docstring)."""

    _node_runs: list[tuple[Any, ...]]
    _row_at: dict[tuple[Any, ...], int]  # (run, node, attempt) -> its buffered row
    _release: list[str]
    _blobs: list[tuple[str, bytes]]
    #: (run, node) -> the key, start and number of its last attempt that began, and when
    #: that one failed (None while it runs; a time while the retry's backoff goes on)
    _started: dict[tuple[str, str | None], tuple[str, float, int, float | None]]

    def _node_row_handlers(self) -> dict[EventKind, Callable[[Event], None]]:
        return {
            EventKind.NODE_FAILED: self._on_failed,
            EventKind.NODE_FALLBACK: self._on_fallback,
            EventKind.NODE_SKIPPED: self._on_skipped,
            EventKind.NODE_UPSTREAM_FAILED: self._on_upstream_failed,
            EventKind.NODE_CANCELLED: self._on_cancelled,
        }

    def _row(
        self,
        event: Event,
        status: NodeStatus,
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
        made: _Made = (None, None),
    ) -> None:
        duration = None if started is None or finished is None else finished - started
        self._buffer((
            event.run_id, event.node, attempt, _VALUES[status], key, components, started,
            finished, duration, error, traceback, host, pid, output, int(fallback), *made,
        ))  # fmt: skip

    def _buffer(self, row: tuple[Any, ...], attempt: int | None = None) -> None:
        # a cached node's row is kept short, (run, node, key, ts, host) for its attempt 1
        # (Journal.write_batch: the other columns are the same in every such row)
        pk = row[:3] if attempt is None else (row[0], row[1], attempt)
        at = self._row_at.setdefault(pk, len(self._node_runs))
        if at < len(self._node_runs):  # its `running` row in the same group: replaced, as the
            self._node_runs[at] = row  # commit's INSERT OR REPLACE would (one write, not two)
        else:
            self._node_runs.append(row)

    def _running(self, run_id: str, node: str, key: str, ts: float, attempt: int = 1) -> None:
        """A started attempt's ``running`` row (``_row(event, RUNNING, key, started)``)."""
        self._started[run_id, node] = (key, ts, attempt, None)
        self._buffer((run_id, node, attempt, _RUNNING, key, None, ts, *_NO_END, HOST, *_NO_OUTPUT))

    def attempt_started(self, run_id: str, node: str, attempt: int, ts: float) -> None:
        """Attempt ``attempt`` of a retried node began (``run/_retries.py``): its ``running``
        row. Nothing for a node that is not running (it ended, or never started here)."""
        running = self._started.get((run_id, node))
        if running is not None and attempt > running[2]:
            self._running(run_id, node, running[0], ts, attempt)

    def attempt_failed(self, run_id: str, node: str, failed: Attempt) -> None:
        """Attempt ``failed`` of a running node failed and another follows, told as it
        happened (``node_retrying``: ``run/_retries.py``): its ``retrying`` row, with what the
        note says of it (its start, traceback and output where the backend tells them). A
        retry reported only with the node's result has its row from that result."""
        running = self._started.get((run_id, node))
        if running is None or failed.number < running[2]:
            return
        key, start, number, _ = running
        started = failed.started_at or (start if number == failed.number else None)
        ended = failed.finished_at or time.time()
        self._row(Event(_RETRYING, run_id, node), NodeStatus.RETRYING, attempt=failed.number,
                  key=key, started=started, finished=ended, error=failed.error,
                  traceback=failed.traceback, output=failed.output)  # fmt: skip
        # the next attempt's row comes as it begins (after the backoff)
        self._started[run_id, node] = (key, start, failed.number, ended)

    def _on_failed(self, event: Event) -> None:
        result: TaskResult = event.data["result"]
        if result.key:
            self._release.append(result.key)
        components = event.data.get("components")
        text = _dumps(components) if components else None
        self._attempt_rows(event, result, NodeStatus.FAILED, text)

    def _on_fallback(self, event: Event) -> None:
        result: TaskResult = event.data["result"]
        if result.key:
            self._release.append(result.key)
        self._blobs.extend(event.data["inline"].items())
        ins = _dumps(event.data["components"]) if event.data.get("components") else None
        self._attempt_rows(event, result, NodeStatus.FALLBACK, ins, fallback=True)  # (its edges)

    def _on_skipped(self, event: Event) -> None:
        result: TaskResult | None = event.data.get("result")
        if result is not None and result.attempts:  # it ran, failed, and its handler said SKIP
            if result.key:
                self._release.append(result.key)
            ins = _dumps(event.data["components"]) if event.data.get("components") else None
            self._attempt_rows(event, result, NodeStatus.SKIPPED, ins)
            return
        upstream = event.data.get("upstream")
        reason = f"skipped with upstream node {upstream!r}" if upstream else event.data.get("error")
        self._row(event, NodeStatus.SKIPPED, error=reason, finished=event.ts)

    def _on_upstream_failed(self, event: Event) -> None:
        upstream = event.data["upstream"]
        self._row(event, NodeStatus.UPSTREAM_FAILED, error=f"upstream node {upstream!r} failed")

    def _on_cancelled(self, event: Event) -> None:
        # a node stopped while it ran (Ctrl-C) keeps its key and start, those of the attempt
        # that ran (stopped in a retry's backoff: the next one, from the failure on): it did
        # run, and the next run's explain compares with it; one that never started has neither
        key, started, attempt, ended = self._started.pop(
            (event.run_id, event.node), (None, None, 1, None)
        )
        if ended is not None:
            attempt, started = attempt + 1, ended
        if not event.data.get("running"):  # dropped before it started (fail-fast)
            key = started = None
        self._row(event, NodeStatus.CANCELLED, attempt=attempt, key=key, started=started,
                  finished=event.ts, output=event.data.get("output"))  # fmt: skip

    def _attempt_rows(
        self,
        event: Event,
        result: TaskResult,
        final: NodeStatus,
        components: str | None,
        *,
        fallback: bool = False,
        made: _Made = (None, None),
    ) -> None:
        running = self._started.pop((event.run_id, event.node), None)
        if not result.attempts:  # (after the attempts noted, if any: the backend failed)
            after = running[2] + (running[3] is not None) if running else 1
            self._row(event, final, attempt=after,
                      key=result.key or None, components=components, started=event.ts,
                      finished=event.ts, error=result.error, traceback=result.traceback,
                      fallback=fallback, made=made)  # fmt: skip
            return
        last = len(result.attempts)
        failed = final is not NodeStatus.SUCCEEDED
        for attempt in result.attempts:
            is_last = attempt.number == last
            self._row(
                event,
                final if is_last else NodeStatus.RETRYING,
                attempt=attempt.number,
                key=result.key,
                components=components if is_last else None,
                started=attempt.started_at,
                finished=attempt.finished_at,
                error=result.error if is_last and failed else attempt.error,
                traceback=result.traceback if is_last and failed else attempt.traceback,
                host=result.host,
                pid=result.pid,
                output=attempt.output,
                fallback=fallback and is_last,
                made=made if is_last else (None, None),
            )
