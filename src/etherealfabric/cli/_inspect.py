"""``plan``, ``explain`` and ``graph``: looking at a workflow without running it."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import click

from ..errors import EtherealFabricError
from ..states import PlanAction
from ._common import (
    _console,
    _echo_json,
    _fail,
    _get_run,
    _home_option,
    _journal,
    _journal_at,
    _json_option,
    _load,
    _print_table,
    _secs,
    _settle,
    _table,
    _workflow_settings,
)
from ._params import params_options, parse_params

if TYPE_CHECKING:
    from ..observe._dryrun import DryRun
    from ..workflow import Workflow

__all__ = ["explain", "graph_command", "plan"]


@click.command(short_help="Dry run: what would run, why, and for how long.")
@click.argument("target", metavar="FILE[:WORKFLOW]")
@click.option(
    "--node", "nodes", multiple=True, help="Plan only this node and what it needs (repeatable)."
)
@click.option(
    "--keys",
    "keys_of",
    default=None,
    metavar="NODE",
    help="List every part of NODE's cache key (code with module and line, constants, package "
    "versions, parameters, input digests) and what the key does not cover.",
)
@params_options
@click.argument("assignments", nargs=-1, metavar="[NAME=VALUE]...")
@_home_option
@_json_option
def plan(
    target: str,
    nodes: tuple[str, ...],
    keys_of: str | None,
    param_options: tuple[str, ...],
    params_file: str | None,
    assignments: tuple[str, ...],
    home: str | None,
    as_json: bool,
) -> None:
    """Show what a run would do, without running anything: cached or will run, and why.

    Workflow parameters are set as for ``run``: -p NAME=VALUE (or NAME=VALUE after the file)
    and --params FILE.

    Each node that will run gets an estimate: the median duration of its past executions in
    this workflow. Code the cache keys cannot see (``eval``, ``getattr`` with a computed name...)
    is listed as not covered by the key.
    """
    workflow = _load(target, machine=as_json)
    _workflow_settings(workflow, home)  # a bad setting is a one-line error
    try:
        values = parse_params(workflow.param_set, params_file, param_options, assignments)
    except EtherealFabricError as exc:
        _fail(str(exc))
    from ..hashing._fingerprint import FingerprintWarning

    targets = [keys_of] if keys_of else list(nodes) or None
    try:
        with warnings.catch_warnings():  # listed below instead
            warnings.filterwarnings("ignore", "the cache key of", FingerprintWarning)
            planned = workflow.plan(
                targets=targets, params=values, **({"home": home} if home else {})
            )
            uncovered = {} if keys_of else _uncovered(workflow)
    except EtherealFabricError as exc:
        _fail(str(exc))
    if keys_of:
        _print_keys(workflow, planned, keys_of, as_json)
        return
    if as_json:
        _echo_json({**planned.to_dict(), "uncovered": uncovered})
        return
    console = _console()
    console.print(
        f"plan of {planned.workflow!r}: {len(planned.cached)} cached, "
        f"{len(planned.to_run)} will run{_maybe_text(planned)}; estimated duration: "
        f"{_estimate_text(planned)}",
        highlight=False,
    )
    table = _table("node", "action", "estimate", "reason")
    for n in planned.nodes:
        if n.action is PlanAction.CACHED:
            table.add_row(n.node, PlanAction.CACHED, "-", n.reason)
        else:
            estimate = "unknown" if n.estimate is None else _secs(n.estimate)
            table.add_row(n.node, "may run" if n.entry.maybe else "will run", estimate, n.reason)
    _print_table(console, table)
    for node, items in uncovered.items():
        for item in items:
            console.print(f"{node}: not covered by the key: {item}", highlight=False)


def _maybe_text(planned: DryRun) -> str:
    """`` (1 of them may: ...)`` when nodes run only if a file they read changes."""
    maybe = sum(1 for n in planned.nodes if n.entry.maybe)
    return f" ({maybe} of them may not: see 'may run')" if maybe else ""


def _uncovered(workflow: Workflow) -> dict[str, list[str]]:
    """What each node's key does not cover (nodes with nothing to say left out)."""
    from ..hashing._fingerprint import code_fingerprint
    from ..run._preflight import file_paths

    specs = workflow.build().specs
    found = {name: list(code_fingerprint(spec.code).uncovered) for name, spec in specs.items()}
    for name, spec in specs.items():
        found[name] += [
            f"parameter {param!r} = {path!r}: the path of an existing file, keyed by its text, "
            f"not its content (checked before cache hits; pass File({path!r}))"
            for param, path in file_paths(spec)
        ]
    return {name: items for name, items in found.items() if items}


def _print_keys(workflow: Workflow, planned: DryRun, node: str, as_json: bool) -> None:
    from ..observe._keyaudit import audit_key

    info = planned[node].entry.key_info
    spec = info.spec if info is not None else workflow.build().specs[node]
    audit = audit_key(spec, info)
    if as_json:
        _echo_json(audit.to_dict())
    else:
        click.echo("\n".join(audit.lines()))


def _estimate_text(planned: DryRun) -> str:
    if not planned.to_run:
        return "0s (nothing to run)"
    if planned.estimate is None:
        return "unknown (no history)"
    text = _secs(planned.estimate)
    missing = len(planned.unestimated)
    return f"{text} + {missing} node(s) without history" if missing else text


@click.command(short_help="Why a node ran or was cached: what changed.")
@click.argument("run_id")
@click.argument("node")
@_home_option
@_json_option
def explain(run_id: str, node: str, home: str | None, as_json: bool) -> None:
    """Why NODE ran (or was cached) in run RUN_ID: what changed since its previous run."""
    from ..observe._explain import explain_node

    with _journal(home) as journal:
        _settle(journal)  # a killed run: interrupted, not running
        try:
            explanation = explain_node(journal, run_id, node)
        except EtherealFabricError as exc:
            _fail(str(exc))
    if as_json:
        _echo_json(explanation.to_dict())
    else:
        click.echo(str(explanation))


@click.command("graph", short_help="Print the DAG as Mermaid, Graphviz DOT or JSON.")
@click.argument("target", metavar="FILE[:WORKFLOW]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "json"]),
    default="mermaid",
    show_default=True,
    help="mermaid (a flowchart), dot (Graphviz) or json (nodes and edges).",
)
@click.option("--run", "run_id", default=None, help="Colour nodes by their status in this run.")
@_home_option
def graph_command(target: str, fmt: str, run_id: str | None, home: str | None) -> None:
    """Print the workflow's DAG as Mermaid, Graphviz DOT or JSON (ordering edges dashed)."""
    from ..observe._export import render

    workflow = _load(target, machine=True)  # (Mermaid, DOT or JSON: all for a program)
    try:
        graph = workflow.build()
    except EtherealFabricError as exc:
        _fail(str(exc))
    statuses = _run_statuses(workflow, run_id, home) if run_id else {}
    if fmt == "json":
        nodes = [{"node": n, "status": statuses.get(n)} for n in graph.order]
        edges = [
            {"from": up, "to": n, "kind": "order" if (up, n) in graph.ordering_edges else "data"}
            for n in graph.order
            for up in graph.preds[n]
        ]
        _echo_json({"workflow": graph.workflow, "nodes": nodes, "edges": edges})
        return
    click.echo(render(graph, fmt, statuses), nl=False)


def _run_statuses(workflow: Workflow, run_id: str, home: str | None) -> dict[str, str]:
    from ..journal import _history as history

    with _journal_at(_workflow_settings(workflow, home)) as journal:
        row = _get_run(journal, run_id)
        if row["workflow"] != workflow.name:
            _fail(
                f"run {row['id']} is a run of workflow {row['workflow']!r}, not "
                f"{workflow.name!r}; pick one from `etherealfabric runs --workflow {workflow.name}`"
            )
        return {r["node"]: r["status"] for r in history.latest_attempts(journal, row["id"])}
