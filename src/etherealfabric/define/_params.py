"""Workflow parameters: declared with defaults, referenced while defining, set for each run.

A workflow declares its parameters as a tree of defaults; a default's type is the parameter's
type (``Param(default, type=..., help=...)`` says it explicitly, and is needed for a ``None``
default)::

    with Workflow("train", params={"n_rows": 20_000, "model": {"C": 1.0}}) as wf:
        data = load(wf.params.n_rows)                  # a reference, like a node's output
        model = fit(data, C=wf.params.model.C)

``wf.params.n_rows`` is a :class:`ParamRef`: a placeholder, not a value. When the workflow
builds its graph for a run, :func:`bind_params` replaces every reference with that run's value
(the default, or what the command line, a params file or ``execute(params=...)`` set), so the
value is an ordinary literal input of the nodes that take it: it is part of the keys of exactly
those nodes, and changing ``model.C`` re-runs ``fit`` and what depends on its output, nothing
else. Each node's spec also records which parameters it reads (``workflow_params``), so
``explain`` can say ``param model.C: 1.0 → 0.5``.

Values are JSON-like, since they come from the command line and from YAML or TOML files:
``bool``, ``int``, ``float`` (an int is accepted and made a float, so ``C=1`` and ``C=1.0``
give one key), ``str``, ``list`` and ``dict``. :class:`ParamSet` checks every value against its
parameter's type and names the closest declared parameter for an unknown one (an
:class:`~etherealfabric.errors.UnknownParameterError`). Nothing here reads files: the command
line loads params files (``cli/_params.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn

from ..errors import ParameterError, UnknownParameterError, a_or_an
from ._node import NodeSpec
from ._refs import replace_refs

__all__ = ["Param", "ParamRef", "ParamSet", "any_param_refs", "bind_params"]

_TYPES: tuple[type, ...] = (bool, int, float, str, list, dict)
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


class Param:
    """A parameter declared explicitly: its default, its type and a line of help.

    ``Param(0.1)`` is the same as ``0.1``; ``Param(None, type=int)`` is an optional int (its
    value is an int or ``None``); ``Param({"a": 1}, type=dict)`` is one parameter whose value is
    a whole dict (a plain dict declares a group of parameters instead).
    """

    __slots__ = ("default", "help", "type")

    def __init__(self, default: Any, *, type: type | None = None, help: str = "") -> None:
        self.default = default
        self.type = type
        self.help = help

    def __repr__(self) -> str:
        kind = "" if self.type is None else f", type={self.type.__name__}"
        return f"Param({self.default!r}{kind})"


@dataclasses.dataclass(frozen=True, eq=False)
class _Leaf:
    path: str
    type: type
    default: Any
    nullable: bool
    help: str

    def describe(self) -> str:
        """``an int (default 20000)``: what the parameter takes."""
        name = self.type.__name__
        kind = a_or_an(name) + (" or null" if self.nullable else "")
        return f"{kind} (default {self.default!r})"

    def helped(self, message: str) -> str:
        """``message`` about this parameter, ending with its ``help=`` text when it has one."""
        return f"{message} ({self.path}: {self.help.strip()})" if self.help.strip() else message


class ParamSet:
    """The declared parameters of one workflow: leaves by dotted path, and their groups."""

    def __init__(self, declared: Mapping[str, Any] | None, *, workflow: str) -> None:
        self.workflow = workflow
        self.leaves: dict[str, _Leaf] = {}
        self.groups: dict[str, tuple[str, ...]] = {"": ()}
        if declared is not None and not isinstance(declared, Mapping):
            raise ParameterError(
                f"workflow {workflow!r}: params= takes a dict of parameter names to defaults, "
                f"got {type(declared).__name__}"
            )
        self._declare("", declared or {})

    def _declare(self, prefix: str, declared: Mapping[str, Any]) -> None:
        children = []
        for name, value in declared.items():
            if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
                raise ParameterError(
                    f"workflow {self.workflow!r}: parameter names are identifiers not starting "
                    f"with '_' (they are read as wf.params.NAME), got {name!r} in "
                    f"{prefix or 'params'}",
                    setting=f"{prefix}{name}",
                )
            path = f"{prefix}{name}"
            children.append(name)
            if isinstance(value, Mapping):
                self.groups[path] = ()
                self._declare(f"{path}.", value)
            else:
                self.leaves[path] = self._leaf(path, value)
        self.groups[prefix.rstrip(".")] = tuple(children)

    def _leaf(self, path: str, value: Any) -> _Leaf:
        decl = value if isinstance(value, Param) else Param(value)
        kind = decl.type or (type(decl.default) if decl.default is not None else None)
        if kind is None:
            raise ParameterError(
                f"workflow {self.workflow!r}: parameter {path!r} has the default None, which "
                f"says nothing of its type; declare it as Param(None, type=int) (or str, ...)",
                setting=path,
            )
        if kind is tuple:
            kind = list
        if kind not in _TYPES:
            raise ParameterError(
                f"workflow {self.workflow!r}: parameter {path!r} is {a_or_an(kind.__name__)}; "
                "parameters are bool, int, float, str, list or dict (values that the command "
                "line and params files can give)",
                setting=path,
            )
        leaf = _Leaf(path, kind, None, decl.default is None, decl.help)
        default = None if decl.default is None else self._check(leaf, decl.default)
        return dataclasses.replace(leaf, default=default)

    # -- names -------------------------------------------------------------------------------
    @property
    def paths(self) -> list[str]:
        """Every parameter's dotted path, in declaration order."""
        return list(self.leaves)

    def __bool__(self) -> bool:
        return bool(self.leaves)

    def unknown(self, path: str) -> NoReturn:
        """Raise :class:`UnknownParameterError` for ``path``, naming the closest parameter."""
        raise UnknownParameterError(
            path, workflow=self.workflow, known=[*self.leaves, *(g for g in self.groups if g)]
        )

    def members(self, group: str) -> list[str]:
        """The leaf paths under ``group`` ("" is the root)."""
        prefix = f"{group}." if group else ""
        return [p for p in self.leaves if p.startswith(prefix)]

    # -- values ------------------------------------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        """Every parameter's default, by dotted path."""
        return {p: copy.deepcopy(leaf.default) for p, leaf in self.leaves.items()}

    def resolve(self, *sources: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every parameter's value, by dotted path: the defaults, updated by each source in turn.

        A source maps dotted paths (``"model.C"``) or nested dicts (``{"model": {"C": 1}}``)
        to values; each value is checked against its parameter's type.
        """
        values = self.defaults()
        for source in sources:
            values.update(self.flatten(source or {}))
        return values

    def flatten(
        self, source: Mapping[str, Any], prefix: str = "", *, text: bool = False
    ) -> dict[str, Any]:
        """``source`` as checked values by dotted path (unknown names are errors).

        ``text=True`` (values from a file) parses a string given for a parameter that is not
        a string as the command line would (YAML reads ``1e-3`` as a string).
        """
        if not isinstance(source, Mapping):
            raise ParameterError(
                f"parameters are given as a dict of names to values, got {type(source).__name__}"
            )
        flat: dict[str, Any] = {}
        for name, value in source.items():
            path = f"{prefix}{name}"
            leaf = self.leaves.get(path)
            if leaf is not None:
                if text and isinstance(value, str) and leaf.type is not str:
                    value = _parse_text(leaf, value)
                flat[path] = self._check(leaf, value)
            elif path in self.groups and path:
                if not isinstance(value, Mapping):
                    raise ParameterError(
                        f"parameter {path!r} is a group ({', '.join(self.members(path))}); "
                        f"give its members values, not the group: got {value!r}",
                        setting=path,
                    )
                flat.update(self.flatten(value, f"{path}.", text=text))
            else:
                self.unknown(path)
        return flat

    def parse(self, assignment: str) -> tuple[str, Any]:
        """``"model.C=0.5"`` as ``("model.C", 0.5)``: the text parsed as the parameter's type."""
        path, sep, text = assignment.partition("=")
        path = path.strip()
        if not sep or not path:
            raise ParameterError(
                f"a parameter is set as NAME=VALUE (such as n_rows=500), got {assignment!r}"
            )
        leaf = self.leaves.get(path)
        if leaf is None:
            if path in self.groups:
                raise ParameterError(
                    f"parameter {path!r} is a group; set its members: "
                    f"{', '.join(f'{m}=...' for m in self.members(path))}",
                    setting=path,
                )
            self.unknown(path)
        return path, self._check(leaf, _parse_text(leaf, text))

    def value_of(self, path: str, values: Mapping[str, Any]) -> Any:
        """The value of a leaf, or of a group as a nested dict, from resolved ``values``."""
        if path in self.leaves:
            return copy.deepcopy(values[path])
        tree: dict[str, Any] = {}
        for member in self.members(path):
            rest = member[len(path) + 1 :] if path else member
            *parents, last = rest.split(".")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = copy.deepcopy(values[member])
        return tree

    def _check(self, leaf: _Leaf, value: Any) -> Any:
        if value is None and leaf.nullable:
            return None
        kind = leaf.type
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # too large for a float: as infinite as 1e999
                value = math.inf
        elif kind is list and isinstance(value, tuple):
            value = list(value)
        elif kind is dict and isinstance(value, Mapping):
            value = dict(value)
        elif not ok:
            raise ParameterError(
                leaf.helped(
                    f"workflow {self.workflow!r}: parameter {leaf.path!r} takes "
                    f"{leaf.describe()}, got {type(value).__name__} {value!r}"
                ),
                setting=leaf.path,
            )
        if kind is not str and _non_finite(value):
            raise ParameterError(
                leaf.helped(
                    f"workflow {self.workflow!r}: parameter {leaf.path!r} takes "
                    f"{leaf.describe()}; {value!r} "
                    f"{'is not' if isinstance(value, float) else 'holds'} a finite number: "
                    "parameters are JSON values, which have no NaN or infinity (and NaN equals "
                    "nothing): give a finite number, or declare Param(None, type=float) and "
                    "pass null for 'no value'"
                ),
                setting=leaf.path,
            )
        return value


def _non_finite(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is, or holds (in lists and dicts), a NaN or infinite float."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if depth < 64 and isinstance(value, (list, tuple)):
        return any(_non_finite(item, depth + 1) for item in value)
    if depth < 64 and isinstance(value, Mapping):
        return any(_non_finite(item, depth + 1) for item in value.values())
    return False


def _parse_text(leaf: _Leaf, text: str) -> Any:
    """A command-line value as the parameter's type (``_check`` then checks it)."""
    stripped = text.strip()
    if leaf.nullable and stripped.lower() in ("null", "none"):
        return None
    kind = leaf.type
    try:
        if kind is str:
            return text
        if kind is bool:
            word = stripped.lower()
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise ValueError
        if kind is int:
            return int(stripped)
        if kind is float:
            return float(stripped)
        return json.loads(stripped)
    except ValueError:
        example = {
            bool: "true or false",
            int: "an int",
            float: "a number",
            list: "a JSON list such as [1, 2]",
            dict: 'a JSON object such as {"a": 1}',
        }[kind]
        raise ParameterError(
            leaf.helped(
                f"parameter {leaf.path!r} takes {leaf.describe()}; {text!r} is not {example}"
            ),
            setting=leaf.path,
        ) from None


class ParamRef:
    """A reference to a workflow parameter (``wf.params.model.C``) or group (``wf.params.model``).

    Pass it to a node as an input, anywhere inside its arguments; the node receives the run's
    value (a group: a dict of its members' values). It has no value while the workflow is
    defined, so it cannot be tested, iterated or computed with.
    """

    __slots__ = ("_ef_path", "_ef_set")
    _ef_path: str
    _ef_set: ParamSet

    def __new__(cls, *args: Any, **kwargs: Any) -> ParamRef:
        _MADE[0] = True  # (copies and unpickled ones too: they are made by __new__)
        return super().__new__(cls)

    def __init__(self, params: ParamSet, path: str) -> None:
        object.__setattr__(self, "_ef_set", params)
        object.__setattr__(self, "_ef_path", path)

    def __getattr__(self, name: str) -> ParamRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> ParamRef:
        params: ParamSet = self._ef_set
        if self._ef_path in params.leaves:
            raise ParameterError(
                f"parameter {self._ef_path!r} is a value, not a group: it has no member {name!r}",
                setting=self._ef_path,
            )
        path = f"{self._ef_path}.{name}" if self._ef_path else name
        if path not in params.leaves and path not in params.groups:
            params.unknown(path)
        return ParamRef(params, path)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            "parameters are set per run (execute(params=...), -p NAME=VALUE), not assigned"
        )

    def __dir__(self) -> Iterable[str]:
        prefix = self._ef_path
        return list(self._ef_set.groups.get(prefix, ()))

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"{self!r} is a reference; pass it to a node, which gets its value")

    def __bool__(self) -> bool:
        raise TypeError(
            f"{self!r} has no value while the workflow is defined: pass it to a node, and "
            "decide inside the node"
        )

    def __reduce__(self) -> Any:
        raise TypeError(f"{self!r} is a reference, not a value: it cannot be pickled")

    def __str__(self) -> str:  # an f-string, str(), a path: the reference's text, silently
        raise TypeError(
            f"{self!r} has no value while the workflow is defined, so it cannot be made into "
            "text (an f-string, str(), a file name): pass it to a node, and build the text "
            "inside the node"
        )

    def __format__(self, spec: str) -> str:
        return str(self)

    def __fspath__(self) -> str:
        raise TypeError(
            f"{self!r} has no value while the workflow is defined, so it is no path yet "
            "(File(wf.params.x), Path(wf.params.x)): pass the parameter to a node, and make "
            "the File or Path inside it (a node returning File(path) tracks the file)"
        )

    def __repr__(self) -> str:
        params: ParamSet = self._ef_set
        leaf = params.leaves.get(self._ef_path)
        if leaf is None:
            return f"<params {self._ef_path or params.workflow}>"
        return f"<param {leaf.path}: {leaf.describe()}>"


#: whether a :class:`ParamRef` was ever made in this process: until one is, no node holds one
#: and binding them is skipped (a 100,000-node graph: 0.2 s)
_MADE = [False]


def any_param_refs() -> bool:
    """False while no :class:`ParamRef` exists in this process (nothing to bind)."""
    return _MADE[0]


def bind_params(spec: NodeSpec, params: ParamSet, values: Mapping[str, Any]) -> NodeSpec:
    """``spec`` with each :class:`ParamRef` in its inputs replaced by its value in ``values``.

    The spec records the parameters it read (``workflow_params``, path → value) and which of
    its arguments are a parameter as a whole (``param_args``): ``explain`` names those.
    """
    if not any(map(_has_ref, spec.params.values())):  # the common case, kept cheap
        return spec
    used: dict[str, Any] = {}

    def value(ref: ParamRef) -> Any:
        path = ref._ef_path
        if ref._ef_set is not params:
            raise ParameterError(
                f"node {spec.name!r} takes parameter {path!r} of workflow "
                f"{ref._ef_set.workflow!r}, not of workflow {params.workflow!r} that it is in",
                setting=path,
            )
        used[path or "params"] = params.value_of(path, values)
        return params.value_of(path, values)

    bound = {k: replace_refs(v, value, kind=ParamRef) for k, v in spec.params.items()}
    if not used:
        return spec
    return dataclasses.replace(
        spec,
        params=bound,
        call_args=tuple(replace_refs(a, value, kind=ParamRef) for a in spec.call_args),
        call_kwargs={k: replace_refs(v, value, kind=ParamRef) for k, v in spec.call_kwargs.items()},
        workflow_params=dict(sorted(used.items())),
        param_args=frozenset(k for k, v in spec.params.items() if isinstance(v, ParamRef)),
    )


_SCALARS = (str, int, float, bool, bytes, type(None))


def _has_ref(value: Any) -> bool:
    """Whether a :class:`ParamRef` is anywhere inside ``value`` (where ``replace_refs`` looks)."""
    if isinstance(value, _SCALARS):
        return False
    if isinstance(value, ParamRef):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(map(_has_ref, value))
    if isinstance(value, dict):
        return any(map(_has_ref, value.values()))
    return False
