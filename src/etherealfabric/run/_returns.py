"""What a node's code returned, as its named outputs: a function's value as the dict of its
declared outputs (one output: the value itself; several: a dict, or a tuple or list in their
order), checked against the declaration with an error that names the node and says what to
return (``OutputError``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import OutputError
from ._messages import Task

__all__ = ["check_outputs", "normalise"]


def normalise(task: Task, value: Any) -> Any:
    """A function's value as its outputs: wrapped for one output, a sequence zipped for several."""
    outputs = task.outputs
    if len(outputs) == 1:
        return {outputs[0]: value}
    if isinstance(value, (tuple, list)) and len(value) == len(outputs):
        return dict(zip(outputs, value, strict=True))
    return value


def check_outputs(task: Task, value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it holds exactly the declared outputs, else an OutputError naming the node."""
    declared = list(task.outputs)
    if value is None and not declared:
        return {}
    if type(value) is not dict and not isinstance(value, Mapping):  # (an ABC check: slower)
        got = type(value).__name__
        if isinstance(value, (tuple, list)):
            got = f"a {got} of {len(value)} values"
        many = ""
        if what == "the function" and len(declared) > 1:  # (one output takes any value)
            many = f" (or a tuple of {len(declared)} values, in that order)"
        raise OutputError(
            f"node {task.node!r}: {what} returned {got}; it must return a dict with the "
            f"declared outputs {declared}{many}",
            node=task.node,
        )
    missing = [n for n in declared if n not in value]
    extra = [str(n) for n in value if n not in task.outputs]
    if missing or extra:
        parts = [f"missing {missing}" if missing else "", f"undeclared {extra}" if extra else ""]
        raise OutputError(
            f"node {task.node!r}: {what} returned outputs that do not match the declared "
            f"{declared}: {', '.join(p for p in parts if p)}",
            node=task.node,
        )
    return value
