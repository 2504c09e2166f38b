"""Define nodes: the ``Node`` base class, the ``@node`` decorator and output references.

Nothing here runs or stores anything. A node is a definition: the code to run (a ``Node``
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
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, overload

from ..config import check_options, keyword_options, strict_options
from ..errors import DefinitionError, UnknownOutputError
from ._context import CheckpointLike, current_checkpoint, current_collector
from ._files import check_writes
from ._policies import ErrorHandler, RetryPolicy, as_retry_policy, check_handler, check_timeout
from ._secret import check_secret_names, wrap_secret_params

__all__ = [
    "DEFAULT_OUTPUT",
    "FunctionNode",
    "Node",
    "NodeFunction",
    "NodeSpec",
    "OutputRef",
    "OutputRefs",
    "Outputs",
    "node",
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
        if isinstance(names, str):
            names = [names]
        checked = [_check_output_name(node, n) for n in names]
        dupes = sorted({n for n in checked if checked.count(n) > 1})
        if dupes:
            raise DefinitionError(
                f"node {node._ef_label()!r} declares output(s) {dupes} more than once",
                nodes=(node._ef_label(),),
            )
        self._node = node
        self._names = tuple(checked)

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


def _check_output_name(node: Node, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise DefinitionError(
            f"node {node._ef_label()!r}: output names must be non-empty strings, got {name!r}",
            nodes=(node._ef_label(),),
        )
    return name


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


class Node:
    """Base class of class-defined nodes.

    Subclasses take their inputs as ``__init__`` arguments, declare ``self.outputs`` (a list of
    names) and implement ``run()``, which returns a dict with exactly those names. Inputs may
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
    :func:`node`).
    """

    version: ClassVar[str | None] = None
    retries: ClassVar[int | RetryPolicy | None] = None
    serializers: ClassVar[Mapping[str, str] | None] = None
    timeout: ClassVar[float | None] = None
    on_error: ClassVar[ErrorHandler | None] = None
    writes: ClassVar[Sequence[str] | None] = None
    on_driver: ClassVar[bool] = False

    _ef_args: tuple[Any, ...]
    _ef_kwargs: dict[str, Any]
    _ef_name: str | None
    _ef_outputs: Outputs

    def __new__(cls, *args: Any, **kwargs: Any) -> Node:
        self = super().__new__(cls)
        self._ef_args = args
        self._ef_kwargs = kwargs
        self._ef_name = None
        self._ef_outputs = Outputs(self, ())
        return self

    def __init__(self, *, name: str | None = None) -> None:
        if name is not None:
            self._ef_name = _check_node_name(name)

    @property
    def outputs(self) -> Outputs:
        """The declared outputs; ``outputs['name']`` is a reference to one of them."""
        return self._ef_outputs

    @outputs.setter
    def outputs(self, names: Sequence[str]) -> None:
        self._ef_outputs = Outputs(self, list(names))

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

    def _ef_label(self) -> str:
        return self._ef_name or type(self).__name__

    def _ef_default_name(self) -> str:
        return type(self).__name__

    def _ef_spec_parts(self) -> tuple[Callable[..., Any] | type, dict[str, Any]]:
        """The code object and the bound, named inputs of this node."""
        cls = type(self)
        if "_ef_bound" in self.__dict__:  # inputs never change after construction
            return cls, self.__dict__["_ef_bound"]
        params = _bind(cls.__init__, self._ef_label(), (self, *self._ef_args), self._ef_kwargs)
        params.pop(next(iter(params)), None)  # self
        self.__dict__["_ef_bound"] = params
        return cls, params

    def _ef_options(self) -> dict[str, Any]:
        cls = type(self)
        return {
            "version": cls.version,
            "retries": cls.retries,
            "serializers": dict(cls.serializers or {}),
            "timeout": cls.timeout,
            "on_error": _class_handler(cls),
            "writes": getattr(self, "writes", None),  # the class's, or the instance's own
            "on_driver": bool(cls.on_driver),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} node {self._ef_label()!r}>"


class FunctionNode(Node):
    """One call of an ``@node`` function inside a workflow."""

    def __init__(self, func: NodeFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        super().__init__(name=func.name)
        self._ef_func = func
        self._ef_args = args
        self._ef_kwargs = kwargs
        self.outputs = list(func.outputs)

    def _ef_label(self) -> str:
        return self._ef_name or self._ef_func.fn.__name__

    def _ef_default_name(self) -> str:
        return self._ef_func.fn.__name__

    def _ef_spec_parts(self) -> tuple[Callable[..., Any] | type, dict[str, Any]]:
        fn = self._ef_func.fn
        bound = self.__dict__.get("_ef_bound")
        if bound is None:  # inputs never change after the call
            bound = self.__dict__["_ef_bound"] = _bind(
                fn, self._ef_label(), self._ef_args, self._ef_kwargs
            )
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


class NodeFunction:
    """A plain function turned into a node factory by ``@node``.

    Called inside ``with Workflow():`` it adds a node and returns a reference to its output
    (or its :class:`Outputs` when it declares several). Called anywhere else it simply calls
    the function, so node functions stay easy to unit-test. ``secret=["token"]`` makes those
    parameters :class:`~etherealfabric.define._secret.Secret` values in the workflow.
    ``writes=["reports/summary.md", "models/"]`` declares the files and folders the function
    writes (relative to the workflow's root folder; see :func:`~etherealfabric.root_path`).
    ``on_driver=True`` runs the node in the driver process (a thread), whatever the backend:
    for a node that drives a cluster itself through :func:`~etherealfabric.context`
    (``context().spark``, ``context().dask_client``). It is cached like any node.
    """

    @strict_options
    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        outputs: Sequence[str] | None = None,
        version: str | int | None = None,
        retries: int | RetryPolicy | None = None,
        serializers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_error: ErrorHandler | None = None,
        secret: Sequence[str] | None = None,
        writes: Sequence[str] | str | None = None,
        on_driver: bool = False,
    ) -> None:
        if not callable(fn) or inspect.isclass(fn):
            raise DefinitionError(f"@node decorates functions; got {fn!r}")
        self.fn = fn
        self.name = _check_node_name(name) if name is not None else None
        self.outputs: tuple[str, ...] = tuple(
            [outputs] if isinstance(outputs, str) else outputs or (DEFAULT_OUTPUT,)
        )
        self.version = None if version is None else str(version)
        self.retries = as_retry_policy(retries, where=f"@node {fn.__name__}")
        self.serializers = dict(serializers or {})
        self.timeout = check_timeout(timeout, where=f"@node {fn.__name__}")
        self.on_error = check_handler(on_error, where=f"@node {fn.__name__}")
        self.secret = check_secret_names(fn, secret, where=f"@node {fn.__name__}")
        check_writes(writes, where=f"@node {fn.__name__}")  # fail at the decorator
        self.writes = writes
        self.on_driver = bool(on_driver)
        self.__etherealfabric_fn__ = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        workflow = current_collector()
        if workflow is None:
            return self.fn(*args, **kwargs)
        if self.secret:  # the named parameters become Secrets (see define/_secret.py)
            label = self.name or self.fn.__name__
            args, kwargs = wrap_secret_params(self.fn, self.secret, label, args, kwargs)
        fnode = FunctionNode(self, args, kwargs)
        fnode._ef_spec_parts()  # bind now so a wrong call fails at the call site
        workflow.add_node(fnode)
        if len(self.outputs) == 1:
            return fnode.outputs[self.outputs[0]]
        return OutputRefs(fnode)

    def __repr__(self) -> str:
        return f"<node function {self.fn.__qualname__}>"


@overload
def node(fn: Callable[..., Any], /) -> NodeFunction: ...
@overload
def node(
    *,
    name: str | None = None,
    outputs: Sequence[str] | None = None,
    version: str | int | None = None,
    retries: int | RetryPolicy | None = None,
    serializers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    on_error: ErrorHandler | None = None,
    secret: Sequence[str] | None = None,
    writes: Sequence[str] | str | None = None,
    on_driver: bool = False,
) -> Callable[[Callable[..., Any]], NodeFunction]: ...
def node(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Turn a function into a node: ``@node`` or ``@node(outputs=[...], version=..., retries=...)``."""
    check_options(options, keyword_options(NodeFunction), where="@node()")
    if fn is not None:
        return NodeFunction(fn, **options)
    return lambda f: NodeFunction(f, **options)


@dataclass(frozen=True)
class NodeSpec:
    """The frozen, validated definition of one node in a built graph."""

    name: str
    kind: str
    code: Callable[..., Any] | type
    is_class: bool
    params: Mapping[str, Any]
    call_args: tuple[Any, ...]
    call_kwargs: Mapping[str, Any]
    outputs: tuple[str, ...]
    upstream: frozenset[str]
    version: str | None = None
    #: declared file and folder outputs, relative to ``root`` (folders end with ``/``)
    writes: tuple[str, ...] = ()
    #: run in the driver process (threads), not on the backend's workers
    on_driver: bool = False
    #: the workflow's root folder (absolute); None for graphs built without one
    root: str | None = None
    retry: RetryPolicy | None = None
    serializers: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    on_error: ErrorHandler | None = None
    #: workflow parameters this node reads (dotted path -> value) and the arguments that are
    #: one parameter as a whole; filled in by ``define._params.bind_params``, for ``explain``
    workflow_params: Mapping[str, Any] = field(default_factory=dict)
    param_args: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


def _bind(
    fn: Callable[..., Any], label: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    try:
        bound = _signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise DefinitionError(f"node {label!r}: bad arguments: {exc}", nodes=(label,)) from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _check_node_name(name: object) -> str:
    """A node or workflow name: printable text without slashes (names reach paths, SQL
    parameters and terminals, so a control character such as an ANSI escape is refused)."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or any(c in name for c in "/\\")
        or not name.isprintable()
    ):
        raise DefinitionError(
            "node and workflow names must be non-empty printable text without slashes, "
            f"newlines or control characters, got {name!r}"
        )
    return name


def _class_handler(cls: type) -> ErrorHandler | None:
    """The ``on_error`` of a class node: a staticmethod or plain function attribute."""
    for klass in cls.__mro__:
        if "on_error" in klass.__dict__:
            value = klass.__dict__["on_error"]
            return value.__func__ if isinstance(value, staticmethod) else value
    return None
