"""Absolute paths in parameters: keyed relative to the workflow's root folder.

A literal parameter such as ``report(..., path="/home/alice/proj/out/report.md")`` would put
Alice's home folder into the node's cache key, and Bob, whose checkout is in
``/home/bob/work/proj``, would never share her result. :func:`relative_to_root` replaces every
absolute path (a ``str`` or a ``pathlib`` path, at any depth of lists, tuples, sets and dict
values) that lies inside the workflow's root with a :class:`RootRelative` marker, which hashes
as its root-relative path; the node itself still receives the absolute path. Only the key
changes, and only for such paths.

:func:`outside_root` finds the absolute paths that lie outside the root (and look like paths:
their folder exists), so that a run with a shared store can warn that they keep the key
machine-specific.

:func:`relative_to_roots` does the same for the values module globals hold (``DATA = BASE /
"data"`` with ``BASE = Path(__file__).resolve().parent``), which the code fingerprint hashes
outside any one workflow: against every workflow root defined in the process
(``define._files.note_root``), the longest first. Keys are computed in the driver, after the
workflow file defined its workflows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import PurePath
from typing import Any

from ..define._files import known_roots
from ..define._refs import replace_refs
from ._encoder import Encoder, register_builtin

__all__ = ["RootRelative", "outside_root", "relative_to_root", "relative_to_roots"]


class RootRelative:
    """An absolute path inside the workflow root, as it enters a cache key."""

    __slots__ = ("kind", "path")

    def __init__(self, path: str, kind: str) -> None:
        self.path = path  # root-relative, "/"-separated ("." for the root itself)
        self.kind = kind  # "str" or the pathlib class name: a str and a Path still differ

    def __repr__(self) -> str:
        return f"RootRelative({self.path!r}, {self.kind!r})"


def _encode(value: RootRelative, encoder: Encoder) -> None:
    encoder.tag("root-path")
    encoder.text(value.kind)
    encoder.text(value.path)


register_builtin({RootRelative: _encode})


def relative_to_root(value: Any, root: str | None) -> Any:
    """``value`` with the absolute paths inside ``root`` replaced by :class:`RootRelative`."""
    if root is None:
        return value
    prefix = root.rstrip(os.sep) + os.sep

    def convert(item: str | PurePath) -> Any:
        text = os.fspath(item)
        if not (text.startswith(prefix) or text == root) or not os.path.isabs(text):
            return item
        relative = os.path.relpath(os.path.normpath(text), root).replace(os.sep, "/")
        return RootRelative(relative, "str" if isinstance(item, str) else type(item).__name__)

    if isinstance(value, (str, PurePath)):
        return convert(value)
    if not isinstance(value, (list, tuple, set, frozenset, dict)):
        return value
    return replace_refs(value, convert, kind=(str, PurePath))


def relative_to_roots(value: Any) -> Any:
    """``value`` with the absolute paths inside any known workflow root made root-relative
    (a path inside nested roots, relative to the innermost)."""
    for root in known_roots():
        value = relative_to_root(value, root)
    return value


def outside_root(value: Any, root: str | None, depth: int = 0) -> Iterator[str]:
    """The absolute paths in ``value`` outside ``root`` whose folder exists."""
    if isinstance(value, (str, PurePath)):
        text = os.fspath(value)
        if _looks_absolute(text) and not _inside(text, root):
            yield text
    elif depth < 8 and isinstance(value, Mapping):
        for item in value.values():
            yield from outside_root(item, root, depth + 1)
    elif depth < 8 and isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from outside_root(item, root, depth + 1)


def _looks_absolute(text: str) -> bool:
    if len(text) < 2 or len(text) > 4096 or not os.path.isabs(text) or "\n" in text:
        return False
    return os.path.isdir(os.path.dirname(text.rstrip(os.sep)) or text)


def _inside(text: str, root: str | None) -> bool:
    return root is not None and (text == root or text.startswith(root.rstrip(os.sep) + os.sep))
