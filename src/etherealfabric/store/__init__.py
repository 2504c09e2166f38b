"""Artifact stores: content-addressed objects plus action records.

``open_store(location)`` opens the store a setting points at: a folder path or a ``file://``
URL. Only local stores exist in this version; an object-store backend (S3) is planned.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from ..errors import StoreError
from .base import DEFAULT_INLINE_LIMIT, ObjectWriter, Store, StoredObject
from .local import LocalStore

__all__ = [
    "DEFAULT_INLINE_LIMIT",
    "LocalStore",
    "ObjectWriter",
    "Store",
    "StoredObject",
    "open_store",
]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def open_store(url_or_path: str | os.PathLike[str], *, durable: bool = False) -> Store:
    """The store at a folder path or ``file://`` URL (``durable``: survive power loss)."""
    location = os.fspath(url_or_path)
    if not _URL.match(location):
        return LocalStore(location, durable=durable)
    return LocalStore(_local_path(location), durable=durable)


def _local_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        raise StoreError(
            f"cannot open the store {url!r}: only local stores (a folder path or a file:// "
            f"URL) are available in this version, not {parts.scheme}://. An object-store "
            "backend is planned; until then, share a folder on a network drive."
        )
    if parts.netloc not in ("", "localhost"):
        raise StoreError(
            f"cannot open the store {url!r}: file:// URLs must name a local path "
            f"(file:///path/to/store), not host {parts.netloc!r}"
        )
    if not parts.path:
        raise StoreError(f"the store URL {url!r} has no path; use file:///path/to/store")
    return unquote(parts.path)
