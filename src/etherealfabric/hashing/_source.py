"""What one function or class *is*: its normalised source, or its bytecode when there is none.

A piece of code is its source parsed and written in a canonical form without docstrings,
comments, formatting or line numbers (:mod:`etherealfabric.hashing._astform`, the same on
every Python version); a lambda is the one lambda expression it is. The digest is taken with
all the decorator lines of the definition, and with only the user's own (EtherealFabric's
``@node`` lines dropped). Without source (``exec``'d code, generated classes), it is its
bytecode, constants and names; a class is its bases, constant attributes and its own
methods' bytecode.

A function cloudpickle rebuilt from a pickle (:func:`code_file`) is read from the file it was
written in, as the function it is a copy of: unpickling an instance of a class pickled by value
in the process that defined it (the CLI registers a workflow file for that, and ``__main__``
always is) sets the class's methods again, as such copies, on the class itself.

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
import linecache
import sys
import textwrap
import types
from pathlib import PurePath
from typing import Any

from ._astform import canonical_text
from ._blocks import getblock, getsourcelines
from ._builtins import hash_plain
from ._digest import digest_bytes
from ._ondisk import edited_since_loaded
from ._usercode import is_user_code, qualified_name

__all__ = [
    "class_bytecode",
    "code_digest",
    "code_file",
    "has_own_code",
    "holds_code",
    "is_constant",
    "member_functions",
    "normalized_source",
    "source_statements",
    "unwrap",
    "wrapper_chain",
]

_SCALARS = (
    type(None), bool, int, float, complex, str, bytes, enum.Enum, PurePath,
    datetime.date, datetime.time, datetime.timedelta,
)  # fmt: skip
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MAX_UNWRAP = 100
#: the file name cloudpickle gives the code of a function it rebuilds from a pickle
_REBUILT = "<dynamic-code>"


# -- looking inside functions and classes ----------------------------------------------------


def unwrap(obj: object) -> object:
    """Follow ``__etherealfabric_fn__``, ``__wrapped__`` and bound methods to the innermost."""
    return wrapper_chain(obj)[-1]


def wrapper_chain(obj: object) -> list[object]:
    """``obj``, then what it wraps (``__etherealfabric_fn__``, ``__wrapped__``, ``__func__``)..."""
    chain = [obj]
    for _ in range(_MAX_UNWRAP):
        inner = inspect.getattr_static(obj, "__etherealfabric_fn__", None)
        if inner is None and not isinstance(obj, type):
            inner = inspect.getattr_static(obj, "__wrapped__", None)
        if inner is None and isinstance(obj, types.MethodType):
            inner = obj.__func__
        if inner is None or inner is obj:
            break
        chain.append(inner)
        obj = inner
    return chain


def member_functions(member: object) -> list[types.FunctionType]:
    """The functions behind a class attribute: methods, static/class methods, properties,
    ``partialmethod``s, a ``singledispatchmethod`` and what is registered with it."""
    if isinstance(member, (staticmethod, classmethod)):
        candidates: list[object] = [member.__func__]
    elif isinstance(member, property):
        candidates = [member.fget, member.fset, member.fdel]
    elif isinstance(member, (functools.cached_property, functools.partialmethod)):
        candidates = [member.func]
    elif isinstance(member, functools.singledispatchmethod):  # and its registrations
        candidates = [member.func, *member.dispatcher.registry.values()]
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


def holds_code(value: object, depth: int = 0) -> bool:
    """True if ``value`` is a function or class of user code, or a dict, list, tuple or set
    holding one (a registry ``{"lin": lin}`` filled by a decorator), up to three levels deep."""
    if isinstance(value, (types.FunctionType, type)):
        return is_user_code(value)
    if depth >= 3:
        return False
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(holds_code(item, depth + 1) for item in value)
    return False


def code_file(fn: types.FunctionType) -> str:
    """The file ``fn``'s code was compiled from. cloudpickle names the code of a function it
    rebuilt ``<dynamic-code>`` (its bytecode and first line are the original's); the globals
    it rebuilt with keep the ``__file__`` of the module the function was written in."""
    filename = fn.__code__.co_filename
    if filename == _REBUILT:
        path = fn.__globals__.get("__file__")
        if isinstance(path, str) and path:
            return path
    return filename


def has_own_code(obj: Any) -> bool:
    """Functions, and classes with methods written in their own module."""
    if not isinstance(obj, type):
        return True
    members = (fn for m in vars(obj).values() for fn in member_functions(m))
    return any(fn.__module__ == obj.__module__ for fn in members)


# -- normalized source -----------------------------------------------------------------------


def normalized_source(obj: Any) -> tuple[str, str, int] | None:
    """(digest without engine decorators, digest with all decorators, first line) of ``obj``.

    The first digest drops only the decorators that resolve to EtherealFabric (``@node(...)``,
    keyed separately); a user's own decorators, and their arguments, stay in both. The first
    line is where the definition starts in its file (for messages, never for digests).
    """
    is_lambda = getattr(obj, "__name__", "") == "<lambda>"
    try:
        lines, first_line = _source_lines(obj)
        statements, line_shift, col_shift = _parse("".join(lines))
    except SyntaxError:
        # a lambda on a line of a longer statement (``"b": lambda x: x * 2,`` in a dict
        # spread over lines, as a formatter writes it): found in its module's file instead
        found = _lambda_in_file(obj) if is_lambda else None
        if found is None:
            return None
        statements, first_line = found, obj.__code__.co_firstlineno
    except (OSError, TypeError):
        return None
    else:
        if is_lambda:
            statements = _lambdas(obj, statements, first_line - 1 + line_shift, col_shift)
    with_decorators = canonical_text(statements)
    for statement in statements[:1]:
        if isinstance(statement, _DEFS):
            namespace = _namespace(obj)
            statement.decorator_list = [
                d for d in statement.decorator_list if not _is_engine_decorator(d, namespace)
            ]
    body = _digest_text(canonical_text(statements))
    return body, _digest_text(with_decorators), max(first_line, 1)


def source_statements(obj: Any) -> tuple[list[Any], int] | None:
    """``obj``'s parsed statements and the file line of their first line, or None."""
    try:
        lines, first_line = _source_lines(obj)
        statements, line_shift, _ = _parse("".join(lines))
    except (OSError, TypeError, SyntaxError):
        return None
    return statements, first_line - line_shift


def _source_lines(obj: Any) -> tuple[list[str], int]:
    """``inspect.getsourcelines`` of ``obj``'s own code; a class is looked for in the file its
    own methods were compiled from when its module's file is another one: a script run by a
    runner (``python -m cProfile flow.py``) defines its classes in ``__main__`` while
    ``sys.modules["__main__"]`` is the runner, whose file ``inspect`` would search."""
    if edited_since_loaded(obj):  # the file no longer holds the code that runs: no source
        raise OSError("its file was edited since it was loaded")
    if isinstance(obj, type):
        found = _class_lines(obj)
        if found is not None:
            return found
    if isinstance(obj, types.FunctionType) and obj.__code__.co_filename == _REBUILT:
        return _rebuilt_lines(obj)
    return getsourcelines(_own_code(obj))


def _rebuilt_lines(fn: types.FunctionType) -> tuple[list[str], int]:
    """The lines of a function cloudpickle rebuilt (:func:`code_file`): the block at its first
    line in its module's file, if that block defines a function of its name (else OSError,
    as for a function without source)."""
    path, first = code_file(fn), fn.__code__.co_firstlineno
    lines = linecache.getlines(path) if path != _REBUILT else []
    if not 0 < first <= len(lines):
        raise OSError(f"could not get source code of {fn.__qualname__}")
    block = getblock(lines[first - 1 :])
    try:
        statements = _parse("".join(block))[0]
    except SyntaxError as exc:
        raise OSError(f"could not get source code of {fn.__qualname__}") from exc
    name = fn.__code__.co_name  # not __name__, which functools.wraps sets
    defines = [s for s in statements if isinstance(s, _DEFS[:2]) and s.name == name]
    is_lambda = name == "<lambda>" and any(
        isinstance(n, ast.Lambda) for s in statements for n in ast.walk(s)
    )
    if len(statements) != 1 or not (defines or is_lambda):
        raise OSError(f"could not get source code of {fn.__qualname__}")
    return block, first


def _class_lines(cls: type) -> tuple[list[str], int] | None:
    """The lines of ``cls`` in the one file its own methods come from, if that is not its
    module's file (else None: ``inspect`` finds them)."""
    files = {
        code_file(fn)
        for member in vars(cls).values()
        for fn in member_functions(member)
        if fn.__module__ == cls.__module__
    }
    path = files.pop() if len(files) == 1 else None
    if path is None or path == getattr(sys.modules.get(cls.__module__), "__file__", None):
        return None
    lines = linecache.getlines(path)
    body: list[ast.stmt] = ast.parse("".join(lines)).body if lines else []
    found: ast.ClassDef | None = None
    for part in cls.__qualname__.split("."):
        found = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if found is None:  # defined in a function (<locals>) or not in that file
            return None
        body = found.body
    assert found is not None
    start = (found.decorator_list[0] if found.decorator_list else found).lineno - 1
    return getblock(lines[start:]), start + 1


def _own_code(obj: Any) -> Any:
    """What ``inspect`` should read the source of: a function's own code, never the one its
    ``__wrapped__`` leads to. A function without ``__wrapped__`` is passed as it is (the same
    lines: ``inspect`` reads its ``__code__``), because the module of a bare code object is
    found by resolving the path of every module in ``sys.modules`` (tens of milliseconds on a
    process's first fingerprint, more with large packages loaded)."""
    if isinstance(obj, types.FunctionType):
        return obj.__code__ if hasattr(obj, "__wrapped__") else obj
    return obj


def _parse(source: str) -> tuple[list[Any], int, int]:
    """Parse a def (or lambda line), wherever it was indented; docstrings removed.

    Also returns the lines added in front (0 or 1) and the columns removed by dedenting, so
    positions in the tree can be mapped back to the file.
    """
    try:
        statements: list[Any] = ast.parse(textwrap.dedent(source)).body
        shift, columns = 0, _indent(source)
    except SyntaxError:  # e.g. a less-indented line inside a string defeats dedent
        block = ast.parse("if True:\n" + source).body[0]
        statements = block.body if isinstance(block, ast.If) else [block]
        shift, columns = 1, 0
    for statement in statements:
        _strip_docstrings(statement)
    return statements, shift, columns


def _indent(source: str) -> int:
    widths = [len(ln) - len(ln.lstrip()) for ln in source.splitlines() if ln.strip()]
    return min(widths, default=0)


def _lambdas(fn: Any, statements: list[Any], line_offset: int, col_shift: int) -> list[Any]:
    """The lambda ``fn`` is, among those on its lines: each lambda by its own position and body.

    Python 3.11+ records where each instruction came from; the lambda whose body holds the
    first positioned instruction of ``fn`` is the one. Elsewhere, the lambdas that start on
    ``fn``'s first line (all of them, in order, if that does not narrow it down).
    """
    found = [n for s in statements for n in ast.walk(s) if isinstance(n, ast.Lambda)]
    code = fn.__code__
    positions = getattr(code, "co_positions", None)
    where = None
    if positions is not None:
        where = next(((ln, col) for ln, _, col, _ in positions() if ln and col), None)
    if where is not None:
        line, col = where[0] - line_offset, where[1] - col_shift
        inside = [n for n in found if _contains(n.body, line, col)]
        if inside:
            return [
                min(inside, key=lambda n: ((n.end_lineno or n.lineno) - n.lineno, n.end_col_offset))
            ]
    same_line = [n for n in found if n.lineno == code.co_firstlineno - line_offset]
    if len(same_line) > 1:  # before 3.11: tell them apart by what they compile to
        same_line = _compiling_alike(same_line, code) or same_line
    return same_line[:1] if len(same_line) == 1 else found


def _lambda_in_file(fn: Any) -> list[Any] | None:
    """The one lambda of ``fn``'s module file that ``fn`` is, as a statement list, or None."""
    code = getattr(fn, "__code__", None)
    lines = linecache.getlines(code_file(fn)) if code is not None else []
    try:
        tree = ast.parse("".join(lines)) if lines else None
    except SyntaxError:
        return None
    if tree is None:
        return None
    found = _lambdas(fn, tree.body, 0, 0)
    return found if len(found) == 1 else None


def _compiling_alike(candidates: list[Any], code: Any) -> list[Any]:
    """The lambdas among ``candidates`` whose compiled code matches ``code``.

    Compiled alone, a lambda reads its free variables as globals, so the bytecode is compared
    first, then (for a lambda that closes over variables) its arguments, names and constants.
    """

    def compiled(node: Any) -> Any:
        expression = ast.fix_missing_locations(ast.Expression(body=node))
        try:
            outer = compile(expression, "<lambda>", "eval")
        except (SyntaxError, ValueError):
            return None
        return next((c for c in outer.co_consts if hasattr(c, "co_code")), None)

    def shape(c: Any) -> tuple[Any, ...]:
        consts = tuple(repr(k) for k in c.co_consts if not hasattr(k, "co_code"))
        return c.co_argcount, c.co_varnames, tuple(sorted({*c.co_names, *c.co_freevars})), consts

    codes = [(node, compiled(node)) for node in candidates]
    exact = [node for node, c in codes if c is not None and c.co_code == code.co_code]
    if len(exact) == 1:
        return exact
    alike = [node for node, c in codes if c is not None and shape(c) == shape(code)]
    return alike[:1] if alike else []


def _contains(node: Any, line: int, col: int) -> bool:
    start = (node.lineno, node.col_offset)
    end = (node.end_lineno or node.lineno, node.end_col_offset or 0)
    return start <= (line, col) < end


def _namespace(obj: Any) -> dict[str, Any]:
    namespace = getattr(obj, "__globals__", None)
    if isinstance(namespace, dict):
        return namespace
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    return vars(module) if module is not None else {}


def _is_engine_decorator(expr: ast.expr, namespace: dict[str, Any]) -> bool:
    """True for ``@node``, ``@node(...)``, ``@ef.node(...)``: decorators from EtherealFabric."""
    if isinstance(expr, ast.Call):
        expr = expr.func
    path: list[str] = []
    while isinstance(expr, ast.Attribute):
        path.insert(0, expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name) or expr.id not in namespace:
        return False
    target: object = namespace[expr.id]
    for attr in path:
        target = getattr(target, attr, None)
    module = getattr(target, "__module__", None) or getattr(target, "__name__", None)
    return isinstance(module, str) and module.split(".")[0] == "etherealfabric"


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
