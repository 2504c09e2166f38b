"""``File`` and ``Directory``: inputs that are hashed by their content, not their path.

Pass ``File("data.csv")`` (or ``Directory("images/")``) as a node input and the node's cache key
follows the bytes on disk: editing the file re-runs the node, touching or moving it does not.
Inside ``run()`` the input is still the ``File`` object, usable wherever a path is::

    with open(f) as fh: ...          pathlib.Path(f)          pandas.read_csv(f)

The path is made absolute (``os.path.abspath``, symlinks kept) when the object is created, so a
worker running in another folder opens the same file. The path itself is *not* part of the
cache key: two checkouts in different folders share results. Nothing is checked or read when
the object is created; a missing path is reported when it is hashed. Reading and hashing the
content is the hashing layer's job (:mod:`etherealfabric.hashing._files`).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Directory", "File"]


class _PathValue(os.PathLike[str]):
    """An immutable absolute path, compared and hashed by its class and path."""

    __slots__ = ("_path",)
    _path: str

    def __init__(self, path: str | os.PathLike[str]) -> None:
        text = os.fspath(path)
        if not isinstance(text, str) or not text:
            raise TypeError(f"{type(self).__name__} needs a non-empty str path; got {path!r}")
        object.__setattr__(self, "_path", os.path.abspath(text))

    @property
    def path(self) -> str:
        """The absolute path (symlinks are not resolved)."""
        return self._path

    @property
    def name(self) -> str:
        """The last component of the path."""
        return os.path.basename(self._path)

    def __fspath__(self) -> str:
        return self._path

    def __str__(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._path!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._path == other._path

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._path))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self._path,)


class File(_PathValue):
    """A file input, hashed by its content (streamed; symlinks are followed)."""

    __slots__ = ()


class Directory(_PathValue):
    """A folder input, hashed by its whole content: every relative path and file's bytes."""

    __slots__ = ()
