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

**Declared outputs.** ``@node(writes=["reports/summary.md", "models/"])`` (or the class attribute
``writes`` of a :class:`~etherealfabric.Node`) names files and folders (a trailing ``/``) a node
writes, relative to the workflow's *root* folder; :func:`check_writes` validates them here, the
run layer stores and restores their content. :func:`root_path` turns a root-relative path into
an absolute one: inside a running node it uses that node's workflow root, inside a
``with Workflow():`` block that workflow's root, elsewhere the current folder.
"""

from __future__ import annotations

import contextvars
import os
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import DefinitionError
from ._context import Setting, current_collector

__all__ = [
    "Directory",
    "File",
    "activate_root",
    "check_writes",
    "known_roots",
    "note_root",
    "path_values",
    "root_path",
    "storing_under",
]


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

    def __reduce__(self) -> tuple[Any, tuple[str, ...]]:
        storing = _storing.get()
        if storing is not None:  # an output being stored: keep it root-relative
            root, found = storing
            relative = os.path.relpath(self._path, root)
            if relative != "." and relative != ".." and not relative.startswith(".." + os.sep):
                relative = relative.replace(os.sep, "/")
                found.append(relative + "/" if isinstance(self, Directory) else relative)
                return _rooted, (type(self).__name__, relative)
        return type(self), (self._path,)


class File(_PathValue):
    """A file input, hashed by its content (streamed; symlinks are followed)."""

    __slots__ = ()


class Directory(_PathValue):
    """A folder input, hashed by its whole content: every relative path and file's bytes."""

    __slots__ = ()


def path_values(value: Any, depth: int = 0) -> Iterator[File | Directory]:
    """The ``File`` and ``Directory`` values inside ``value`` (containers followed, a few levels)."""
    if isinstance(value, (File, Directory)):
        yield value
    elif depth < 8 and isinstance(value, Mapping):
        for item in value.values():
            yield from path_values(item, depth + 1)
    elif depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from path_values(item, depth + 1)


# -- declared outputs ------------------------------------------------------------------------
def check_writes(
    paths: Sequence[str | os.PathLike[str]] | str | None,
    *,
    where: str,
    params: Mapping[str, Any] | None = None,
) -> tuple[str, ...]:
    """Normalised root-relative paths of declared outputs (folders end with ``/``).

    ``{name}`` in a path is replaced by the node's literal parameter ``name`` (so one
    ``@node`` function called for several regions writes one file per region).
    """
    if paths is None:
        return ()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[str] = []
    for raw in paths:
        text = os.fspath(raw)
        if not isinstance(text, str) or not text.strip():
            raise DefinitionError(f"{where}: writes= takes non-empty relative paths, got {raw!r}")
        if params is not None and "{" in text:
            text = _fill(text, params, where)
        found.append(_normalise(text, where))
    return tuple(dict.fromkeys(found))


def _fill(text: str, params: Mapping[str, Any], where: str) -> str:
    try:
        return text.format_map(params)
    except TypeError:  # a workflow parameter (wf.params.x): no value until the run
        raise DefinitionError(
            f"{where}: writes= path {text!r} names a workflow parameter, which has no value "
            "while the workflow is defined: fill it from a literal argument, or declare the "
            "folder the files go to (writes=['reports/'])"
        ) from None
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise DefinitionError(
            f"{where}: writes= path {text!r} cannot be filled from the node's parameters "
            f"{sorted(params)}: {type(exc).__name__}: {exc}"
        ) from None


def _normalise(text: str, where: str) -> str:
    folder = text.endswith(("/", os.sep))
    if os.path.isabs(text) or text.startswith("~"):
        raise DefinitionError(
            f"{where}: writes= path {text!r} must be relative to the workflow's root folder "
            "(teammates in other folders then share the results); write 'reports/x.md', "
            "not an absolute path"
        )
    clean = posixpath.normpath(text.replace(os.sep, "/"))
    if clean in (".", "") or clean == ".." or clean.startswith("../"):
        raise DefinitionError(
            f"{where}: writes= path {text!r} must name something inside the workflow's root "
            "folder (not the root itself, nor anything above it)"
        )
    return clean + "/" if folder else clean


# -- the workflow root -------------------------------------------------------------------------
_root: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "etherealfabric_root", default=None
)


def activate_root(root: str | None) -> Setting[str | None, None]:
    """Make ``root`` the running node's workflow root inside the block (the worker's job)."""
    return Setting(_root, root, None)


_storing: contextvars.ContextVar[tuple[str, list[str]] | None] = contextvars.ContextVar(
    "etherealfabric_storing", default=None
)


def storing_under(root: str | None) -> Setting[tuple[str, list[str]] | None, list[str]]:
    """Inside the block, a ``File``/``Directory`` below ``root`` that is pickled (within an
    output being stored: a dict, a list, an object) is written root-relative, and its path
    (folders ending in ``/``) added to the list yielded, so the run layer stores its content
    too. Loaded again, it points at the same path under the root of whoever loads it."""
    found: list[str] = []
    return Setting(_storing, None if root is None else (root, found), found)


_KINDS: dict[str, type[File] | type[Directory]] = {"File": File, "Directory": Directory}


def _rooted(kind: str, relative: str) -> File | Directory:
    """A ``File``/``Directory`` stored root-relative (see :func:`storing_under`), at that path
    under the current root (:func:`root_path`)."""
    cls = _KINDS.get(kind)
    clean = posixpath.normpath(relative) if isinstance(relative, str) else ""
    if (
        cls is None
        or clean != relative
        or clean in (".", "..")
        or clean.startswith(("../", "/"))
        or "\\" in clean
    ):
        raise ValueError(f"a stored file path must be a {kind} relative to the root: {relative!r}")
    return cls(root_path(*clean.split("/")))


def root_path(*parts: str | os.PathLike[str]) -> str:
    """The absolute path of ``parts`` under the workflow's root folder.

    Inside a running node, its workflow's root (where its ``writes=`` paths are looked for);
    inside a ``with Workflow():`` block, that workflow's root; anywhere else, the current
    folder. ``open(root_path("reports/summary.md"), "w")`` writes a declared output wherever
    the run was started from.
    """
    root = _root.get()
    if root is None:
        collector = current_collector()
        root = getattr(collector, "root", None) or os.getcwd()
    return os.path.join(root, *(os.fspath(p) for p in parts))


#: the root folders of the workflows defined in this process
_ROOTS: set[str] = set()


def note_root(root: str) -> None:
    """Remember a workflow's root folder: module globals holding paths under it are keyed
    relative to it (``hashing._paths.relative_to_roots``)."""
    _ROOTS.add(root)


def known_roots() -> list[str]:
    """The roots of the workflows defined in this process, the longest (innermost) first."""
    return sorted(_ROOTS, key=len, reverse=True)
