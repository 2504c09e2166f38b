"""What the web UI reads from the journal, under the names the views use.

All SQL lives in the journal layer: the bulk, read-only questions a page asks (a run's attempts
and state, its graph rows, a polling stamp, failures, cache sizes, hit rates) are
:mod:`etherealfabric.journal.browse`, each answered in one or two statements so that a journal
of 10,000 runs and a run of 5,000 nodes stay fast; the questions the CLI also asks (explain, a
node's attempts, ``--since``) come from ``journal._history`` and ``observe._explain``. This
module only names them for the views and adds what is not SQL (a run's parameters, an action
record's outputs).

Every function takes a :class:`~etherealfabric.journal.Journal` opened read-only (see
:func:`open_journal`). A run recorded ``running`` whose process (on this host) is gone is shown
``interrupted`` (:func:`effective`), as the CLI would mark it; the UI never writes the mark.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..journal import Journal, browse
from ..journal._history import fallback_outputs
from ..journal._runoutputs import run_records
from ..states import NodeStatus

__all__ = [
    "NOT_RUN",
    "RunState",
    "attempts_light",
    "cache_stats",
    "effective",
    "failure_count",
    "failures",
    "graph_rows",
    "hit_rates",
    "map_items",
    "map_names",
    "open_journal",
    "output_records",
    "run_params",
    "run_state",
    "run_version",
    "workflows",
]

RunState = browse.RunState
NOT_RUN = browse.NOT_RUN
open_journal = browse.open_reader
effective = browse.shown
workflows = browse.workflow_names
run_version = browse.run_stamp
attempts_light = browse.run_attempts
run_state = browse.run_state
failures = browse.failed_attempts
failure_count = browse.failure_count
graph_rows = browse.run_graph
cache_stats = browse.cache_sizes
hit_rates = browse.hit_rates
interrupted_attempts = browse.interrupted_attempts
map_items = browse.map_items
map_names = browse.map_names


def run_params(run: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a run recorded (``target``, ``backend``, ...), ``{}`` when none."""
    try:
        params = json.loads(run.get("params") or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def output_records(journal: Journal, row: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The outputs the node of ``row`` (its ``node_runs`` row) had in that run, not in the
    latest record of its key (journal/_runoutputs.py), or those its ``on_error`` fallback
    supplied: name, serializer, size, type, digest, inline."""
    if not row:
        return []
    if row.get("status") == NodeStatus.FALLBACK:
        # its on_error handler's outputs: stored, under no action record (a fallback is not
        # the node's result, so not cached), named by its node_fallback event, as `cat` and
        # open_run find them (a later run's record of its key holds another value)
        outputs = fallback_outputs(journal, str(row["run_id"])).get(str(row["node"])) or {}
    elif not row.get("cache_key"):
        return []
    else:
        record = run_records(journal, [row])[0]
        outputs = (record or {}).get("outputs") or {}
    return [
        {
            "name": name,
            **{k: out.get(k) for k in ("serializer", "size", "type", "digest", "inline")},
        }
        for name, out in outputs.items()
        if isinstance(out, Mapping)
    ]
