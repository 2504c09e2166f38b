"""The canonical text of a syntax tree: the same on every Python version from 3.10 on.

``ast.dump`` is not a stable format: Python 3.12 added ``type_params`` to every definition,
3.13 stopped printing empty and ``None`` fields, and each version may add fields again. The
code fingerprint needs a form that only changes when the *code* changes, so this module writes
its own: the node's type name and the fields that carry meaning, in ``_fields`` order, as::

    FunctionDef(name='f' args=arguments(args=[arg(arg='x')]) body=[Return(value=Name(id='x'))])

Left out: positions (``lineno``, ``col_offset``...), ``ctx`` (load/store is implied by where a
name is), ``type_comment``, ``Constant.kind`` (the ``u`` prefix), and every field whose value
is ``None`` or an empty list (so a field a newer version adds, empty by default, such as
``type_params``, changes nothing). Constants are written with their type's name and ``repr``.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["canonical_text"]

_SKIPPED_FIELDS = frozenset({"ctx", "type_comment", "kind"})


def canonical_text(nodes: list[Any]) -> str:
    """The canonical form of a list of statements (or expressions), one per line."""
    return "\n".join(_node(n) for n in nodes)


def _node(node: ast.AST) -> str:
    fields = []
    for name in node._fields:
        if name in _SKIPPED_FIELDS:
            continue
        value = getattr(node, name, None)
        if value is None or (isinstance(value, list) and not value):
            continue
        if isinstance(node, ast.Constant) and name == "value":
            fields.append(f"value={_constant(value)}")
        else:
            fields.append(f"{name}={_field(value)}")
    return f"{type(node).__name__}({' '.join(fields)})"


def _field(value: object) -> str:
    if isinstance(value, ast.AST):
        return _node(value)
    if isinstance(value, list):
        return "[" + " ".join(_field(v) for v in value) + "]"
    if value is None:  # a hole in a list (``kw_defaults``, dict unpacking keys)
        return "-"
    return _constant(value)


def _constant(value: object) -> str:
    if isinstance(value, tuple):  # a folded tuple constant (never from ast.parse, but safe)
        return "(" + " ".join(_constant(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"
