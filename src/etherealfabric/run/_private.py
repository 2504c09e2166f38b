"""A node's own copy of the literal arguments it is given.

The arguments written in a workflow (``fit(config, grid=[...])``) are objects of the driver.
On a backend that runs tasks in the driver's process (threads, ``on_driver`` nodes, a Dask
cluster of threads) every node given the same literal would otherwise get that very object:
a node that changed it in place (``config["lr"] = 0.1``) would change it for its siblings,
for the user's script, and for the results cached under keys computed from the value before
the change. Each task therefore gets its own copy, as a task sent to another process does:

- plain containers (list, tuple, dict, set) are rebuilt around copies of their items;
- a numpy array becomes a read-only view (array inputs are read-only, see ``store/_loading``),
  a pandas or polars frame its own frame object over the same columns (``own_copy``);
- any other object is deep-copied, unless it belongs to the machinery a node may be handed
  on purpose (a Dask client, a Spark session, a lock, a connection...) or cannot be copied:
  then it is shared, as before.
"""

from __future__ import annotations

import copy
from typing import Any

from ..define._files import Directory, File
from ..define._secret import Secret
from ..store._loading import InputHandle, own_copy

__all__ = ["private"]

_ATOMIC = frozenset({type(None), bool, int, float, complex, str, bytes, range, type(Ellipsis)})
_SHARED = (InputHandle, Secret, File, Directory)
#: top-level packages whose objects are handles on something outside the value (clients,
#: sessions, connections, locks): shared, never copied
_MACHINERY = frozenset(
    {
        "asyncio", "celery", "concurrent", "dask", "distributed", "etherealfabric", "io",
        "kombu", "logging", "multiprocessing", "py4j", "pyspark", "queue", "redis", "socket",
        "sqlite3", "ssl", "subprocess", "threading", "_thread", "weakref",
    }
)  # fmt: skip


def private(value: Any, _depth: int = 0) -> Any:
    """``value`` as a task's own: see the module docstring."""
    kind = type(value)
    if kind in _ATOMIC or isinstance(value, _SHARED) or _depth > 100:
        return value
    if kind in (list, tuple, set, frozenset):
        items = [private(v, _depth + 1) for v in value]
        return kind(items)
    if kind is dict:
        return {k: private(v, _depth + 1) for k, v in value.items()}
    package = kind.__module__.partition(".")[0]
    if package == "numpy" and kind.__name__ in ("ndarray", "memmap"):
        view = value.view()
        view.flags.writeable = False
        return view
    if package in ("pandas", "polars"):
        return own_copy(value)  # a frame its own frame object; other pandas objects as they are
    if package in _MACHINERY or callable(value):
        return value  # functions, classes, clients, sessions, locks: shared
    try:
        return copy.deepcopy(value)
    except Exception:  # cannot be copied: shared, as before
        return value
