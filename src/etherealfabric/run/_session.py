"""Wire one run together: journal, store, cache, backend, events → scheduler → results.

:func:`execute_workflow` is what ``Workflow.execute`` calls with a built graph and resolved
settings. It owns every resource of the run and releases each on every path (the backend is
closed, the journal closed when the results are no longer used), and the run's journal writes
all go through one :class:`JournalRecorder`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import create_backend
from ..config import ENV, Settings
from ..define._definition import Definition
from ..errors import ConfigError, NodeFailedError, RunFailedError, StoreError
from ..hashing._fingerprint import code_fingerprint, settle_bindings
from ..hashing._packages import package_versions
from ..hashing._secret import SecretHasher, secret_hasher
from ..journal import Journal
from ..journal._connection import is_local_filesystem
from ..journal._liveness import gone
from ..journal._sweeps import begin_sweep, sweep_due, sweep_needed
from ..plan._graph import Graph
from ..states import EventKind, NodeStatus, RunStatus
from ..store import Store, check_run_writes, open_run_store
from ._cache import ArtifactCache
from ._checkpoint import end_attempts
from ._events import Event, EventBus, Subscriber
from ._gcpause import freeze_long_lived, no_collections
from ._preflight import (
    check_serializer_names,
    forced_nodes,
    missing_inputs,
    resumed_force,
    warn_machine_paths,
)
from ._recorder import JournalRecorder
from ._results import Results
from ._scheduler import RunOutcome, RunPolicy, Scheduler
from ._stopping import release_interrupts

__all__ = ["RunRequest", "Terminated", "execute_workflow", "new_run_id", "open_home"]

log = logging.getLogger("etherealfabric")


class Terminated(KeyboardInterrupt):
    """Raised in the driver's main thread by the command line's SIGTERM handler: the run stops
    as on a Ctrl-C (running nodes ``cancelled``, rows committed) and is recorded
    ``interrupted``, since it was stopped from outside, not by its user at the keyboard."""


@dataclass(frozen=True, eq=False)
class RunRequest:
    """How to run: resolved settings and the options of ``Workflow.execute``."""

    settings: Settings
    #: the setting that chose the backend, for error messages (an argument or a variable)
    backend_setting: str = "backend"
    targets: Sequence[str] | None = None
    raise_on_error: bool = True
    subscribers: Sequence[Subscriber] = ()
    keep_going: bool = False
    resume: str | None = None
    run_params: Mapping[str, Any] = field(default_factory=dict)
    force: Sequence[str] = ()  # node names or glob patterns: run them and what follows


def new_run_id() -> str:
    """A sortable, unique run id such as ``20261125-211530-3f9a1c``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"


def open_home(settings: Settings) -> tuple[Journal, Store]:
    """Open the journal and the store that ``settings`` point at."""
    durable = settings.durability == "safe"
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a read-only file system, a folder this user cannot write
        raise ConfigError(
            f"cannot create the home {settings.home} ({exc.strerror or exc}): point "
            f"{ENV['home']} at a folder this user can write",
            setting=ENV["home"],
        ) from None
    if not is_local_filesystem(settings.home):
        log.warning(
            "the home %s is on a network file system; SQLite's journal is not safe there. "
            "Set ETHEREALFABRIC_HOME to a local folder and share artifacts with "
            "ETHEREALFABRIC_STORE instead.",
            settings.home,
        )
    store = open_run_store(settings)
    check_run_writes(store)  # a read-only shared folder: now, not at the first node's write
    return Journal(settings.journal_path, durable=durable), store


def _remove_dead_temps(store: Store, home: Path) -> None:
    """Remove the temp files of writers of this host that are gone (a run killed while it
    wrote an output): after a crash, the next run leaves nothing of it behind. Those of
    another host, and every write in progress, are left alone (``cache gc`` judges them by
    age). Only when something could have died since the last sweep (``journal/_sweeps.py``):
    a warm run after a clean one lists no temp folder."""
    now = time.time()
    if not sweep_due(home, now):
        return
    begin_sweep(home, now)  # first: a run marked interrupted meanwhile makes the next sweep
    with contextlib.suppress(OSError, StoreError):
        store.cleanup_temp(max_age=math.inf, writer_gone=gone)


def execute_workflow(
    definition: Definition,
    graph: Graph,
    request: RunRequest,
    *,
    rerun: Callable[[str], Results] | None = None,
) -> Results:
    """Run ``graph`` once; see :meth:`etherealfabric.Workflow.execute`."""
    settings = request.settings
    package_versions()  # a bad ETHEREALFABRIC_PACKAGE_VERSIONS: an error now, not in each node
    journal, store = open_home(settings)
    # the home's own store is collected by `cache gc`: commit records only of present objects
    present = None if settings.shared_store else store.has_object
    recorder = JournalRecorder(journal, present=present)
    cache = ArtifactCache(
        journal,
        store,
        shared=settings.shared_store,
        writer=recorder,
        root=getattr(definition, "root", None),  # where file outputs are restored
    )
    try:
        recorder.mark_interrupted()
        _remove_dead_temps(store, settings.home)
        targets, params, previous = _resume_request(journal, request)
        if targets is not None:
            graph = graph.subgraph_for(targets)
            params.setdefault("targets", list(targets))
        # a --force pattern that names no node is the user's error: no run row, no backend
        force = fresh = forced_nodes(graph, request.force)
        if request.force:
            params["force"] = list(request.force)  # what a resume repeats
        elif previous is not None and _recorded_force(previous):
            # a resume repeats the run's --force for what it did not finish; those nodes go on
            # from the checkpoints the forced attempts saved (not from scratch)
            force = resumed_force(graph, journal, previous, _recorded_force(previous))
            fresh = frozenset()
        check_serializer_names(graph)
        _fingerprint_now(graph)
        if settings.shared_store:  # paths that keep keys machine-specific: say so
            warn_machine_paths(graph)
        with no_collections():  # they live as long as the run
            cache.preload(graph.workflow, graph.specs)  # a warm run's records in one query
        freeze_long_lived()  # the graph and those records live as long as the run
        if previous is not None and previous["status"] == RunStatus.SUCCEEDED:
            log.info("run %s already succeeded; nothing to resume", previous["id"])
            finished = _finished_results(
                definition, graph, previous["id"], cache, rerun, _secrets(settings)
            )
            if finished is not None:
                weakref.finalize(finished, journal.close)
                return finished
        backend = create_backend(
            settings.backend, setting=request.backend_setting, max_workers=settings.max_workers
        )
    except BaseException:
        journal.close()
        raise
    bus = EventBus()
    bus.subscribe(recorder, critical=True)
    for subscriber in request.subscribers:
        bus.subscribe(subscriber)
    resumed_from = previous["id"] if previous is not None else None
    try:
        return _run(
            definition,
            graph,
            request,
            backend,
            cache,
            recorder,
            bus,
            params,
            resumed_from,
            rerun,
            (force, fresh),
        )
    finally:
        settle_bindings()  # what the nodes changed in the globals they read is no change


def _fingerprint_now(graph: Graph) -> None:
    """Each node's code fingerprinted before any node runs, so what nodes change in the globals
    they read as the run goes on changes no key of this run (a consumer keyed once its producer
    ran saw the producer's change, and one keyed in a run where the producer was a hit did not)."""
    for code in {id(spec.code): spec.code for spec in graph.specs.values()}.values():
        with contextlib.suppress(Exception):  # (raised again when the node is keyed)
            code_fingerprint(code)


def _run(
    definition: Definition,
    graph: Graph,
    request: RunRequest,
    backend: Any,
    cache: ArtifactCache,
    recorder: JournalRecorder,
    bus: EventBus,
    params: dict[str, Any],
    resumed_from: str | None,
    rerun: Callable[[str], Results] | None,
    forced: tuple[frozenset[str], frozenset[str]],
) -> Results:
    settings, journal = request.settings, cache.journal
    force, fresh = forced  # nodes that run even when cached; those of them begun from scratch
    run_id = new_run_id()
    try:
        recorder.start_run(
            run_id,
            workflow=definition.name,
            backend=settings.backend,
            nodes=len(graph.order),
            # the root: where File outputs resolve when the run is opened later (open_run, cat)
            params={**params, "root": getattr(definition, "root", None)},
            resumed_from=resumed_from,
        )
        data = {"workflow": definition.name, "nodes": len(graph.order), "backend": settings.backend,
                # the run's graph as it starts (each node's data upstreams), recorded with the
                # event: the web UI draws it whole, and from this run alone (journal/_rungraph)
                "upstreams": graph.data_upstreams()}  # fmt: skip
        bus.emit(Event(EventKind.RUN_STARTED, run_id, data=data))
        scheduler = Scheduler(
            graph,
            run_id=run_id,
            backend=backend,
            cache=cache,
            store=cache.store,
            bus=bus,
            inline_limit=settings.inline_limit,
            recorder=recorder,
            policy=RunPolicy(
                keep_going=request.keep_going,
                force=force,
                fresh=fresh,
                default_retry=definition.retries,
                on_error=definition.on_error,
                durability=settings.durability,
            ),
            secrets=_secrets(settings),
        )
    except BaseException:
        backend.close()
        journal.close()
        raise
    try:
        with backend:
            try:
                outcome = scheduler.run(fail_first=missing_inputs(graph))
            finally:
                scheduler.release()
    except BaseException as exc:
        status = (
            RunStatus.INTERRUPTED
            if isinstance(exc, Terminated)
            else RunStatus.CANCELLED
            if isinstance(exc, KeyboardInterrupt)
            else RunStatus.FAILED
        )
        if isinstance(exc, KeyboardInterrupt):  # what it did, for the command's summary
            stopped = Results(definition, run_id, scheduler.outcome, cache, rerun)
            stopped.status = status
            exc.results = stopped  # type: ignore[attr-defined]
        # a node thread the run leaves behind (threads: it cannot be stopped) saves nothing
        end_attempts(run_id, f"its run was {status.value}")
        sweep_needed(settings.home)  # a worker it ended may have left a temp file half written
        try:
            _finish(bus, recorder, run_id, status, scheduler.outcome)
        except Exception as finish_error:  # e.g. the disk is full: keep the original error
            log.error("could not record the end of run %s: %s", run_id, finish_error)
        finally:
            journal.close()
            release_interrupts()  # (held since the scheduler met the Ctrl-C)
        raise
    results = Results(definition, run_id, outcome, cache, rerun)
    if results.status is not RunStatus.SUCCEEDED:  # (a node killed at its timeout, say)
        sweep_needed(settings.home)
    try:
        _finish(bus, recorder, run_id, results.status, outcome, results.counts())
    except BaseException:
        journal.close()
        raise
    if cache.layered:  # a shared store: the team cache's budget and notices
        from ._teamcache import after_run

        after_run(cache.store, journal, settings, run_id)
    weakref.finalize(results, journal.close)
    if results.status is not RunStatus.SUCCEEDED and request.raise_on_error:
        raise _run_failed(results, outcome)
    return results


def _resume_request(
    journal: Journal, request: RunRequest
) -> tuple[Sequence[str] | None, dict[str, Any], Mapping[str, Any] | None]:
    """The targets and parameters of this run, and the run it resumes (if any)."""
    params = dict(request.run_params)
    if request.resume is None:
        return request.targets, params, None
    previous = journal.get_run(request.resume)
    recorded = _recorded_params(previous)
    targets = request.targets
    if targets is None and recorded.get("targets"):
        targets = list(recorded["targets"])
    return targets, {**recorded, **params}, previous


def _finish(
    bus: EventBus,
    recorder: JournalRecorder,
    run_id: str,
    status: RunStatus,
    outcome: RunOutcome,
    counts: Mapping[str, int] | None = None,
) -> None:
    counts = counts or {
        "executed": outcome.executed,
        "cached": outcome.count(NodeStatus.CACHED),
        "failed": outcome.count(NodeStatus.FAILED),
    }
    errors = [f"{n}: {r.error}" for n, r in outcome.errors.items()]
    bus.emit(Event(EventKind.RUN_FINISHED, run_id, data={"status": status, "counts": counts}))
    recorder.finish_run(run_id, status=status, counts=counts, error="; ".join(errors) or None)


def _run_failed(results: Results, outcome: RunOutcome) -> RunFailedError:
    failures = {name: r.error or "" for name, r in outcome.errors.items()}
    first_name, first = next(iter(outcome.errors.items()))
    cause = NodeFailedError(
        first_name,
        attempts=max(1, len(first.attempts)),
        original=first.exception,
        traceback=first.traceback or "",
    )
    lines = "\n".join(f"  {n}: {e}" for n, e in failures.items())
    not_run = (NodeStatus.UPSTREAM_FAILED, NodeStatus.CANCELLED)
    blocked = [n for n, s in results.statuses.items() if s in not_run]
    more = f"\nnot run: {', '.join(blocked)}" if blocked else ""
    error = RunFailedError(
        f"run {results.run_id} of workflow {results.workflow.name!r} failed:\n{lines}{more}\n"
        f"original traceback of {first_name!r}:\n{first.traceback or ''}",
        results=results,
        failures=failures,
    )
    error.__cause__ = cause
    return error


def _recorded_force(run: Mapping[str, Any]) -> list[str]:
    """The ``--force`` patterns run ``run`` was started with (none: an empty list)."""
    force = _recorded_params(run).get("force")
    return [str(p) for p in force] if isinstance(force, list) else []


def _recorded_params(run: Mapping[str, Any]) -> dict[str, Any]:
    try:
        params = json.loads(run.get("params") or "{}")
    except ValueError:
        return {}
    return params if isinstance(params, dict) else {}


def _finished_results(
    definition: Definition,
    graph: Graph,
    run_id: str,
    cache: ArtifactCache,
    rerun: Callable[[str], Results] | None,
    secrets: SecretHasher,
) -> Results | None:
    """The results of a run that succeeded, from the cache; ``None`` if any are gone."""
    from ..plan._plan import make_plan  # (imported by a resume only)

    plan = make_plan(graph, cache.lookup, secrets=secrets)
    if plan.to_run:
        return None
    outcome = RunOutcome(status=dict.fromkeys(graph.order, NodeStatus.CACHED))
    for entry in plan:
        if entry.record is None or entry.key is None:
            return None
        outcome.outputs[entry.node] = entry.record["outputs"]
        outcome.keys[entry.node] = entry.key
    return Results(definition, run_id, outcome, cache, rerun)


def _secrets(settings: Settings) -> SecretHasher:
    """What keys Secret parameters in this run: the team's key or the home's own."""
    return secret_hasher(settings.home, shared_store=settings.shared_store)
