"""A name code read in a namespace, and the object it was bound to then (to see a rebinding)."""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["Binding"]

_ABSENT = object()


class Binding:
    """A name the code read in a namespace (a module's globals), and the object it was bound
    to then: weakly when the object allows it, so a rebound value is not kept alive."""

    __slots__ = ("_obj", "_ref", "name", "namespace")

    def __init__(self, namespace: dict[str, Any], name: str, obj: object) -> None:
        self.namespace, self.name = namespace, name
        try:
            self._ref: weakref.ref[Any] | None = weakref.ref(obj)
            self._obj: object = None
        except TypeError:  # an int, a str, a dict...: held (small, or replaced at the next check)
            self._ref, self._obj = None, obj

    def value(self) -> object:
        """The object the name was bound to (None once a weakly held one is gone)."""
        return self._ref() if self._ref is not None else self._obj

    def holds(self) -> bool:
        """Whether the name is still bound to the same object (not rebound, nor deleted)."""
        bound = self._ref() if self._ref is not None else self._obj
        return self.namespace.get(self.name, _ABSENT) is bound
