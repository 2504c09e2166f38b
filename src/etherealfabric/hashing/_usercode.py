"""What counts as user code, and how user code is named in keys.

"User code" is code whose module file is neither under the standard library nor under a
site-packages directory, plus ``__main__`` and code created from strings (``exec``).
EtherealFabric's own code never is. Nor is a package installed into some other folder on the
path (``pip install --target``, a vendored folder): a top-level module beside a ``.dist-info``
folder that declares it is an installed package. (Editable installs keep their metadata in
site-packages, not beside the code, so the code of a package being developed stays user code.) Fingerprints follow user code only; everything else counts
by name (its version is the installed package's business).

A script is named after its file however it was run (:func:`module_label`), so
``python flow.py`` and ``etherealfabric run flow.py`` share cache entries.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import site
import sys
import sysconfig
import types
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SCRIPT_MODULE_PREFIX",
    "defined_in",
    "is_library_file",
    "is_user_code",
    "is_user_module",
    "is_user_top",
    "module_label",
    "qualified_name",
    "script_module",
    "script_module_name",
]

#: the module name the workflow-file loader gives a script it runs
SCRIPT_MODULE_PREFIX = "etherealfabric_workflow_"

_MODULE_DECISIONS: dict[str, bool] = {}
#: EtherealFabric's own package folder (its files are the engine's, never a node's data)
_ENGINE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "")


def is_user_code(obj: object) -> bool:
    """True if ``obj`` is defined in user code (not the stdlib, site-packages or EtherealFabric)."""
    module = getattr(obj, "__module__", None)
    if module is None and isinstance(obj, types.FunctionType):
        # exec'd in a namespace without ``__name__`` (``exec(text, ns)``, ``sympy.lambdify``):
        # code made at run time, by the user or for them: keyed by its bytecode, not its name
        filename = obj.__code__.co_filename
        return filename.startswith("<") or _is_user_file(filename)
    if not isinstance(module, str) or _is_ours(module):
        return False
    loaded = sys.modules.get(module)
    if loaded is not None:
        return is_user_module(loaded)
    # a module that is gone (``runpy.run_path`` drops its ``<run_path>`` module once the file
    # has run, a module loaded from a file by ``module_from_spec`` is never added) or exec'd
    # with a made-up ``__name__``: by the file its code was compiled from, for a class the
    # file of its own methods (a class keeps no file of its own); a class without any is
    # user code unless its module can be found (a library's modules all can)
    code = _own_method_code(obj, module) if isinstance(obj, type) else None
    code = getattr(obj, "__code__", code)
    if code is None and isinstance(obj, type):
        return _unknown_or_user(module.partition(".")[0])
    return isinstance(code, types.CodeType) and _is_user_file(code.co_filename)


def _own_method_code(cls: type, module: str) -> types.CodeType | None:
    """The code of the first function ``cls`` defines itself (a method, static or class
    method, a property's getter), compiled in ``module``."""
    for member in vars(cls).values():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if isinstance(member, types.FunctionType) and member.__module__ == module:
            return member.__code__
    return None


def is_user_module(module: types.ModuleType) -> bool:
    """True if ``module`` is user code (decided once per module name)."""
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


def is_user_top(top: str) -> bool:
    """Whether top-level module ``top`` is user code: by the module if it is imported, else by
    the file it would be imported from (found without importing anything)."""
    loaded = sys.modules.get(top)
    if loaded is not None:
        return is_user_module(loaded)
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    origin = spec.origin if spec.has_location else None
    locations = list(spec.submodule_search_locations or ())
    path = origin or (locations[0] if locations else None)
    return isinstance(path, str) and _is_user_file(path)


def _unknown_or_user(top: str) -> bool:
    """True if no top-level module ``top`` can be found, or it is user code."""
    if top in sys.modules:
        return is_user_module(sys.modules[top])
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return True
    return spec is None or is_user_top(top)


def is_library_file(path: str) -> bool:
    """True if the file at ``path`` belongs to the standard library, an installed package or
    EtherealFabric itself (what package versions and the engine's version stand for)."""
    real = os.path.realpath(path)
    return real.startswith(_ENGINE_DIR) or not _is_user_real(real)


def _is_ours(module: str) -> bool:
    return module == "etherealfabric" or module.startswith("etherealfabric.")


def _is_user_file(path: str) -> bool:
    if path.startswith("<"):  # "<string>", "<stdin>", notebooks; but not "<frozen os>"
        return not path.startswith("<frozen")
    return _is_user_real(os.path.realpath(path))


def _is_user_real(real: str) -> bool:
    """:func:`_is_user_file` of a path already resolved (``os.path.realpath``)."""
    if any(real.startswith(prefix) for prefix in _library_dirs()):
        return False
    return not _installed_beside(real)


def _installed_beside(real: str) -> bool:
    """True if ``real`` is in a top-level module declared by a ``.dist-info`` beside it."""
    for root in _path_roots():
        if real.startswith(root):
            top = real[len(root) :].split(os.sep, 1)[0]
            return top.partition(".")[0] in _declared_in(root)
    return False


def _path_roots() -> tuple[str, ...]:
    """The folders on ``sys.path``, longest first (each ending with a separator)."""
    return _roots_of(tuple(p for p in sys.path if isinstance(p, str)), os.getcwd())


@functools.lru_cache(maxsize=8)
def _roots_of(path: tuple[str, ...], cwd: str) -> tuple[str, ...]:
    """:func:`_path_roots` of one ``sys.path`` (and working folder, for relative entries):
    resolved once, not for each file a node imported (162 for numpy, each resolving every
    entry: 30-100 ms where packages come through ``PYTHONPATH``, as on many Spark clusters)."""
    roots = {os.path.join(os.path.realpath(p or "."), "") for p in path}
    return tuple(sorted(roots, key=len, reverse=True))


@functools.lru_cache(maxsize=256)
def _declared_in(root: str) -> frozenset[str]:
    """The top-level module names the ``.dist-info`` folders in ``root`` declare."""
    names: set[str] = set()
    try:
        infos = [e.path for e in os.scandir(root) if e.name.endswith(".dist-info") and e.is_dir()]
    except OSError:
        return frozenset()
    for info in infos:
        names.update(_declared_by(info))
    return frozenset(names)


def _declared_by(info: str) -> set[str]:
    with contextlib.suppress(OSError), open(os.path.join(info, "top_level.txt")) as f:
        return set(f.read().split())
    names = set()
    with contextlib.suppress(OSError), open(os.path.join(info, "RECORD")) as f:
        for line in f:
            first = line.split(",", 1)[0].split("/", 1)[0]
            if not first.endswith((".dist-info", ".data")) and first != "..":
                names.add(first.partition(".")[0])
    return names


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    with contextlib.suppress(AttributeError):  # old virtualenvs have no site.getsitepackages
        dirs.update(site.getsitepackages())
    dirs.add(site.getusersitepackages())
    return tuple(sorted({os.path.join(os.path.realpath(d), "") for d in dirs}))


# -- names -----------------------------------------------------------------------------------


def module_label(name: str, namespace: Mapping[str, Any] | None = None) -> str:
    """A module's name as keys see it: a script is named after its file, however it was run.

    ``python flow.py`` names the module ``__main__`` and ``etherealfabric run flow.py`` names it
    ``etherealfabric_workflow_flow``; both become ``flow`` so the two share cache entries.
    ``namespace`` is the globals the code was defined in, when known: a runner such as
    ``python -m cProfile flow.py`` runs the script in globals of its own while
    ``sys.modules["__main__"]`` stays the runner, and the script's ``__file__`` is there.
    """
    if name in ("__main__", "__mp_main__"):
        # the globals of another module (a ``functools.wraps`` wrapper defined in util.py
        # carries the script's ``__module__``) say nothing of the script's file
        mine = namespace is not None and namespace.get("__name__") == name
        path = namespace.get("__file__") if mine and namespace is not None else None
        if not isinstance(path, str):
            path = getattr(sys.modules.get(name), "__file__", None)
        return os.path.splitext(os.path.basename(path))[0] if path else name
    if name.startswith(SCRIPT_MODULE_PREFIX):
        return name[len(SCRIPT_MODULE_PREFIX) :]
    return name


def script_module(name: str, namespace: Mapping[str, Any] | None = None) -> str | None:
    """The name ``etherealfabric run`` imports a script under (``etherealfabric_workflow_flow``
    for ``flow.py``), for a module of that name or a script run as ``__main__`` (or
    ``__mp_main__``, in a spawned worker) with a file; None for any other module."""
    if name.startswith(SCRIPT_MODULE_PREFIX):
        return name
    if name not in ("__main__", "__mp_main__"):
        return None
    label = module_label(name, namespace)
    return None if label == name else script_module_name(label)


def script_module_name(stem: str) -> str:
    """The module name ``etherealfabric run`` imports the script ``<stem>.py`` under."""
    return SCRIPT_MODULE_PREFIX + re.sub(r"\W", "_", stem)


def qualified_name(obj: Any) -> str:
    """``module.qualname`` of a function or class, with scripts named after their file."""
    try:
        return _qualified_cached(obj)
    except TypeError:  # unhashable
        return _qualified_uncached(obj)


def _qualified_uncached(obj: Any) -> str:
    label = module_label(getattr(obj, "__module__", "?") or "?", defined_in(obj))
    return f"{label}.{getattr(obj, '__qualname__', '?')}"


def defined_in(obj: Any) -> Mapping[str, Any] | None:
    """The globals ``obj`` was defined in: a function's, or those of a class's first method
    (a class keeps no globals of its own); None when it cannot tell."""
    found = getattr(obj, "__globals__", None)
    if found is None and isinstance(obj, type):
        for member in vars(obj).values():
            found = getattr(member, "__globals__", None)
            if found is not None:
                break
    return found if isinstance(found, dict) else None


_qualified_cached = functools.lru_cache(maxsize=4096)(_qualified_uncached)
