"""What one function or class *is*: its normalised source, or its bytecode when there is none.

A piece of code is its source parsed and dumped without docstrings, comments, formatting or
line numbers (``ast.dump``); the digest is taken with and without the decorator lines of the
definition itself. Without source (``exec``'d code, generated classes), it is its bytecode,
constants and names; a class is its bases, constant attributes and its own methods' bytecode.

Also here: the small helpers that look inside functions and classes (following decorators,
listing the functions behind a class attribute, telling constants apart), shared with the
traversal in :mod:`etherealfabric.hashing._fingerprint`.
"""

from __future__ import annotations

import ast
import datetime
import enum
import functools
import inspect
import textwrap
import types
from pathlib import PurePath
from typing import Any

from ._builtins import hash_plain
from ._digest import digest_bytes
from ._usercode import qualified_name

__all__ = [
    "class_bytecode",
    "code_digest",
    "has_own_code",
    "is_constant",
    "member_functions",
    "normalized_source",
    "unwrap",
]

_SCALARS = (
    type(None), bool, int, float, complex, str, bytes, enum.Enum, PurePath,
    datetime.date, datetime.time, datetime.timedelta,
)  # fmt: skip
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MAX_UNWRAP = 100


# -- looking inside functions and classes ----------------------------------------------------


def unwrap(obj: object) -> object:
    """Follow ``__etherealfabric_fn__``, ``__wrapped__``, bound methods and partials."""
    for _ in range(_MAX_UNWRAP):
        inner = inspect.getattr_static(obj, "__etherealfabric_fn__", None)
        if inner is None and not isinstance(obj, type):
            inner = inspect.getattr_static(obj, "__wrapped__", None)
        if inner is None and isinstance(obj, types.MethodType):
            inner = obj.__func__
        if inner is None or inner is obj:
            return obj
        obj = inner
    return obj


def member_functions(member: object) -> list[types.FunctionType]:
    """The functions behind a class attribute: methods, static/class methods, properties."""
    if isinstance(member, (staticmethod, classmethod)):
        candidates: list[object] = [member.__func__]
    elif isinstance(member, property):
        candidates = [member.fget, member.fset, member.fdel]
    elif isinstance(member, functools.cached_property):
        candidates = [member.func]
    else:
        candidates = [member]
    unwrapped = (unwrap(c) for c in candidates if c is not None)
    return [fn for fn in unwrapped if isinstance(fn, types.FunctionType)]


def is_constant(value: object, depth: int = 0) -> bool:
    """None, bools, numbers, str, bytes, enum members, paths, dates, and containers of those."""
    if isinstance(value, _SCALARS):
        return True
    if depth > 20:
        return False
    if isinstance(value, (tuple, list, set, frozenset)):
        return all(is_constant(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(
            is_constant(k, depth + 1) and is_constant(v, depth + 1) for k, v in value.items()
        )
    return False


def has_own_code(obj: Any) -> bool:
    """Functions, and classes with methods written in their own module."""
    if not isinstance(obj, type):
        return True
    members = (fn for m in vars(obj).values() for fn in member_functions(m))
    return any(fn.__module__ == obj.__module__ for fn in members)


# -- normalized source -----------------------------------------------------------------------


def normalized_source(obj: Any) -> tuple[str, str] | None:
    """(digest without decorators, digest with them) of ``obj``'s parsed source, or None."""
    try:
        statements = _parse(inspect.getsource(obj))
    except (OSError, TypeError, SyntaxError):
        return None
    if getattr(obj, "__name__", "") == "<lambda>":
        statements = [n for s in statements for n in ast.walk(s) if isinstance(n, ast.Lambda)]
    with_decorators = _dump(statements)
    for statement in statements[:1]:
        if isinstance(statement, _DEFS):
            statement.decorator_list = []
    return _digest_text(_dump(statements)), _digest_text(with_decorators)


def _parse(source: str) -> list[Any]:
    """Parse a def (or lambda line), wherever it was indented; docstrings removed."""
    try:
        statements: list[Any] = ast.parse(textwrap.dedent(source)).body
    except SyntaxError:  # e.g. a less-indented line inside a string defeats dedent
        block = ast.parse("if True:\n" + source).body[0]
        statements = block.body if isinstance(block, ast.If) else [block]
    for statement in statements:
        _strip_docstrings(statement)
    return statements


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, _DEFS) and _starts_with_docstring(node.body):
            node.body = node.body[1:] or [ast.Pass()]


def _starts_with_docstring(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    return (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )


def _dump(statements: list[Any]) -> str:
    return "\n".join(
        ast.dump(s, annotate_fields=True, include_attributes=False) for s in statements
    )


def _digest_text(text: str) -> str:
    return digest_bytes(text.encode())


# -- bytecode --------------------------------------------------------------------------------


def code_digest(code: types.CodeType) -> str:
    """Bytecode, constants (nested code recursively) and names; no file names or lines."""
    consts = tuple(
        ("code", code_digest(c)) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return hash_plain(
        (
            "bytecode", code.co_code, consts, code.co_names, code.co_varnames,
            code.co_freevars, code.co_cellvars, code.co_argcount, code.co_kwonlyargcount,
        )
    )  # fmt: skip


def class_bytecode(cls: type) -> str:
    """A class without source: its bases, constant attributes and its own methods' bytecode.

    Methods made elsewhere (``namedtuple``'s ``__new__``, inherited enum machinery) count by
    name only, so generated classes such as ``namedtuple("P", "x y")`` are stable.
    """
    members: list[tuple[str, object]] = []
    for attr, member in sorted(vars(cls).items()):
        functions = member_functions(member)
        if functions:
            members.append((attr, tuple(_method_digest(fn, cls) for fn in functions)))
        elif not _is_dunder(attr) and is_constant(member):
            members.append((attr, hash_plain(member)))
    bases = tuple(qualified_name(b) for b in cls.__bases__)
    return hash_plain(("class-bytecode", cls.__qualname__, bases, tuple(members)))


def _method_digest(fn: types.FunctionType, cls: type) -> str:
    return code_digest(fn.__code__) if fn.__module__ == cls.__module__ else qualified_name(fn)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")
