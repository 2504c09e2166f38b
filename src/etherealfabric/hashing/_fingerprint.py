"""Code fingerprints: a digest of what a node's code *is*, not of how it is written.

A fingerprint covers the node's own code and, transitively, the user code it refers to:

- each function or class is one *piece*: its source, parsed and dumped without docstrings,
  comments, formatting or line numbers (``ast.dump``), or, when Python has no source for it,
  its bytecode (with a :class:`FingerprintWarning`: bytecode changes with the Python version);
- a piece refers to the globals named anywhere in its code (``co_names`` of the code object and
  of every nested code object), to its closure cells and to its default values; for a class, to
  what its methods refer to, to its user-code base classes and to its constant attributes;
- a referenced user function or class is followed; a referenced user module contributes its
  attributes whose names the code uses (``helpers.f()``); a referenced *module constant*
  (None, bool, numbers, str, bytes, enum members, paths, dates, and tuples, lists, sets and
  dicts of those) is hashed by value as the part ``module.NAME``; an instance of a user class
  contributes its class's code. Everything else (the standard library, installed packages,
  builtins, EtherealFabric itself, objects without a module) is ignored.

Decorators are followed through ``__wrapped__`` and ``__etherealfabric_fn__`` (set by
``@node``). The decorator lines of the fingerprinted object itself are not part of it (the
``@node(version=...)`` line is keyed separately); those of helpers are.

The digest is xxh3-128 over the sorted ``(qualified name, digest)`` pairs of all parts, so it
does not depend on the order things are found in and is the same in every process (no ``id()``,
no ``hash()``). Results are memoized per object for the life of the process: a module edited
while the process runs is not seen until the next run.

"User code" is code whose module file is neither under the standard library nor under a
site-packages directory, plus ``__main__`` and code created from strings (``exec``).
"""

from __future__ import annotations

import ast
import collections
import contextlib
import datetime
import enum
import functools
import inspect
import os
import site
import sys
import sysconfig
import textwrap
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Generic, TypeVar

from ..errors import HashingError

__all__ = ["Fingerprint", "FingerprintWarning", "code_fingerprint", "is_user_code"]

_SCALARS = (
    type(None), bool, int, float, complex, str, bytes, enum.Enum, PurePath,
    datetime.date, datetime.time, datetime.timedelta,
)  # fmt: skip
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_MAX_UNWRAP = 100
_V = TypeVar("_V")


class FingerprintWarning(UserWarning):
    """A fingerprint had to use bytecode because Python has no source for the code."""


@dataclass(frozen=True)
class Fingerprint:
    """The fingerprint of a node's code; ``parts`` maps each piece's qualified name to its digest."""

    digest: str
    parts: dict[str, str]
    source: str  # "ast", or "bytecode" when any part had no source


@dataclass(frozen=True)
class _Piece:
    """One function or class, analysed once: its own digests and what it refers to."""

    name: str
    body: str  # digest of the normalized code, without the decorator lines
    decorated: str  # digest of the normalized code with the decorator lines
    source: str
    constants: tuple[tuple[str, str], ...]  # (module.NAME, value digest)
    refs: tuple[Any, ...]  # user functions and classes, in the order found


class _Memo(Generic[_V]):
    """Results per object: weakly keyed when the object allows it, else kept alive."""

    def __init__(self) -> None:
        self.weak: weakref.WeakKeyDictionary[Any, _V] = weakref.WeakKeyDictionary()
        self.strong: dict[int, tuple[object, _V]] = {}

    def get(self, obj: object) -> _V | None:
        try:
            return self.weak.get(obj)
        except TypeError:  # not weak-referenceable
            entry = self.strong.get(id(obj))
            return entry[1] if entry is not None and entry[0] is obj else None

    def set(self, obj: object, value: _V) -> None:
        try:
            self.weak[obj] = value
        except TypeError:
            self.strong[id(obj)] = (obj, value)


_FINGERPRINTS: _Memo[Fingerprint] = _Memo()
_PIECES: _Memo[_Piece] = _Memo()
_MODULE_DECISIONS: dict[str, bool] = {}


def code_fingerprint(obj: Callable[..., object] | type) -> Fingerprint:
    """The fingerprint of a function or class (memoized: the second call is a dict lookup)."""
    found = _FINGERPRINTS.get(obj)
    if found is None:
        found = _compute(_root(obj))
        _FINGERPRINTS.set(obj, found)
    return found


def is_user_code(obj: object) -> bool:
    """True if ``obj`` is defined in user code (not the stdlib, site-packages or EtherealFabric)."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or _is_ours(module):
        return False
    loaded = sys.modules.get(module)
    if loaded is not None:
        return _is_user_module(loaded)
    code = getattr(obj, "__code__", None)  # e.g. exec'd with a made-up __name__
    return isinstance(code, types.CodeType) and _is_user_file(code.co_filename)


# -- the traversal ---------------------------------------------------------------------------


def _root(obj: object) -> Any:
    target = _unwrap(obj)
    if isinstance(target, (types.FunctionType, type)):
        return target
    if callable(target) and is_user_code(type(target)):
        return type(target)  # a callable instance: its class is its code
    raise HashingError(
        f"cannot fingerprint {obj!r}: only Python functions and classes have code to "
        "fingerprint (wrap it in a function, or give the node an explicit version=)"
    )


def _compute(root: Any) -> Fingerprint:
    parts: dict[str, str] = {}
    sources: set[str] = set()
    queue = collections.deque([root])
    seen = {id(root)}  # traversal bookkeeping only; ids never reach a digest
    while queue:
        obj = queue.popleft()
        piece = _piece(obj)
        _add_part(parts, piece.name, piece.body if obj is root else piece.decorated)
        for name, digest in piece.constants:
            _add_part(parts, name, digest)
        sources.add(piece.source)
        for ref in piece.refs:
            if id(ref) not in seen:
                seen.add(id(ref))
                queue.append(ref)
    digest = _hash_value(("fingerprint", tuple(sorted(parts.items()))))
    return Fingerprint(digest, parts, "bytecode" if "bytecode" in sources else "ast")


def _add_part(parts: dict[str, str], name: str, digest: str) -> None:
    """Add a part; a second, different object of the same name gets ``name#2`` and so on."""
    key, n = name, 1
    while key in parts and parts[key] != digest:
        n += 1
        key = f"{name}#{n}"
    parts[key] = digest


def _piece(obj: Any) -> _Piece:
    found = _PIECES.get(obj)
    if found is None:
        found = _analyse(obj)
        _PIECES.set(obj, found)
    return found


def _analyse(obj: Any) -> _Piece:
    name = _qualified(obj)
    refs = _References()
    if isinstance(obj, type):
        refs.cls(obj, name)
    else:
        refs.function(obj, name)
    normalized, source = _normalized_source(obj), "ast"
    if normalized is None:
        body = _class_bytecode(obj) if isinstance(obj, type) else _code_digest(obj.__code__)
        normalized = (body, body)
        if _has_own_code(obj):  # not e.g. a namedtuple() or Enum() class: nothing to warn about
            source = "bytecode"
            warnings.warn(
                f"no source for {name}; its fingerprint uses bytecode, which changes with the "
                "Python version",
                FingerprintWarning,
                stacklevel=2,
            )
    return _Piece(name, *normalized, source, tuple(refs.constants.items()), refs.unique())


# -- what a piece of code refers to ----------------------------------------------------------


class _References:
    """Collects the user functions and classes, and the module constants, some code uses."""

    def __init__(self) -> None:
        self.refs: list[Any] = []
        self.constants: dict[str, str] = {}
        self._modules: set[str] = set()

    def function(self, fn: types.FunctionType, owner: str) -> None:
        code = fn.__code__
        names = _code_names(code)
        module = module_label(fn.__globals__.get("__name__", "?"))
        for name in names:
            if name in fn.__globals__:
                self.value(fn.__globals__[name], f"{module}.{name}", names)
        for var, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
            with contextlib.suppress(ValueError):  # an empty cell
                self.value(cell.cell_contents, f"{owner}.<closure>.{var}", names)
        for param, default in _defaults(fn):
            if default is not None:  # lossless: a part appearing or going away counts too
                self.value(default, f"{owner}.<default>.{param}", names)

    def cls(self, cls: type, owner: str) -> None:
        self.refs.extend(base for base in cls.__bases__ if is_user_code(base))
        for attr, member in vars(cls).items():
            self.member(cls, attr, member, owner)

    def member(self, cls: type, attr: str, member: object, owner: str) -> None:
        functions = _member_functions(member)
        for fn in filter(is_user_code, functions):  # not namedtuple's or Enum's machinery
            if _defined_in(fn, cls) or _generated(fn):  # e.g. a dataclass's __init__
                self.function(fn, f"{owner}.{attr}")
            else:
                self.value(fn, f"{owner}.{attr}", ())  # e.g. ``method = helper``
        if isinstance(member, type) and _defined_in(member, cls):
            self.cls(member, f"{owner}.{attr}")
        elif not functions and not attr.startswith("_") and _is_constant(member):
            self.constants[f"{owner}.{attr}"] = _hash_value(member)

    def value(self, value: object, name: str, names: tuple[str, ...]) -> None:
        target = _unwrap(value)
        if isinstance(target, types.ModuleType):
            self.module(target, names)
        elif isinstance(target, (types.FunctionType, type)):
            if is_user_code(target):
                self.refs.append(target)
        elif _is_constant(value):
            self.constants[name] = _hash_value(value)
        elif isinstance(value, functools.partial):
            self.value(value.func, name, names)
            self.value((value.args, value.keywords), f"{name}.<partial>", names)
        elif is_user_code(type(value)):
            self.refs.append(type(value))  # an instance of a user class: its code

    def module(self, module: types.ModuleType, names: tuple[str, ...]) -> None:
        if module.__name__ in self._modules or not _is_user_module(module):
            return
        self._modules.add(module.__name__)
        namespace = vars(module)
        for name in names:
            if name in namespace:
                self.value(namespace[name], f"{module_label(module.__name__)}.{name}", names)

    def unique(self) -> tuple[Any, ...]:
        """The referenced objects, each once, in the order found."""
        by_id = {id(r): r for r in reversed(self.refs)}
        return tuple(by_id[i] for i in dict.fromkeys(id(r) for r in self.refs))


def _unwrap(obj: object) -> object:
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


def _code_names(code: types.CodeType) -> tuple[str, ...]:
    """Every name the code (and its nested code: lambdas, comprehensions, defs) looks up."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_code_names(const)))
    return tuple(names)


def _defaults(fn: types.FunctionType) -> Iterator[tuple[str, object]]:
    code = fn.__code__
    positional = code.co_varnames[: code.co_argcount]
    defaults = fn.__defaults__ or ()
    yield from zip(positional[len(positional) - len(defaults) :], defaults, strict=True)
    yield from (fn.__kwdefaults__ or {}).items()


def _member_functions(member: object) -> list[types.FunctionType]:
    """The functions behind a class attribute: methods, static/class methods, properties."""
    if isinstance(member, (staticmethod, classmethod)):
        candidates: list[object] = [member.__func__]
    elif isinstance(member, property):
        candidates = [member.fget, member.fset, member.fdel]
    elif isinstance(member, functools.cached_property):
        candidates = [member.func]
    else:
        candidates = [member]
    unwrapped = (_unwrap(c) for c in candidates if c is not None)
    return [fn for fn in unwrapped if isinstance(fn, types.FunctionType)]


def _defined_in(obj: object, cls: type) -> bool:
    qualname = getattr(obj, "__qualname__", "")
    return isinstance(qualname, str) and qualname.startswith(cls.__qualname__ + ".")


def _generated(fn: types.FunctionType) -> bool:
    """Made from a string (a dataclass's methods): nothing to read, only names to follow."""
    return fn.__code__.co_filename.startswith("<")


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_constant(value: object, depth: int = 0) -> bool:
    """None, bools, numbers, str, bytes, enum members, paths, dates, and containers of those."""
    if isinstance(value, _SCALARS):
        return True
    if depth > 20:
        return False
    if isinstance(value, (tuple, list, set, frozenset)):
        return all(_is_constant(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(
            _is_constant(k, depth + 1) and _is_constant(v, depth + 1) for k, v in value.items()
        )
    return False


# -- normalized source and bytecode ----------------------------------------------------------


def _normalized_source(obj: Any) -> tuple[str, str] | None:
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


def _code_digest(code: types.CodeType) -> str:
    """Bytecode, constants (nested code recursively) and names; no file names or lines."""
    consts = tuple(
        ("code", _code_digest(c)) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return _hash_value(
        (
            "bytecode", code.co_code, consts, code.co_names, code.co_varnames,
            code.co_freevars, code.co_cellvars, code.co_argcount, code.co_kwonlyargcount,
        )
    )  # fmt: skip


def _class_bytecode(cls: type) -> str:
    """A class without source: its bases, constant attributes and its own methods' bytecode.

    Methods made elsewhere (``namedtuple``'s ``__new__``, inherited enum machinery) count by
    name only, so generated classes such as ``namedtuple("P", "x y")`` are stable.
    """
    members: list[tuple[str, object]] = []
    for attr, member in sorted(vars(cls).items()):
        functions = _member_functions(member)
        if functions:
            members.append((attr, tuple(_method_digest(fn, cls) for fn in functions)))
        elif not _is_dunder(attr) and _is_constant(member):
            members.append((attr, _hash_value(member)))
    bases = tuple(_qualified(b) for b in cls.__bases__)
    return _hash_value(("class-bytecode", cls.__qualname__, bases, tuple(members)))


def _method_digest(fn: types.FunctionType, cls: type) -> str:
    return _code_digest(fn.__code__) if fn.__module__ == cls.__module__ else _qualified(fn)


def _has_own_code(obj: Any) -> bool:
    """Functions, and classes with methods written in their own module."""
    if not isinstance(obj, type):
        return True
    members = (fn for m in vars(obj).values() for fn in _member_functions(m))
    return any(fn.__module__ == obj.__module__ for fn in members)


# -- what counts as user code ----------------------------------------------------------------


def _is_ours(module: str) -> bool:
    return module == "etherealfabric" or module.startswith("etherealfabric.")


def _is_user_module(module: types.ModuleType) -> bool:
    name = module.__name__
    if _is_ours(name):
        return False
    if name == "__main__":
        return True
    decision = _MODULE_DECISIONS.get(name)
    if decision is None:
        path = getattr(module, "__file__", None)
        decision = _MODULE_DECISIONS[name] = isinstance(path, str) and _is_user_file(path)
    return decision


def _is_user_file(path: str) -> bool:
    if path.startswith("<"):  # "<string>", "<stdin>", notebooks; but not "<frozen os>"
        return not path.startswith("<frozen")
    real = os.path.realpath(path)
    return not any(real.startswith(prefix) for prefix in _library_dirs())


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    with contextlib.suppress(AttributeError):  # old virtualenvs have no site.getsitepackages
        dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(sorted({os.path.join(os.path.realpath(d), "") for d in dirs}))


# -- small helpers ---------------------------------------------------------------------------


SCRIPT_MODULE_PREFIX = "etherealfabric_workflow_"


def module_label(name: str) -> str:
    """A module's name as keys see it: a script is named after its file, however it was run.

    ``python flow.py`` names the module ``__main__`` and ``etherealfabric run flow.py`` names it
    ``etherealfabric_workflow_flow``; both become ``flow`` so the two share cache entries.
    """
    if name in ("__main__", "__mp_main__"):
        path = getattr(sys.modules.get(name), "__file__", None)
        return os.path.splitext(os.path.basename(path))[0] if path else name
    if name.startswith(SCRIPT_MODULE_PREFIX):
        return name[len(SCRIPT_MODULE_PREFIX) :]
    return name


def qualified_name(obj: Any) -> str:
    """``module.qualname`` of a function or class, with scripts named after their file."""
    try:
        return _qualified_cached(obj)
    except TypeError:  # unhashable
        return _qualified_uncached(obj)


def _qualified_uncached(obj: Any) -> str:
    return f"{module_label(getattr(obj, '__module__', '?') or '?')}.{getattr(obj, '__qualname__', '?')}"


_qualified_cached = functools.lru_cache(maxsize=4096)(_qualified_uncached)


_qualified = qualified_name


def _hash_value(value: object) -> str:
    from ._values import hash_value  # hashing imports this module; import at call time

    return hash_value(value)


def _digest_text(text: str) -> str:
    from ._values import digest_bytes

    return digest_bytes(text.encode())
