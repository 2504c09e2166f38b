"""The ``etherealfabric`` command line.

Commands: ``run``, ``resume``, ``plan`` (a dry run), ``runs``, ``show``, ``status`` (live),
``explain`` (why a node ran), ``logs``, ``graph`` (Mermaid / DOT) and ``cache verify``.

Exit codes: 0 success; 1 the run failed (a node failed or the run was cancelled), or a check
found problems (``cache verify``) or the run looked at ended badly (``status``); 2 a usage or
configuration error (bad option, missing file, unknown run id), reported in one line on stderr
that says what to do, without a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, redirect_stdout
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .config import ENV, Settings
from .errors import EtherealFabricError

if TYPE_CHECKING:
    from .journal import Journal
    from .results import Results
    from .store import Store
    from .workflow import Workflow

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_FAILED, EXIT_USAGE = 1, 2
ENDED_BADLY = ("failed", "cancelled", "interrupted")


# -- shared options and helpers ----------------------------------------------------------------
def _home_option(fn: F) -> F:
    return click.option(
        "--home",
        type=click.Path(file_okay=False),
        default=None,
        help="Home folder (journal and store). Default: $ETHEREALFABRIC_HOME or ./.etherealfabric",
    )(fn)


def _json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def _run_options(fn: F) -> F:
    fn = click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve Prometheus metrics on 127.0.0.1:PORT while the run lasts (0: a free port).",
    )(fn)
    return click.option(
        "--quiet", "-q", is_flag=True, help="Progress: only failures and the final summary."
    )(fn)


def _fail(message: str) -> NoReturn:
    """Print ``message`` as one line on stderr and exit with code 2."""
    one_line = "; ".join(line.strip() for line in message.strip().splitlines() if line.strip())
    click.echo(f"error: {one_line}", err=True)
    sys.exit(EXIT_USAGE)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _journal(home: str | None) -> Journal:
    return _journal_at(Settings.resolve(home=home))


def _journal_at(settings: Settings) -> Journal:
    from .journal import Journal

    if not settings.journal_path.exists():
        _fail(f"no journal at {settings.journal_path}; run a workflow first or pass --home")
    try:
        return Journal(settings.journal_path)
    except EtherealFabricError as exc:
        _fail(str(exc))


def _get_run(journal: Journal, run_id: str) -> dict[str, Any]:
    try:
        return journal.get_run(run_id)
    except EtherealFabricError as exc:
        _fail(f"{exc}; list runs with `etherealfabric runs`")


def _load(target: str) -> Workflow:
    from .loader import load_workflow

    try:
        return load_workflow(target)
    except EtherealFabricError as exc:
        _fail(str(exc))


def _workflow_settings(workflow: Workflow, home: str | None) -> Settings:
    """The settings a run of ``workflow`` would use (``--home`` beats the workflow's own)."""
    explicit = {**workflow.settings, **({"home": home} if home else {})}
    try:
        return Settings.resolve(**explicit)
    except EtherealFabricError as exc:
        _fail(str(exc))


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"


def _console() -> Any:
    from rich.console import Console

    return Console()


def _table(*columns: str) -> Any:
    from rich.table import Table

    return Table(*columns)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="etherealfabric")
def main() -> None:
    """EtherealFabric: run pipelines that never do the same work twice."""


# -- run and resume --------------------------------------------------------------------------------
@main.command()
@click.argument("target", metavar="FILE[:WORKFLOW]")
@click.option("--backend", default=None, help="Execution backend (local, processes, ...).")
@click.option("--max-workers", type=int, default=None, help="Parallel workers.")
@click.option("--node", "nodes", multiple=True, help="Run only this node and what it needs.")
@_run_options
@_home_option
@_json_option
def run(
    target: str,
    backend: str | None,
    max_workers: int | None,
    nodes: tuple[str, ...],
    quiet: bool,
    metrics_port: int | None,
    home: str | None,
    as_json: bool,
) -> None:
    """Run the workflow defined in a Python file; cached nodes are skipped."""
    workflow = _load(target)
    params = {
        "target": _absolute_target(target),
        "backend": backend,
        "nodes": list(nodes),
        "max_workers": max_workers,
    }
    results = _execute(
        workflow,
        quiet=quiet,
        metrics_port=metrics_port,
        home=home,
        as_json=as_json,
        backend=backend,
        max_workers=max_workers,
        targets=list(nodes) or None,
        run_params=params,
    )
    _report(workflow, results, as_json)


@main.command()
@click.argument("run_id")
@_run_options
@_home_option
@_json_option
def resume(
    run_id: str, quiet: bool, metrics_port: int | None, home: str | None, as_json: bool
) -> None:
    """Resume a run that failed or was interrupted, with the parameters it was started with.

    Completed nodes come from the cache; the new run is linked to RUN_ID.
    """
    with _journal(home) as journal:
        journal.mark_interrupted()
        row = _get_run(journal, run_id)
    if row["status"] == "succeeded":
        if as_json:
            _echo_json({"run_id": row["id"], "status": "succeeded", "resumed": False})
        else:
            click.echo(f"run {row['id']} already succeeded; nothing to resume")
        return
    if row["status"] == "running":
        _fail(
            f"run {row['id']} is still running (pid {row['pid']} on {row['host']}); wait for it "
            f"to finish or stop it, then resume it (watch it with `etherealfabric status {row['id']}`)"
        )
    params = _params(row)
    if not params.get("target"):
        _fail(
            f"run {row['id']} does not record its workflow file (it was not started with "
            "`etherealfabric run`); run it again with `etherealfabric run FILE[:WORKFLOW]`"
        )
    workflow = _load(str(params["target"]))
    if workflow.name != row["workflow"]:
        _fail(
            f"{params['target']} now defines workflow {workflow.name!r}, not "
            f"{row['workflow']!r} as in run {row['id']}; run it with `etherealfabric run`"
        )
    results = _execute(
        workflow,
        quiet=quiet,
        metrics_port=metrics_port,
        home=home,
        as_json=as_json,
        resume=row["id"],
        backend=params.get("backend") or row["backend"],
        max_workers=params.get("max_workers"),
        targets=list(params.get("nodes") or []) or None,
        run_params=params,
    )
    _report(workflow, results, as_json, resumed_from=row["id"])


def _params(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = json.loads(row["params"] or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def _absolute_target(target: str) -> str:
    """``FILE[:WORKFLOW]`` with ``FILE`` made absolute, so ``resume`` works from anywhere."""
    from .loader import split_target

    path, name = split_target(target)
    absolute = str(path.resolve())
    return absolute if name is None else f"{absolute}:{name}"


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what nodes print to stderr, keeping stdout for the JSON document.

    Python-level (threads of this process) and, when stdout is a real file descriptor, at the
    descriptor level too (worker processes, C extensions).
    """
    sys.stdout.flush()
    try:
        fd, target = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = target = -1
    saved = os.dup(fd) if fd >= 0 else -1
    if saved >= 0:
        os.dup2(target, fd)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if saved >= 0:
            os.dup2(saved, fd)
            os.close(saved)


def _execute(
    workflow: Workflow,
    *,
    quiet: bool,
    metrics_port: int | None,
    home: str | None,
    as_json: bool,
    **options: Any,
) -> Results:
    """Execute with a progress display (and metrics); errors before the run exit with 2."""
    from .monitor.progress import Progress

    progress = Progress(quiet=quiet)
    subscribers: list[Any] = [progress]
    # the progress display reports each node and the run's end: the engine's own INFO lines
    # about them would say it twice (DEBUG, when asked for, still shows everything)
    run_log = logging.getLogger("etherealfabric.run")
    previous_level = run_log.level
    if previous_level == logging.NOTSET and os.environ.get(ENV["log_level"], "").upper() != "DEBUG":
        run_log.setLevel(logging.WARNING)
    metrics = None
    try:
        if metrics_port is not None:
            from .monitor.metrics import Metrics

            metrics = Metrics()
            port = metrics.serve(metrics_port)
            click.echo(f"metrics: http://127.0.0.1:{port}/metrics", err=True)
            subscribers.append(metrics)
        settings: dict[str, Any] = {"home": home} if home else {}
        with _stdout_to_stderr() if as_json else nullcontext():
            return workflow.execute(
                subscribers=subscribers, raise_on_error=False, **settings, **options
            )
    except EtherealFabricError as exc:
        _fail(str(exc))
    finally:
        progress.close()
        run_log.setLevel(previous_level)
        if metrics is not None:
            metrics.close()


def _report(
    workflow: Workflow, results: Results, as_json: bool, resumed_from: str | None = None
) -> None:
    summary = {
        "run_id": results.run_id,
        "workflow": workflow.name,
        "status": results.status,
        **results.counts(),
        "nodes": results.statuses,
        "errors": results.errors,
    }
    if resumed_from is not None:
        summary["resumed_from"] = resumed_from
    if as_json:
        _echo_json(summary)
    else:
        click.echo(
            f"run {results.run_id} of {workflow.name!r} {results.status}: "
            f"{results.executed} executed, {results.cached} cached, {results.failed} failed"
        )
        for name, error in results.errors.items():
            click.echo(f"  {name}: {error}", err=True)
    sys.exit(0 if results.ok else EXIT_FAILED)


# -- plan ----------------------------------------------------------------------------------------
@main.command()
@click.argument("target", metavar="FILE[:WORKFLOW]")
@click.option("--node", "nodes", multiple=True, help="Plan only this node and what it needs.")
@_home_option
@_json_option
def plan(target: str, nodes: tuple[str, ...], home: str | None, as_json: bool) -> None:
    """Show what a run would do, without running anything: cached or will run, and why.

    Each node that will run gets an estimate: the median duration of its past executions in
    this workflow.
    """
    workflow = _load(target)
    _workflow_settings(workflow, home)  # a bad setting is a one-line error
    try:
        planned = workflow.plan(targets=list(nodes) or None, **({"home": home} if home else {}))
    except EtherealFabricError as exc:
        _fail(str(exc))
    if as_json:
        _echo_json(planned.to_dict())
        return
    console = _console()
    console.print(
        f"plan of {planned.workflow!r}: {len(planned.cached)} cached, "
        f"{len(planned.to_run)} will run; estimated duration: {_estimate_text(planned)}",
        highlight=False,
    )
    table = _table("node", "action", "estimate", "reason")
    for n in planned.nodes:
        if n.action == "cached":
            table.add_row(n.node, "cached", "-", n.reason)
        else:
            estimate = "unknown" if n.estimate is None else _secs(n.estimate)
            table.add_row(n.node, "will run", estimate, n.reason)
    console.print(table)


def _estimate_text(planned: Any) -> str:
    if not planned.to_run:
        return "0s (nothing to run)"
    if planned.estimate is None:
        return "unknown (no history)"
    text = _secs(planned.estimate)
    missing = len(planned.unestimated)
    return f"{text} + {missing} node(s) without history" if missing else text


# -- history ---------------------------------------------------------------------------------------
@main.command()
@click.option("--workflow", default=None, help="Only runs of this workflow.")
@click.option("--status", default=None, help="Only runs with this status.")
@click.option(
    "--since", default=None, help="Only runs started since: an ISO date/time or an age (2h, 3d)."
)
@click.option("--limit", type=int, default=20, show_default=True)
@_home_option
@_json_option
def runs(
    workflow: str | None,
    status: str | None,
    since: str | None,
    limit: int,
    home: str | None,
    as_json: bool,
) -> None:
    """List recent runs, newest first."""
    from . import history

    try:
        start = None if since is None else history.parse_since(since)
    except ValueError as exc:
        _fail(str(exc))
    with _journal(home) as journal:
        journal.mark_interrupted()
        rows = history.list_runs(
            journal, workflow=workflow, status=status, since=start, limit=limit
        )
    if as_json:
        _echo_json(rows)
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
    _console().print(table)


@main.command()
@click.argument("run_id")
@_home_option
@_json_option
def show(run_id: str, home: str | None, as_json: bool) -> None:
    """Show one run: each node's status, timing and cache hit."""
    with _journal(home) as journal:
        run_row = _get_run(journal, run_id)
        nodes = journal.node_runs(run_row["id"])
    if as_json:
        _echo_json({"run": run_row, "nodes": nodes})
        return
    console = _console()
    console.print(
        f"run {run_row['id']} of {run_row['workflow']!r}: {run_row['status']} "
        f"(started {_when(run_row['started_at'])}, backend {run_row['backend']})"
    )
    table = _table("node", "attempt", "status", "duration", "key", "error")
    for n in nodes:
        table.add_row(
            n["node"], str(n["attempt"]), n["status"], _secs(n["duration"]),
            (n["cache_key"] or "")[:12], (n["error"] or "")[:80],
        )  # fmt: skip
    console.print(table)


@main.command()
@click.argument("run_id", required=False)
@click.option("--workflow", default=None, help="Without RUN_ID: the latest run of this workflow.")
@_home_option
@_json_option
def status(run_id: str | None, workflow: str | None, home: str | None, as_json: bool) -> None:
    """Where a run stands now (default: the latest run), even while another process runs it.

    Exits with 1 when the run failed, was cancelled or was interrupted.
    """
    from . import history

    with _journal(home) as journal:
        journal.mark_interrupted()
        row = (
            _get_run(journal, run_id) if run_id else history.latest_run(journal, workflow=workflow)
        )
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
    verb = "running for" if run["status"] == "running" else f"{run['status']} after"
    click.echo(
        f"run {run['id']} of {run['workflow']!r}: {verb} {_secs(state.elapsed)} "
        f"(started {_when(run['started_at'])}, finished {_when(run['finished_at'])}, "
        f"pid {run['pid']} on {run['host']})"
    )
    counts = ", ".join(f"{n} {s}" for s, n in sorted(state.counts.items())) or "no nodes yet"
    click.echo(f"nodes: {counts} (of {run['nodes']})")
    for r in state.running:
        click.echo(f"  running: {r['node']} (attempt {r['attempt']}) for {_secs(r['elapsed'])}")
    if run["error"]:
        click.echo(f"error: {run['error']}")


@main.command()
@click.argument("run_id")
@click.argument("node")
@_home_option
@_json_option
def explain(run_id: str, node: str, home: str | None, as_json: bool) -> None:
    """Why NODE ran (or was cached) in run RUN_ID: what changed since its previous run."""
    from .explain import explain_node

    with _journal(home) as journal:
        try:
            explanation = explain_node(journal, run_id, node)
        except EtherealFabricError as exc:
            _fail(str(exc))
    if as_json:
        _echo_json(explanation.to_dict())
    else:
        click.echo(str(explanation))


@main.command()
@click.argument("run_id")
@click.argument("node")
@click.option("--attempt", type=int, default=None, help="Only this attempt (1, 2, ...).")
@_home_option
@_json_option
def logs(run_id: str, node: str, attempt: int | None, home: str | None, as_json: bool) -> None:
    """Print what NODE wrote (stdout, stderr, logging) in each attempt of run RUN_ID."""
    from . import history

    with _journal(home) as journal:
        row = _get_run(journal, run_id)
        attempts = history.node_attempts(journal, row["id"], node)
        if not attempts:
            known = ", ".join(history.node_names(journal, row["id"])) or "none"
            _fail(f"run {row['id']} has no node {node!r}; its nodes: {known}")
    if attempt is not None:
        attempts = [a for a in attempts if a["attempt"] == attempt]
        if not attempts:
            _fail(f"node {node!r} has no attempt {attempt} in run {row['id']}; omit --attempt")
    if as_json:
        keys = ("run_id", "node", "attempt", "status", "output")
        _echo_json([{k: a[k] for k in keys} for a in attempts])
        return
    for a in attempts:
        click.echo(f"== {node} attempt {a['attempt']} ({a['status']}) ==")
        output = a["output"]
        if output:
            click.echo(output, nl=not output.endswith("\n"))
        elif a["status"] == "cached":
            click.echo("no output captured (cached: it did not run in this run)")
        else:
            click.echo("no output captured")


# -- graph ---------------------------------------------------------------------------------------
@main.command("graph")
@click.argument("target", metavar="FILE[:WORKFLOW]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["mermaid", "dot", "json"]),
    default="mermaid",
    show_default=True,
    help="Output format.",
)
@click.option("--run", "run_id", default=None, help="Colour nodes by their status in this run.")
@_home_option
def graph_command(target: str, fmt: str, run_id: str | None, home: str | None) -> None:
    """Print the workflow's DAG as Mermaid or Graphviz DOT (ordering edges dashed)."""
    from .export import render

    workflow = _load(target)
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
    from . import history

    with _journal_at(_workflow_settings(workflow, home)) as journal:
        row = _get_run(journal, run_id)
        if row["workflow"] != workflow.name:
            _fail(
                f"run {row['id']} is a run of workflow {row['workflow']!r}, not "
                f"{workflow.name!r}; pick one from `etherealfabric runs --workflow {workflow.name}`"
            )
        return {r["node"]: r["status"] for r in history.latest_attempts(journal, row["id"])}


# -- cache ---------------------------------------------------------------------------------------
@main.group()
def cache() -> None:
    """Inspect and repair the artifact cache."""


@cache.command("verify")
@click.option(
    "--fix", is_flag=True, help="Delete corrupt objects and the records that point at them."
)
@_home_option
@_json_option
def cache_verify(fix: bool, home: str | None, as_json: bool) -> None:
    """Check every stored object against its digest and every cache record against the store.

    Exits with 1 while problems remain, 0 when the cache is clean (or was repaired by --fix).
    """
    from .history import audit_cache
    from .store import open_store

    try:
        settings = Settings.resolve(home=home)
        store = open_store(settings.store_location)
    except EtherealFabricError as exc:
        _fail(str(exc))
    with _journal_at(settings) as journal:
        audit = audit_cache(journal, store)
        fixed = _repair(journal, store, audit.problems, settings.shared_store) if fix else set()
    remaining = [p for i, p in enumerate(audit.problems) if i not in fixed]
    if as_json:
        _echo_json(
            {
                "objects": audit.objects,
                "records": audit.records,
                "problems": [
                    {**p.to_dict(), "fixed": i in fixed} for i, p in enumerate(audit.problems)
                ],
                "remaining": len(remaining),
            }
        )
    else:
        _print_audit(audit, fixed, len(remaining))
    sys.exit(EXIT_FAILED if remaining else 0)


def _repair(journal: Journal, store: Store, problems: list[Any], shared: bool) -> set[int]:
    """Delete corrupt objects, and action records naming bad bytes; the indexes fixed."""
    fixed: set[int] = set()
    forgotten: set[str] = set()
    for i, problem in enumerate(problems):
        if problem.where == "store" and problem.kind in ("corrupt_object", "unreadable_object"):
            store.delete_object(problem.digest)
            fixed.add(i)
        elif problem.where == "journal" and problem.key:
            if problem.kind == "corrupt_blob" and problem.digest:
                journal.delete_blob(problem.digest)
            if problem.key not in forgotten:
                journal.delete_action(problem.key)
                if shared:
                    store.delete_action(problem.key)
                forgotten.add(problem.key)
            fixed.add(i)
    return fixed


def _print_audit(audit: Any, fixed: set[int], remaining: int) -> None:
    click.echo(
        f"checked {audit.objects} object(s) and {audit.records} cache record(s): "
        f"{len(audit.problems)} problem(s)"
    )
    for i, problem in enumerate(audit.problems):
        click.echo(f"  {problem}{' (fixed)' if i in fixed else ''}")
    if remaining:
        click.echo(
            f"{remaining} problem(s) remain; run `etherealfabric cache verify --fix` to delete "
            "the bad entries (their nodes are recomputed on the next run)"
        )
    elif audit.problems:
        click.echo("all problems fixed; the affected nodes will be recomputed on the next run")


@main.command(
    "celery-worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.pass_context
def celery_worker(ctx: click.Context) -> None:
    """Start a Celery worker that runs nodes for the celery backend.

    The broker and result backend come from ETHEREALFABRIC_CELERY_BROKER_URL and
    ETHEREALFABRIC_CELERY_RESULT_BACKEND (or --broker-url / --result-backend). Options:
    --concurrency N, --loglevel L; any other option goes to `celery worker`. The workers must
    be able to import the modules your nodes are defined in.
    """
    try:
        from .backends.celery import main as celery_main
    except ImportError:
        _fail("the celery backend needs its extra: pip install 'etherealfabric[celery]'")
        return
    sys.exit(celery_main(["worker", *ctx.args]))


if __name__ == "__main__":  # pragma: no cover
    main()
