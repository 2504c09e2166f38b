"""``Workflow``: the public facade. Define nodes in it, then ``execute()`` or ``plan()`` it.

The definition side (nodes, names, ordering edges, the ``with`` block) is
:class:`~etherealfabric.define._definition.Definition`; this class adds what runs it, and wires
the layers together in one place, so that none of them needs to know about the others::

    Workflow ─► plan.build(definition) ─► Graph ─► run.execute_workflow(graph, settings, ...)
             ─► observe (log lines, progress, metrics) subscribe to the run's events
             ─► Results
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .config import ENV, Settings, strict_options
from .define._definition import Definition, NodeLike
from .define._policies import check_flag

if TYPE_CHECKING:
    from .observe._dryrun import DryRun
    from .plan._graph import Graph
    from .run._events import Subscriber
    from .run._results import Results

__all__ = ["Workflow"]


class Workflow(Definition):
    """A DAG of nodes, executed with :meth:`execute`.

    Nodes join by :meth:`add_node`, by being referenced from a node that joins, or by calling
    ``@node`` functions inside ``with workflow:``. Settings given here (``home``, ``store``,
    ``backend``, ``max_workers``, ``durability``) beat the ``ETHEREALFABRIC_*`` environment
    variables, which beat the defaults. ``store`` is the shared store: a folder (a ``str`` or
    ``os.PathLike`` path), a URL (``"s3://bucket/prefix"``) or a store object
    (``ObjectStore(...)`` built with its own options, ``LocalStore(...)``). ``retries`` and ``on_error`` are the defaults of nodes
    that set none; ``keep_going=True`` lets independent branches finish after a failure
    (the default is fail-fast: no new node starts once one has failed).

    ``params`` declares the workflow's parameters with their defaults (a nested dict is a
    group; :class:`~etherealfabric.Param` declares one explicitly); ``wf.params.NAME`` refers
    to one as a node input, and ``execute(params=...)`` or ``etherealfabric run -p`` sets it
    for a run. A parameter is part of the keys of the nodes that take it, and only of those.
    """

    #: (file, line) of the user's last :meth:`execute` call, None before the first
    executed_at: tuple[str, int] | None = None

    def _block_contexts(self) -> list[AbstractContextManager[Any]]:
        # a definition block makes a few long-lived objects per node (100,000 nodes: about a
        # fifth of the block's time went to collections traversing them): fewer collections
        # while it lasts, as during a run; put back as they were when the block ends
        from .run._gcpause import fewer_collections

        return [fewer_collections(), *super()._block_contexts()]

    def _check_settings(self) -> None:
        """``Workflow(backend="nope")`` fails here, naming the argument and the known backends
        (with the closest), not at the first ``execute()``. A backend registered with
        :func:`~etherealfabric.backends.register_backend` must be registered before."""
        if self.settings["backend"] is not None:
            from .backends import check_backend_name

            check_backend_name(self.settings["backend"], setting="Workflow(backend=...)")

    def build(self, params: Mapping[str, Any] | None = None) -> Graph:
        """Validate the workflow and return its graph (raises on cycles and bad references).

        Parameter references (``wf.params.NAME``) become the values of ``params`` (dotted
        names or nested dicts; the declared defaults for the rest), checked against their types.
        """
        import dataclasses

        from .define._params import any_param_refs, bind_params
        from .plan._graph import build

        graph = build(self)
        values = self.param_set.resolve(params)
        if not any_param_refs():  # no node can hold one: nothing to bind
            return graph
        specs = {n: bind_params(s, self.param_set, values) for n, s in graph.specs.items()}
        return dataclasses.replace(graph, specs=specs)

    @strict_options
    def execute(
        self,
        *,
        targets: Iterable[NodeLike | str] | None = None,
        backend: str | None = None,
        max_workers: int | None = None,
        raise_on_error: bool = True,
        subscribers: Sequence[Subscriber] = (),
        keep_going: bool | None = None,
        resume: str | None = None,
        run_params: Mapping[str, Any] | None = None,
        force: Iterable[str] = (),
        params: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> Results:
        """Run the workflow: cached nodes are skipped, the rest run on the chosen backend.

        ``targets`` limits the run to those nodes and what they need. Returns
        :class:`~etherealfabric.Results` (values load lazily, on access). When a node
        fails, raises :class:`~etherealfabric.errors.RunFailedError` (whose ``results`` holds
        what did complete) unless ``raise_on_error=False``.

        ``resume=RUN_ID`` re-runs a recorded run (completed nodes come from the cache) and
        links the new run to it; resuming a run that succeeded does nothing and returns its
        results. ``run_params`` are recorded with the run (the CLI stores how to repeat it).
        ``subscribers`` receive every run event (see :class:`~etherealfabric.Event`).
        ``force`` names nodes (glob patterns allowed: ``"train*"``) that run again, with
        everything downstream of them, even when cached; ``resume=`` of a forced run forces
        those it did not finish (from their checkpoints), unless ``force`` is given.

        ``params`` sets workflow parameters for this run (``{"model.C": 0.5}`` or
        ``{"model": {"C": 0.5}}``; the rest keep their defaults): each value is checked against
        its parameter's type, an unknown name is an
        :class:`~etherealfabric.errors.UnknownParameterError` naming the closest one. The
        values are recorded with the run; ``resume=`` without ``params`` reuses the resumed
        run's.
        """
        from .define._context import outside_definition
        from .run._gcpause import fewer_collections

        caller = sys._getframe(1)  # the user's call (`etherealfabric run` names one made
        while caller.f_back and caller.f_globals.get("__name__", "").startswith("etherealfabric."):
            caller = caller.f_back  # while it imported the workflow file)
        self.executed_at = (caller.f_code.co_filename, caller.f_lineno)
        # a run keeps many objects alive (fewer full collections); no workflow is defined
        with fewer_collections(), outside_definition():  # while its nodes run
            return self._execute(
                targets=targets, backend=backend, max_workers=max_workers,
                raise_on_error=raise_on_error, subscribers=subscribers, keep_going=keep_going,
                resume=resume, run_params=run_params, force=force, params=params, **settings,
            )  # fmt: skip

    def _execute(
        self,
        *,
        targets: Iterable[NodeLike | str] | None,
        backend: str | None,
        max_workers: int | None,
        raise_on_error: bool,
        subscribers: Sequence[Subscriber],
        keep_going: bool | None,
        resume: str | None,
        run_params: Mapping[str, Any] | None,
        force: Iterable[str],
        params: Mapping[str, Any] | None,
        **settings: Any,
    ) -> Results:
        from .run._gcpause import no_collections

        # a process's first run imports the run machinery here: long-lived objects only, which
        # a collection would traverse for nothing (one took 5-15 ms); frozen at the block's end
        with no_collections():
            from .observe._logging import LogSubscriber, configure_logging
            from .run._session import RunRequest, execute_workflow

        if keep_going is not None:
            keep_going = check_flag(keep_going, name="keep_going", where=f"workflow {self.name!r}")
        names = None if targets is None else [self._target_name(t) for t in targets]
        overrides = {**self.settings, **settings}
        if backend is not None:
            overrides["backend"] = backend
        if max_workers is not None:
            overrides["max_workers"] = max_workers
        resolved = Settings.resolve(**overrides)
        if resume is not None and params is None:
            params = _recorded_params(resolved, resume)
        values = self.param_set.resolve(params)
        with no_collections():  # the graph lives as long as the run (run/_gcpause.py)
            graph = self.build(values)
        configure_logging(resolved.log_level)
        if self.param_set:
            run_params = {**(run_params or {}), "workflow_params": values}

        def rerun(node: str) -> Results:
            return self.execute(targets=[node], params=values, **overrides)

        request = RunRequest(
            settings=resolved,
            backend_setting=_backend_setting(backend, overrides.get("backend")),
            targets=names,
            raise_on_error=raise_on_error,
            subscribers=(LogSubscriber(), *subscribers),
            keep_going=self.keep_going if keep_going is None else keep_going,
            resume=resume,
            run_params=dict(run_params or {}),
            force=tuple(force) if not isinstance(force, str) else (force,),
        )
        return execute_workflow(self, graph, request, rerun=rerun)

    @strict_options
    def plan(
        self,
        *,
        targets: Iterable[NodeLike | str] | None = None,
        params: Any = None,  # a Mapping (typed Any so that callers may pass **settings dicts)
        **settings: Any,
    ) -> DryRun:
        """What :meth:`execute` would do, without running or writing anything.

        Each node is ``cached`` or ``run`` with the reason (what changed since its last run)
        and an estimated duration from past runs. ``params`` as for :meth:`execute`.
        """
        from .observe._dryrun import plan_workflow

        names = None if targets is None else [self._target_name(t) for t in targets]
        graph = self.build(params)
        if names is not None:
            graph = graph.subgraph_for(names)
        settings_ = Settings.resolve(**{**self.settings, **settings})
        return plan_workflow(graph, settings_, root=self.root)

    def _target_name(self, target: NodeLike | str) -> str:
        if isinstance(target, str):
            return self.name_of(self[target])
        return self.name_of(target)


def _backend_setting(given: str | None, chosen: str | None) -> str:
    """Where the backend's name came from, for an error that names it."""
    if given is not None:
        return "execute(backend=...)"
    return "Workflow(backend=...)" if chosen else ENV["backend"]


def _recorded_params(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """The workflow parameters recorded with run ``run_id`` (``None`` if there are none, or
    no such run: resuming it then fails with the journal's own message)."""
    import json

    from .errors import EtherealFabricError
    from .journal import Journal

    if not settings.journal_path.exists():
        return None
    try:
        with Journal(settings.journal_path, read_only=None) as journal:
            row = journal.get_run(run_id)
        recorded = json.loads(row.get("params") or "{}")
    except (EtherealFabricError, ValueError):
        return None
    values = recorded.get("workflow_params") if isinstance(recorded, dict) else None
    return values if isinstance(values, dict) else None
