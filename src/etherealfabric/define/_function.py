"""The ``@node`` decorator: a plain function becomes a node factory (:class:`NodeFunction`).

Called inside ``with Workflow():`` a node function adds a :class:`~._node.FunctionNode` and
returns a reference to its output; ``fn.map(items, **broadcast)`` adds a
:class:`~._node.MapNode` that calls it once per item. Called anywhere else it is the plain
function (and ``fn.map`` a plain loop), so node functions stay easy to unit-test.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from ..config import check_options, keyword_options, strict_options
from ..errors import DefinitionError
from ._context import current_collector
from ._files import check_writes
from ._node import DEFAULT_OUTPUT, FunctionNode, MapNode, Node, OutputRef, OutputRefs
from ._policies import ErrorHandler, RetryPolicy, as_retry_policy, check_handler, check_timeout
from ._secret import check_secret_names, wrap_secret_params
from ._spec import check_node_name, plain_parameters

__all__ = ["NodeFunction", "node"]

_new_node = object.__new__


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
        if not isinstance(getattr(fn, "__name__", None), str):
            raise _unnamed(fn, name)
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise DefinitionError(
                f"@node {fn.__name__}: an async function is not a node (its call returns a "
                "coroutine, not a value); make the node a plain function that runs it, "
                f"`return asyncio.run({fn.__name__}_async(...))`"
            )
        self.fn = fn
        self.name = check_node_name(name) if name is not None else None
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
        fnode = _new_node(FunctionNode)  # (FunctionNode(...) without type.__call__ and the
        FunctionNode.__init__(fnode, self, args, kwargs)  # Python-level __new__: a call each)
        names = plain_parameters(self.fn)
        if kwargs or names is None or len(args) != len(names):
            fnode._ef_spec_parts()  # bind now so a wrong call fails at the call site
        # (else every parameter is given in order: the call is right, and the graph build
        # names the arguments itself, no dict kept per node: a 100,000-node workflow holds
        # 100,000 fewer objects for the collector to traverse, at every collection and exit)
        workflow.add_node(fnode)
        outputs = self.outputs
        if len(outputs) == 1:  # (the node's names are this function's, checked)
            return OutputRef(fnode, outputs[0])
        return OutputRefs(fnode)

    def map(
        self, items: Any, /, *, max_failures: int | float | None = None, **broadcast: Any
    ) -> Any:
        """Call the function once per item of ``items``; the result collects the calls' results.

        ``items`` is a reference to an output that is a list, tuple or other sequence (or a
        dict), or such a literal value; each call gets one item as the function's first
        argument and ``broadcast`` (references or literal values) as keyword arguments. The
        returned reference (one per output, as for a call) is a list in item order, or a dict
        with the items' keys. Each item is a child node keyed by the item's content, so
        adding, removing or reordering items re-runs only the new ones (and the collection).
        ``max_failures``: how many items may fail (a count, or a fraction below 1) with the
        map still succeeding; its outputs then hold the items that succeeded.

        Outside a workflow block this is a plain loop over the function.
        """
        workflow = current_collector()
        if workflow is None:
            if isinstance(items, Mapping):
                return {k: self.fn(v, **broadcast) for k, v in items.items()}
            return [self.fn(item, **broadcast) for item in items]
        if self.secret:
            label = self.name or self.fn.__name__
            args, broadcast = wrap_secret_params(self.fn, self.secret, label, (items,), broadcast)
            items = args[0]
        template = FunctionNode(self, (items,), broadcast)
        template._ef_spec_parts()  # bind now so a wrong call fails at the call site
        mapped = MapNode(template, max_failures=max_failures)
        workflow.add_node(mapped)
        return self._refs(mapped)

    def _refs(self, fnode: Node) -> Any:
        if len(self.outputs) == 1:  # (the node's names are this function's, checked)
            return OutputRef(fnode, self.outputs[0])
        return OutputRefs(fnode)

    def __repr__(self) -> str:
        return f"<node function {self.fn.__qualname__}>"


def _unnamed(fn: Callable[..., Any], name: str | None) -> DefinitionError:
    """Why a callable without a ``__name__`` (a ``functools.partial``, an object with
    ``__call__``) is not a node: its key would need the code it runs plus the values bound in
    it, which the fingerprint of a function does not see. What to do instead."""
    label = repr(name) if name is not None else f"{fn!r:.80}"
    if isinstance(fn, functools.partial):
        inner = getattr(fn.func, "__name__", "f")
        bound = ", ".join([*map(repr, fn.args), *(f"{k}={v!r}" for k, v in fn.keywords.items())])
        return DefinitionError(
            f"node {label}: a functools.partial cannot be a node (its cache key would not "
            f"include the values it binds: {bound:.80}); wrap the call in a def and make that "
            f"the node (`def {inner}_bound(x): return {inner}(x, {bound:.40})`), or make "
            f"{inner} the node and pass {bound:.40} as arguments when calling it"
        )
    return DefinitionError(
        f"node {label}: @node takes a function (def or lambda); got "
        f"{type(fn).__name__} {fn!r:.80}, which has no __name__; wrap the call in a def "
        "and make that the node"
    )


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
