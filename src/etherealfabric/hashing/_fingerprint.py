"""Code fingerprints: a digest of what a node's code *is*, not of how it is written.

A fingerprint covers the node's own code and, transitively, everything it refers to that
can change what it computes:

- each user function or class is one *piece*: its source, parsed and written in a canonical
  form without docstrings, comments, formatting or line numbers, or, when Python has no source
  for it, its bytecode (with a :class:`FingerprintWarning`: bytecode changes with the Python
  version);
- what a piece refers to (:mod:`etherealfabric.hashing._references`): the globals its code
  names, attributes of user modules, modules imported inside its body (``import x``,
  ``from x import y``, relative imports), closure cells, defaults, a class's bases, methods,
  properties, attributes and user metaclass, and what a decorated function's wrappers close
  over; a module's ``__getattr__``, a ``singledispatch`` function's registrations. User
  functions and classes found there, also inside values (a dict of functions, a partial's
  target, a bound method, an instance's class, a lambda in a list), are pieces of their own;
  other values are hashed by value as parts named ``module.NAME`` (arrays, frames, instances of
  user classes by their state: not only literals);
- installed packages it reaches count by their distribution's version, as the parts
  ``package:<distribution>`` (:mod:`etherealfabric.hashing._packages`, which also says what
  the ``ETHEREALFABRIC_PACKAGE_VERSIONS`` setting changes); the standard library, builtins and
  EtherealFabric itself count for nothing.

What cannot be known statically (``getattr(module, <computed>)``, ``importlib.import_module``
of a computed name, ``eval``, ``exec``, ``globals()``, environment and command-line reads and
global random draws in the node's own code or in a helper it reaches directly
(:mod:`etherealfabric.hashing._direct`: not one that merely shares its name with an attribute),
a ``np.frompyfunc`` ufunc) is listed in :attr:`Fingerprint.uncovered`
and warned about once per node (a :class:`FingerprintWarning` naming each construct and its
``file:line``); ``plan --keys`` and ``explain`` list it as not covered by the key.

Decorators are followed through ``__wrapped__`` and ``__etherealfabric_fn__`` (set by
``@node``). The decorator lines of the fingerprinted object itself are not part of it (the
``@node(version=...)`` line is keyed separately); those of helpers are.

The digest is xxh3-128 over the sorted ``(part name, digest)`` pairs, so it does not depend on
the order things are found in and is the same in every process (no ``id()``, no ``hash()``);
two pieces with one name (two lambdas) are numbered ``name``, ``name#2`` in digest order.
Results are memoized per object for the life of the process: a module edited while the process
runs is not seen until the next run.

What a piece's digest covers is in :mod:`etherealfabric.hashing._source`; what counts as user
code, and how it is named, in :mod:`etherealfabric.hashing._usercode`. Importing this module
registers the value handlers of :mod:`etherealfabric.hashing._objects` (functions, classes,
methods, partials and instances of user classes as values), which need fingerprints.
"""

from __future__ import annotations

import collections
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import FingerprintWarning, HashingError
from ._builtins import hash_plain
from ._objects import register_code_handlers
from ._ondisk import edited_since_loaded
from ._packages import package_parts, package_versions
from ._references import Binding, References
from ._scan import HELPER_READS, OWN_CODE_READS, display_path
from ._settings import module_settings
from ._source import (
    class_bytecode,
    code_digest,
    code_file,
    has_own_code,
    normalized_source,
    unwrap,
    wrapper_chain,
)
from ._usercode import is_user_code, qualified_name

__all__ = [
    "Fingerprint",
    "FingerprintWarning",
    "bound_values",
    "code_fingerprint",
    "helpers_called",
    "recheck_bindings",
    "settle_bindings",
]

_V = TypeVar("_V")


@dataclass(frozen=True)
class Fingerprint:
    """The fingerprint of a node's code.

    ``parts`` maps each part's name to its digest: code pieces (``module.qualname``), values
    (``module.NAME``...), and packages (``package:<distribution>`` to its version).
    ``uncovered`` lists what the key cannot see, and ``where`` the ``file:line`` of each code
    piece; neither is part of the digest.
    """

    digest: str
    parts: dict[str, str]
    source: str  # "ast", or "bytecode" when any part had no source
    uncovered: tuple[str, ...] = field(default=(), compare=False)
    where: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, eq=False)
class _Piece:
    """One function or class, analysed once: its own digests and what it refers to."""

    name: str
    body: str  # digest of the normalized code, without the decorator lines
    decorated: str  # digest of the normalized code with the decorator lines
    source: str
    where: str  # file:line
    constants: tuple[tuple[str, str], ...]  # (module.NAME, value digest)
    refs: tuple[Any, ...]  # user functions and classes, in the order found
    direct: tuple[Any, ...]  # those of refs its code reaches directly (not by attribute name)
    packages: frozenset[str]  # top-level modules of installed packages
    missing: frozenset[str]  # modules imported in the body that are not installed
    uncovered: tuple[str, ...]
    bindings: tuple[Binding, ...] = ()  # the names it read in namespaces, and their objects


@dataclass(frozen=True, eq=False)
class _Code:
    """A fingerprint before packages are keyed (they depend on the package-version mode)."""

    parts: dict[str, str]
    source: str
    where: dict[str, str]
    packages: frozenset[str]
    missing: frozenset[str]
    uncovered: tuple[str, ...]
    pieces: tuple[Any, ...] = ()  # the functions and classes analysed (their _Piece)


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

    def drop(self, obj: object) -> None:
        try:
            self.weak.pop(obj, None)
        except TypeError:
            self.strong.pop(id(obj), None)


#: (package-version mode, binding generation, result)
_FINGERPRINTS: _Memo[tuple[str, int, Fingerprint]] = _Memo()
_CODE: _Memo[_Code] = _Memo()
_PIECES: _Memo[_Piece] = _Memo()
#: (binding generation, the pieces): what :func:`reached` found without a fingerprint
_REACHED: _Memo[tuple[int, tuple[Any, ...]]] = _Memo()


#: bumped by :func:`recheck_bindings`: a fingerprint of an older generation checks its bindings
_GENERATION = [0]


def recheck_bindings() -> None:
    """Have each code's next fingerprint check that the names it read are still bound to the
    objects it hashed (called once per graph build): a notebook cell that rebinds a global
    (``THRESHOLD = 0.7``) or redefines a helper changes the keys of the nodes that read it,
    as a new process would; so does a small container of plain values changed in place
    (``hashing/_bindings.py``). Another value changed in place is not seen (docs/concepts.md)."""
    _GENERATION[0] += 1


def settle_bindings() -> None:
    """At the end of a run: the containers its nodes changed in place are taken as they are
    now (:meth:`Binding.settle`), so only what changes them between runs changes keys."""
    pieces = [*_PIECES.weak.values(), *(piece for _, piece in _PIECES.strong.values())]
    for piece in pieces:
        for binding in piece.bindings:
            binding.settle()


def reached(obj: Callable[..., object] | type) -> tuple[Any, ...]:
    """The user functions and classes the fingerprint of ``obj`` covers (no warning)."""
    code = _CODE.get(obj)
    if code is not None:
        return code.pieces
    found = _REACHED.get(obj)  # a worker process, which computes no key: once per generation
    if found is None or found[0] != _GENERATION[0]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FingerprintWarning)
            found = (_GENERATION[0], _compute(obj).pieces)
        _REACHED.set(obj, found)
    return found[1]


def read_bindings(obj: Callable[..., object] | type) -> tuple[Binding, ...]:
    """The names the pieces :func:`reached` from ``obj`` read in namespaces (module globals),
    and what each was bound to when they were analysed."""
    return tuple(b for piece in reached(obj) for b in _piece(piece).bindings)


def generation() -> int:
    """The current binding generation (callers that remember digests compare it)."""
    return _GENERATION[0]


def code_fingerprint(obj: Callable[..., object] | type) -> Fingerprint:
    """The fingerprint of a function or class (memoized: the second call is a dict lookup)."""
    mode, gen = package_versions(), _GENERATION[0]
    found = _FINGERPRINTS.get(obj)
    if found is not None and found[0] == mode and found[1] == gen:
        return found[2]
    code = _CODE.get(obj)
    if code is not None and not _still_bound(code):
        code = None  # a name it read was rebound: analysed again
    if code is not None and found is not None and found[0] == mode:
        _FINGERPRINTS.set(obj, (mode, gen, found[2]))
        return found[2]
    if code is None:
        code = _compute(obj)
        _CODE.set(obj, code)
        _warn_uncovered(obj, code.uncovered)
    parts = {**code.parts, **package_parts(code.packages, code.missing, mode)}
    digest = hash_plain(("fingerprint", tuple(sorted(parts.items()))))
    result = Fingerprint(digest, parts, code.source, code.uncovered, code.where)
    _FINGERPRINTS.set(obj, (mode, gen, result))
    return result


def bound_values(obj: Callable[..., object] | type) -> tuple[object, ...]:
    """The data the names of ``obj``'s own code read held when it was fingerprinted: the
    values of the globals, and of the attributes of user modules, its body (a class's methods)
    reads (``SALES = "sales.parquet"``, ``config.PATHS``), and the classes among them (whose
    attributes may hold data: ``Paths.SALES``); not other code, modules, nor what helpers
    read. A memoized analysis: a lookup once ``obj`` was keyed."""
    code_fingerprint(obj)  # (a rebound name is analysed again, as the key saw it)
    return _data_read(_root(obj))


def helpers_called(obj: Callable[..., object] | type) -> tuple[tuple[Any, ...], tuple[object, ...]]:
    """The user functions and classes ``obj``'s code reaches directly, transitively (the
    helpers it calls: ``io.load()`` and what that calls, not a function merely named like an
    attribute), without ``obj`` itself, and the data their own code reads (as
    :func:`bound_values`): the files they name are the node's (``SALES`` in ``load()``)."""
    code_fingerprint(obj)
    root = _root(obj)
    wrappers = [w for w in wrapper_chain(obj) if _is_piece(w) and w is not root]
    called = _called(root, wrappers)
    found = tuple(p for p in reached(obj) if id(p) in called and p is not root)
    return found, tuple(v for p in found for v in _data_read(p))


def _data_read(piece: Any) -> tuple[object, ...]:
    values = (binding.value() for binding in _piece(piece).bindings)
    return tuple(
        v
        for v in values
        if not (
            v is None
            or (callable(v) and not isinstance(v, type))
            or isinstance(v, types.ModuleType)
        )
    )


def _still_bound(code: _Code) -> bool:
    """Whether every name the pieces of ``code`` read is bound as it was; the pieces that
    read a rebound one are forgotten (analysed again by the next :func:`_compute`)."""
    held = True
    for obj in code.pieces:
        piece = _PIECES.get(obj)
        if piece is None or not all(binding.holds() for binding in piece.bindings):
            _PIECES.drop(obj)
            held = False
    return held


def _warn_uncovered(obj: object, uncovered: tuple[str, ...]) -> None:
    """One warning per node, pointing at the node's definition and naming each construct."""
    if not uncovered:
        return
    root = _root(obj)
    code = getattr(root, "__code__", None)
    message = (
        f"the cache key of {qualified_name(root)} does not cover: {'; '.join(uncovered)}. "
        "A change there will not re-run it: pass such values as parameters, or give the node "
        "a version= and change it when that code changes"
    )
    if code is None:
        warnings.warn(message, FingerprintWarning, stacklevel=3)
    else:
        warnings.warn_explicit(message, FingerprintWarning, code_file(root), code.co_firstlineno)


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


def _compute(obj: object) -> _Code:
    root = _root(obj)
    wrappers = [w for w in wrapper_chain(obj) if _is_piece(w) and w is not root]
    found: dict[str, dict[str, str]] = collections.defaultdict(dict)  # name -> digest -> where
    sources: set[str] = set()
    packages: set[str] = set()
    missing: set[str] = set()
    uncovered: dict[str, None] = {}
    queue = collections.deque([root, *wrappers])
    seen = {id(o) for o in queue}  # traversal bookkeeping only; ids never reach a digest
    pieces = []
    analysed = []
    while queue:
        item = queue.popleft()
        pieces.append(item)
        piece = _piece(item)
        analysed.append(piece)
        found[piece.name].setdefault(piece.body if item is root else piece.decorated, piece.where)
        for name, digest in piece.constants:
            found[name].setdefault(digest, "")
        sources.add(piece.source)
        packages |= piece.packages
        missing |= piece.missing
        for ref in piece.refs:
            if id(ref) not in seen:
                seen.add(id(ref))
                queue.append(ref)
    called = _called(root, wrappers)
    own = analysed[0].name
    for item, piece in zip(pieces, analysed, strict=True):
        # what the key cannot see at run time counts in the node's own code (its methods for a
        # class) and in the helpers it reaches directly (a helper's own module-level cache is
        # its business); a helper reached only through an attribute name (``ctx.spark`` and a
        # global ``spark``) may not run at all
        mine = piece.name == own or piece.name.startswith(own + ".")
        helper = not mine and id(item) in called
        for u in piece.uncovered:
            if mine or not any(m in u for m in OWN_CODE_READS):
                uncovered[u] = None
            elif helper and any(m in u for m in HELPER_READS):
                uncovered[f"{u} (in {piece.name})"] = None
    parts, where = _number(found)
    source = "bytecode" if "bytecode" in sources else "ast"
    return _Code(
        parts, source, where, frozenset(packages), frozenset(missing), tuple(uncovered),
        tuple(pieces),
    )  # fmt: skip


def _called(root: Any, wrappers: list[Any]) -> set[int]:
    """The ids of the pieces the node's code (and its wrappers) reach directly, transitively:
    through the globals, imported names and attributes of modules their code loads."""
    called = {id(o) for o in (root, *wrappers)}  # traversal bookkeeping only, as in _compute
    stack = [root, *wrappers]
    while stack:
        for ref in _piece(stack.pop()).direct:
            if id(ref) not in called:
                called.add(id(ref))
                stack.append(ref)
    return called


def _number(found: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Parts and code locations; different objects of one name are ``name``, ``name#2``... in
    the order of their digests (not the order they were found in)."""
    parts: dict[str, str] = {}
    where: dict[str, str] = {}
    for name, digests in found.items():
        for n, digest in enumerate(sorted(digests), start=1):
            key = name if n == 1 else f"{name}#{n}"
            parts[key] = digest
            if digests[digest]:
                where[key] = digests[digest]
    return parts, where


def _is_piece(obj: object) -> bool:
    return isinstance(obj, (types.FunctionType, type)) and is_user_code(obj)


def _piece(obj: Any) -> _Piece:
    found = _PIECES.get(obj)
    if found is None:
        found = _analyse(obj)
        _PIECES.set(obj, found)
    return found


def _analyse(obj: Any) -> _Piece:
    name = qualified_name(obj)
    if "__wrapped__" in getattr(obj, "__dict__", ()):  # functools.wraps copied the name
        name += ".<wrapper>"
    refs = References()
    if isinstance(obj, type):
        refs.cls(obj, name)
    else:
        refs.function(obj, name)
    normalized, source = normalized_source(obj), "ast"
    code = getattr(obj, "__code__", None)
    filename = display_path(code_file(obj)) if code is not None else _class_file(obj)
    if normalized is None:
        body = class_bytecode(obj) if isinstance(obj, type) else code_digest(obj.__code__)
        normalized = (body, body, code.co_firstlineno if code is not None else 0)
        if has_own_code(obj):  # not e.g. a namedtuple() or Enum() class: nothing to warn about
            source = "bytecode"
            warnings.warn(
                f"{filename} was edited since {name} was loaded: its key follows the code that "
                "runs (its bytecode), not the edit; restart the process (or reload the module) "
                "to run the edited code"
                if edited_since_loaded(obj)
                else f"no source for {name}; its fingerprint uses bytecode, which changes with "
                "the Python version",
                FingerprintWarning,
                stacklevel=2,
            )
    body, decorated, line = normalized
    return _Piece(
        name, body, decorated, source, f"{filename}:{line}" if line else filename,
        (*refs.constants.items(), *module_settings(obj)), refs.unique(), refs.unique(refs.direct),
        frozenset(refs.packages),
        frozenset(refs.missing), tuple(refs.uncovered), tuple(refs.bindings),
    )  # fmt: skip


def _class_file(cls: type) -> str:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    return display_path(path) if isinstance(path, str) else cls.__module__


register_code_handlers(lambda obj: code_fingerprint(obj).digest)
