"""The answers of the JSON API, as plain dicts: one function per endpoint, no web framework.

Each function opens nothing itself: it is given a read-only :class:`Journal` (the app opens a
fresh one per request, so a request always sees the latest committed rows, and closes it at
once; SQLite's WAL lets a run write meanwhile). Explanations come from
:func:`etherealfabric.observe.explain_node`, a run's live state from ``journal.browse``.
"""

from __future__ import annotations

import itertools
import json
import pprint
import reprlib
import time
from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..errors import DamagedJournalError, EtherealFabricError
from ..journal import Journal
from ..journal import _history as history
from ..observe._explain import NodeNotInRunError, explain_node
from ..states import NodeStatus, RunStatus
from . import _graphs
from . import _queries as q
from ._items import map_page
from ._layout import CANVAS_FROM

__all__ = [
    "NotFound",
    "NotYet",
    "cache_view",
    "graph_view",
    "items_view",
    "node_view",
    "page_view",
    "resume_line",
    "run_view",
    "runs_view",
    "script_json",
    "status_view",
]

ENDED_BADLY = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)
MAX_RUNS = 1000
FAILURES_SHOWN = 50  # failed attempts listed on a run's page (the nodes' own first)
ERROR_CUT = 1000  # characters of an error shown in "Failed" before its "show all"
TRACEBACK_OPEN = 4000  # a traceback up to this long is shown open; a longer one on a click
ITEMS_PAGE = 100  # a map's items listed at a time (a map of thousands pages through them)


class NotFound(EtherealFabricError):
    """An unknown run or node (the API answers 404 with this message)."""


class NotYet(NotFound):
    """A node a run still going (in another process) has not reached yet: 404 too, but the
    node's page reloads itself until the node starts."""


def _run(journal: Journal, run_id: str) -> dict[str, Any]:
    try:
        return q.effective(journal.get_run(run_id), journal)
    except DamagedJournalError:  # not the run's fault: the 503 naming the file
        raise
    except EtherealFabricError as exc:
        raise NotFound(str(exc)) from exc


def _public(run: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A run row for the API: the effective status, params parsed, the duration so far."""
    row = {k: v for k, v in run.items() if k not in ("params", "pid_start")}
    row["params"] = q.run_params(run)
    end = run["finished_at"] or (now if run["status"] == RunStatus.RUNNING else None)
    row["duration"] = None if end is None else max(0.0, end - run["started_at"])
    return row


# -- runs ----------------------------------------------------------------------------------------
def runs_view(
    journal: Journal | None,
    *,
    workflow: str | None = None,
    status: str | None = None,
    since: str | None = None,
    limit: int = 100,
    before: str | None = None,
) -> dict[str, Any]:
    """Runs newest first (filtered; ``before``: the ``next`` of the page before, or the older
    cursor, a time in seconds since the epoch), the workflows known, how many are in
    progress, and whether more runs match than the ``limit`` shown (``more``: the page links
    to them, with ``next``, the last run's ``started_at,id``: runs started at the same time
    are listed once each)."""
    if status and status not in {s.value for s in RunStatus}:
        known = ", ".join(s.value for s in RunStatus)
        raise ValueError(f"status={status!r} is not one of {known}")
    end = history.parse_before(before) if before else None
    if journal is None:
        return {"runs": [], "workflows": [], "running": 0, "journal": False, "more": False}
    start = history.parse_since(since, name="the 'since' filter") if since else None
    limit = max(1, min(limit, MAX_RUNS))
    # a run shown interrupted is recorded running: filter after the liveness check
    asked = RunStatus.RUNNING.value if status == RunStatus.INTERRUPTED else status

    def listed(with_status: str | None) -> list[Any]:  # one more than shown: are there more?
        return journal.list_runs(workflow=workflow or None, status=with_status, since=start,
                                 before=end, limit=limit + 1)  # fmt: skip

    runs = [q.effective(r, journal) for r in listed(asked or None)]
    if status == RunStatus.INTERRUPTED:
        marked = listed(status)
        runs = sorted(
            [r for r in runs if r["status"] == status] + marked,
            key=lambda r: (r["started_at"], r["id"]),
            reverse=True,
        )
    elif status:
        runs = [r for r in runs if r["status"] == status]
    more, runs = len(runs) > limit, runs[:limit]
    for run in runs:  # a run going: its counts so far, as `runs` has them (the row's: at its end)
        if run["status"] == RunStatus.RUNNING and run.get("executed") is None:
            run["executed"], run["cached"], run["failed"] = journal.committed_counts(run["id"])
    now = time.time()
    return {
        "runs": [_public(r, now) for r in runs],
        "workflows": q.workflows(journal),
        "running": sum(r["status"] == RunStatus.RUNNING for r in runs),
        "journal": True,
        "more": more,
        "next": history.run_cursor(runs[-1]) if more and runs else None,
    }


# -- one run -------------------------------------------------------------------------------------
def resume_line(run: Mapping[str, Any], home_option: str = "") -> str:
    """What to type to resume (or follow) this run; one line, no button."""
    status, run_id = run["status"], run["id"]
    if status == RunStatus.RUNNING:
        return f"in progress: follow it with `etherealfabric status {run_id}{home_option}`"
    if status == RunStatus.SUCCEEDED:
        return "succeeded: nothing to resume"
    if q.run_params(run).get("target"):
        return (
            f"to resume: `etherealfabric resume {run_id}{home_option}` "
            "(completed nodes come from the cache)"
        )
    return (
        "to resume: run the script that called workflow.execute() again "
        "(completed nodes come from the cache)"
    )


def run_view(
    journal: Journal, run_id: str, *, home_option: str = "", state: q.RunState | None = None
) -> dict[str, Any]:
    """A run: its row, counts, running nodes, failed nodes with tracebacks, the resume line."""
    run = _run(journal, run_id)
    state = state or q.run_state(journal, run)
    return {
        "run": _public(run, state.now),
        "counts": state.counts,
        "running": state.running,
        "failures": q.failures(journal, run["id"], FAILURES_SHOWN),
        "failures_total": q.failure_count(journal, run["id"]),
        "resume": resume_line(run, home_option),
        "version": _graphs.stamp(journal, run),
    }


def status_view(
    journal: Journal, run_id: str, *, version: str | None = None, state: q.RunState | None = None
) -> dict[str, Any]:
    """The run's live state for polling: ``unchanged`` when ``version`` is still current.

    The version is the rows' stamp and the run's status *as shown*: a run whose process died
    turns ``interrupted`` without a row changing, and a page polling it must hear of it.
    ``graph`` names the structure of the run's graph (its nodes and edges): a page redraws
    its graph when it changes (edges are learnt as nodes finish), not only on new nodes;
    ``size``: its number of nodes (past :data:`CANVAS_FROM`, the page draws it on a canvas).
    """
    run = _run(journal, run_id)
    current = _graphs.stamp(journal, run)
    now = state.now if state else time.time()
    head = {"version": current, "run": _public(run, now)}
    if version == current:  # nothing new was committed: only the clock moved
        return {**head, "unchanged": True}
    state = state or q.run_state(journal, run, now=now)
    drawn, drawn_statuses = _graphs.drawing(journal, run)  # kept per version: the graph's too
    # every node of the graph: those without a row too (pending, or not run once it ended)
    statuses = _shown(run, {**drawn_statuses, **state.statuses})
    return {**head, "counts": state.counts, "running": state.running,
            "statuses": statuses, "attempts": state.attempts,
            "graph": drawn.shape, "size": len(drawn.positions)}  # fmt: skip


_UNFINISHED = (NodeStatus.RUNNING.value, NodeStatus.RETRYING.value)


def _shown(run: Mapping[str, Any], statuses: dict[str, str]) -> dict[str, str]:
    """The graph's statuses as the run is shown: a run whose process died has its running
    nodes interrupted (its nodes never started are ``not_run``: ``browse.run_graph``)."""
    if run["status"] != RunStatus.INTERRUPTED:
        return statuses
    return {n: NodeStatus.INTERRUPTED.value if s in _UNFINISHED else s for n, s in statuses.items()}


def graph_view(
    journal: Journal, run_id: str, *, href: str = "", form: str = "nodes"
) -> dict[str, Any]:
    """The run's graph laid out in layers, with each node's status; ``form``: ``nodes`` (the
    documented ``{nodes: [{node, x, y}], edges: [{from, to}]}``), ``compact`` (flat arrays,
    see :attr:`Layout.compact`) or ``svg`` (``{svg, size}``: the drawing, its nodes linking to
    ``href`` + name).

    The layout is kept per graph structure and the rows per version stamp (see ``_graphs``):
    reloading a run's page, or following a live run, never lays the graph out again.
    """
    run = _run(journal, run_id)
    drawn, statuses = _graphs.drawing(journal, run)
    statuses = _shown(run, statuses)
    if form == "svg":
        return {"svg": _graphs.svg(journal, run, statuses, drawn, href),
                "size": len(drawn.positions)}  # fmt: skip
    shape = drawn.compact if form == "compact" else drawn.to_dict()
    return {**shape, "statuses": statuses}


#: Run pages of finished runs, ready to serve, by (run id, version stamp, home option, href).
_PAGES: _graphs.Kept[tuple[str, str, str, str], dict[str, Any]] = _graphs.Kept(8)


def page_view(journal: Journal, run_id: str, *, home_option: str, href: str) -> dict[str, Any]:
    """Everything the run page is served with, from one read of the run's attempts: the run
    (:func:`run_view`), its first poll (``state_json``, :func:`status_view` as JSON) and its
    graph: ``svg`` up to :data:`CANVAS_FROM` nodes, else ``graph_json``, the compact layout
    the page draws on a canvas. A finished run's page is kept until its version stamp changes.
    """
    run = _run(journal, run_id)
    if run["status"] == RunStatus.RUNNING:
        return _page(journal, run, home_option, href)
    key = (run["id"], _graphs.stamp(journal, run), home_option, href)
    return _PAGES.get_or(key, lambda: _page(journal, run, home_option, href))


def _page(journal: Journal, run: dict[str, Any], home_option: str, href: str) -> dict[str, Any]:
    state = q.run_state(journal, run)
    drawn, statuses = _graphs.drawing(journal, run)
    big = len(drawn.positions) > CANVAS_FROM
    return {
        "run": run_view(journal, run["id"], home_option=home_option, state=state),
        "state_json": script_json(status_view(journal, run["id"], state=state)),
        "svg": None if big else _graphs.svg(journal, run, _shown(run, statuses), drawn, href),
        "graph_json": script_json(drawn.compact) if big else None,
    }


def script_json(value: Any) -> str:
    """JSON to put inside a ``<script type="application/json">`` (no ``</script>`` in it)."""
    return json.dumps(value, default=str, separators=(",", ":")).replace("<", "\\u003c")


# -- one node ------------------------------------------------------------------------------------
def node_view(
    journal: Journal, run_id: str, node: str, settings: Settings | None = None
) -> dict[str, Any]:
    """A node of a run: attempts with logs, key components, the explain diff, its outputs, and
    a map's first page of items (the cached ones listed from the store of ``settings``)."""
    run = _run(journal, run_id)
    attempts = history.node_attempts(journal, run["id"], node)
    if not attempts:  # (as the CLI says it: its nodes so far, and whether it may yet start)
        text, going = history.no_node(run, node, sorted(q.run_state(journal, run).statuses))
        raise (NotYet if going else NotFound)(text)
    last = attempts[-1]
    try:
        explanation: dict[str, Any] | None = explain_node(journal, run["id"], node).to_dict()
    except (NodeNotInRunError, ValueError):
        explanation = None
    components = history.components_of(journal, last)
    if run["status"] == RunStatus.INTERRUPTED:  # as `show` has them once the run is marked
        attempts = q.interrupted_attempts(attempts)
        last = attempts[-1]
    status = last["status"]
    is_map = node in q.map_names(journal, [run["id"]])
    return {
        "run": _public(run, time.time()),
        "node": node,
        "status": status,
        "attempts": [{k: v for k, v in a.items() if k not in _NOT_SHOWN} for a in attempts],
        "components": components,
        "inputs": _inputs(components),
        "explain": explanation,
        "outputs": q.output_records(journal, last)
        if status in (NodeStatus.SUCCEEDED, NodeStatus.CACHED, NodeStatus.FALLBACK)
        else [],
        "items": _items(journal, run, node, settings) if is_map else None,
    }


#: the columns of a node's rows its page does not show as they are (its outputs: "outputs")
_NOT_SHOWN = frozenset({"components", "outputs", "record_at"})
_SQL_INT_MAX = 2**63 - 1
_ITEM_STATUSES = tuple(s.value for s in NodeStatus)


def items_view(
    journal: Journal, run_id: str, node: str, *, offset: int = 0, limit: int = ITEMS_PAGE,
    status: str | None = None, settings: Settings | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A page of the items of the map ``node`` (see :func:`._items.map_page`: the cached ones
    listed from the store of ``settings``); NotFound when ``node`` is not a map of the run."""
    run = _run(journal, run_id)
    if node not in q.map_names(journal, [run["id"]]):
        raise NotFound(f"{node!r} is not a map of run {run['id']}: it has no items")
    if not 0 <= offset <= _SQL_INT_MAX or not 1 <= limit <= 1000:  # (past it: SQLite refuses)
        raise ValueError(
            f"offset={offset} and limit={limit}: give 0 <= offset < 2**63, 1 <= limit <= 1000"
        )
    if status is not None and status not in _ITEM_STATUSES:
        raise ValueError(
            f"status={status[:40]!r} is no status an item can have; give one of "
            f"{', '.join(_ITEM_STATUSES)} (or no status: every item)"
        )
    return _items(journal, run, node, settings, offset=offset, limit=limit, status=status)


def _items(
    journal: Journal, run: Mapping[str, Any], node: str, settings: Settings | None, **page: Any
) -> dict[str, Any]:
    """The page (:func:`_items.map_page`: the children that ran, then the cached ones)."""
    shown = map_page(journal, run, node, settings, **{"offset": 0, "limit": ITEMS_PAGE,
                                                       "status": None, **page})  # fmt: skip
    if run["status"] == RunStatus.INTERRUPTED:  # as the node table shows them
        shown["items"] = q.interrupted_attempts(shown["items"])
        counts = shown["counts"]  # (its items that were running when the run's process died)
        if NodeStatus.RUNNING.value in counts:
            gone = counts.pop(NodeStatus.RUNNING.value)
            cut = NodeStatus.INTERRUPTED.value
            counts[cut] = counts.get(cut, 0) + gone
    return shown


def _inputs(components: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """Each input: its name, the upstream node and output, and the digest read."""
    found = []
    for name, refs in ((components or {}).get("inputs") or {}).items():
        for ref in refs if isinstance(refs, list) else []:
            source, _, digest = str(ref).rpartition("@")
            upstream, _, output = source.rpartition(".")
            found.append({"input": name, "node": upstream, "output": output, "digest": digest})
    return found


# -- outputs -------------------------------------------------------------------------------------
PREVIEW_BYTES = 2_000_000
PREVIEW_ROWS = 10


class _Repr(reprlib.Repr):
    """``reprlib``'s short repr, with a dict's keys in the dict's own order (``reprlib`` sorts
    them; ``etherealfabric cat`` prints them as the dict has them)."""

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        fill = str(getattr(self, "fillvalue", "..."))  # (an attribute from Python 3.12)
        if not x:
            return "{}"
        if level <= 0:
            return "{" + fill + "}"
        pieces = [
            f"{self.repr1(key, level - 1)}: {self.repr1(x[key], level - 1)}"
            for key in itertools.islice(x, self.maxdict)
        ]
        if len(x) > self.maxdict:
            pieces.append(fill)
        return "{" + ", ".join(pieces) + "}"


_REPR = _Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2000, 2000, 50, 50


PREVIEW_CHARS = 20_000


def preview(value: Any) -> dict[str, Any]:
    """A small view of a value, readable as ``etherealfabric cat`` prints it: a data frame's
    head as a table (its index first: ``index`` names it), a series as its text, a string as
    itself, containers pretty-printed, anything else as its ``repr`` (shortened). The page
    shows every part as text (escaped), never as markup."""
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if hasattr(value, "head") and hasattr(value, "columns") and hasattr(value, "shape"):
        head = value.head(PREVIEW_ROWS)
        indexed = hasattr(head, "index") and hasattr(head, "iloc")  # pandas: show its index
        if hasattr(head, "to_pandas") and not hasattr(head, "iloc"):
            head = head.to_pandas()  # polars and arrow tables: no index of their own
        columns = [str(c) for c in head.columns]
        levels = int(getattr(head.index, "nlevels", 1)) if indexed else 0
        rows = [
            [_cell(v) for v in (*row[0], *row[1:])] if levels > 1 else [_cell(v) for v in row]
            for row in head.itertuples(index=indexed)
        ]  # a MultiIndex's value is a tuple: one cell per level
        table: dict[str, Any] = {
            "kind": "table",
            "columns": columns,
            "rows": rows,
            "shape": list(value.shape),
        }
        if indexed:
            names = [None if n is None else str(n) for n in getattr(head.index, "names", [None])]
            joined = None if all(n is None for n in names) else ", ".join(n or "" for n in names)
            table["index"] = names[0] if levels == 1 else joined
            table["index_names"] = names  # each row starts with one value per name
        return {**table, "type": kind}
    if isinstance(value, str):
        text = value
    elif type(value).__name__ == "Series" and hasattr(value, "to_string"):
        text = str(value.to_string(max_rows=PREVIEW_ROWS * 4))
    elif isinstance(value, (dict, list, tuple, set, frozenset)):
        try:
            text = pprint.pformat(value, width=100, compact=True, sort_dicts=False)
        except Exception:  # a value whose repr fails: say what it is
            text = _REPR.repr(value)
        if len(text) > PREVIEW_CHARS:
            text = _REPR.repr(value)
    else:
        text = _REPR.repr(value)
    if len(text) > PREVIEW_CHARS:
        text = text[:PREVIEW_CHARS] + f"\n… ({len(text) - PREVIEW_CHARS} more characters)"
    return {"kind": "text", "text": text, "type": kind}


def _cell(value: Any) -> Any:
    """A table cell: numbers, booleans, None and text as they are (the page shows them as
    ``cat`` prints them: ``True``, ``None``), NaN as ``NaN``, anything else as its text (a
    timestamp ``2026-01-02 00:00:00``, not ``Timestamp('...')``)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):  # (NaN as pandas prints it; the page shows None as None)
        if value != value:
            return "NaN"
        return value if abs(value) != float("inf") else str(value)
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # numpy scalars
        return _cell(value.item())
    try:
        text = str(value)
    except Exception:
        text = _REPR.repr(value)
    return text if len(text) <= 2000 else text[:2000] + "…"


def cache_view(journal: Journal | None, *, workflow: str | None = None) -> dict[str, Any]:
    """Cache sizes by workflow and node, and the hit rate of recent runs."""
    if journal is None:
        empty: dict[str, Any] = {"records": 0, "bytes": 0, "inline_bytes": 0, "stored_bytes": 0}
        return {**empty, "by_workflow": [], "by_node": [], "runs": []}
    return {**q.cache_stats(journal), "runs": q.hit_rates(journal, workflow=workflow)}
