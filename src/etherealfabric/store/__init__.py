"""Artifact stores: content-addressed objects plus action records.

``open_store(location)`` opens the store a setting points at: a folder path or a ``file://``
URL gives a :class:`LocalStore`; any other URL (``s3://bucket/prefix``, ``gs://``,
``memory://``...) an :class:`~etherealfabric.store._objectstore.ObjectStore` over fsspec.
fsspec and its back-ends (s3fs...) are imported only when such a store is opened, so local
runs never load them.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from ..errors import StoreError
from ._base import DEFAULT_INLINE_LIMIT, ObjectWriter, Store, StoredObject
from ._local import LocalStore
from ._objectstore import ObjectStore

__all__ = [
    "DEFAULT_INLINE_LIMIT",
    "LocalStore",
    "ObjectStore",
    "ObjectWriter",
    "Store",
    "StoredObject",
    "open_store",
]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def open_store(url_or_path: str | os.PathLike[str], *, durable: bool = False) -> Store:
    """The store at a folder path, a ``file://`` URL or an object-store URL.

    ``durable`` (survive a power loss) applies to local stores; an object store's PUT is
    durable once it is confirmed. An object store takes its credentials, endpoint
    (``ETHEREALFABRIC_S3_ENDPOINT_URL``) and signing key (``ETHEREALFABRIC_SIGNING_KEY``)
    from the environment; build an :class:`ObjectStore` to pass them explicitly.
    """
    location = os.fspath(url_or_path)
    if not _URL.match(location):
        return LocalStore(location, durable=durable)
    if urlsplit(location).scheme.lower() != "file":
        return ObjectStore(location)
    return LocalStore(_local_path(location), durable=durable)


def _local_path(url: str) -> str:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise StoreError(
            f"cannot open the store {url!r}: file:// URLs must name a local path "
            f"(file:///path/to/store), not host {parts.netloc!r}"
        )
    if not parts.path:
        raise StoreError(f"the store URL {url!r} has no path; use file:///path/to/store")
    return unquote(parts.path)
