"""What counts as user code, and how user code is named in keys.

"User code" is code whose module file is neither under the standard library nor under a
site-packages directory, plus ``__main__`` and code created from strings (``exec``).
EtherealFabric's own code never is. Fingerprints follow user code only; everything else counts
by name (its version is the installed package's business).

A script is named after its file however it was run (:func:`module_label`), so
``python flow.py`` and ``etherealfabric run flow.py`` share cache entries.
"""

from __future__ import annotations

import contextlib
import functools
import os
import site
import sys
import sysconfig
import types
from typing import Any

__all__ = [
    "SCRIPT_MODULE_PREFIX",
    "is_user_code",
    "is_user_module",
    "module_label",
    "qualified_name",
]

#: the module name the workflow-file loader gives a script it runs
SCRIPT_MODULE_PREFIX = "etherealfabric_workflow_"

_MODULE_DECISIONS: dict[str, bool] = {}


def is_user_code(obj: object) -> bool:
    """True if ``obj`` is defined in user code (not the stdlib, site-packages or EtherealFabric)."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or _is_ours(module):
        return False
    loaded = sys.modules.get(module)
    if loaded is not None:
        return is_user_module(loaded)
    code = getattr(obj, "__code__", None)  # e.g. exec'd with a made-up __name__
    return isinstance(code, types.CodeType) and _is_user_file(code.co_filename)


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


def _is_ours(module: str) -> bool:
    return module == "etherealfabric" or module.startswith("etherealfabric.")


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


# -- names -----------------------------------------------------------------------------------


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
