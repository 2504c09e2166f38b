"""How a task travels to a worker process: cloudpickle, and memoized functions by value.

cloudpickle sends the functions and classes of code that cannot be imported where the task runs
(``__main__``, a workflow file the CLI loaded: ``cloudpickle.register_pickle_by_value``) by
value. A ``functools.lru_cache``/``functools.cache`` wrapper is no Python function, so it went
by name (cloudpickle issue #178), which a worker cannot import: a node calling a memoized helper
of its workflow file failed there with ``ModuleNotFoundError``. :func:`dumps_task` sends such a
wrapper by value too.
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "by_name",
    "dumps_task",
    "module_by_name",
]


def dumps_task(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj)``, except that a memoized function (``functools.lru_cache``,
    ``functools.cache``) of code that travels by value (``__main__``, a workflow file the CLI
    loaded: ``cloudpickle.register_pickle_by_value``) travels by value too, as the function it
    wraps does. cloudpickle sends such a wrapper by name (it is no Python function; cloudpickle
    issue #178), which a worker cannot import: the node failed with ``ModuleNotFoundError``
    (``AttributeError`` on the stand-in ``__main__``). The worker gets a wrapper of its own with
    the same ``maxsize`` and ``typed``, and an empty cache (as every global of by-value code, it
    lives as long as the task's copy of the code). One of an importable module still travels by
    name."""
    with io.BytesIO() as file:
        _task_pickler()(file).dump(obj)
        return file.getvalue()


@functools.cache
def _task_pickler() -> type:
    """cloudpickle's pickler, with memoized functions of by-value code sent by value."""
    import cloudpickle

    class TaskPickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if type(obj) is _LRU_WRAPPER and by_name(obj) is None:
                return _reduce_memoized(obj)
            return super().reducer_override(obj)

    return TaskPickler


_LRU_WRAPPER = type(functools.lru_cache(maxsize=None)(len))


def by_name(obj: Any) -> tuple[str, str] | None:
    """``(module, qualname)`` if cloudpickle sends ``obj`` by name safely (the worker imports
    it): its module is imported here, not ``__main__`` nor registered to travel by value, and
    ``obj`` is found there under its qualified name (not a closure, nor a rebound name)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    if not module_by_name(module):
        return None  # travels by value: the worker runs this very code
    found: Any = sys.modules.get(module)
    try:
        for name in qualname.split("."):
            found = getattr(found, name)
    except Exception:  # (a lazy attribute that fails: not found by name)
        return None
    return (module, qualname) if found is obj else None


def module_by_name(module: str) -> bool:
    """Whether what the module ``module`` holds reaches a worker by name (the worker imports
    its own copy): imported here, neither ``__main__`` nor registered to travel by value."""
    import cloudpickle

    if module == "__main__" or module not in sys.modules:
        return False
    registered = cloudpickle.list_registry_pickle_by_value()
    parts = module.split(".")
    return not any(".".join(parts[: i + 1]) in registered for i in range(len(parts)))


def _reduce_memoized(wrapper: Any) -> Any:
    """Rebuilt as an empty wrapper first (memoized by the pickler before what it wraps is
    pickled: that function's globals may name the wrapper, a recursive one's do), then given
    the function (by value) and its attributes."""
    wrapped = getattr(wrapper, "__wrapped__", None)
    if wrapped is None:  # not made by functools.lru_cache: as cloudpickle would
        return NotImplemented
    params = wrapper.cache_parameters()
    attributes = {k: v for k, v in vars(wrapper).items() if k != "cache_parameters"}
    return (
        _memoized_skeleton,
        (params["maxsize"], params["typed"]),
        (wrapped, attributes),
        None,
        None,
        _memoized_setstate,
    )


def _memoized_skeleton(maxsize: int | None, typed: bool) -> Any:
    """A memoized wrapper (:func:`_reduce_memoized`) that calls the function
    :func:`_memoized_setstate` gives it."""
    target: list[Callable[..., Any]] = []

    def call(*args: Any, **kwargs: Any) -> Any:
        return target[0](*args, **kwargs)

    wrapper = functools.lru_cache(maxsize=maxsize, typed=typed)(call)
    wrapper.__dict__["_etherealfabric_target"] = target
    return wrapper


def _memoized_setstate(wrapper: Any, state: tuple[Callable[..., Any], dict[str, Any]]) -> Any:
    wrapped, attributes = state
    wrapper.__dict__.pop("_etherealfabric_target").append(wrapped)
    wrapper.__dict__.update(attributes)  # __wrapped__, __name__, __qualname__, __module__...
    return wrapper
