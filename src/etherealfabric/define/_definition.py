"""The definition side of a workflow: its nodes, their names, ordering edges, the ``with`` block.

:class:`Definition` knows nothing about running: ``plan/_graph.build`` turns it into a validated
graph, and ``workflow.Workflow`` (the public facade) adds ``execute`` and ``plan``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, TypeVar

from ..config import StoreLike, strict_options
from ..errors import DefinitionError, DuplicateNodeError
from ._context import defining
from ._files import note_root
from ._node import Node, OutputRef, OutputRefs, Outputs
from ._params import ParamRef, ParamSet
from ._policies import ErrorHandler, RetryPolicy, as_retry_policy, check_flag, check_handler
from ._refs import refs_of
from ._spec import check_node_name

__all__ = ["Definition", "NodeLike", "as_node"]

NodeLike = Node | OutputRef | Outputs | OutputRefs
_D = TypeVar("_D", bound="Definition")


class Definition:
    """A DAG of nodes: what a workflow is, before anything runs.

    It keeps the nodes, their names and the ordering edges, and the settings and failure
    policy given to it, without interpreting them; :class:`etherealfabric.Workflow` documents
    them and adds running.
    """

    @strict_options
    def __init__(
        self,
        name: str | None = None,
        *,
        home: str | Path | None = None,
        store: str | os.PathLike[str] | StoreLike | None = None,
        backend: str | None = None,
        max_workers: int | None = None,
        durability: str | None = None,
        root: str | os.PathLike[str] | None = None,
        retries: int | RetryPolicy | None = None,
        on_error: ErrorHandler | None = None,
        keep_going: bool = False,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = check_node_name(name) if name is not None else _caller_name()
        #: the folder declared file outputs (``writes=``) are relative to, and that absolute
        #: paths in parameters are keyed relative to: ``root=``, else the workflow file's
        self.root = os.path.abspath(root if root is not None else _caller_folder())
        note_root(self.root)  # module globals holding paths under it are keyed relative to it
        self.param_set = ParamSet(params, workflow=self.name)
        self.settings: dict[str, Any] = {
            "home": home,
            "store": store,
            "backend": backend,
            "max_workers": max_workers,
            "durability": durability,
        }
        self._check_settings()
        self.retries = as_retry_policy(retries, where=f"workflow {self.name!r}")
        self.on_error = check_handler(on_error, where=f"workflow {self.name!r}")
        self.keep_going = check_flag(keep_going, name="keep_going", where=f"workflow {self.name!r}")
        self._nodes: dict[int, Node] = {}
        self._names: dict[int, str] = {}
        self._by_name: dict[str, Node] = {}
        self._after: list[tuple[Node, Node]] = []
        self._suffix: dict[str, int] = {}
        self._blocks: list[ExitStack] = []

    def _check_settings(self) -> None:
        """Refuse settings that can never work, as the definition is made (the facade checks
        the backend's name: this layer knows no backends)."""

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
        key = id(node)
        if key in self._nodes:
            if name is not None and name != self._names[key]:
                self._rename(node, check_node_name(name))
            return node
        try:
            refs = refs_of(node)
        except RecursionError:
            raise DefinitionError(
                f"node {node._ef_label()!r}: an input is nested too deeply or contains itself; "
                "pass a flatter value (or build the structure inside a node)",
                nodes=(node._ef_label(),),
            ) from None
        nodes = self._nodes
        for ref in refs:
            if id(ref.node) not in nodes:  # (a node added already is left as it is)
                self.add_node(ref.node)
        label = self._choose_name(node, name)
        self._nodes[key] = node
        self._names[key] = label
        self._by_name[label] = node
        return node

    def add_dependency(self, upstream: NodeLike, downstream: NodeLike) -> None:
        """Make ``downstream`` run after ``upstream`` (both are added if needed)."""
        before, after = as_node(upstream), as_node(downstream)
        if before is after:
            raise DefinitionError(f"node {before._ef_label()!r} cannot depend on itself")
        self.add_node(before)
        self.add_node(after)
        self._after.append((before, after))

    def _choose_name(self, node: Node, name: str | None) -> str:
        explicit = check_node_name(name) if name is not None else node.node_name
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
    def params(self) -> ParamRef:
        """The declared parameters, as references: ``wf.params.n_rows``, ``wf.params.model.C``
        (see :class:`~etherealfabric.define._params.ParamRef`)."""
        return ParamRef(self.param_set, "")

    @property
    def nodes(self) -> list[Node]:
        """The nodes, in the order they were added."""
        return list(self._nodes.values())

    @property
    def ordering_edges(self) -> list[tuple[Node, Node]]:
        """Edges added with :meth:`add_dependency`."""
        return list(self._after)

    def names_by_id(self) -> dict[int, str]:
        """Every node's name by the node's ``id()``, in the order the nodes were added (valid
        while the nodes are alive: the graph builder's look-up table)."""
        return dict(self._names)

    def name_of(self, node: NodeLike) -> str:
        """The node's name in this workflow."""
        n = as_node(node)
        try:
            return self._names[id(n)]
        except KeyError:
            raise DefinitionError(f"{n!r} is not part of workflow {self.name!r}") from None

    def __getitem__(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            import difflib  # (only for a suggestion)

            known = ", ".join(sorted(self._by_name)) or "none"
            close = difflib.get_close_matches(name, list(self._by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DefinitionError(
                f"workflow {self.name!r} has no node {name!r}; its nodes: {known}{hint}"
            ) from None

    def __contains__(self, node: object) -> bool:
        if isinstance(node, str):
            return node in self._by_name
        return (
            isinstance(node, (Node, OutputRef, Outputs, OutputRefs))
            and id(as_node(node)) in self._nodes
        )

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self._nodes)} nodes>"

    # -- the function API context ---------------------------------------------------------------
    def __enter__(self: _D) -> _D:
        block = ExitStack()
        try:
            for context in self._block_contexts():
                block.enter_context(context)
        except BaseException:
            block.close()
            raise
        self._blocks.append(block)
        return self

    def _block_contexts(self) -> list[AbstractContextManager[Any]]:
        """What a ``with`` block of this definition enters, in order (and leaves reversed)."""
        return [defining(self)]

    def __exit__(self, *exc: object) -> None:
        self._blocks.pop().__exit__(None, None, None)


def as_node(value: NodeLike) -> Node:
    if isinstance(value, Node):
        return value
    if isinstance(value, (OutputRef, Outputs, OutputRefs)):
        return value.node
    raise DefinitionError(f"expected a node or a node's output, got {type(value).__name__}")


def _caller_name() -> str:
    """A default workflow name: the file name of the script that builds it."""
    filename = _caller_file()
    return Path(filename).stem if filename is not None else "workflow"


def _caller_folder() -> str:
    """A default workflow root: the folder of the script that builds it, else the current one."""
    filename = _caller_file()
    return os.path.dirname(os.path.abspath(filename)) if filename is not None else os.getcwd()


def _caller_file() -> str | None:
    """The file of the script that builds the workflow, if it has one.

    The first frame outside this package is the user's (wrappers and subclasses inside the
    package add frames of their own).
    """
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(_PACKAGE):
        frame = frame.f_back  # type: ignore[assignment]
    filename = frame.f_globals.get("__file__") if frame is not None else None
    return filename if isinstance(filename, str) else None


_PACKAGE = __name__.split(".")[0] + "."
