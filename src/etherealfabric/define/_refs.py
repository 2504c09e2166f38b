"""References inside node inputs: find them, and copy values with each one replaced.

A node's inputs may hold references to other nodes' outputs anywhere inside lists, tuples,
sets and dicts. The graph builder replaces them by name pairs, the scheduler by handles of
stored values, the worker by the loaded values: all with :func:`replace_refs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._node import Node, OutputRef, OutputRefs, Outputs

__all__ = ["refs_of", "replace_refs", "walk_refs"]


def walk_refs(value: Any) -> Iterator[OutputRef]:
    """Yield every :class:`OutputRef` inside ``value`` (lists, tuples, sets, dict values)."""
    if isinstance(value, OutputRef):
        yield value
        return
    if isinstance(value, Outputs):
        for name in value.names:
            yield value[name]
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        items: Iterable[Any] = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    for item in items:  # a reference or an atom (a gather's input) without a nested walk
        tp = type(item)
        if tp is OutputRef:
            yield item
        elif tp not in _ATOMS:
            yield from walk_refs(item)


_ATOMS = frozenset({int, str, float, bool, type(None), bytes})


def replace_refs(
    value: Any, fn: Callable[[Any], Any], *, kind: type | tuple[type, ...] = ()
) -> Any:
    """Copy ``value`` with every reference replaced by ``fn(ref)``; untouched parts are shared.

    References are :class:`OutputRef` (and :class:`Outputs`, as a dict of its references) or,
    when given, instances of ``kind``. Lists, tuples (named tuples too), sets and dicts are
    searched.
    """
    if type(value) in _ATOMS and not (kind and isinstance(value, kind)):
        return value  # the common case first: a number or a name holds no reference
    if isinstance(value, OutputRef) or (kind and isinstance(value, kind)):
        return fn(value)
    if isinstance(value, (Outputs, OutputRefs)):
        return {name: fn(value.node.outputs[name]) for name in value.node.outputs.names}
    if isinstance(value, (list, tuple)):
        items = [replace_refs(v, fn, kind=kind) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*items)
        return type(value)(items) if type(value) in (list, tuple) else items
    if isinstance(value, (set, frozenset)):
        return type(value)(replace_refs(v, fn, kind=kind) for v in value)
    if isinstance(value, dict):
        new = {k: replace_refs(v, fn, kind=kind) for k, v in value.items()}
        if all(new[k] is value[k] for k in value):
            return value
        return new if type(value) is dict else type(value)(new)
    return value


def refs_of(n: Node) -> list[OutputRef]:
    """The references among a node's inputs."""
    refs: list[OutputRef] = []
    args, kwargs = n._ef_args, n._ef_kwargs
    for value in (*args, *kwargs.values()) if kwargs else args:  # (most calls: no kwargs)
        tp = type(value)
        if tp is OutputRef:  # the common inputs first: a reference, or an atom (none)
            refs.append(value)
        elif tp not in _ATOMS:
            refs.extend(walk_refs(value))
    return refs
