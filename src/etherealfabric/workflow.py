"""``Workflow``: a named collection of nodes, and the entry point that executes them."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .define._node import (
    Node,
    OutputRef,
    OutputRefs,
    Outputs,
    _check_node_name,
    _enter,
    _leave,
    refs_of,
)
from .define._policies import ErrorHandler, RetryPolicy, as_retry_policy, check_handler
from .errors import DefinitionError, DuplicateNodeError

if TYPE_CHECKING:
    import contextvars

    from .observe._explain import DryRun
    from .plan._graph import Graph
    from .run._events import Subscriber
    from .run._results import Results

__all__ = ["Workflow"]

NodeLike = Node | OutputRef | Outputs | OutputRefs


class Workflow:
    """A DAG of nodes, executed with :meth:`execute`.

    Nodes join by :meth:`add_node`, by being referenced from a node that joins, or by calling
    ``@node`` functions inside ``with workflow:``. Settings given here (``home``, ``store``,
    ``backend``, ``max_workers``, ``durability``) beat the ``ETHEREALFABRIC_*`` environment
    variables, which beat the defaults. ``retries`` and ``on_error`` are the defaults of nodes
    that set none; ``keep_going=True`` lets independent branches finish after a failure
    (the default is fail-fast: no new node starts once one has failed).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        home: str | Path | None = None,
        store: str | None = None,
        backend: str | None = None,
        max_workers: int | None = None,
        durability: str | None = None,
        retries: int | RetryPolicy | None = None,
        on_error: ErrorHandler | None = None,
        keep_going: bool = False,
    ) -> None:
        self.name = _check_node_name(name) if name is not None else _caller_name()
        self.settings: dict[str, Any] = {
            "home": home,
            "store": store,
            "backend": backend,
            "max_workers": max_workers,
            "durability": durability,
        }
        self.retries = as_retry_policy(retries, where=f"workflow {self.name!r}")
        self.on_error = check_handler(on_error, where=f"workflow {self.name!r}")
        self.keep_going = bool(keep_going)
        self._nodes: dict[int, Node] = {}
        self._names: dict[int, str] = {}
        self._by_name: dict[str, Node] = {}
        self._after: list[tuple[Node, Node]] = []
        self._suffix: dict[str, int] = {}
        self._tokens: list[contextvars.Token[Workflow | None]] = []

    # -- building ---------------------------------------------------------------------------
    def add_node(self, node: Node, name: str | None = None) -> Node:
        """Add ``node`` (and, first, any node it references); returns it.

        A node added twice is added once. ``name`` overrides the derived name (class or
        function name, with ``-2``, ``-3``... for later nodes of the same kind).
        """
        if not isinstance(node, Node):
            raise DefinitionError(
                f"add_node() takes a Node, got {type(node).__name__}: {node!r}. Decorate "
                "functions with @node and call them inside `with workflow:`."
            )
        if id(node) in self._nodes:
            if name is not None and name != self._names[id(node)]:
                self._rename(node, _check_node_name(name))
            return node
        for ref in refs_of(node):
            self.add_node(ref.node)
        label = self._choose_name(node, name)
        self._nodes[id(node)] = node
        self._names[id(node)] = label
        self._by_name[label] = node
        return node

    def add_dependency(self, upstream: NodeLike, downstream: NodeLike) -> None:
        """Make ``downstream`` run after ``upstream`` (both are added if needed)."""
        before, after = _as_node(upstream), _as_node(downstream)
        if before is after:
            raise DefinitionError(f"node {before._ef_label()!r} cannot depend on itself")
        self.add_node(before)
        self.add_node(after)
        self._after.append((before, after))

    def _choose_name(self, node: Node, name: str | None) -> str:
        explicit = _check_node_name(name) if name is not None else node.node_name
        if explicit is not None:
            if explicit in self._by_name:
                raise DuplicateNodeError(explicit)
            return explicit
        base = node._ef_default_name()
        label, n = base, self._suffix.get(base, 1)
        while label in self._by_name:
            n += 1
            label = f"{base}-{n}"
        self._suffix[base] = n
        return label

    def _rename(self, node: Node, name: str) -> None:
        if name in self._by_name:
            raise DuplicateNodeError(name)
        del self._by_name[self._names[id(node)]]
        self._names[id(node)] = name
        self._by_name[name] = node

    # -- looking up ---------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """The nodes, in the order they were added."""
        return list(self._nodes.values())

    @property
    def ordering_edges(self) -> list[tuple[Node, Node]]:
        """Edges added with :meth:`add_dependency`."""
        return list(self._after)

    def name_of(self, node: NodeLike) -> str:
        """The node's name in this workflow."""
        n = _as_node(node)
        try:
            return self._names[id(n)]
        except KeyError:
            raise DefinitionError(f"{n!r} is not part of workflow {self.name!r}") from None

    def __getitem__(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise DefinitionError(
                f"workflow {self.name!r} has no node {name!r}; its nodes: {known}"
            ) from None

    def __contains__(self, node: object) -> bool:
        if isinstance(node, str):
            return node in self._by_name
        return (
            isinstance(node, (Node, OutputRef, Outputs, OutputRefs))
            and id(_as_node(node)) in self._nodes
        )

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}: {len(self._nodes)} nodes>"

    # -- the function API context ---------------------------------------------------------------
    def __enter__(self) -> Workflow:
        self._tokens.append(_enter(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _leave(self._tokens.pop())

    # -- running ----------------------------------------------------------------------------------
    def build(self) -> Graph:
        """Validate the workflow and return its graph (raises on cycles and bad references)."""
        from .plan._graph import build

        return build(self)

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
        **settings: Any,
    ) -> Results:
        """Run the workflow: cached nodes are skipped, the rest run on the chosen backend.

        ``targets`` limits the run to those nodes and what they need. Returns
        :class:`~etherealfabric.run._results.Results` (values load lazily, on access). When a node
        fails, raises :class:`~etherealfabric.errors.RunFailedError` (whose ``results`` holds
        what did complete) unless ``raise_on_error=False``.

        ``resume=RUN_ID`` re-runs a recorded run (completed nodes come from the cache) and
        links the new run to it; resuming a run that succeeded does nothing and returns its
        results. ``run_params`` are recorded with the run (the CLI stores how to repeat it).
        """
        from .run._session import execute_workflow

        names = None if targets is None else [self._target_name(t) for t in targets]
        overrides = {**self.settings, **settings}
        if backend is not None:
            overrides["backend"] = backend
        if max_workers is not None:
            overrides["max_workers"] = max_workers
        return execute_workflow(
            self,
            targets=names,
            settings=overrides,
            raise_on_error=raise_on_error,
            subscribers=subscribers,
            keep_going=self.keep_going if keep_going is None else keep_going,
            resume=resume,
            run_params=run_params,
        )

    def plan(self, *, targets: Iterable[NodeLike | str] | None = None, **settings: Any) -> DryRun:
        """What :meth:`execute` would do, without running or writing anything.

        Each node is ``cached`` or ``run`` with the reason (what changed since its last run)
        and an estimated duration from past runs; see :class:`etherealfabric.observe._explain.DryRun`.
        """
        from .observe._explain import plan_workflow

        names = None if targets is None else [self._target_name(t) for t in targets]
        return plan_workflow(self, targets=names, **settings)

    def _target_name(self, target: NodeLike | str) -> str:
        if isinstance(target, str):
            return self.name_of(self[target])
        return self.name_of(target)


def _as_node(value: NodeLike) -> Node:
    if isinstance(value, Node):
        return value
    if isinstance(value, (OutputRef, Outputs, OutputRefs)):
        return value.node
    raise DefinitionError(f"expected a node or a node's output, got {type(value).__name__}")


def _caller_name() -> str:
    """A default workflow name: the file name of the script that builds it."""
    frame = sys._getframe(2)
    filename = frame.f_globals.get("__file__")
    if isinstance(filename, str):
        return Path(filename).stem
    return "workflow"
