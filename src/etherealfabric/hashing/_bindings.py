"""A name code read in a namespace, and the object it was bound to then (to see a rebinding,
and a small container changed in place)."""

from __future__ import annotations

import collections
import weakref
from typing import Any

__all__ = ["Binding"]

_ABSENT = object()
#: containers whose content a notebook changes in place (``CONFIG["lr"] = 0.1``): the state of
#: one read by code is checked again at each run, when it is small and plain (:func:`_state`)
_MUTABLE = (dict, list, set, bytearray, collections.OrderedDict, collections.defaultdict,
            collections.deque)  # fmt: skip
_PLAIN = (str, int, float, bool, type(None), bytes, complex)
_CONTAINERS = (*_MUTABLE, tuple, frozenset)
#: at most this many values in such a container (nested ones counted): larger ones count as
#: they were when first analysed in the process, as other values do (docs/concepts.md)
MAX_CHECKED = 10_000


class Binding:
    """A name the code read in a namespace (a module's globals), and the object it was bound
    to then: weakly when the object allows it, so a rebound value is not kept alive; and,
    for a small container of plain values, the digest of its content then."""

    __slots__ = ("_obj", "_ref", "_state", "name", "namespace")

    def __init__(self, namespace: dict[str, Any], name: str, obj: object) -> None:
        self.namespace, self.name = namespace, name
        try:
            self._ref: weakref.ref[Any] | None = weakref.ref(obj)
            self._obj: object = None
        except TypeError:  # an int, a str, a dict...: held (small, or replaced at the next check)
            self._ref, self._obj = None, obj
        self._state = _state(obj)

    def value(self) -> object:
        """The object the name was bound to (None once a weakly held one is gone)."""
        return self._ref() if self._ref is not None else self._obj

    def holds(self) -> bool:
        """Whether the name is still bound to the same object (not rebound, nor deleted), with
        the same content if it is a small container of plain values."""
        bound = self._ref() if self._ref is not None else self._obj
        if self.namespace.get(self.name, _ABSENT) is not bound:
            return False
        return self._state is None or _state(bound) == self._state

    def settle(self) -> None:
        """Take the content the name's container holds now as the one analysed: what the
        run's own nodes changed in it (a list they append to) is no change for the next run;
        only a change made between runs (a notebook cell) is."""
        if self._state is not None:
            bound = self.value()
            if self.namespace.get(self.name, _ABSENT) is bound:  # (rebound: analysed again)
                self._state = _state(bound)  # (one hash: what holds() would compare it with)


def _state(obj: object) -> str | None:
    """The digest of the content of ``obj`` if it is a mutable container of at most
    :data:`MAX_CHECKED` plain values (strings, numbers, containers of them), else None."""
    if not isinstance(obj, _MUTABLE):
        return None
    try:
        if not _small_and_plain(obj):
            return None
        from ._builtins import hash_plain

        return hash_plain(obj)
    except Exception:  # changed while read (another thread): seen as changed
        return "?"


def _small_and_plain(obj: object) -> bool:
    todo, seen = [obj], 0
    while todo:
        value = todo.pop()
        seen += 1
        if seen > MAX_CHECKED:
            return False
        if isinstance(value, dict):
            todo.extend(value.keys())
            todo.extend(value.values())
        elif isinstance(value, _CONTAINERS) and not isinstance(value, bytearray):
            todo.extend(value)
        elif not isinstance(value, (*_PLAIN, bytearray)) or type(value).__module__ != "builtins":
            return False
    return True
