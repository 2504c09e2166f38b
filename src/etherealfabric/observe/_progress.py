"""Live progress of a run: a subscriber to the run-event stream.

Usage::

    from etherealfabric.observe._progress import Progress

    results = workflow.execute(subscribers=[Progress()])            # live display or lines
    results = workflow.execute(subscribers=[Progress(quiet=True)])  # failures + summary only

Two modes, chosen when the :class:`Progress` is created:

- **Live** (``file`` is a terminal, or ``force_terminal=True``): a rich display of the counts
  (finished of total, done, cached, running, failed), the elapsed time, and one line per node
  that has been running longer than ``slow_after`` seconds (name and elapsed time). Rich's own
  thread redraws it ``refresh_per_second`` times a second; events only update counters, so a
  thousand cached nodes cost no redraws. Failures are printed above the display as they happen;
  the display is removed at ``run_finished`` and a summary line printed. While it shows, log
  handlers that write to the same file (the engine's own stderr handler, say) are routed
  through rich, so their lines print above the display instead of tearing it.
- **Lines** (not a terminal, or ``quiet=True``): one line per executed or failed node
  (``[ 12/40] fit done in 1.23s``, ``[ 13/40] fit FAILED: ValueError: ...``) and per retried
  attempt, nothing per cached node, and a summary at the end (``run X succeeded: 12 executed,
  28 cached, 0 failed in 3.2s``; ``, 1 fallback, 2 skipped, 5 not run`` are added when not
  zero; "not run" means upstream failed or cancelled). With
  ``quiet=True`` only failures and the summary are written.

``[ 12/40]`` counts nodes in a final state (cached ones included) of all the run's nodes. A
node that is computed again within the run (its cached output turned out unusable) moves
between counts rather than being counted twice. Unknown event kinds are ignored.

Subscribers run in the scheduler's thread, so every handler here is a few counter updates;
rich is imported only when a live display starts, keeping ``import etherealfabric`` light.
One :class:`Progress` follows one run at a time; it may be reused for the next run.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from ..run._events import Event
from ..states import EventKind, NodeStatus
from ._logging import LOGGER

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = ["Progress", "format_duration", "printable"]

#: event kinds that put a node in its final state, and that state
FINAL_KINDS = {kind: kind.final_status for kind in EventKind if kind.final_status}
NOT_RUN = (NodeStatus.UPSTREAM_FAILED, NodeStatus.CANCELLED)
MAX_SLOW_LINES = 8


def format_duration(seconds: float, digits: int = 2) -> str:
    """``1.23s`` below a minute, then ``4m05s``, then ``2h03m``."""
    if seconds < 60:
        return f"{seconds:.{digits}f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _is_terminal(file: TextIO) -> bool:
    isatty = getattr(file, "isatty", None)
    try:
        tty = bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False
    return tty and os.environ.get("TERM") != "dumb"


def _first_line(text: str | None) -> str:
    """The first line of a node's error, without terminal escapes or control characters
    (a node's text must not recolour or move the terminal's cursor)."""
    lines = (text or "").strip().splitlines()
    if not lines:
        return "unknown error"
    return printable(lines[0])


def printable(line: str) -> str:
    """``line`` as a terminal may show it: its escape sequences removed (a node's text must
    not set the title, recolour or move the cursor), every other character that is not
    printable (a control character, a lone surrogate from a name that is not UTF-8) a ``?``."""
    line = _ESCAPES.sub("", line)
    return line if line.isprintable() else "".join(c if c.isprintable() else "?" for c in line)


#: a terminal's escape sequences (CSI, OSC and two-character ones)
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")


class Progress:
    """Shows a run's progress on ``file`` (default: ``sys.stderr``); pass it as a subscriber.

    ``slow_after`` (seconds) is when a running node gets its own line in the live display;
    ``refresh_per_second`` is how often that display is redrawn.
    """

    def __init__(
        self,
        *,
        file: TextIO | None = None,
        quiet: bool = False,
        force_terminal: bool | None = None,
        slow_after: float = 2.0,
        refresh_per_second: float = 4.0,
    ) -> None:
        self.file: TextIO = file if file is not None else sys.stderr
        self.quiet = quiet
        self.slow_after = slow_after
        self.refresh_per_second = refresh_per_second
        terminal = _is_terminal(self.file) if force_terminal is None else force_terminal
        self.live = terminal and not quiet
        self._lock = threading.Lock()  # guards _running against the refresh thread
        self._live: Live | None = None
        self._console: Console | None = None
        self._rerouted: list[logging.StreamHandler[Any]] = []
        self._reset(workflow="", total=0)
        self._handlers: dict[str, Callable[[Event], None]] = {
            EventKind.RUN_STARTED: self._on_run_started,
            EventKind.NODE_CACHED: self._finish,
            EventKind.NODE_STARTED: self._on_started,
            EventKind.NODE_RETRYING: self._on_retrying,
            EventKind.NODE_SUCCEEDED: self._on_succeeded,
            EventKind.NODE_FAILED: self._on_failed,
            EventKind.NODE_FALLBACK: self._on_failed,
            EventKind.NODE_UPSTREAM_FAILED: self._finish,
            EventKind.NODE_CANCELLED: self._finish,
            EventKind.NODE_SKIPPED: self._finish,
            EventKind.RUN_FINISHED: self._on_run_finished,
            EventKind.MAP_STARTED: self._on_map_started,
            EventKind.MAP_ITEMS: self._on_map_items,
        }

    def __call__(self, event: Event) -> None:
        """Take one event; unknown kinds are ignored."""
        handler = self._handlers.get(event.kind)
        if handler is not None:
            handler(event)

    def close(self) -> None:
        """Stop the live display, if one is showing; safe to call more than once."""
        with self._lock:
            live, self._live = self._live, None
        if live is not None:
            self._restore_logs()
            live.stop()

    # -- state ------------------------------------------------------------------------------
    def _reset(self, *, workflow: str, total: int) -> None:
        self.workflow = workflow
        self.total = total
        self.finished = 0
        self.counts: dict[str, int] = dict.fromkeys(FINAL_KINDS.values(), 0)
        self._running: dict[str, tuple[float, int]] = {}  # node -> (started, attempt)
        self._final: dict[str, str] = {}  # node -> its final status
        self._maps: dict[str, list[int]] = {}  # map -> [children, done, cached, failed]
        self._t0 = time.monotonic()

    def _finish(self, event: Event) -> None:
        """A node reached a final state (any of ``FINAL_KINDS``)."""
        status = FINAL_KINDS[event.kind]
        before = self._final.get(event.node or "")
        self._final[event.node or ""] = status
        self.counts[status] += 1
        if before is None:
            self.finished += 1
        else:  # a node computed again (its cached output was unusable): it moves, not adds
            self.counts[before] -= 1
        if event.node in self._running:
            with self._lock:
                self._running.pop(event.node, None)

    @property
    def running(self) -> int:
        """Nodes handed to the backend and not finished yet."""
        return len(self._running)

    # -- handlers (scheduler thread: keep them cheap) --------------------------------------------
    def _on_run_started(self, event: Event) -> None:
        self.close()
        self._reset(
            workflow=str(event.data.get("workflow", "")), total=int(event.data.get("nodes", 0))
        )
        if self.live:
            self._start_live()

    def _on_started(self, event: Event) -> None:
        with self._lock:
            self._running[event.node or ""] = (time.monotonic(), 1)

    def _on_retrying(self, event: Event) -> None:
        attempt = int(event.data.get("attempt", 1))
        with self._lock:
            entry = self._running.get(event.node or "")
            if entry is not None:
                self._running[event.node or ""] = (entry[0], attempt + 1)
        if not self.live and not self.quiet:
            error = _first_line(event.data.get("error"))
            self._line(f"{event.node}: attempt {attempt} failed, retrying: {error}")

    def _on_succeeded(self, event: Event) -> None:
        self._finish(event)
        if self.live or self.quiet:
            return
        result: Any = event.data.get("result")
        attempts = len(getattr(result, "attempts", ()))
        took = format_duration(result.finished_at - result.started_at) if attempts else "?"
        more = f" ({attempts} attempts)" if attempts > 1 else ""
        if event.node in self._maps:
            more = f" ({self._map_text(event.node or '')})"
        self._line(f"{self._position()} {event.node} done in {took}{more}")

    def _on_map_started(self, event: Event) -> None:
        cached = int(event.data.get("cached", 0))
        done = int(event.data.get("done", cached))  # children streamed in before it started
        with self._lock:
            self._maps[event.node or ""] = [int(event.data.get("children", 0)), done, cached, 0]

    def _on_map_items(self, event: Event) -> None:
        counts = self._maps.get(event.node or "")
        if counts is None:
            return
        children = event.data.get("children", ())
        with self._lock:
            counts[1] += len(children)
            counts[3] += sum(1 for c in children if c.status == NodeStatus.FAILED)

    def _map_text(self, name: str) -> str:
        """``1234/100000 items, 99000 cached, 2 failed``: a map's children so far."""
        total, done, cached, failed = self._maps[name]
        more = f", {failed} failed" if failed else ""
        return f"{done}/{total} items, {cached} cached{more}"

    def _on_failed(self, event: Event) -> None:
        self._finish(event)
        result = event.data.get("result")
        attempts = len(getattr(result, "attempts", ()))
        more = f" after {attempts} attempts" if attempts > 1 else ""
        if event.kind == EventKind.NODE_FALLBACK:
            more += ", using its on_error fallback"
        error = _first_line(getattr(result, "error", None))
        text = f"{self._position()} {event.node} FAILED{more}: {error}"
        if self._console is not None and self._live is not None:
            from rich.text import Text

            self._console.print(Text(text, style="bold red"))
        else:
            self._line(text)

    def _on_run_finished(self, event: Event) -> None:
        self.close()
        counts = event.data.get("counts") or {}
        c = self.counts
        executed = counts.get(
            "executed", c[NodeStatus.SUCCEEDED] + c[NodeStatus.FAILED] + c[NodeStatus.FALLBACK]
        )
        cached = counts.get("cached", c[NodeStatus.CACHED])
        failed = counts.get("failed", c[NodeStatus.FAILED])
        extra = self._extra_counts(", ")
        items_failed = sum(m[3] for m in self._maps.values())
        extra += f", {items_failed} map items failed" if items_failed else ""
        took = format_duration(time.monotonic() - self._t0, digits=1)
        status = event.data.get("status", "finished")
        self._line(
            f"run {event.run_id} {status}: {executed} executed, {cached} cached, "
            f"{failed} failed{extra} in {took}"
        )

    # -- output -------------------------------------------------------------------------------
    def _extra_counts(self, sep: str) -> str:
        """``, 1 fallback, 2 skipped, 5 not run``: the counts usually zero, when they are not."""
        not_run = sum(self.counts[s] for s in NOT_RUN)
        c = self.counts
        parts = [
            (c[NodeStatus.FALLBACK], "fallback"),
            (c[NodeStatus.SKIPPED], "skipped"),
            (not_run, "not run"),
        ]
        return "".join(f"{sep}{n} {what}" for n, what in parts if n)

    def _position(self) -> str:
        width = len(str(self.total))
        return f"[{self.finished:>{width}}/{self.total}]"

    def _line(self, text: str) -> None:
        self.file.write(text + "\n")
        self.file.flush()

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        if self._console is None:
            self._console = Console(file=self.file, force_terminal=True, markup=False)
        redirect = self.file is sys.stderr or self.file is sys.stdout
        live = Live(
            console=self._console,
            get_renderable=self._render,
            refresh_per_second=self.refresh_per_second,
            transient=True,
            redirect_stdout=redirect,
            redirect_stderr=redirect,
        )
        live.start()
        with self._lock:
            self._live = live
        self._route_logs()

    def _route_logs(self) -> None:
        """While live, log lines bound for our file print above the display, not through it."""
        from rich.file_proxy import FileProxy

        if self._console is None:
            return
        for logger in (logging.getLogger(), logging.getLogger(LOGGER)):
            for handler in logger.handlers:
                if (
                    isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler)
                    and handler.stream is self.file
                ):
                    handler.setStream(FileProxy(self._console, self.file))
                    self._rerouted.append(handler)

    def _restore_logs(self) -> None:
        handlers, self._rerouted = self._rerouted, []
        for handler in handlers:
            handler.setStream(self.file)

    def _render(self) -> RenderableType:
        """The live display; called from rich's refresh thread."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        with self._lock:
            running = [(name, now - t, a) for name, (t, a) in self._running.items()]
        c = self.counts
        head = Table.grid(padding=(0, 1))
        head.add_column(no_wrap=True, overflow="ellipsis", max_width=40)
        head.add_row(
            Text(self.workflow or "run", style="bold"),
            ProgressBar(total=max(self.total, 1), completed=self.finished, width=24),
            Text(f"{self.finished}/{self.total} · {format_duration(now - self._t0, digits=1)}"),
        )
        counts = Text.assemble(
            f"{c[NodeStatus.SUCCEEDED]} done · {c[NodeStatus.CACHED]} cached · {len(running)} running · ",
            (f"{c[NodeStatus.FAILED]} failed", "bold red" if c[NodeStatus.FAILED] else ""),
            self._extra_counts(" · "),
        )
        slow = sorted((r for r in running if r[1] >= self.slow_after), key=lambda r: -r[1])
        lines: list[Any] = [head, counts]
        with self._lock:
            maps = [(n, self._map_text(n)) for n in self._maps if n in self._running]
        for name, text in maps[:MAX_SLOW_LINES]:
            lines.append(Text(f"  {name}: {text}"))
        if slow:
            table = Table.grid(padding=(0, 2))
            table.add_column(no_wrap=True, overflow="ellipsis", max_width=50)
            table.add_column(no_wrap=True)
            for name, elapsed, attempt in slow[:MAX_SLOW_LINES]:
                retry = f" (attempt {attempt})" if attempt > 1 else ""
                took = format_duration(elapsed, digits=1)
                table.add_row(f"  {name}", Text(f"running {took}{retry}", style="yellow"))
            lines.append(table)
        if len(slow) > MAX_SLOW_LINES:
            lines.append(Text(f"  … and {len(slow) - MAX_SLOW_LINES} more running"))
        return Group(*lines)
