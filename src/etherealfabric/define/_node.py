"""Define nodes: the ``Node`` base class, the ``@node`` decorator and output references.

The ``@node`` decorator itself is in ``_function.py``. Nothing here runs or stores anything. A node is a definition: the code to run (a ``Node``
subclass or a plain function), the arguments it was given (literal values or references to
other nodes' outputs) and the names of its outputs. ``graph.build`` turns a workflow's nodes
into frozen :class:`NodeSpec` values; the worker re-creates the node with real values and calls
it.

Two ways, one model::

    class Double(Node):                      @node
        def __init__(self, x):               def double(x):
            super().__init__()                   return x * 2
            self.x = x
            self.outputs = ["y"]             with Workflow() as wf:
        def run(self):                           a = double(10)
            return {"y": self.x * 2}             b = double(a)      # a reference: an edge

    a = Double(10)
    b = Double(a.outputs["y"])               # a reference: an edge

A :class:`MapNode` maps a node over the items of a sequence or mapping known only at run time
(``double.map(items)``, ``Double.map(items)``): the scheduler runs one child per item, keyed
by the item's content, and collects their outputs into a list (or a dict).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol, TypeGuard, overload

from ..errors import DefinitionError, UnknownOutputError
from ._context import CheckpointLike, current_checkpoint, current_collector, outside_definition
from ._policies import ErrorHandler, RetryPolicy
from ._spec import MapSpec, NodeSpec, bind, check_max_failures, check_node_name, class_handler

__all__ = [
    "DEFAULT_OUTPUT",
    "FunctionNode",
    "MapNode",
    "Node",
    "NodeSpec",
    "OutputRef",
    "OutputRefs",
    "Outputs",
]

DEFAULT_OUTPUT = "result"


class OutputRef:
    """A reference to one named output of a node; passing it as an input creates an edge."""

    __slots__ = ("name", "node")

    def __init__(self, node: Node, name: str) -> None:
        self.node = node
        self.name = name

    def __repr__(self) -> str:
        return f"<output {self.node._ef_label()}.{self.name}>"

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{self!r} is a reference, not a value: it cannot be pickled. Pass it to a node "
            "as an input; the node receives the value."
        )


class Outputs(Sequence[str]):
    """The declared output names of a node; ``outputs['name']`` gives an :class:`OutputRef`.

    It behaves as the list of names the node declared (``len``, iteration, ``in``), as in
    ``self.outputs = ['a', 'b']``, and indexing by name returns a reference.
    """

    __slots__ = ("_names", "_node")

    def __init__(self, node: Node, names: Sequence[str]) -> None:
        self._node = node
        if _checked(names):  # an @node function's, every call
            self._names = names
            return
        label = node._ef_label()
        self._names = _checked_names(f"node {label!r}", names, (label,))
        if len(_CHECKED) < 1024:
            _CHECKED.add(self._names)

    @classmethod
    def of_checked(cls, node: Node, names: tuple[str, ...]) -> Outputs:
        """The view of names already checked (a node's own), without checking them again."""
        self = object.__new__(cls)
        self._node, self._names = node, names
        return self

    @overload
    def __getitem__(self, key: int) -> str: ...
    @overload
    def __getitem__(self, key: slice) -> Sequence[str]: ...
    @overload
    def __getitem__(self, key: str) -> OutputRef: ...
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self._names:
                raise UnknownOutputError(self._node._ef_label(), key, list(self._names))
            return OutputRef(self._node, key)
        return self._names[key]

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Outputs):
            return self._names == other._names
        if isinstance(other, (list, tuple)):
            return list(self._names) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Outputs({list(self._names)!r})"

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def node(self) -> Node:
        return self._node


#: tuples of output names found valid (strings, no duplicates): a node of one of them is not
#: checked again (a workflow makes thousands of nodes of a few functions)
_CHECKED: set[tuple[str, ...]] = set()


def _checked(names: Sequence[str]) -> TypeGuard[tuple[str, ...]]:
    if type(names) is not tuple:
        return False
    try:
        return names in _CHECKED
    except TypeError:  # an unhashable name: the check says what is wrong with it
        return False


def _checked_names(
    where: str, names: Iterable[object], nodes: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """``names`` (one name: a str) as declared output names: non-empty strings, each once;
    else a :class:`DefinitionError` starting with ``where`` (the node, or its class)."""
    checked: list[str] = []
    for name in [names] if isinstance(names, str) else names:
        if not isinstance(name, str) or not name:
            raise DefinitionError(
                f"{where}: output names must be non-empty strings, got {name!r}", nodes=nodes
            )
        checked.append(name)
    if len(checked) > 1 and len(set(checked)) != len(checked):
        dupes = sorted({n for n in checked if checked.count(n) > 1})
        raise DefinitionError(f"{where} declares output(s) {dupes} more than once", nodes=nodes)
    return tuple(checked)


def _class_outputs(cls: type, declared: object) -> tuple[str, ...]:
    """The output names a node class's body declares, checked as ``self.outputs``'s are."""
    where = f"node class {cls.__qualname__}"
    if isinstance(declared, (bytes, Mapping)) or not isinstance(declared, Iterable):
        raise DefinitionError(
            f"{where}: outputs must be a list of output names (outputs = ['a', 'b']), got "
            f"{type(declared).__name__} {declared!r:.80}"
        )
    return _checked_names(where, declared)


class OutputRefs(tuple[OutputRef, ...]):
    """References to every output of a multi-output ``@node`` call, in declared order.

    Unpack it (``train, test = split(data)``) or index it by name (``outs["train"]``).
    Passed whole to another node, it arrives as a dict of values by output name.
    """

    node: Node

    def __new__(cls, node: Node) -> OutputRefs:
        self = super().__new__(cls, (OutputRef(node, n) for n in node.outputs.names))
        self.node = node
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.node.outputs[key]
        return super().__getitem__(key)

    def __repr__(self) -> str:
        return f"<outputs {self.node._ef_label()}: {list(self.node.outputs.names)}>"


class NodeFunctionLike(Protocol):
    """What a :class:`FunctionNode` reads of its ``@node`` function (``_function.NodeFunction``)."""

    fn: Callable[..., Any]
    name: str | None
    outputs: tuple[str, ...]
    version: str | None
    retries: RetryPolicy | None
    serializers: dict[str, str]
    timeout: float | None
    on_error: ErrorHandler | None
    writes: Sequence[str] | str | None
    on_driver: bool


class Node:
    """Base class of class-defined nodes.

    Subclasses take their inputs as ``__init__`` arguments, declare ``self.outputs`` (a list of
    names; or ``outputs = [...]``, a list or a tuple, in the class body: the same for every
    instance) and implement ``run()``, which returns a dict with exactly those names. Inputs may
    be literal values or references (``other.outputs['name']``). At run time the worker builds
    a fresh instance with the real input values and calls ``run()`` on it, so ``__init__``
    should only store its arguments.

    Class attributes set options for every instance: ``version`` (bump to force a re-run),
    ``retries`` (an int or :class:`RetryPolicy`), ``serializers`` (output name → serializer
    name) and ``writes`` (the files and folders ``run()`` writes, relative to the workflow's
    root folder, folders ending with ``/``; their content is stored and restored on a cache
    hit). An instance may set ``self.writes`` in ``__init__`` when the paths depend on its
    arguments; ``{name}`` in a path is filled from the literal argument ``name``.
    ``on_driver = True`` runs ``run()`` in the driver process whatever the backend (see
    :func:`node`). ``MyNode.map(items, **broadcast)`` maps the class over items known at run
    time (see :class:`MapNode`).
    """

    version: ClassVar[str | None] = None
    retries: ClassVar[int | RetryPolicy | None] = None
    serializers: ClassVar[Mapping[str, str] | None] = None
    timeout: ClassVar[float | None] = None
    on_error: ClassVar[ErrorHandler | None] = None
    #: not a ClassVar: an instance may set ``self.writes`` in ``__init__`` (typed code too)
    writes: Sequence[str] | None = None
    on_driver: ClassVar[bool] = False

    _ef_args: tuple[Any, ...]
    _ef_kwargs: dict[str, Any]
    _ef_name: str | None
    #: the declared output names, checked; ``outputs`` makes the view of them on each access
    #: (an Outputs kept here and pointing back made every node a reference cycle, freed only
    #: by a full collection: 0.3 s of CPU at the exit of a 100,000-node workflow)
    _ef_names: tuple[str, ...]
    #: the bound, named inputs, once asked (``_ef_spec_parts``); a plain attribute: reading
    #: ``self.__dict__`` makes CPython build the instance's dict (a microsecond a node)
    _ef_bound: dict[str, Any] | None = None
    #: a node made inside ``with Workflow():`` joins it (a map's node is added by ``map``)
    _ef_joins_block: ClassVar[bool] = True
    #: the output names the class body declares (``outputs = ["a", "b"]``), checked
    _ef_declared: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Take ``outputs = [...]`` (or a tuple, or one name) of the class body as the
        declared outputs of every instance; :attr:`outputs` stays the property that gives
        references (``node.outputs["a"]``), and ``self.outputs = ...`` may still override it."""
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if inspect.iscoroutinefunction(run) or inspect.isasyncgenfunction(run):
            raise DefinitionError(
                f"{cls.__name__}.run is async: a node's run() returns its outputs, not a "
                "coroutine; make it a plain method that runs it, `return asyncio.run(...)`"
            )
        declared = cls.__dict__.get("outputs")
        if declared is None or isinstance(declared, property):
            return
        delattr(cls, "outputs")
        cls._ef_declared = _class_outputs(cls, declared)

    def __new__(cls, *args: Any, **kwargs: Any) -> Node:
        self = super().__new__(cls)
        self._ef_args = args
        self._ef_kwargs = kwargs
        self._ef_name = None
        self._ef_names = cls._ef_declared
        return self

    def __init__(self, *, name: str | None = None) -> None:
        if name is not None:
            self._ef_name = check_node_name(name)
        collector = current_collector()
        if collector is not None and self._ef_joins_block:  # made in `with Workflow():`: added
            collector.add_node(self)  # (as a @node call is: named now, in the order made)

    @property
    def outputs(self) -> Outputs:
        """The declared outputs; ``outputs['name']`` is a reference to one of them."""
        return Outputs.of_checked(self, self._ef_names)

    @outputs.setter
    def outputs(self, names: Sequence[str]) -> None:
        if isinstance(names, str):  # one output: never its letters
            names = [names]
        elif isinstance(names, bytes) or not hasattr(names, "__iter__"):
            raise DefinitionError(
                f"node {self._ef_label()!r}: self.outputs must be a list of output names "
                f"(self.outputs = ['a', 'b']), got {type(names).__name__} {names!r:.80}",
                nodes=(self._ef_label(),),
            )
        self._ef_names = Outputs(self, list(names)).names

    @property
    def node_name(self) -> str | None:
        """The explicit name given with ``name=``, or ``None`` (the workflow derives one)."""
        return self._ef_name

    @property
    def checkpoint(self) -> CheckpointLike:
        """This node's checkpoint while it runs: ``self.checkpoint.save(state)`` / ``.load()``."""
        return current_checkpoint()

    def run(self) -> Mapping[str, Any]:
        """Compute and return ``{output_name: value}`` for every declared output."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement run()")

    @classmethod
    def map(
        cls, items: Any, /, *args: Any, max_failures: int | float | None = None, **broadcast: Any
    ) -> MapNode:
        """One instance per item of ``items`` (a reference to a list, tuple or dict output, or
        a literal one), each given the item as its first ``__init__`` argument and ``args``
        and ``broadcast`` as they are; a :class:`MapNode` whose outputs collect theirs.

        Inside ``with Workflow():`` the map is added to the workflow. ``max_failures``: how
        many items may fail (a count, or a fraction below 1) with the map still succeeding.
        """
        with outside_definition():  # the template is no node of the workflow
            template = cls(items, *args, **broadcast)  # type: ignore[call-arg]
        mapped = MapNode(template, max_failures=max_failures)
        collector = current_collector()
        if collector is not None:
            collector.add_node(mapped)
        return mapped

    def _ef_label(self) -> str:
        return self._ef_name or type(self).__name__

    def _ef_default_name(self) -> str:
        return type(self).__name__

    def _ef_spec_parts(self) -> tuple[Callable[..., Any] | type, dict[str, Any]]:
        """The code object and the bound, named inputs of this node."""
        cls = type(self)
        bound = self._ef_bound
        if bound is not None:  # inputs never change after construction
            return cls, bound
        params = bind(cls.__init__, self._ef_label(), (self, *self._ef_args), self._ef_kwargs)
        params.pop(next(iter(params)), None)  # self
        self._ef_bound = params
        return cls, params

    def _ef_options(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "version": cls.version,
            "retries": cls.retries,
            "serializers": dict(cls.serializers or {}),
            "timeout": cls.timeout,
            "on_error": class_handler(cls),
            "writes": getattr(self, "writes", None),  # the class's, or the instance's own
            "on_driver": bool(cls.on_driver),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} node {self._ef_label()!r}>"


class FunctionNode(Node):
    """One call of an ``@node`` function inside a workflow."""

    def __new__(cls, *args: Any, **kwargs: Any) -> FunctionNode:
        return object.__new__(cls)  # (``__init__`` sets what ``Node.__new__`` would)

    def __init__(
        self, func: NodeFunctionLike, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        name = func.name
        self._ef_name = None if name is None else check_node_name(name)
        self._ef_func = func
        self._ef_args = args
        self._ef_kwargs = kwargs
        names = func.outputs  # checked once per tuple of names
        self._ef_names = names if _checked(names) else Outputs(self, names).names

    def _ef_label(self) -> str:
        return self._ef_name or self._ef_func.fn.__name__

    def _ef_default_name(self) -> str:
        return self._ef_func.fn.__name__

    def _ef_spec_parts(self) -> tuple[Callable[..., Any] | type, dict[str, Any]]:
        fn = self._ef_func.fn
        bound = self._ef_bound
        if bound is None:  # inputs never change after the call
            label = self._ef_name or fn.__name__  # (_ef_label)
            bound = self._ef_bound = bind(fn, label, self._ef_args, self._ef_kwargs)
        return fn, bound

    def _ef_options(self) -> dict[str, Any]:
        f = self._ef_func
        return {
            "version": f.version,
            "retries": f.retries,
            "serializers": dict(f.serializers),
            "timeout": f.timeout,
            "on_error": f.on_error,
            "writes": f.writes,
            "on_driver": f.on_driver,
        }

    def __repr__(self) -> str:
        return f"<function node {self._ef_label()!r}>"


class MapNode(Node):
    """A node mapped over items known only at run time: one child per item, outputs collected.

    ``template`` is the node as if called with the whole ``items`` as its first argument (a
    ``FunctionNode`` or an instance of a ``Node`` subclass); each child gets one item in that
    parameter instead, and the other arguments as they are (broadcast). Each output of the map
    is the list of the children's outputs in item order, or a dict by the same keys when the
    items are a dict. Made by ``fn.map(items)`` (``_function.NodeFunction.map``) and
    :meth:`Node.map`; the scheduler runs it (``run/_mapping.py``).
    """

    _ef_joins_block = False

    def __init__(
        self, template: Node, *, max_failures: int | float | None = None, name: str | None = None
    ) -> None:
        super().__init__(name=name if name is not None else template.node_name)
        self._ef_template = template
        self._ef_args = template._ef_args
        self._ef_kwargs = template._ef_kwargs
        self.outputs = list(template.outputs.names)
        label = self._ef_label()
        code, params = template._ef_spec_parts()
        if not template._ef_args:
            raise DefinitionError(f"node {label!r}: map() needs the items to map over")
        item_param = next(iter(params))
        kind = _signature_of(code).parameters[item_param].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            raise DefinitionError(
                f"node {label!r}: map() passes each item as the first argument, but "
                f"{item_param!r} takes *args; give the code a named first parameter",
                nodes=(label,),
            )
        if template._ef_options().get("writes"):
            raise DefinitionError(
                f"node {label!r}: a mapped node cannot declare writes= (every child would "
                "write the same paths); return File outputs instead",
                nodes=(label,),
            )
        where = f"node {label!r}"
        self._ef_map = MapSpec(item_param, check_max_failures(max_failures, where=where))

    def _ef_label(self) -> str:
        return self._ef_name or self._ef_template._ef_label()

    def _ef_default_name(self) -> str:
        return self._ef_template._ef_default_name()

    def _ef_spec_parts(self) -> tuple[Callable[..., Any] | type, dict[str, Any]]:
        return self._ef_template._ef_spec_parts()

    def _ef_options(self) -> dict[str, Any]:
        return {**self._ef_template._ef_options(), "map": self._ef_map}

    def __repr__(self) -> str:
        return f"<map node {self._ef_label()!r} over {self._ef_args[0]!r}>"


def _signature_of(code: Callable[..., Any] | type) -> inspect.Signature:
    """The parameters a node takes: a function's, or a class's ``__init__`` without self."""
    if isinstance(code, type):
        init = code.__init__  # type: ignore[misc]
        params = list(inspect.signature(init).parameters.values())[1:]
        return inspect.Signature(params)
    return inspect.signature(code)
