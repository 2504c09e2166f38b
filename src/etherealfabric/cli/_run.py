"""``run``, ``resume`` and ``celery-worker``: executing a workflow and reporting how it went."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import click

from ..config import ENV, Settings
from ..errors import EtherealFabricError
from ..states import RunStatus
from ._common import (
    EXIT_FAILED,
    F,
    _echo_json,
    _fail,
    _get_run,
    _home_option,
    _journal,
    _json_option,
    _load,
    _stdout_to_stderr,
    one_line,
)
from ._params import params_options, parse_params
from ._sigterm import EXIT_TERMINATED, stop_on_sigterm, terminated
from ._stopped import end_what_nodes_started, exit_within

if TYPE_CHECKING:
    from ..run._results import Results
    from ..workflow import Workflow

__all__ = ["celery_worker", "resume", "run"]


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


@click.command(short_help="Run a workflow file; cached nodes are skipped.")
@click.argument("target", metavar="FILE[:WORKFLOW]", type=click.Path())  # completes files
@click.argument("assignments", nargs=-1, metavar="[NAME=VALUE]...")
@params_options
@click.option("--backend", default=None, metavar="NAME",
              help="Execution backend: local (threads), processes, dask, celery, spark or a "
              "registered one (default: $ETHEREALFABRIC_EXECUTION_BACKEND or local).")  # fmt: skip
@click.option("--max-workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Parallel workers (default: $ETHEREALFABRIC_MAX_WORKERS, else the backend's).")  # fmt: skip
@click.option(
    "--node", "nodes", multiple=True, help="Run only this node and what it needs (repeatable)."
)
@click.option(
    "--force",
    "force",
    multiple=True,
    metavar="NODE",
    help="Run NODE (a name or a glob such as 'train*') and everything after it, even if cached.",
)
@click.option(
    "--keep-going/--fail-fast",
    "keep_going",
    default=None,
    help="After a failure, let the branches that do not need the failed node finish "
    "(default: the workflow's keep_going, else fail fast: nothing new starts).",
)
@_run_options
@_home_option
@_json_option
def run(
    target: str,
    assignments: tuple[str, ...],
    param_options: tuple[str, ...],
    params_file: str | None,
    backend: str | None,
    max_workers: int | None,
    nodes: tuple[str, ...],
    force: tuple[str, ...],
    keep_going: bool | None,
    quiet: bool,
    metrics_port: int | None,
    home: str | None,
    as_json: bool,
) -> None:
    """Run the workflow defined in a Python file; cached nodes are skipped.

    Workflow parameters are set with -p NAME=VALUE (or NAME=VALUE after the file) and
    --params FILE; nodes that read a parameter whose value changed run again.
    """
    if backend is not None:
        _check_backend(backend)
    workflow = _load(target, machine=as_json)
    try:
        values = parse_params(workflow.param_set, params_file, param_options, assignments)
    except EtherealFabricError as exc:
        _fail(str(exc))
    params = {
        "target": _absolute_target(target),
        "cwd": os.getcwd(),  # relative paths (File("data.csv"), reads) resolve here: resume too
        "backend": backend,
        "nodes": list(nodes),
        "max_workers": max_workers,
        "force": list(force),
        "keep_going": keep_going,
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
        force=force,
        keep_going=keep_going,
        params=values,
    )
    _report(workflow, results, as_json)


@click.command(short_help="Re-run a failed or interrupted run, same parameters.")
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
    if row["status"] == RunStatus.SUCCEEDED:
        if as_json:  # that run's own summary, as `run --json` printed it, and that it stays
            from ..run._reopen import open_run

            done = open_run(row["id"], home=home)
            _echo_json({**_summary(row["workflow"], done, None), "resumed": False})
        else:
            click.echo(f"run {row['id']} already succeeded; nothing to resume")
        return
    if row["status"] == RunStatus.RUNNING:
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
    home = _enter_run_folder(row, params, home)
    workflow = _load(str(params["target"]), machine=as_json)
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
        keep_going=params.get("keep_going") if isinstance(params.get("keep_going"), bool) else None,
        run_params=params,
    )
    _report(workflow, results, as_json, resumed_from=row["id"])


def _check_backend(name: str) -> None:
    """A ``--backend`` no backend is registered under: exit 2 naming the option, the close
    name and every known one, before the workflow file is imported."""
    from ..backends import backend_names
    from ..errors import UnknownBackendError

    known = backend_names()
    if name.strip().lower() not in known:
        _fail(str(UnknownBackendError(name, known, setting="--backend")))


def _params(row: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = json.loads(row["params"] or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def _enter_run_folder(
    row: Mapping[str, Any], params: Mapping[str, Any], home: str | None
) -> str | None:
    """Go to the folder run ``row`` was started in, before its workflow file is imported: the
    relative paths of the workflow (``File("data.csv")``, files its nodes open) then resolve as
    in that run, wherever ``resume`` is typed. Returns the home to use: the one the run was
    found in, made absolute first when the folder changes. Runs recorded without their folder
    resume from the current one."""
    cwd = params.get("cwd")
    if not isinstance(cwd, str) or not cwd:
        return home
    here = os.getcwd()
    if os.path.realpath(cwd) == os.path.realpath(here):
        return home
    if not os.path.isdir(cwd):
        _fail(
            f"run {row['id']} was started in {cwd}, which no longer exists: its workflow's "
            "relative paths (File inputs, files its nodes open) resolve there; restore that "
            "folder, or start a new run with `etherealfabric run FILE[:WORKFLOW]` from where "
            "the data is"
        )
    found_in = str(Settings.resolve(home=home).home)  # where the run was found, from here
    os.chdir(cwd)
    click.echo(f"resuming run {row['id']} in {cwd}, the folder it was started in", err=True)
    return found_in


def _absolute_target(target: str) -> str:
    """``FILE[:WORKFLOW]`` with ``FILE`` made absolute, so ``resume`` works from anywhere."""
    from ._loader import split_target

    path, name = split_target(target)
    absolute = str(path.resolve())
    return absolute if name is None else f"{absolute}:{name}"


def _env_log_level() -> str | None:
    """``ETHEREALFABRIC_LOG_LEVEL`` as the settings read it (`` debug `` is ``DEBUG``), None
    when unset (or blank); a bad one is the one-line error naming it and the levels."""
    from ..config import parse_log_level

    raw = os.environ.get(ENV["log_level"], "").strip()
    try:
        return parse_log_level(raw) if raw else None
    except EtherealFabricError as exc:
        _fail(str(exc))


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
    from ..observe._progress import Progress

    progress = Progress(quiet=quiet)
    started: dict[str, str] = {}  # the run's id, for the resume hint after a Ctrl-C
    subscribers: list[Any] = [progress, lambda event: started.setdefault("run", event.run_id)]
    # the progress display reports each node, its failures and the run's end: the engine's
    # own lines about them would say it twice (DEBUG, when asked for, still shows everything)
    run_log = logging.getLogger("etherealfabric.run")
    previous_level = run_log.level
    env_level = _env_log_level()
    if previous_level == logging.NOTSET and env_level != "DEBUG":
        run_log.setLevel(logging.CRITICAL)
    metrics = None
    restore_sigterm = stop_on_sigterm()
    try:
        if metrics_port is not None:
            from ..observe._metrics import Metrics

            metrics = Metrics()
            port = metrics.serve(metrics_port)
            click.echo(f"metrics: http://127.0.0.1:{port}/metrics", err=True)
            subscribers.append(metrics)
        settings: dict[str, Any] = {"home": home} if home else {}
        if quiet and env_level is None and "log_level" not in workflow.settings:
            settings["log_level"] = "WARNING"  # --quiet: no engine INFO lines ("waiting for it")
        with _stdout_to_stderr() if as_json else nullcontext():
            return workflow.execute(
                subscribers=subscribers, raise_on_error=False, **settings, **options
            )
    except EtherealFabricError as exc:
        _fail(str(exc))
    except KeyboardInterrupt as exc:  # (recorded cancelled, or interrupted: the summary said it)
        with _no_interrupt_at_exit():
            progress.close()
            stopped = getattr(exc, "results", None)
            if stopped is not None:  # scripts read how it ended, and its id to resume it
                _summary_out(workflow, stopped, as_json, options.get("resume"))
            if started:
                click.echo(f"  resume: etherealfabric resume {started['run']}", err=True)
            code = EXIT_TERMINATED if terminated(exc) else EXIT_FAILED
            end_what_nodes_started()  # (a stopped node's pool: its work went with the run)
            exit_within(code)
            sys.exit(code)
    finally:
        restore_sigterm()
        progress.close()
        run_log.setLevel(previous_level)
        if metrics is not None:
            metrics.close()


@contextmanager
def _no_interrupt_at_exit() -> Iterator[None]:
    """A run stopped by Ctrl-C said how it ended: another Ctrl-C as the command prints its
    summary, ends what the nodes left running and exits cut that short, or killed it with
    SIGINT (exit -2, the shell's 130, not 1), since Python puts SIGINT's default action back
    as it finalises. Ignored in this block, and from the interpreter's exit on (``atexit``: a
    caller that runs the command in its own process keeps its Ctrl-C until then)."""
    import atexit
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    atexit.register(signal.signal, signal.SIGINT, signal.SIG_IGN)
    former = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, former)


def _summary_out(
    workflow: Workflow, results: Results, as_json: bool, resumed_from: str | None
) -> None:
    """The run's summary on stdout: the JSON document, or (stdout a file or a pipe) the line
    for scripts; on a terminal the progress display (stderr) has just printed it."""
    if as_json:
        _echo_json(_summary(workflow.name, results, resumed_from))
    elif not sys.stdout.isatty():
        click.echo(
            f"run {results.run_id} of {workflow.name!r} {results.status}: "
            f"{results.executed} executed, {results.cached} cached, {results.failed} failed"
        )


def _summary(workflow: str, results: Results, resumed_from: str | None) -> dict[str, Any]:
    """What ``--json`` prints of a run."""
    summary = {
        "run_id": results.run_id,
        "workflow": workflow,
        "status": results.status,
        **results.counts(),
        "nodes": results.statuses,
        "errors": results.errors,
        "failed_items": {m: r.failed for m, r in results.maps.items() if r.failed},
    }
    if resumed_from is not None:
        summary["resumed_from"] = resumed_from
    return summary


def _report(
    workflow: Workflow, results: Results, as_json: bool, resumed_from: str | None = None
) -> None:
    _summary_out(workflow, results, as_json, resumed_from)
    if not as_json:
        for name, error in results.errors.items():  # each on one line: `logs` has it whole
            click.echo(f"  {name}: {one_line(error)}", err=True)
        if results.errors:  # the one-line errors above; the tracebacks are in the journal
            first = next(iter(results.errors))
            click.echo(
                f"  traceback: etherealfabric logs {results.run_id} {shlex.quote(first)}\n"
                f"  resume: etherealfabric resume {results.run_id}",
                err=True,
            )
        for name, report in results.maps.items():
            if report.failed and name not in results.errors:  # max_failures let it succeed
                shown = ", ".join(list(report.failed)[:5]) + (
                    " ..." if len(report.failed) > 5 else ""
                )
                click.echo(
                    f"  {name}: {len(report.failed)} of {report.children} items failed "
                    f"(within max_failures): {shown}",
                    err=True,
                )
    sys.exit(0 if results.ok else EXIT_FAILED)


@click.command(
    "celery-worker",
    short_help="Start a Celery worker for the celery backend.",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None, metavar="N",
              help="Worker processes (default: the CPU count).")  # fmt: skip
@click.option("-l", "--loglevel", default=None, metavar="LEVEL",
              help="Celery log level (default: $ETHEREALFABRIC_LOG_LEVEL or INFO).")  # fmt: skip
@click.option("--broker-url", default=None, metavar="URL",
              help="The broker (default: $ETHEREALFABRIC_CELERY_BROKER_URL).")  # fmt: skip
@click.option("--result-backend", default=None, metavar="URL",
              help="Result backend (default: $ETHEREALFABRIC_CELERY_RESULT_BACKEND).")  # fmt: skip
@click.pass_context
def celery_worker(
    ctx: click.Context,
    concurrency: int | None,
    loglevel: str | None,
    broker_url: str | None,
    result_backend: str | None,
) -> None:
    """Start a Celery worker that runs nodes for the celery backend.

    Any other option goes to `celery worker` as it is (--pool, -Q...). The workers must be
    able to import the modules your nodes are defined in.
    """
    try:
        from ..backends._celery import main as celery_main
    except ImportError:
        _fail("the celery backend needs its extra: pip install 'etherealfabric[celery]'")
        return
    given = {"--concurrency": concurrency, "--loglevel": loglevel,
             "--broker-url": broker_url, "--result-backend": result_backend}  # fmt: skip
    options = [f"{name}={value}" for name, value in given.items() if value is not None]
    sys.exit(celery_main(["worker", *options, *ctx.args]))
