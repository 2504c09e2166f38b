"""The :class:`Serializer` base class (its own module so that serializer modules such as
:mod:`._tables` and the registry in :mod:`._serializers` can both import it)."""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from typing import BinaryIO

__all__ = ["Serializer"]


class Serializer(ABC):
    """Writes values of some kinds to a binary stream and reads them back.

    Subclasses set ``name`` (short, stable: it is stored in every action record) and
    implement :meth:`dump` and :meth:`load`. ``dump`` raises on values it cannot handle.
    """

    name: str

    @abstractmethod
    def dump(self, value: object, fp: BinaryIO) -> None:
        """Write ``value`` to ``fp``."""

    @abstractmethod
    def load(self, fp: BinaryIO) -> object:
        """Read a value written by :meth:`dump` from ``fp``."""

    def loads(self, data: bytes) -> object:
        """Read a value from bytes (the inline form of small outputs)."""
        return self.load(io.BytesIO(data))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
