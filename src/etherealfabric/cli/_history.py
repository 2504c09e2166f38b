"""``runs``, ``show``, ``status`` and ``logs``: what the journal recorded about past runs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..errors import EtherealFabricError, RunNotFoundError
from ..journal._browse import attempts_as_shown, shown
from ..states import NodeStatus, RunStatus
from ._common import (
    EXIT_FAILED,
    _console,
    _echo_json,
    _fail,
    _get_run,
    _home_option,
    _journal,
    _json_option,
    _no_node,
    _note_unknown_workflow,
    _print_table,
    _run_json,
    _secs,
    _settle,
    _table,
    _when,
)

__all__ = ["logs", "runs", "show", "status"]

ENDED_BADLY = (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)


@click.command(short_help="List recent runs, newest first.")
@click.option("--workflow", "-w", default=None, help="Only runs of this workflow.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in RunStatus]),
    default=None,
    help="Only runs with this status.",
)
@click.option(
    "--since", default=None, help="Only runs started since: an ISO date/time or an age (2h, 3d)."
)
@click.option("--limit", type=click.IntRange(min=1, max=2**63 - 1), default=20, show_default=True,
              metavar="N", help="At most N runs.")  # fmt: skip
@click.option(
    "--before",
    default=None,
    metavar="RUN",
    help="The next page: only runs listed after RUN (the last run id shown; or a "
    "'started_at,id' cursor, or a time in seconds since the epoch).",
)
@_home_option
@_json_option
def runs(
    workflow: str | None,
    status: str | None,
    since: str | None,
    limit: int,
    before: str | None,
    home: str | None,
    as_json: bool,
) -> None:
    """List recent runs, newest first (--before RUN: the page after RUN)."""
    from ..journal import _history as history
    from ..journal._deadruns import committed_counts

    try:
        start = None if since is None else history.parse_since(since)
    except ValueError as exc:
        _fail(str(exc))
    with _journal(home) as journal:
        _settle(journal)
        end = None if before is None else _cursor(journal, before)
        rows = journal.list_runs(
            workflow=workflow, status=status, since=start, limit=limit, before=end
        )
        rows = [shown(r, journal) for r in rows]  # a dead run of a read-only home: interrupted
        for r in rows:  # a run going: its counts so far (the row gets them when it ends)
            if r["status"] == RunStatus.RUNNING and r["executed"] is None:
                r["executed"], r["cached"], r["failed"] = committed_counts(journal.conn, r["id"])
        if not rows and workflow is not None:
            _note_unknown_workflow(journal, workflow)
    if as_json:
        _echo_json([_run_json(r) for r in rows])
        return
    table = _table(
        "run", "workflow", "status", "started", "duration", "executed", "cached", "failed"
    )
    for r in rows:
        duration = (r["finished_at"] - r["started_at"]) if r["finished_at"] else None
        table.add_row(
            r["id"], r["workflow"], r["status"], _when(r["started_at"]), _secs(duration),
            str(r["executed"] or 0), str(r["cached"] or 0), str(r["failed"] or 0),
        )  # fmt: skip
    _print_table(_console(), table)


def _cursor(journal: Any, text: str) -> float | tuple[float, str]:
    """``--before``: a run (its id, or the start of one) as the cursor after it, or a cursor
    or time as ``parse_before`` reads them; else a one-line error naming the flag."""
    from ..journal import _history as history

    try:
        run = journal.get_run(text)
    except RunNotFoundError:
        try:
            return history.parse_before(text, name="--before")
        except ValueError:
            _fail(
                f"--before {text!r}: no run has that id, and it is not a time in seconds "
                "since the epoch nor a 'started_at,id' cursor; give the last run id of the "
                "page before (`etherealfabric runs`)"
            )
    except EtherealFabricError as exc:  # an id several runs start with
        _fail(f"--before: {exc}")
    return (float(run["started_at"]), str(run["id"]))


@click.command(short_help="One run's nodes: status, timing, cache hits, keys.")
@click.argument("run_id")
@click.argument("node", required=False)
@click.option("--items", is_flag=True, help="With NODE, a map: list its items (children).")
@click.option(
    "--status",
    "only",
    type=click.Choice([s.value for s in NodeStatus]),
    default=None,
    help="With --items: only items with this status (failed...).",
)
@_home_option
@_json_option
def show(
    run_id: str, node: str | None, items: bool, only: str | None, home: str | None, as_json: bool
) -> None:
    """Show one run: each node's status, timing and cache hit (a map: one row with counts).

    With NODE, only that node's attempts; ``--items`` lists a map's children, the cached ones
    included (``--status failed``: only the failed ones).
    """
    from ..config import Settings
    from ..journal import _maps as maps

    if (items or only) and (node is None or not items):
        raise click.UsageError("--items NODE lists a map's items; --status goes with --items")
    with _journal(home) as journal:
        run_row = _get_run(journal, run_id)
        recorded = maps.map_events(journal, run_row["id"])
        if node is not None and items:
            rows = maps.map_items(journal, run_row["id"], node)
            digest = maps.index_digest(journal, run_row["id"], node, recorded.get(node))
            if node not in recorded and digest is None and run_row["status"] == "running":
                _no_node(
                    run_row, node, sorted({n["node"] for n in journal.node_runs(run_row["id"])})
                )
            if node not in recorded and digest is None:
                _fail(f"node {node!r} is not a map whose items run {run_row['id']} knows")
            settings = Settings.resolve(home=home)
            cached, note = maps.list_cached(node, rows, digest, settings)
            listed = [r for r in rows + cached if only is None or r["status"] == only]
            _show_items(node, listed, recorded.get(node) or {}, as_json, note)
            return
        nodes = attempts_as_shown(run_row, journal.node_runs(run_row["id"]))
    own, children = maps.split_children(nodes, recorded)
    if node is not None:
        known = sorted({n["node"] for n in own} | set(children))
        item = [r for rows in children.values() for r in rows if r["node"] == node]
        own = [n for n in own if n["node"] == node] or item  # a map's item: its attempts
        children = {m: c for m, c in children.items() if m == node}
        if not own and not children:
            _no_node(run_row, node, known)
    summaries = {m: maps.summarize(children[m], recorded[m]) for m in children}
    values = _workflow_params(run_row)
    if as_json:
        _echo_json({"run": _run_json(run_row), "params": values, "nodes": own, "maps": summaries})
        return
    console = _console()
    console.print(
        f"run {run_row['id']} of {run_row['workflow']!r}: {run_row['status']} "
        f"(started {_when(run_row['started_at'])}, backend {run_row['backend']})"
    )
    if values:
        shown = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in values.items())
        console.print(f"params: {shown}", highlight=False, markup=False)
    table = _table("node", "attempt", "status", "duration", "key", "error")
    for n in own:
        table.add_row(
            n["node"], str(n["attempt"]), n["status"], _secs(n["duration"]),
            (n["cache_key"] or "")[:12], (n["error"] or "")[:80],
        )  # fmt: skip
    _print_table(console, table)
    for name, summary in summaries.items():
        console.print(f"map {name}: {_map_text(summary)}", highlight=False, markup=False)
        failed = summary.get("failed_items") or []
        if failed:
            more = f" (show {run_row['id']} {name} --items --status failed)"
            console.print(f"  failed items: {', '.join(failed)}{more}", highlight=False)


def _map_text(summary: dict[str, Any]) -> str:
    """A map's row: its items and what became of them, and its children's durations."""
    counts = summary["counts"]
    parts = [f"{summary['items']} items"]
    if summary["children"] != summary["items"]:
        parts.append(f"{summary['children']} distinct")
    parts.append(f"{summary['cached']} cached")
    parts += [f"{n} {status}" for status, n in sorted(counts.items())]
    if summary["retried"]:
        parts.append(f"{summary['retried']} retries")
    if summary["p50"] is not None:
        parts.append(
            f"p50 {_secs(summary['p50'])} p90 {_secs(summary['p90'])} max {_secs(summary['max'])}"
        )
    return ", ".join(parts)


def _show_items(
    node: str,
    rows: list[dict[str, Any]],
    recorded: dict[str, Any],
    as_json: bool,
    note: str | None,
) -> None:
    if as_json:
        _echo_json({"node": node, "map": recorded, "items": rows, "note": note})
        return
    table = _table("item", "attempt", "status", "duration", "key", "error")
    for n in rows:
        table.add_row(
            n["node"], str(n["attempt"] or "-"), n["status"], _secs(n["duration"]),
            (n["cache_key"] or "")[:12], (n["error"] or "")[:80],
        )  # fmt: skip
    console = _console()
    _print_table(console, table)
    counts: dict[str, int] = {}
    for n in rows:
        counts[n["status"]] = counts.get(n["status"], 0) + 1
    shown = ", ".join(f"{c} {s}" for s, c in sorted(counts.items()))
    rows_word = "row" if len(rows) == 1 else "rows"
    console.print(f"{len(rows)} {rows_word}: {shown or 'none'}", highlight=False, markup=False)
    if note:
        console.print(note, highlight=False, markup=False)


def _workflow_params(run_row: dict[str, Any]) -> dict[str, Any]:
    """The workflow parameters recorded with a run (see define/_params.py), by dotted name."""
    try:
        recorded = json.loads(run_row.get("params") or "{}")
    except ValueError:
        return {}
    values = recorded.get("workflow_params") if isinstance(recorded, dict) else None
    return values if isinstance(values, dict) else {}


@click.command(short_help="Where a run stands now, even while it is running.")
@click.argument("run_id", required=False)
@click.option(
    "--workflow", "-w", default=None, help="Without RUN_ID: the latest run of this workflow."
)
@_home_option
@_json_option
def status(run_id: str | None, workflow: str | None, home: str | None, as_json: bool) -> None:
    """Where a run stands now (default: the latest run), even while another process runs it.

    Exits with 1 when the run failed, was cancelled or was interrupted.
    """
    from ..journal import _history as history

    with _journal(home) as journal:
        _settle(journal)
        row = (
            _get_run(journal, run_id) if run_id else history.latest_run(journal, workflow=workflow)
        )
        row = shown(row, journal) if row is not None else None
        if row is None and workflow is not None:
            from ..journal._browse import workflow_names

            names = workflow_names(journal)
            if names:
                _fail(f"no runs of workflow {workflow!r}; workflows that ran: {', '.join(names)}")
        if row is None:
            _fail("no runs recorded yet; start one with `etherealfabric run FILE[:WORKFLOW]`")
        state = history.run_status(journal, row)
    if as_json:
        _echo_json(state.to_dict())
    else:
        _print_status(state)
    sys.exit(EXIT_FAILED if row["status"] in ENDED_BADLY else 0)


def _print_status(state: Any) -> None:
    run = state.run
    verb = "running for" if run["status"] == RunStatus.RUNNING else f"{run['status']} after"
    click.echo(
        f"run {run['id']} of {run['workflow']!r}: {verb} {_secs(state.elapsed)} "
        f"(started {_when(run['started_at'])}, finished {_when(run['finished_at'])}, "
        f"pid {run['pid']} on {run['host']})"
    )
    counts = ", ".join(f"{n} {s}" for s, n in sorted(state.counts.items())) or "no nodes yet"
    click.echo(f"nodes: {counts} (of {run['nodes']})")
    for name, summary in state.maps.items():
        click.echo(f"map {name}: {_map_text(summary)}")
    for r in state.running:
        click.echo(f"  running: {r['node']} (attempt {r['attempt']}) for {_secs(r['elapsed'])}")
    if run["error"]:
        click.echo(f"error: {run['error']}")


@click.command(short_help="What a node printed and logged, per attempt.")
@click.argument("run_id")
@click.argument("node")
@click.option("--attempt", type=int, default=None, help="Only this attempt (1, 2, ...).")
@_home_option
@_json_option
def logs(run_id: str, node: str, attempt: int | None, home: str | None, as_json: bool) -> None:
    """Print what NODE wrote (stdout, stderr, logging) in each attempt of run RUN_ID."""
    from ..journal import _history as history

    with _journal(home) as journal:
        row = _get_run(journal, run_id)
        attempts = attempts_as_shown(row, history.node_attempts(journal, row["id"], node))
        if not attempts:
            _no_node(row, node, list(history.node_names(journal, row["id"])))
    if attempt is not None:
        attempts = [a for a in attempts if a["attempt"] == attempt]
        if not attempts:
            _fail(f"node {node!r} has no attempt {attempt} in run {row['id']}; omit --attempt")
    if as_json:
        keys = ("run_id", "node", "attempt", "status", "output", "traceback")
        _echo_json([{k: a[k] for k in keys} for a in attempts])
        return
    for a in attempts:
        click.echo(f"== {node} attempt {a['attempt']} ({a['status']}) ==")
        output = a["output"]
        if output:
            click.echo(output, nl=not output.endswith("\n"))
        elif a["status"] == NodeStatus.CACHED:
            click.echo("no output captured (cached: it did not run in this run)")
        elif a["status"] == NodeStatus.INTERRUPTED:
            click.echo(
                "no output captured: the run's process died while this attempt ran (what a "
                "node prints is kept when its attempt ends; it was shown live as it was printed)"
            )
        elif a["status"] in (NodeStatus.RUNNING, NodeStatus.RETRYING) and not a["finished_at"]:
            click.echo(
                "no output yet: what a node prints is kept when its attempt ends (until then "
                "it is shown live where the run was started)"
            )
        else:
            click.echo("no output captured")
        if a["traceback"]:  # a failed attempt: where it failed, last
            click.echo(f"-- traceback --\n{a['traceback'].rstrip()}")
