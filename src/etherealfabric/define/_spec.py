"""The frozen definition of a node in a built graph (:class:`NodeSpec`), and binding helpers.

``plan/_graph.build`` turns each node of a workflow into a :class:`NodeSpec`; a mapped node
(``square.map(items)``) also carries a :class:`MapSpec` saying which parameter receives each
item and how many items may fail.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import DefinitionError
from ._policies import ErrorHandler, RetryPolicy

__all__ = [
    "MapSpec",
    "NodeSpec",
    "bind",
    "check_max_failures",
    "check_node_name",
    "class_handler",
    "plain_parameters",
    "spec_base",
    "spec_from_base",
]


@dataclass(frozen=True)
class MapSpec:
    """How a mapped node fans out: one child per item of the parameter ``item_param``.

    ``max_failures``: how many items may fail with the map still succeeding (the collected
    output then holds the items that succeeded): a count (``int``), or a fraction of the
    items (a ``float`` below 1). 0 by default: any failed item fails the map.
    """

    item_param: str
    max_failures: int | float = 0

    def allowed_failures(self, items: int) -> int:
        """How many of ``items`` may fail."""
        if isinstance(self.max_failures, float):
            return int(self.max_failures * items)
        return self.max_failures


def check_max_failures(value: object, *, where: str) -> int | float:
    """``max_failures``: None (0), a count >= 0, or a fraction in [0, 1)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DefinitionError(
            f"{where}: max_failures must be a count (int >= 0) or a fraction of the items "
            f"(a float in [0, 1)), got {value!r}"
        )
    if isinstance(value, float) and not 0.0 <= value < 1.0:
        raise DefinitionError(
            f"{where}: max_failures={value!r}: a fraction must be in [0, 1); give a count "
            "(an int) to allow a number of failed items"
        )
    if isinstance(value, int) and value < 0:
        raise DefinitionError(f"{where}: max_failures must not be negative, got {value}")
    return value


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
    #: set for a mapped node (``fn.map(items)``): which parameter takes each item
    map: MapSpec | None = None


#: the fields a :class:`NodeSpec` takes by default, for :func:`spec_base` (one object each,
#: shared by the specs made so: a spec is never changed, ``dataclasses.replace`` copies)
_DEFAULTS: dict[str, Any] = {}
for _field in dataclasses.fields(NodeSpec):
    if _field.default is not dataclasses.MISSING:
        _DEFAULTS[_field.name] = _field.default
    elif _field.default_factory is not dataclasses.MISSING:
        _DEFAULTS[_field.name] = _field.default_factory()
_REQUIRED = frozenset(f.name for f in dataclasses.fields(NodeSpec)) - _DEFAULTS.keys()
#: the fields :func:`spec_from_base` sets for each node
_OWN = frozenset({"name", "params", "call_args", "call_kwargs", "upstream"})


def spec_base(common: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of the specs that share ``common`` (an @node function's, in a build), the
    fields not given at their defaults, for :func:`spec_from_base`; checked here, once: with
    a node's own five fields, every field is set."""
    base = {**_DEFAULTS, **common}
    if not base.keys() | _OWN >= _REQUIRED:
        raise TypeError(f"NodeSpec lacks {sorted(_REQUIRED - _OWN - base.keys())}")
    return base


def spec_from_base(
    base: Mapping[str, Any],
    name: str,
    params: Mapping[str, Any],
    call_args: tuple[Any, ...],
    call_kwargs: Mapping[str, Any],
    upstream: frozenset[str],
) -> NodeSpec:
    """``NodeSpec(**base, name=name, ...)`` without the frozen dataclass's ``__init__``,
    which sets each of its 20 fields with ``object.__setattr__`` (4 µs a node): filling the
    new instance's ``__dict__`` makes the same spec at a third of that. The graph builder's
    way to make many specs of one function."""
    spec: NodeSpec = object.__new__(NodeSpec)
    fields = spec.__dict__
    fields.update(base)
    fields["name"] = name
    fields["params"] = params
    fields["call_args"] = call_args
    fields["call_kwargs"] = call_kwargs
    fields["upstream"] = upstream
    return spec


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


_EMPTY = inspect.Parameter.empty


def plain_parameters(fn: Callable[..., Any]) -> tuple[str, ...] | None:
    """The parameter names of ``fn`` when they are all ordinary (positional or keyword, no
    ``/``, ``*``, ``*args`` or ``**kwargs``), else None: then :func:`bind` maps a call's
    positional arguments to the first names in order, its keyword arguments by name."""
    plain = _plain(fn)
    return None if plain is None else plain[0]


@functools.lru_cache(maxsize=1024)
def _plain(fn: Callable[..., Any]) -> tuple[tuple[str, ...], dict[str, Any]] | None:
    """The parameter names and defaults of ``fn`` when every parameter is an ordinary one
    (positional or keyword: no ``/``, ``*``, ``*args`` or ``**kwargs``), else None."""
    names, defaults = [], {}
    for p in _signature(fn).parameters.values():
        if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            return None
        names.append(p.name)
        if p.default is not _EMPTY:
            defaults[p.name] = p.default
    return tuple(names), defaults


def bind(
    fn: Callable[..., Any], label: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments of a call of ``fn`` by parameter name, defaults applied (what
    ``Signature.bind`` and ``apply_defaults`` give, computed directly for a function of
    ordinary parameters called correctly: a few times faster, once per node)."""
    plain = _plain(fn)
    if plain is not None and len(args) <= len(plain[0]):
        names, defaults = plain
        if not kwargs and len(args) == len(names):  # every parameter given in order
            return dict(zip(names, args))  # noqa: B905 (equal lengths; strict= costs 0.5 us)
        given = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key in given or key not in names:  # twice, or unknown: Signature.bind says
                break
            given[key] = value
        else:
            if all(n in given or n in defaults for n in names):
                return {n: given[n] if n in given else defaults[n] for n in names}
    try:  # any other signature, and every bad call (its error message)
        bound = _signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise DefinitionError(f"node {label!r}: bad arguments: {exc}", nodes=(label,)) from None
    bound.apply_defaults()
    return dict(bound.arguments)


def check_node_name(name: object) -> str:
    """A node or workflow name: printable text without slashes, not ``.`` or ``..`` (names
    reach paths, URLs of the web UI, SQL parameters and terminals, so a control character
    such as an ANSI escape is refused)."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or any(c in name for c in "/\\")
        or not name.isprintable()
        or name.strip() in (".", "..")
    ):
        raise DefinitionError(
            "node and workflow names must be non-empty printable text without slashes, "
            f"newlines or control characters, and not '.' or '..', got {name!r}"
        )
    return name


def class_handler(cls: type) -> ErrorHandler | None:
    """The ``on_error`` of a class node: a staticmethod or plain function attribute."""
    for klass in cls.__mro__:
        if "on_error" in klass.__dict__:
            value = klass.__dict__["on_error"]
            return value.__func__ if isinstance(value, staticmethod) else value
    return None
