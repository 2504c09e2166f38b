"""Read-only questions about past runs, answered from the journal's tables.

What ``explain``, ``plan``, ``status``, ``logs`` and ``runs --since`` need: the previous keyed
run of a node, the key components of a node run, the run that computed a key, typical node
durations, the live state of a run. Nothing here writes. (The audit of ``cache verify`` is
``_audit``.)
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..states import NodeStatus, RunStatus
from ._browse import interrupted_attempts
from ._journal import Journal, RunRow
from ._liveness import HOST, alive
from ._maps import item_hint, map_events, split_children, summarize

__all__ = [
    "RunSnapshot",
    "components_of",
    "did_you_mean",
    "fallback_outputs",
    "latest_attempts",
    "latest_run",
    "median",
    "median_durations",
    "node_attempts",
    "node_names",
    "parse_before",
    "parse_since",
    "previous_keyed_run",
    "producer_of",
    "run_cursor",
    "run_status",
    "start_marks",
]

#: How many of a node's most recent executions its duration estimate looks at.
ESTIMATE_WINDOW = 20
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_EARLIEST = dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc).timestamp()  # the first date there is
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# -- runs ------------------------------------------------------------------------------------
def parse_since(text: str, *, now: float | None = None, name: str = "--since") -> float:
    """A timestamp from ``"2h"``, ``"3d"``, ``"45m"``, ``"1w"`` ago or an ISO date/time (local
    time without a zone). ``ValueError`` naming ``name`` (what the user typed it in) and the
    forms accepted, or an age past the year 1."""
    match = _AGO.match(text)
    if match:
        start = (time.time() if now is None else now) - float(match[1]) * _UNITS[match[2].lower()]
        if now is None and not start >= _EARLIEST:  # (``now`` given: an age, not a date)
            raise ValueError(
                f"{name} {text!r} is further back than a date can be (before the year 1); "
                "give a shorter age such as 30m, 2h, 3d, 1w, or an ISO date (2026-11-25)"
            )
        return start
    try:
        return dt.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"cannot read {name} {text!r}: use an ISO date or time (2026-11-25, "
            "2026-11-25T14:30) or an age such as 30m, 2h, 3d, 1w"
        ) from None


def parse_before(text: str, *, name: str = "before") -> float | tuple[float, str]:
    """A page cursor (:meth:`Journal.list_runs`): ``"<started_at>,<run id>"`` (the last run
    listed, from :func:`run_cursor`) or the older form, a time in seconds since the epoch.
    ``ValueError`` naming ``name`` and the forms accepted."""
    when, comma, run_id = text.partition(",")
    try:
        value = float(when)
    except ValueError:
        value = float("nan")
    if value != value or abs(value) == float("inf") or (comma and not run_id.strip()):
        raise ValueError(
            f"{name}={text!r} is not a time in seconds since the epoch, nor a page cursor "
            "(<started_at>,<run id>: the 'next' of the page before)"
        )
    return (value, run_id.strip()) if comma else value


def run_cursor(run: Mapping[str, Any]) -> str:
    """The cursor of the page after ``run`` (:func:`parse_before` reads it back exactly)."""
    return f"{float(run['started_at'])!r},{run['id']}"


def latest_run(journal: Journal, *, workflow: str | None = None) -> RunRow | None:
    """The most recently started run (of ``workflow``), or ``None``."""
    rows = journal.list_runs(workflow=workflow, limit=1)
    return rows[0] if rows else None


def node_attempts(journal: Journal, run_id: str, node: str) -> list[dict[str, Any]]:
    """Every attempt of ``node`` in run ``run_id``, first attempt first."""
    return journal._rows(
        "SELECT * FROM node_runs WHERE run_id = ? AND node = ? ORDER BY attempt", (run_id, node)
    )


def start_marks(journal: Journal, run_id: str, node: str) -> dict[str, Any]:
    """What ``node``'s start event in ``run_id`` says of why it ran although its key may have
    been cached: ``stale`` (a data file it read had changed: the text), ``forced`` (``--force``).
    Empty when neither."""
    rows = journal._rows(
        "SELECT data FROM events WHERE run_id = ? AND node = ? AND kind = 'node_started' "
        "AND (data LIKE '%\"stale\"%' OR data LIKE '%\"forced\"%') ORDER BY id DESC LIMIT 1",
        (run_id, node),
    )
    try:
        data = json.loads(rows[0]["data"]) if rows else None
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    marks: dict[str, Any] = {}
    if isinstance(data.get("stale"), str):
        marks["stale"] = data["stale"]
    if data.get("forced") is True:
        marks["forced"] = True
    return marks


def node_names(journal: Journal, run_id: str) -> list[str]:
    """The nodes with a row in a run, in the order they started."""
    rows = journal._rows(
        "SELECT node, MIN(COALESCE(started_at, 1e300)) AS first FROM node_runs "
        "WHERE run_id = ? GROUP BY node ORDER BY first, node",
        (run_id,),
    )
    return [r["node"] for r in rows]


def no_node(run: Mapping[str, Any], node: str, known: list[str]) -> tuple[str, bool]:
    """The error for a ``node`` ``run`` has no row of (why, what next), and whether it still goes.
    The node names of ``known`` closest to ``node`` are suggested (a mistyped name)."""
    names = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "") or "none"
    going = run.get("host") != HOST or alive(run.get("pid"), run.get("pid_start"))
    close = did_you_mean(node, known)
    if run["status"] == RunStatus.RUNNING and going:  # (not killed, not marked interrupted yet)
        return (f"run {run['id']} has no node {node!r} yet{close}; its nodes so far: {names} (the "
                "run is still going: a node is listed once it starts; watch it with "
                f"`etherealfabric status {run['id']}`)"), True  # fmt: skip
    hint, word = item_hint(run["id"], node, known), run["status"].replace("running", "interrupted")
    resume = f"run the rest with `etherealfabric resume {run['id']}`"
    # every node of the run has its row (a failed or cancelled run's end writes the rest):
    # ``node`` is none of them, not a node the run did not reach
    nodes = run.get("nodes")
    whole = isinstance(nodes, int) and sum("[" not in name for name in known) >= nodes
    ended = word != "succeeded" and not hint and not whole
    if close and not hint:  # likely mistyped (a node the run did not reach has no row either)
        more = f" (the run was {word}: a node it did not reach has no row; {resume})" * ended
        return f"run {run['id']} has no node {node!r}{close}; its nodes: {names}{more}", False
    why = f": the run was {word}, it ended before that node ran" * ended
    more = f"; {resume}" if why else hint
    return f"run {run['id']} has no node {node!r}{why}; its nodes: {names}{more}", False


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'a'?)"`` (or ``'a' or 'b'``...): the names of ``known`` closest to a
    mistyped ``name`` (up to 3, case aside: difflib), as ``Workflow[name]`` suggests one;
    empty when none is close."""
    import difflib  # (only for a suggestion)

    by_lower: dict[str, str] = {}
    for known_name in known:
        by_lower.setdefault(known_name.lower(), known_name)
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3)]
    if not close:
        return ""
    listed = ", ".join(map(repr, close[:-1])) + " or " * (len(close) > 1) + repr(close[-1])
    return f" (did you mean {listed}?)"


def latest_attempts(journal: Journal, run_id: str) -> list[dict[str, Any]]:
    """The last attempt of each node of a run (what the node's status is now)."""
    return journal._rows(
        "SELECT nr.* FROM node_runs nr JOIN (SELECT node, MAX(attempt) AS attempt "
        "FROM node_runs WHERE run_id = ? GROUP BY node) last "
        "ON last.node = nr.node AND last.attempt = nr.attempt WHERE nr.run_id = ? "
        "ORDER BY COALESCE(nr.started_at, 1e300), nr.node",
        (run_id, run_id),
    )


# -- keys and their components ---------------------------------------------------------------
def previous_keyed_run(
    journal: Journal, node: str, *, workflow: str, before: float | None = None
) -> dict[str, Any] | None:
    """The last attempt of ``node`` with a cache key in a run of ``workflow`` started before
    ``before`` (any time when ``None``), with the run's ``run_started_at``."""
    # the workflow's runs newest first (runs_workflow), each asked for the node's rows by the
    # primary key: node_runs has no index by node (each warm run would scatter one entry per
    # node over it), and the node is nearly always in the latest run or so
    rows = journal._rows(
        "SELECT nr.*, r.started_at AS run_started_at FROM runs r CROSS JOIN node_runs nr "
        "WHERE r.workflow = ? AND r.started_at < ? AND nr.run_id = r.id AND nr.node = ? "
        "AND nr.cache_key IS NOT NULL ORDER BY r.started_at DESC, nr.attempt DESC LIMIT 1",
        (workflow, float("inf") if before is None else before, node),
    )
    return rows[0] if rows else None


def fallback_outputs(journal: Journal, run_id: str) -> dict[str, dict[str, Any]]:
    """The output records of the nodes of run ``run_id`` whose ``on_error`` fallback supplied
    their outputs, by node: stored like a node's, but under no action record (a fallback is
    not the node's result, so not cached), they are named by the ``node_fallback`` event."""
    found: dict[str, dict[str, Any]] = {}
    rows = journal._rows(
        "SELECT node, data FROM events WHERE run_id = ? AND kind = 'node_fallback' ORDER BY id",
        (run_id,),
    )
    for row in rows:
        try:
            outputs = json.loads(row["data"] or "{}").get("outputs")
        except (ValueError, AttributeError):
            continue
        if isinstance(outputs, dict) and row["node"]:
            found[row["node"]] = outputs
    return found


def components_of(journal: Journal, row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The key components of a node run: its own (executed, failed) or its key's action's."""
    text = row.get("components")
    if not text and row.get("cache_key"):
        text = journal._value("SELECT components FROM actions WHERE key = ?", (row["cache_key"],))
    if not text:
        return None
    try:
        components = json.loads(text)
    except ValueError:
        return None
    return components if isinstance(components, dict) else None


def producer_of(journal: Journal, key: str, *, before: float) -> dict[str, Any] | None:
    """The latest succeeded node run that computed ``key`` in a run started by ``before``."""
    # the status is written out: only then may SQLite use the partial index of succeeded rows
    rows = journal._rows(
        "SELECT nr.run_id, nr.node, nr.finished_at FROM node_runs nr "
        f"JOIN runs r ON r.id = nr.run_id WHERE nr.cache_key = ? AND nr.status = "
        f"'{NodeStatus.SUCCEEDED.value}' AND r.started_at <= ? ORDER BY r.started_at DESC LIMIT 1",
        (key, before),
    )
    return rows[0] if rows else None


def median_durations(journal: Journal, workflow: str) -> dict[str, float]:
    """Per node, the median duration of its last executions (succeeded) in ``workflow``."""
    rows = journal._rows(
        "SELECT nr.node, nr.duration FROM node_runs nr JOIN runs r ON r.id = nr.run_id "
        "WHERE r.workflow = ? AND nr.status = ? AND nr.duration IS NOT NULL "
        "ORDER BY nr.started_at DESC",
        (workflow, NodeStatus.SUCCEEDED),
    )
    samples: dict[str, list[float]] = {}
    for row in rows:
        found = samples.setdefault(row["node"], [])
        if len(found) < ESTIMATE_WINDOW:
            found.append(float(row["duration"]))
    return {node: median(values) for node, values in samples.items()}


# -- a run's live state ----------------------------------------------------------------------
@dataclass(frozen=True)
class RunSnapshot:
    """Where a run stands, as its journal rows say right now."""

    run: RunRow
    counts: dict[str, int]
    running: list[dict[str, Any]]
    now: float
    #: mapped nodes: their children's counts and durations (``journal/_maps.py``)
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        """Seconds from start to finish, or to now while it runs."""
        end = self.run["finished_at"] or self.now
        return float(end - self.run["started_at"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        keys = ("id", "workflow", "status", "started_at", "finished_at", "host", "pid", "backend")
        return {
            **{k: self.run[k] for k in keys},
            "elapsed": self.elapsed,
            "nodes": self.run["nodes"],
            "counts": self.counts,
            "running": self.running,
            "maps": self.maps,
            "error": self.run["error"],
        }


def run_status(journal: Journal, run: RunRow, *, now: float | None = None) -> RunSnapshot:
    """Counts per status (nodes without a row yet are ``pending``) and the running nodes."""
    now = time.time() if now is None else now
    counts: dict[str, int] = {}
    running = []
    recorded = map_events(journal, run["id"])
    rows, children = split_children(latest_attempts(journal, run["id"]), recorded)
    if run["status"] == RunStatus.INTERRUPTED:  # (shown so, on a home it could not mark)
        rows = interrupted_attempts(rows)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        if row["status"] == NodeStatus.RUNNING:
            started = row["started_at"] or now
            running.append(
                {"node": row["node"], "attempt": row["attempt"], "started_at": started,
                 "elapsed": max(0.0, now - started)}
            )  # fmt: skip
    pending = (run["nodes"] or 0) - len(rows)
    if pending > 0 and run["status"] == RunStatus.RUNNING:
        counts[NodeStatus.PENDING.value] = pending
    maps = {name: summarize(children[name], recorded[name]) for name in children}
    return RunSnapshot(run, counts, running, now, maps)


def median(values: Iterable[float]) -> float:
    """The median of ``values`` (not ``statistics.median``: the engine's modules imported after
    a workflow file, whose folder comes first on ``sys.path``, may find a ``statistics.py``)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
