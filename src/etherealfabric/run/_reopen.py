"""``open_run``: the results of a past run, re-opened from the journal and loaded lazily.

No workflow file is needed: the journal holds each node's final status, cache key and the
outputs it had in that run (``journal/_runoutputs.py``: not the key's latest record, which a
later execution of the same key replaces when a file the node read changed). A map's children rows are not nodes: they
are grouped back into the map's :class:`~._mapreport.MapReport` (``results.map_report``), with
the counts its ``map_started``/``map_finished`` events recorded. A node whose ``on_error``
fallback stood for it has the fallback's outputs (named by its ``node_fallback`` event).
Values load from the store on first access,
verified against their digests. A value whose record or bytes are gone since (collected by
``cache gc``, damaged) raises :class:`~etherealfabric.errors.ArtifactMissingError` or
:class:`~etherealfabric.errors.CorruptArtifactError`: re-run the workflow to recompute it.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import Settings
from ..define._definition import Definition
from ..journal import Journal
from ..journal._browse import attempts_as_shown, shown
from ..journal._history import fallback_outputs
from ..journal._maps import map_events, split_children
from ..journal._runoutputs import run_records
from ..states import NodeStatus, RunStatus
from ..store import open_run_store
from ._cache import ArtifactCache
from ._mapreport import MapReport
from ._outcome import RunOutcome
from ._results import Results

__all__ = ["open_run"]


def open_run(
    run_id: str, *, home: str | os.PathLike[str] | None = None, item: str | None = None
) -> Results:
    """The :class:`Results` of run ``run_id`` (or a unique prefix of it) in ``home``.

    ``home`` defaults to ``ETHEREALFABRIC_HOME`` or ``./.etherealfabric``; the store is the one
    the settings name. ``results["node"]["output"]`` loads a value; ``results.statuses`` gives
    every node's final status. Opening never writes to the home. ``item``: also one item of a
    map (``"square[3]"``), by the name its row has, as if it were a node (``cat`` of an item).
    """
    from ..store._signing import record_problem  # (a record's shape: an edited journal's)

    settings = Settings.resolve() if home is None else Settings.resolve(home=os.fspath(home))
    journal = Journal(settings.journal_path, read_only=True)
    try:
        run = shown(journal.get_run(run_id))  # a dead run's nodes: interrupted, not running
        outcome = RunOutcome()
        recorded = map_events(journal, run["id"])
        own, children = split_children(
            attempts_as_shown(run, journal.node_runs(run["id"])), recorded
        )
        fallbacks = fallback_outputs(journal, run["id"])
        for name, rows in children.items():
            outcome.maps[name] = map_report(name, rows, recorded[name])
        asked = [r for rows in children.values() for r in rows if r["node"] == item]
        rows = own + asked
        records = run_records(journal, rows)  # (this run's, not the key's latest record)
        for row, record in zip(rows, records, strict=True):  # attempts in order: the last counts
            name = row["node"]
            outcome.status[name] = NodeStatus(row["status"])
            outcome.outputs.pop(name, None)
            key = row["cache_key"]
            if key and row["status"] in (NodeStatus.SUCCEEDED, NodeStatus.CACHED):
                if record is not None and not record_problem(record):  # (else: gone)
                    outcome.outputs[name] = record["outputs"]
                    outcome.keys[name] = key
            elif row["status"] == NodeStatus.FALLBACK and name in fallbacks:
                outcome.outputs[name] = fallbacks[name]  # its on_error's outputs, stored too
        store = open_run_store(settings)
        root = _recorded_root(run)  # File outputs resolve under the run's root, not the cwd
        cache = ArtifactCache(journal, store, shared=settings.shared_store, root=root)
    except BaseException:
        journal.close()
        raise
    results = Results(Definition(run["workflow"]), run["id"], outcome, cache)
    results.status = RunStatus(run["status"])
    weakref.finalize(results, journal.close)
    return results


def _recorded_root(run: Mapping[str, Any]) -> str | None:
    """The root folder run ``run`` recorded (runs recorded before it was: None, the cwd)."""
    try:
        params = json.loads(run.get("params") or "{}")
    except ValueError:
        return None
    root = params.get("root") if isinstance(params, dict) else None
    return root if isinstance(root, str) and root else None


def map_report(
    name: str, rows: Sequence[Mapping[str, Any]], recorded: Mapping[str, Any]
) -> MapReport:
    """A map's report rebuilt from its children's rows (the last attempt of each counts) and
    its recorded counts, as the run that made them returned it."""
    report = MapReport(
        name,
        items=int(recorded.get("items") or 0),
        children=int(recorded.get("children") or 0),
        cached=int(recorded.get("cached") or 0),
        collected=int(recorded.get("collected") or 0),
    )
    last: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        last[row["node"]] = row
    for child, row in last.items():
        status = row["status"]
        if status in (NodeStatus.SUCCEEDED, NodeStatus.DRIFTED):
            report.executed.append(child)
        elif status == NodeStatus.FAILED:
            report.failed[child] = row["error"] or ""
        elif status == NodeStatus.SKIPPED:
            report.skipped.append(child)
        elif status == NodeStatus.FALLBACK:
            report.fallback.append(child)
    return report
