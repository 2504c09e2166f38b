"""What one function or class refers to: the user code, values and packages a fingerprint covers.

:class:`References` reads one piece of code and collects:

- ``refs``: the user functions and classes it reaches, to be fingerprinted as pieces of their
  own: through the names its code looks up (globals, attributes of user modules, modules
  imported inside its body), its closure cells and defaults, and through values (a function in
  a dict, a partial's target, a bound method's function, an instance's class, a decorated
  function's wrappers and the function it wraps), a class's metaclass, a module's
  ``__getattr__`` (PEP 562) and the submodules it may import, a ``functools.singledispatch``
  function's registered implementations, the user functions a library's callable object holds
  (``np.vectorize(f)``, its constant public attributes as the part ``NAME.<settings>``);
- ``constants``: every other value it reads, hashed *as code refers to it*: by value (arrays,
  frames, containers, instances of user classes by their state), with the code inside written
  by name and followed as ``refs``; named ``module.NAME``, ``owner.<closure>.var``,
  ``owner.<default>.param`` or ``Class.attr``;
- ``packages``: the top-level modules of installed packages it reaches (keyed by version, see
  :mod:`etherealfabric.hashing._packages`), and ``missing``: modules its body imports that are
  not installed;
- ``uncovered``: what the key cannot see: dynamic look-ups (:mod:`etherealfabric.hashing._scan`),
  imports that failed, library objects with no canonical encoding (hashed by their type), a
  ``np.frompyfunc`` ufunc (its function is out of reach).

The standard library, builtins and EtherealFabric count for nothing (EtherealFabric's own objects
such as ``checkpoint`` are not data; its ``File`` and ``Directory`` are, by content).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib
import importlib.util
import inspect
import sys
import types
from typing import Any

from ..errors import HashingError, a_or_an
from ._bindings import Binding
from ._builtins import hash_plain
from ._direct import SAME, Loads
from ._encoder import Encoder, type_name
from ._extensions import extension_members
from ._external import (
    assigned_at,
    clock_reads,
    data_urls,
    external_note,
    global_draws,
    library_settings,
    url_note,
)
from ._identity import code_identity, shares_its_name
from ._objects import cycle_reference, encode_reduced
from ._packages import is_installed, is_stdlib
from ._refkinds import (
    absolute_name,
    code_names,
    defaults_of,
    defined_in,
    dict_orders,
    has_submodule,
    is_code,
    is_frompyfunc,
    is_generated,
    is_machinery,
    is_setting,
    is_ufunc,
    is_users,
    library_descriptor,
    library_name,
    stable_var,
)
from ._scan import (
    CLOCK_READ,
    GLOBAL_DRAW,
    LIBRARY_SETTING,
    body_imports,
    dynamic_lookups,
    expression_names,
    global_stores,
)
from ._source import holds_code, member_functions, unwrap, wrapper_chain
from ._usercode import is_user_code, is_user_module, is_user_top, module_label, qualified_name

__all__ = ["Binding", "References"]  # Binding: from ._bindings

#: what a module holds by how it was loaded, not by what it says: ``__name__`` is "flow" under
#: the CLI, "__main__" under ``python flow.py``; ``__file__`` is each checkout's own. Never
#: followed (any ``type(x).__name__`` named the module's: a key per way of running it)
_LOAD_CONTEXT = frozenset(
    {"__name__", "__file__", "__spec__", "__loader__", "__package__", "__cached__", "__builtins__"}
)


class References:
    """Collects what one piece of code refers to (see the module docstring); a code sink."""

    def __init__(self) -> None:
        self.refs: list[Any] = []
        #: those of ``refs`` the code reaches directly (:mod:`etherealfabric.hashing._direct`)
        self.direct: list[Any] = []
        self._route: str | None = None  # how the code being followed now is reached (Loads)
        self._loads = Loads(None)  # what the function being read loads
        self.constants: dict[str, str] = {}
        self.packages: set[str] = set()
        self.missing: set[str] = set()
        self.uncovered: list[str] = []
        #: every name read in a namespace, with its object: a rebinding is seen (Binding.holds)
        self.bindings: list[Binding] = []
        self._modules: set[str] = set()
        self._names: tuple[str, ...] = ()  # the names of the code being read
        self._current = ""  # the part being hashed
        self._quiet = False  # library objects without an encoding are not worth a note
        #: part name -> (namespace, name) of the globals read, to say where one was assigned
        self._origins: dict[str, tuple[dict[str, Any], str]] = {}

    # -- code -------------------------------------------------------------------------------

    def function(self, fn: types.FunctionType, owner: str) -> None:
        code = fn.__code__
        names = code_names(code)
        lookups = dynamic_lookups(fn, names)
        names += tuple(lookups.names)
        names += tuple(n for n in expression_names(code, fn.__doc__) if n not in names)
        found = [*lookups.uncovered, *global_stores(fn), *data_urls(fn)]
        found += global_draws(fn, GLOBAL_DRAW) + clock_reads(fn, CLOCK_READ)
        found += library_settings(fn, LIBRARY_SETTING)
        self.uncovered += [str(lookup) for lookup in found]
        self._names, self._loads = names, Loads(fn)
        module = module_label(fn.__globals__.get("__name__", "?"), fn.__globals__)
        namespace = fn.__globals__
        imports, package = tuple(body_imports(code)), fn.__globals__.get("__package__")
        for level, target, _ in imports:  # first: ``import plug.impls`` fills a REG it reads
            self._find(absolute_name(target, level, package))
        for name in names:
            if name in namespace and name not in _LOAD_CONTEXT:
                self.named(namespace, name, f"{module}.{name}", names, f"global:{name}")
        for extension in extension_members(names):  # df.geo.center(): the user's on a frame
            self.code(extension, None)
        for level, target, fromlist in imports:
            self.imported(fn, level, target, fromlist, names)
        for target in lookups.modules:
            self.imported(fn, 0, target, (), names)
        generated = is_generated(fn)
        for var, cell in zip(code.co_freevars, fn.__closure__ or (), strict=True):
            label = stable_var(var) if generated else var
            with contextlib.suppress(ValueError):  # an empty cell
                self.value(cell.cell_contents, f"{owner}.<closure>.{label}", names, "")
        for param, default in defaults_of(fn):
            if default is not None:  # lossless: a part appearing or going away counts too
                self.value(default, f"{owner}.<default>.{param}", names)

    def cls(self, cls: type, owner: str) -> None:
        for base in cls.__bases__:
            if is_user_code(base):
                self.refs.append(base)
                self.direct.append(base)
            else:
                self.library(base.__module__)
        if is_user_code(type(cls)):  # a metaclass of the user's: its __call__ makes instances
            self.refs.append(type(cls))
            self.direct.append(type(cls))
        for attr, member in vars(cls).items():
            self.member(cls, attr, member, owner)

    def member(self, cls: type, attr: str, member: object, owner: str) -> None:
        functions = member_functions(member)
        for fn in functions:
            if not is_user_code(fn):  # namedtuple's or Enum's machinery, a library function
                self.library(fn.__module__)
            elif defined_in(fn, cls) or is_generated(fn):  # e.g. a dataclass's __init__
                self.function(fn, f"{owner}.{attr}")
            else:
                self.value(fn, f"{owner}.{attr}", ())  # e.g. ``method = helper``
        if functions:
            return
        private = attr.startswith("_") and (attr.endswith("__") or not holds_code(member))
        if isinstance(member, type) and defined_in(member, cls):
            self.cls(member, f"{owner}.{attr}")
        elif not private and not library_descriptor(member):
            # a library object here (one a metaclass made, say) is as its class body says
            quiet, self._quiet = self._quiet, True
            try:
                self.value(member, f"{owner}.{attr}", ())
            finally:
                self._quiet = quiet

    # -- what a name holds ------------------------------------------------------------------

    def named(
        self, namespace: dict[str, Any], name: str, part: str, names: tuple[str, ...],
        route: str | None = None,
    ) -> None:  # fmt: skip
        """The global ``name`` of ``namespace``, read by the code: the part ``part``."""
        value = namespace[name]
        self.bindings.append(Binding(namespace, name, value))
        self._origins[part] = (namespace, name)
        self.value(value, part, names, route)

    def value(
        self, value: object, name: str, names: tuple[str, ...], route: str | None = None
    ) -> None:
        """A value the code reads under ``name``: followed if code, else hashed as a part;
        ``route`` says how the code reaches it (:class:`etherealfabric.hashing._direct.Loads`)."""
        if isinstance(value, types.ModuleType):
            self.module(value, names)
        elif isinstance(value, functools.partial):
            self.value(value.func, name, names, route)
            self.value((value.args, value.keywords), f"{name}.<partial>", names)
        elif isinstance(value, types.MethodType):
            self.code(value.__func__, route)
            self.value(value.__self__, f"{name}.<self>", names)
        elif is_code(value):
            self._current = name
            self.code(value, route)
            if not is_users(value):  # which library function or class the name stands for
                self._identity(value, name)
            elif shares_its_name(value):  # LA = lambda x: ..., A = make(3): which one
                self.constants[f"{name}.<is>"] = code_identity(value)
        elif not is_machinery(value):
            self.data(value, name)

    def _identity(self, value: object, name: str) -> None:
        """The part ``name`` of a name bound to a library or builtin function or class
        (``AGG = np.mean``, ``from numpy import mean as agg``, ``DTYPE = np.float64``): its
        qualified name, and what a bound builtin method is bound to (``"-".join``). Its code
        counts by its package's version; this says which of the package's callables it is."""
        target = unwrap(value)
        encoder = Encoder(None, self)
        encoder.tag("library")
        encoder.text(library_name(target))
        bound = getattr(target, "__self__", None)
        if bound is not None and not isinstance(bound, (types.ModuleType, type)):
            self.data(bound, f"{name}.<self>")
        self.constants[name] = encoder.hexdigest()

    def data(self, value: object, name: str) -> None:
        """A value hashed as code refers to it: the part ``name``."""
        self.library(type(value).__module__)
        note = None if self._quiet else (external_note(value) or url_note(value))
        if note is not None:  # still hashed as before: the note is not part of the key
            origin = self._origins.get(name)
            self.uncovered.append(f"{name}{assigned_at(*origin) if origin else ''}: {note}")
        self._current = name
        from ._paths import relative_to_roots  # (with the first constant the code reads)

        encoder = Encoder(None, self)
        route, self._route = self._route, None  # the code inside data is not called as such
        try:
            encoder.value(relative_to_roots(value))  # a checkout's own folder is not keyed
        except Exception as exc:  # a value the code reads must never break its key
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            self.uncovered.append(f"{name}: cannot be hashed ({reason})")
            return
        finally:
            self._route = route
        digest = encoder.hexdigest()
        orders = dict_orders(value)
        if orders:  # code iterates a dict in its order (a value compares without it)
            digest = hash_plain((digest, orders))
        self.constants[name] = digest
        factory = getattr(value, "default_factory", None)
        if isinstance(value, collections.defaultdict) and factory is not None:
            self.value(factory, f"{name}.<default_factory>", ())  # what a missing key gets

    def module(self, module: types.ModuleType, names: tuple[str, ...]) -> None:
        if not is_user_module(module):
            self.library(module.__name__)
            return
        first = module.__name__ not in self._modules
        self._modules.add(module.__name__)
        namespace = vars(module)
        label = module_label(module.__name__)
        for name in names:  # each once: a class's methods read other names of one module
            if (
                name in namespace
                and name not in _LOAD_CONTEXT
                and f"{label}.{name}" not in self._origins
            ):
                route = f"attr:{module.__name__}.{name}"
                self.named(namespace, name, f"{label}.{name}", names, route)
        hook = namespace.get("__getattr__")
        if first and isinstance(hook, types.FunctionType) and is_user_code(hook):
            self.lazy(module, hook, names)

    def lazy(
        self, module: types.ModuleType, hook: types.FunctionType, names: tuple[str, ...]
    ) -> None:
        """A module's ``__getattr__`` (PEP 562) makes the attributes it lacks: the function is
        followed (what it imports by constant names with it, a computed import warns), and so
        is each submodule named like an attribute the code reads that the module lacks."""
        namespace = vars(module)
        self.bindings.append(Binding(namespace, "__getattr__", hook))
        self.value(hook, f"{module_label(module.__name__)}.__getattr__", names)
        if not hasattr(module, "__path__"):
            return
        for name in names:
            if name not in namespace and has_submodule(module, name):
                sub = self._find(f"{module.__name__}.{name}")
                if sub is not None:
                    self.module(sub, names)

    def imported(
        self, fn: types.FunctionType, level: int, target: str, fromlist: tuple[str, ...],
        names: tuple[str, ...],
    ) -> None:  # fmt: skip
        """An import in ``fn``'s body: follow the user modules and names it binds."""
        absolute = absolute_name(target, level, fn.__globals__.get("__package__"))
        module = self._find(absolute)
        if module is None or absolute is None:
            return
        label = module_label(module.__name__)
        for name in (n for n in fromlist if n != "*"):
            if name in vars(module):
                self.named(vars(module), name, f"{label}.{name}", names, "")
            elif hasattr(module, name):
                self.bindings.append(Binding(vars(module), name, getattr(module, name)))
                self.value(getattr(module, name), f"{label}.{name}", names, "")
            elif (sub := self._find(f"{absolute}.{name}")) is not None:
                self.module(sub, names)
        if not fromlist:  # ``import a.b.c`` binds ``a``; the code reads a.b.c.name
            parts = absolute.split(".")
            for i in range(1, len(parts) + 1):
                found = sys.modules.get(".".join(parts[:i]))
                if found is not None:
                    self.module(found, names)

    def _find(self, absolute: str | None) -> types.ModuleType | None:
        """The user module ``absolute`` (imported if need be); None for library code."""
        if absolute is None:  # a relative import out of no package
            return None
        top = absolute.partition(".")[0]
        if top == "etherealfabric" or is_stdlib(top):
            return None
        module = sys.modules.get(absolute)
        if module is None:
            loaded_top = sys.modules.get(top)
            if loaded_top is None and not is_installed(top):
                self.missing.add(top)
                return None
            if not (is_user_module(loaded_top) if loaded_top else is_user_top(top)):
                self.packages.add(top)
                return None
            try:
                module = importlib.import_module(absolute)
            except Exception as exc:
                self.uncovered.append(f"import {absolute}: failed ({type(exc).__name__}: {exc})")
                return None
        if not is_user_module(module):
            self.library(module.__name__)
            return None
        return module

    # -- the code sink: what a value holds --------------------------------------------------

    def code(self, obj: object, route: str | None = SAME) -> None:
        """A function, class, method or module met in a value or a name: followed (reached by
        ``route``; by default as the code being followed now)."""
        if route != SAME:
            route, self._route = self._route, route
            try:
                return self.code(obj)
            finally:
                self._route = route
        if isinstance(obj, types.ModuleType):
            self.module(obj, self._names)
            return
        if isinstance(obj, types.MethodType):
            self.code(obj.__func__)
            self.data(obj.__self__, f"{self._current}.<self>")
            return
        for item in wrapper_chain(obj):
            self.registered(item)
            if isinstance(item, (types.FunctionType, type)) and is_user_code(item):
                self._reach(item)
            elif callable(item) and is_user_code(type(item)):  # a callable instance
                self._reach(type(item))
            else:
                self.library(getattr(item, "__module__", None))
                self.held(item)

    def _reach(self, *found: Any) -> None:
        self.refs += found
        if self._loads.reaches(self._route):
            self.direct += found

    def registered(self, obj: object) -> None:
        """A ``functools.singledispatch`` function's registered implementations, and which type
        goes to which (the part ``<function>.<registry>``): a ``@f.register`` elsewhere counts."""
        registry = inspect.getattr_static(obj, "registry", None)
        if not isinstance(registry, types.MappingProxyType) or not callable(
            inspect.getattr_static(obj, "dispatch", None)
        ):
            return
        pairs = sorted((qualified_name(t), qualified_name(unwrap(f))) for t, f in registry.items())
        self.constants[f"{qualified_name(unwrap(obj))}.<registry>"] = hash_plain(tuple(pairs))
        for implementation in registry.values():
            self.code(implementation)

    def held(self, obj: object) -> None:
        """The user functions a library callable holds in its attributes, slots or partials
        (``np.vectorize(f).pyfunc``, ``toolz.curry(f)``); one that cannot be looked into, or a
        ``np.frompyfunc`` ufunc (which hides its function), is uncovered."""
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):
            return
        from ._held import attributes, partials  # (with the first library callable)

        self.library(type(obj).__module__)  # a curry's __module__ is the function's
        name = self._current or qualified_name(obj)
        held = attributes(obj)
        if held is None:
            if callable(obj) and not is_ufunc(obj):
                self.uncovered.append(
                    f"{name}: {a_or_an(type_name(type(obj)))}, whose contents cannot be looked into"
                )
            held = {}
        wrapped = {id(item) for item in wrapper_chain(obj)}  # an lru_cache's, a node's: followed
        functions = [
            v
            for v in held.values()
            if isinstance(v, types.FunctionType) and is_user_code(v) and id(v) not in wrapped
        ]
        self._reach(*functions)
        found = {id(p): p for v in held.values() for p in partials(v)}  # a slot's is a referent
        through = [p for p in found.values() if id(p.func) not in wrapped]
        for n, part in enumerate(through):
            label = f"{name}.<held>" if n == 0 else f"{name}.<held>#{n + 1}"
            self.value(part, label, (), self._route)
        settings = sorted((k, v) for k, v in held.items() if is_setting(k, v))
        if (functions or through) and settings:  # np.vectorize's otypes, signature, excluded...
            self.constants[f"{name}.<settings>"] = hash_plain(tuple(settings))
        if is_frompyfunc(obj):
            self.uncovered.append(
                f"{name}: a numpy.frompyfunc ufunc "
                f"({getattr(obj, '__name__', '?')}), whose Python function cannot be followed"
            )

    def library(self, module: str | None) -> None:
        """Code of the module named ``module``: its package, if it is an installed one."""
        if not isinstance(module, str) or not module:
            return
        top = module.partition(".")[0]
        loaded = sys.modules.get(top)
        if loaded is None or top == "etherealfabric" or is_stdlib(top):
            return
        if not is_user_module(loaded):
            self.packages.add(top)

    def opaque(self, value: object, encoder: Encoder) -> None:
        """A value with no encoding: its ``__reduce_ex__`` parts, else its type (uncovered)."""
        tp = type(value)
        if is_code(value):  # a wrapper object: a node function, an lru_cache
            self.code(value)
            encoder.tag("code")
            encoder.text(qualified_name(unwrap(value)))
            if is_users(unwrap(value)) and shares_its_name(unwrap(value)):  # which one
                encoder.text(code_identity(unwrap(value)))
            return
        self.library(tp.__module__)
        if cycle_reference(value, encoder):
            return
        child = Encoder(None, self, encoder.active)
        encoder.active.append(id(value))
        try:
            encode_reduced(value, child)
        except (HashingError, RecursionError):
            encoder.tag("opaque")
            encoder.text(type_name(tp))
            top = tp.__module__.partition(".")[0]
            if not (self._quiet or is_stdlib(top) or top == "etherealfabric"):
                self.uncovered.append(
                    f"{self._current}: holds {a_or_an(type_name(tp))}, which only counts by its type"
                )
            return
        finally:
            encoder.active.pop()
        encoder.tag("reduced")
        encoder.frame(child.digest())

    def unique(self, refs: list[Any] | None = None) -> tuple[Any, ...]:
        """The referenced objects (or those of ``refs``), each once, in the order found."""
        refs = self.refs if refs is None else refs
        by_id = {id(r): r for r in reversed(refs)}
        return tuple(by_id[i] for i in dict.fromkeys(id(r) for r in refs))
