"""Execution backends, by name. A backend is imported only when it is chosen.

Built in: ``local`` (threads, the default; alias ``threads``), ``processes``, ``dask``,
``celery`` and ``spark`` (the last three need the ``dask``, ``celery`` and ``spark`` extras). Third-party
backends register under the ``etherealfabric.backends`` entry-point group as
``name = "package.module:BackendClass"``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..config import check_options
from ..errors import UnknownBackendError
from ._base import Backend, TaskFuture

__all__ = [
    "Backend",
    "TaskFuture",
    "backend_names",
    "check_backend_name",
    "create_backend",
    "register_backend",
]

_BUILTIN = {
    "local": "etherealfabric.backends._local:ThreadBackend",
    "threads": "etherealfabric.backends._local:ThreadBackend",
    "processes": "etherealfabric.backends._local:ProcessBackend",
    "dask": "etherealfabric.backends._dask:DaskBackend",
    "celery": "etherealfabric.backends._celery:CeleryBackend",
    "spark": "etherealfabric.backends._spark:SparkBackend",
}
_registered: dict[str, str | type[Backend]] = {}


def register_backend(name: str, backend: str | type[Backend]) -> None:
    """Register a backend class (or its ``"module:Class"`` path) under ``name``."""
    _registered[name.lower()] = backend


def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name.lower(): ep.value for ep in entry_points(group="etherealfabric.backends")}


def backend_names() -> list[str]:
    """Every backend name that :func:`create_backend` accepts."""
    return sorted({*_BUILTIN, *_registered, *_plugins()})


def check_backend_name(name: Any, *, setting: str) -> None:
    """Raise :class:`~etherealfabric.errors.UnknownBackendError` naming ``setting`` when no
    backend is registered under ``name``; a built-in name costs no entry-point scan."""
    key = str(name).strip().lower()
    if key in _BUILTIN or key in _registered or key in _plugins():
        return
    raise UnknownBackendError(str(name), backend_names(), setting=setting)


def create_backend(name: str, *, setting: str | None = None, **options: Any) -> Backend:
    """Instantiate the backend called ``name``; an unknown name lists the known ones.

    ``options`` go to the backend's constructor; one it does not take raises
    :class:`~etherealfabric.errors.UnknownOptionError` before the backend starts.
    """
    key = name.lower()
    target = _registered.get(key) or _BUILTIN.get(key) or _plugins().get(key)
    if target is None:
        raise UnknownBackendError(name, backend_names(), setting=setting)
    cls = _load(target) if isinstance(target, str) else target
    params = inspect.signature(cls).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):  # else cls checks
        check_options(options, [p.name for p in params], where=f"create_backend({name!r})")
    return cls(**options)


def _load(path: str) -> type[Backend]:
    module, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{path} is not an etherealfabric Backend subclass")
    return cls
