"""Wire one run together: settings → journal, store, cache, backend, events → scheduler → results."""

from __future__ import annotations

import json
import logging
import secrets
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..backends import create_backend
from ..config import ENV, Settings
from ..errors import RunFailedError
from ..journal._journal import Journal, is_local_filesystem
from ..observe._logging import LogSubscriber, configure_logging
from ..store import Store, open_store
from ._cache import ArtifactCache
from ._events import Event, EventBus, Subscriber
from ._recorder import JournalRecorder
from ._results import Results
from ._scheduler import RunOutcome, RunPolicy, Scheduler

if TYPE_CHECKING:
    from ..workflow import Workflow

__all__ = ["execute_workflow", "new_run_id", "open_home"]

log = logging.getLogger("etherealfabric")


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261125-211530-3f9a1c``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def open_home(settings: Settings) -> tuple[Journal, Store]:
    """Open the journal and the store that ``settings`` point at."""
    durable = settings.durability == "safe"
    settings.home.mkdir(parents=True, exist_ok=True)
    if not is_local_filesystem(settings.home):
        log.warning(
            "the home %s is on a network file system; SQLite's journal is not safe there. "
            "Set ETHEREALFABRIC_HOME to a local folder and share artifacts with "
            "ETHEREALFABRIC_STORE instead.",
            settings.home,
        )
    journal = Journal(settings.journal_path, durable=durable)
    return journal, open_store(settings.store_location, durable=durable)


def execute_workflow(
    workflow: Workflow,
    *,
    targets: Sequence[str] | None,
    settings: Mapping[str, Any],
    raise_on_error: bool,
    subscribers: Sequence[Subscriber] = (),
    keep_going: bool = False,
    resume: str | None = None,
    run_params: Mapping[str, Any] | None = None,
) -> Results:
    """Run ``workflow`` once; see :meth:`Workflow.execute`."""
    resolved = Settings.resolve(**settings)
    configure_logging(resolved.log_level)
    graph = workflow.build()
    journal, store = open_home(resolved)
    journal.mark_interrupted()
    params = dict(run_params or {})
    if resume is not None:
        previous = journal.get_run(resume)
        resume = previous["id"]
        targets = targets if targets is not None else _recorded_targets(previous)
        if previous["status"] == "succeeded":
            log.info("run %s already succeeded; nothing to resume", resume)
        params = {**_recorded_params(previous), **params}
    if targets is not None:
        graph = graph.subgraph_for(targets)
        params.setdefault("targets", list(targets))
    backend = create_backend(
        resolved.backend,
        setting="backend" if settings.get("backend") else ENV["backend"],
        max_workers=resolved.max_workers,
    )
    cache = ArtifactCache(journal, store, shared=resolved.shared_store)
    recorder = JournalRecorder(journal)
    bus = EventBus()
    subscribed: list[Subscriber] = [recorder, LogSubscriber(), *subscribers]
    for subscriber in subscribed:
        bus.subscribe(subscriber)
    if resume is not None and previous["status"] == "succeeded":
        cache = ArtifactCache(journal, store, shared=resolved.shared_store)
        finished = _finished_results(workflow, graph, resume, cache, settings)
        if finished is not None:
            weakref.finalize(finished, journal.close)
            return finished
    run_id = new_run_id()
    journal.start_run(
        run_id,
        workflow=workflow.name,
        backend=resolved.backend,
        nodes=len(graph.order),
        params=params,
        resumed_from=resume,
    )
    bus.emit(
        Event(
            "run_started",
            run_id,
            data={
                "workflow": workflow.name,
                "nodes": len(graph.order),
                "backend": resolved.backend,
            },
        )
    )
    scheduler = Scheduler(
        graph,
        run_id=run_id,
        backend=backend,
        cache=cache,
        store=store,
        bus=bus,
        inline_limit=resolved.inline_limit,
        policy=RunPolicy(
            keep_going=keep_going, default_retry=workflow.retries, on_error=workflow.on_error
        ),
        flush=recorder.flush,
    )
    try:
        with backend:
            outcome = scheduler.run()
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            _finish(
                bus, recorder, journal, run_id, status, scheduler.outcome.count("failed"), scheduler
            )
        except Exception as finish_error:  # e.g. the disk is full: keep the original error
            log.error("could not record the end of run %s: %s", run_id, finish_error)
        finally:
            journal.close()
        raise
    results = Results(workflow, run_id, outcome, cache, settings)
    _finish(
        bus, recorder, journal, run_id, results.status, results.failed, scheduler, results.counts()
    )
    weakref.finalize(results, journal.close)
    if results.status != "succeeded" and raise_on_error:
        raise _run_failed(results, outcome)
    return results


def _finish(
    bus: EventBus,
    recorder: JournalRecorder,
    journal: Journal,
    run_id: str,
    status: str,
    failed: int,
    scheduler: Scheduler,
    counts: dict[str, int] | None = None,
) -> None:
    counts = counts or {
        "executed": scheduler.outcome.count("succeeded", "failed"),
        "cached": scheduler.outcome.count("cached"),
        "failed": failed,
    }
    errors = [f"{n}: {r.error}" for n, r in scheduler.outcome.errors.items()]
    bus.emit(Event("run_finished", run_id, data={"status": status, "counts": counts}))
    recorder.flush()
    journal.release_leases(run_id)
    journal.finish_run(run_id, status=status, counts=counts, error="; ".join(errors) or None)


def _run_failed(results: Results, outcome: Any) -> RunFailedError:
    failures = {name: r.error or "" for name, r in outcome.errors.items()}
    first_name, first = next(iter(outcome.errors.items()))
    from ..errors import NodeFailedError

    cause = NodeFailedError(
        first_name,
        attempts=max(1, len(first.attempts)),
        original=first.exception,
        traceback=first.traceback or "",
    )
    lines = "\n".join(f"  {n}: {e}" for n, e in failures.items())
    blocked = [n for n, s in results.statuses.items() if s in ("upstream_failed", "cancelled")]
    more = f"\nnot run: {', '.join(blocked)}" if blocked else ""
    error = RunFailedError(
        f"run {results.run_id} of workflow {results.workflow.name!r} failed:\n{lines}{more}\n"
        f"original traceback of {first_name!r}:\n{first.traceback or ''}",
        results=results,
        failures=failures,
    )
    error.__cause__ = cause
    return error


def _recorded_params(run: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = json.loads(run.get("params") or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def _recorded_targets(run: Mapping[str, Any]) -> list[str] | None:
    targets = _recorded_params(run).get("targets")
    return list(targets) if targets else None


def _finished_results(
    workflow: Workflow, graph: Any, run_id: str, cache: ArtifactCache, settings: Mapping[str, Any]
) -> Results | None:
    """The results of a run that succeeded, from the cache; ``None`` if any are gone."""
    from ..plan._keys import make_plan

    plan = make_plan(graph, cache.lookup)
    if plan.to_run:
        return None
    outcome = RunOutcome(status=dict.fromkeys(graph.order, "cached"))
    for name in graph.order:
        record = cache.lookup(plan[name].key or "")
        if record is None:
            return None
        outcome.outputs[name] = record["outputs"]
    return Results(workflow, run_id, outcome, cache, settings)
