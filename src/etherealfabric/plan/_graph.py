"""Build and validate the workflow DAG. The only module that imports networkx.

``build`` turns a workflow's nodes into frozen :class:`NodeSpec` values (references replaced
by :class:`InputRef` name pairs, so nothing points back at live objects) and checks the graph:
unknown outputs, cycles (reported with their path) and self-dependencies.

The graph is kept as plain adjacency dicts and ordered with Kahn's algorithm (ties broken by the
order nodes were added, so the order is deterministic). networkx is imported only where it earns
its cost: to report a cycle's path and for :meth:`Graph.to_networkx` (exports, analysis).
Importing it takes ~0.13 s, a third of the whole budget of a warm 1000-node run.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..define._files import check_writes
from ..define._node import FunctionNode, Node, NodeSpec, OutputRef
from ..define._policies import as_retry_policy, check_handler, check_timeout
from ..define._refs import replace_refs
from ..define._spec import plain_parameters, spec_base, spec_from_base
from ..errors import CycleError, DefinitionError, UnknownOutputError
from ..hashing._fingerprint import recheck_bindings
from ..hashing._usercode import qualified_name

if TYPE_CHECKING:
    from ..define._definition import Definition

__all__ = ["Graph", "InputRef", "build"]


@dataclass(frozen=True, slots=True, init=False)
class InputRef:
    """A reference to output ``output`` of the node named ``node``, inside a built spec."""

    node: str
    output: str

    def __init__(self, node: str, output: str) -> None:
        _SET_NODE(self, node)  # (the frozen dataclass's __init__ at a third of its cost:
        _SET_OUTPUT(self, output)  # each slot set through its descriptor; one per edge)

    def __repr__(self) -> str:
        return f"<input {self.node}.{self.output}>"


_SET_NODE, _SET_OUTPUT = (InputRef.__dict__[name].__set__ for name in ("node", "output"))
_new = object.__new__


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated workflow DAG: node specs by name and a deterministic topological order."""

    workflow: str
    specs: Mapping[str, NodeSpec]
    order: tuple[str, ...]
    preds: Mapping[str, tuple[str, ...]]
    succs: Mapping[str, tuple[str, ...]]
    ordering_edges: frozenset[tuple[str, str]] = frozenset()

    def upstream(self, name: str) -> tuple[str, ...]:
        """Direct predecessors of a node (data and ordering edges)."""
        return self.preds[name]

    def data_upstreams(self) -> dict[str, tuple[str, ...]]:
        """Each node's data upstreams (the nodes whose outputs it reads; not ordering-only
        ones), in order: the graph a run records as it starts (the web UI draws it)."""
        order = self.ordering_edges
        if not order:  # (the usual case: no call per node)
            return {n: self.preds[n] for n in self.order}
        return {n: tuple(u for u in self.preds[n] if (u, n) not in order) for n in self.order}

    def downstream(self, name: str) -> tuple[str, ...]:
        """Direct successors of a node."""
        return self.succs[name]

    def descendants(self, name: str) -> set[str]:
        """Every node that depends on ``name``, directly or not."""
        return _reach(name, self.succs)

    def ancestors(self, name: str) -> set[str]:
        """Every node ``name`` depends on, directly or not."""
        return _reach(name, self.preds)

    def subgraph_for(self, targets: Iterable[str]) -> Graph:
        """The graph restricted to ``targets`` and everything they depend on."""
        keep: set[str] = set()
        for name in targets:
            if name not in self.specs:
                raise DefinitionError(f"unknown target node {name!r}", nodes=(name,))
            keep |= {name, *self.ancestors(name)}
        order = tuple(n for n in self.order if n in keep)
        preds = {n: tuple(p for p in self.preds[n] if p in keep) for n in order}
        succs = {n: tuple(s for s in self.succs[n] if s in keep) for n in order}
        edges = frozenset(e for e in self.ordering_edges if e[0] in keep and e[1] in keep)
        return Graph(self.workflow, {n: self.specs[n] for n in order}, order, preds, succs, edges)

    def to_networkx(self) -> Any:
        """The graph as a ``networkx.DiGraph`` (edge attribute ``kind``: data or order)."""
        import networkx as nx

        dag = nx.DiGraph()
        dag.add_nodes_from(self.order)
        for name in self.order:
            for up in self.preds[name]:
                kind = "order" if (up, name) in self.ordering_edges else "data"
                dag.add_edge(up, name, kind=kind)
        return dag


def _reach(start: str, edges: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    stack = list(edges[start])
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(edges[n])
    return seen


def build(workflow: Definition) -> Graph:
    """Validate ``workflow`` and return its :class:`Graph`."""
    recheck_bindings()  # a global rebound since the last build changes its readers' keys
    names = workflow.names_by_id()
    specs: dict[str, NodeSpec] = {}
    root = getattr(workflow, "root", None)
    shared: dict[int, _Shared] = {}
    inputs: dict[tuple[int, str], InputRef] = {}
    for n in workflow.nodes:
        spec = _spec(n, names, root, shared, inputs)
        specs[spec.name] = spec
    _check_writes_apart(specs)
    ordering: set[tuple[str, str]] = set()
    extra: dict[str, set[str]] = {}  # the ordering edges' predecessors, by node
    for before, after in workflow.ordering_edges:
        a, b = names[id(before)], names[id(after)]
        if a == b:
            raise DefinitionError(f"node {a!r} cannot depend on itself", nodes=(a,))
        if a not in specs[b].upstream:
            ordering.add((a, b))
        extra.setdefault(b, set()).add(a)
    index = {name: i for i, name in enumerate(specs)}
    frozen_preds: dict[str, tuple[str, ...]] = {}
    succs: dict[str, list[str]] = {n: [] for n in specs}
    in_order = True  # every node after its predecessors: the order they were added is right
    for i, (name, spec) in enumerate(specs.items()):
        p: frozenset[str] | set[str] = spec.upstream
        if extra and name in extra:
            p = p | extra[name]
        ups = frozen_preds[name] = (
            tuple(p) if len(p) < 2 else tuple(sorted(p, key=index.__getitem__))
        )
        for up in ups:
            succs[up].append(name)
            if index[up] > i:
                in_order = False
    order = tuple(specs) if in_order else _toposort(frozen_preds, succs, index)
    return Graph(
        workflow.name,
        specs,
        order,
        frozen_preds,
        {n: tuple(s) for n, s in succs.items()},
        frozenset(ordering),
    )


def _check_writes_apart(specs: Mapping[str, NodeSpec]) -> None:
    """Refuse two nodes declaring the same path, or one a path inside the other's declared
    folder: a cache hit puts a declared folder back exactly as recorded (removing what its
    manifest does not list), so each path belongs to one node."""
    declared = sorted((path, name) for name, spec in specs.items() for path in spec.writes)
    for i, (path, owner) in enumerate(declared):
        for other, name in declared[i + 1 :]:
            if other != path and not (path.endswith("/") and other.startswith(path)):
                break
            if name != owner:
                raise DefinitionError(
                    f"node {name!r} declares writes= {other!r}, "
                    + ("which node" if other == path else f"inside the folder {path!r} that node")
                    + f" {owner!r} declares too: a declared file or folder belongs to one node "
                    "(a cache hit restores a folder exactly as its node left it). Give each "
                    "node its own folder.",
                    nodes=(owner, name),
                )


def _toposort(
    preds: Mapping[str, tuple[str, ...]], succs: Mapping[str, list[str]], index: Mapping[str, int]
) -> tuple[str, ...]:
    """The nodes in dependency order, ties broken by the order they were added.

    Nodes are added after the nodes they reference (``Definition.add_node``), so unless an
    ordering edge says otherwise that order is the answer: checked in one pass over the edges
    (the sort below gives the same order then, at several times the cost)."""
    if all(index[p] < index[n] for n, ps in preds.items() for p in ps):
        return tuple(preds)
    remaining = {n: len(p) for n, p in preds.items()}
    heap = [(index[n], n) for n, count in remaining.items() if count == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, n = heapq.heappop(heap)
        order.append(n)
        for s in succs[n]:
            remaining[s] -= 1
            if remaining[s] == 0:
                heapq.heappush(heap, (index[s], s))
    if len(order) != len(preds):
        _raise_cycle(preds, {n for n, c in remaining.items() if c > 0})
    return tuple(order)


_ATOMS = frozenset({int, str, float, bool, type(None), bytes})


#: what the specs of one @node function share in a build: the spec fields that do not change
#: from call to call (checked once), its output names, and its parameters' names if plain
_Shared = tuple[dict[str, Any], tuple[str, ...], tuple[str, ...] | None]


def _spec(
    n: Node,
    names: Mapping[int, str],
    root: str | None,
    shared: dict[int, _Shared],
    inputs: dict[tuple[int, str], InputRef],
) -> NodeSpec:
    """The spec of node ``n``. ``shared`` and ``inputs`` are the build's memos: what the specs
    of each @node function share (by the function's id), and each upstream output's
    :class:`InputRef` (by its node's id and its name)."""
    name = names[id(n)]
    # what does not change from one call of an @node function to the next (its options,
    # validated), computed once per function and build: most nodes of a large workflow are
    # calls of a few functions. A class node's options may be its instance's own.
    func = None
    args, kwargs = n._ef_args, n._ef_kwargs
    if type(n) is FunctionNode:
        func, outputs = n._ef_func, n._ef_names
        code = func.fn
        cached = shared.get(id(func))
        if cached is not None and cached[1] != outputs:  # (its outputs= was changed)
            cached = None
        plain = cached[2] if cached is not None else plain_parameters(code)
        params: dict[str, Any] | None = None  # every parameter given, in order: the call
        if plain is None or kwargs or len(args) != len(plain):  # kept no bound dict then
            params = n._ef_spec_parts()[1]
    else:
        (code, params), outputs, cached, plain = n._ef_spec_parts(), n.outputs.names, None, None
    upstream: set[str] = set()
    convert: _Convert | None = None  # made for the values that are neither atom nor reference
    try:
        converted_args = []
        for value in args:  # atoms and references inline: most arguments
            tp = type(value)
            if tp in _ATOMS:
                converted_args.append(value)
            elif tp is OutputRef:
                key = (id(value.node), value.name)
                found = inputs.get(key)
                if found is None:
                    found = inputs[key] = _input_ref(value, name, names)
                if found.node == name:
                    raise DefinitionError(f"node {name!r} cannot take its own output as input")
                upstream.add(found.node)
                converted_args.append(found)
            else:
                convert = convert or _Convert(name, names, inputs, upstream)
                converted_args.append(convert(value))
        call_args = tuple(converted_args)
        call_kwargs: dict[str, Any] = {}
        if kwargs:
            convert = convert or _Convert(name, names, inputs, upstream)
            call_kwargs = {k: convert(v) for k, v in kwargs.items()}
        if params is None:  # the parameters are the arguments, in order
            converted_params = dict(zip(plain, call_args))  # type: ignore[arg-type]  # noqa: B905
        elif plain is not None:  # the arguments by name, then defaults: no 2nd look
            converted_params = dict(zip(params, call_args))  # noqa: B905 (the first names)
            if len(converted_params) < len(params):
                for k, v in params.items():
                    if k not in converted_params:
                        if k in kwargs:
                            converted_params[k] = call_kwargs[k]
                        else:
                            convert = convert or _Convert(name, names, inputs, upstream)
                            converted_params[k] = convert(v)
        else:  # the same objects as the arguments (converted once: the memo by id)
            convert = convert or _Convert(name, names, inputs, upstream)
            converted_params = {k: convert(v) for k, v in params.items()}
    except RecursionError:
        raise DefinitionError(
            f"node {name!r}: an input is nested too deeply or contains itself; pass a flatter "
            "value (or build the structure inside a node)",
            nodes=(name,),
        ) from None
    if cached is None:
        options = n._ef_options()
        literal = {k: v for k, v in converted_params.items() if not isinstance(v, InputRef)}
        fields: dict[str, Any] = {
            "kind": qualified_name(code),
            "code": code,
            "is_class": isinstance(code, type),
            "outputs": outputs,
            "version": None if options["version"] is None else str(options["version"]),
            "writes": check_writes(options.get("writes"), where=f"node {name!r}", params=literal),
            "root": root,
            "retry": as_retry_policy(options["retries"], where=f"node {name!r}"),
            "serializers": _check_serializers(name, options["serializers"], outputs),
            "timeout": check_timeout(options["timeout"], where=f"node {name!r}"),
            "on_error": check_handler(options["on_error"], where=f"node {name!r}"),
            "on_driver": bool(options.get("on_driver", False)),
            "map": options.get("map"),
        }
        cached = (spec_base(fields), outputs, plain)
        # writes= may name the node's params: such a function's nodes are validated one by one
        if func is not None and not options.get("writes"):
            shared[id(func)] = cached
    return spec_from_base(
        cached[0], name, converted_params, call_args, call_kwargs, frozenset(upstream)
    )


def _input_ref(ref: OutputRef, name: str, names: Mapping[int, str]) -> InputRef:
    """The :class:`InputRef` of ``ref``, read by node ``name``, checked."""
    node = ref.node
    up = names.get(id(node))
    if up is None:  # pragma: no cover - workflow.add_node adds referenced nodes
        raise DefinitionError(f"node {name!r} refers to a node outside the workflow")
    if ref.name not in (node._ef_names if type(node) is FunctionNode else node.outputs):
        raise UnknownOutputError(up, ref.name, list(node.outputs))
    found: InputRef = _new(InputRef)  # (InputRef(up, ref.name) without its __init__ call:
    _SET_NODE(found, up)  # one per edge of a graph)
    _SET_OUTPUT(found, ref.name)
    return found


class _Convert:
    """One node's input values with every reference replaced by its :class:`InputRef` (the
    node's upstream nodes recorded); a value seen twice (an argument and the parameter it is
    bound to) is converted once."""

    __slots__ = ("done", "inputs", "name", "names", "upstream")

    def __init__(
        self,
        name: str,
        names: Mapping[int, str],
        inputs: dict[tuple[int, str], InputRef],
        upstream: set[str],
    ) -> None:
        self.name, self.names, self.inputs, self.upstream = name, names, inputs, upstream
        self.done: dict[int, Any] = {}

    def __call__(self, value: Any) -> Any:
        tp = type(value)
        if tp in _ATOMS:
            return value
        if tp is OutputRef:
            return self.ref(value)
        if isinstance(value, Node):  # (Report(fit) meant Report(fit.outputs['model']))
            label, outputs = value._ef_label(), list(value.outputs)
            raise DefinitionError(
                f"node {self.name!r} takes node {label!r} itself as an input, not one of its "
                f"outputs: pass its .outputs[{outputs[0] if outputs else 'NAME'!r}] (it declares "
                f"{outputs})",
                nodes=(self.name,),
            )
        found = self.done.get(id(value), self.done)
        if found is self.done:
            found = self.done[id(value)] = _replace_refs(value, self.ref)
        return found

    def ref(self, ref: OutputRef) -> InputRef:
        # the same output read by many nodes (a fan-out's root) is checked and made once
        # per build: by its node (alive for the build) and name
        key = (id(ref.node), ref.name)
        found = self.inputs.get(key)
        if found is None:
            found = self.inputs[key] = _input_ref(ref, self.name, self.names)
        if found.node == self.name:
            raise DefinitionError(f"node {self.name!r} cannot take its own output as input")
        self.upstream.add(found.node)
        return found


def _replace_refs(value: Any, to_input: Callable[[OutputRef], InputRef]) -> Any:
    """``replace_refs(value, to_input)``; a list or tuple of references (a gather's input)
    without a call per item."""
    tp = type(value)
    if (tp is list or tp is tuple) and value:
        items = []
        for item in value:
            if type(item) is not OutputRef:
                break
            items.append(to_input(item))
        else:
            return items if tp is list else tuple(items)
    return replace_refs(value, to_input)


def _check_serializers(
    name: str, chosen: Mapping[str, Any], outputs: tuple[str, ...]
) -> dict[str, str]:
    unknown = sorted(set(chosen) - set(outputs))
    if unknown:
        raise DefinitionError(
            f"node {name!r} chooses serializers for undeclared output(s) {unknown}; "
            f"its outputs are {list(outputs)}",
            nodes=(name,),
        )
    return {k: str(v) for k, v in chosen.items()}


def _raise_cycle(preds: Mapping[str, tuple[str, ...]], stuck: set[str]) -> None:
    import networkx as nx

    dag = nx.DiGraph()
    for n in stuck:
        dag.add_edges_from((p, n) for p in preds[n] if p in stuck)
    cycle = nx.find_cycle(dag)
    raise CycleError([edge[0] for edge in cycle])
