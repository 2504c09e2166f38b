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

What a piece's digest covers is in :mod:`etherealfabric.hashing._source`; what counts as user
code, and how it is named, in :mod:`etherealfabric.hashing._usercode`. Constants are hashed with
the builtin handlers (:func:`etherealfabric.hashing._builtins.hash_plain`); functions and classes
*as values* hash through this module's fingerprints (:mod:`etherealfabric.hashing._values`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import HashingError
from ._builtins import hash_plain
from ._source import (
    class_bytecode,
    code_digest,
    has_own_code,
    is_constant,
    member_functions,
    normalized_source,
    unwrap,
)
from ._usercode import is_user_code, is_user_module, module_label, qualified_name

__all__ = ["Fingerprint", "FingerprintWarning", "code_fingerprint"]

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


def code_fingerprint(obj: Callable[..., object] | type) -> Fingerprint:
    """The fingerprint of a function or class (memoized: the second call is a dict lookup)."""
    found = _FINGERPRINTS.get(obj)
    if found is None:
        found = _compute(_root(obj))
        _FINGERPRINTS.set(obj, found)
    return found


# -- the traversal ---------------------------------------------------------------------------


def _root(obj: object) -> Any:
    target = unwrap(obj)
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
    digest = hash_plain(("fingerprint", tuple(sorted(parts.items()))))
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
    name = qualified_name(obj)
    refs = _References()
    if isinstance(obj, type):
        refs.cls(obj, name)
    else:
        refs.function(obj, name)
    normalized, source = normalized_source(obj), "ast"
    if normalized is None:
        body = class_bytecode(obj) if isinstance(obj, type) else code_digest(obj.__code__)
        normalized = (body, body)
        if has_own_code(obj):  # not e.g. a namedtuple() or Enum() class: nothing to warn about
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
        functions = member_functions(member)
        for fn in filter(is_user_code, functions):  # not namedtuple's or Enum's machinery
            if _defined_in(fn, cls) or _generated(fn):  # e.g. a dataclass's __init__
                self.function(fn, f"{owner}.{attr}")
            else:
                self.value(fn, f"{owner}.{attr}", ())  # e.g. ``method = helper``
        if isinstance(member, type) and _defined_in(member, cls):
            self.cls(member, f"{owner}.{attr}")
        elif not functions and not attr.startswith("_") and is_constant(member):
            self.constants[f"{owner}.{attr}"] = hash_plain(member)

    def value(self, value: object, name: str, names: tuple[str, ...]) -> None:
        target = unwrap(value)
        if isinstance(target, types.ModuleType):
            self.module(target, names)
        elif isinstance(target, (types.FunctionType, type)):
            if is_user_code(target):
                self.refs.append(target)
        elif is_constant(value):
            self.constants[name] = hash_plain(value)
        elif isinstance(value, functools.partial):
            self.value(value.func, name, names)
            self.value((value.args, value.keywords), f"{name}.<partial>", names)
        elif is_user_code(type(value)):
            self.refs.append(type(value))  # an instance of a user class: its code

    def module(self, module: types.ModuleType, names: tuple[str, ...]) -> None:
        if module.__name__ in self._modules or not is_user_module(module):
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


def _defined_in(obj: object, cls: type) -> bool:
    qualname = getattr(obj, "__qualname__", "")
    return isinstance(qualname, str) and qualname.startswith(cls.__qualname__ + ".")


def _generated(fn: types.FunctionType) -> bool:
    """Made from a string (a dataclass's methods): nothing to read, only names to follow."""
    return fn.__code__.co_filename.startswith("<")
