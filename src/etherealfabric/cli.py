"""The ``etherealfabric`` command line.

Exit codes: 0 success; 1 the run failed (a node failed or was cancelled); 2 a usage or
configuration error (bad option, missing file, unknown run id), reported in one line.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .config import Settings
from .errors import EtherealFabricError, RunFailedError

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_FAILED, EXIT_USAGE = 1, 2


def _home_option(fn: F) -> F:
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Home folder (journal and store). Default: $ETHEREALFABRIC_HOME or ./.etherealfabric",
    )(fn)


def _json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _journal(home: str | None) -> Any:
    from .journal import Journal

    settings = Settings.resolve(home=home)
    if not settings.journal_path.exists():
        _fail(f"no journal at {settings.journal_path}; run a workflow first or pass --home")
    return Journal(settings.journal_path)


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="etherealfabric")
def main() -> None:
    """EtherealFabric: run pipelines that never do the same work twice."""


@main.command()
@click.argument("target", metavar="FILE[:WORKFLOW]")
@click.option("--backend", default=None, help="Execution backend (local, processes, ...).")
@click.option("--max-workers", type=int, default=None, help="Parallel workers.")
@click.option("--node", "nodes", multiple=True, help="Run only this node and what it needs.")
@_home_option
@_json_option
def run(
    target: str,
    backend: str | None,
    max_workers: int | None,
    nodes: tuple[str, ...],
    home: str | None,
    as_json: bool,
) -> None:
    """Run the workflow defined in a Python file; cached nodes are skipped."""
    from .loader import load_workflow

    try:
        workflow = load_workflow(target)
        results = workflow.execute(
            backend=backend,
            max_workers=max_workers,
            home=home,
            targets=list(nodes) or None,
            raise_on_error=False,
        )
    except RunFailedError as exc:  # pragma: no cover - raise_on_error=False returns instead
        _fail(str(exc))
        return
    except EtherealFabricError as exc:
        _fail(str(exc))
        return
    summary = {
        "run_id": results.run_id,
        "workflow": workflow.name,
        "status": results.status,
        **results.counts(),
        "nodes": results.statuses,
        "errors": results.errors,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"run {results.run_id} of {workflow.name!r} {results.status}: "
            f"{results.executed} executed, {results.cached} cached, {results.failed} failed"
        )
        for name, error in results.errors.items():
            click.echo(f"  {name}: {error}", err=True)
    sys.exit(0 if results.ok else EXIT_FAILED)


@main.command()
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--limit", type=int, default=20, show_default=True)
@_home_option
@_json_option
def runs(
    workflow: str | None, status: str | None, limit: int, home: str | None, as_json: bool
) -> None:
    """List recent runs, newest first."""
    with _journal(home) as journal:
        journal.mark_interrupted()
        rows = journal.list_runs(workflow=workflow, status=status, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "run", "workflow", "status", "started", "duration", "executed", "cached", "failed"
    )
    for r in rows:
        duration = (r["finished_at"] - r["started_at"]) if r["finished_at"] else None
        table.add_row(
            r["id"], r["workflow"], r["status"], _when(r["started_at"]), _secs(duration),
            str(r["executed"] or 0), str(r["cached"] or 0), str(r["failed"] or 0),
        )  # fmt: skip
    Console().print(table)


@main.command()
@click.argument("run_id")
@_home_option
@_json_option
def show(run_id: str, home: str | None, as_json: bool) -> None:
    """Show one run: each node's status, timing and cache hit."""
    with _journal(home) as journal:
        try:
            run_row = journal.get_run(run_id)
        except EtherealFabricError as exc:
            _fail(str(exc))
            return
        nodes = journal.node_runs(run_row["id"])
    if as_json:
        click.echo(json.dumps({"run": run_row, "nodes": nodes}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"run {run_row['id']} of {run_row['workflow']!r}: {run_row['status']} "
        f"(started {_when(run_row['started_at'])}, backend {run_row['backend']})"
    )
    table = Table("node", "attempt", "status", "duration", "key", "error")
    for n in nodes:
        table.add_row(
            n["node"], str(n["attempt"]), n["status"], _secs(n["duration"]),
            (n["cache_key"] or "")[:12], (n["error"] or "")[:80],
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    main()
