"""Artifact stores and serializers: the bytes of outputs, in and out.

``open_store(location)`` opens the store a setting points at: a folder path or a ``file://``
URL gives a :class:`LocalStore`; any other URL (``s3://bucket/prefix``, ``gs://``,
``memory://``...) an :class:`ObjectStore` over fsspec. fsspec and its back-ends (s3fs...)
are imported only when such a store is opened, so local runs never load them.

**Writing a store.** Subclass :class:`Store` and implement five primitives over *entries*,
named by ``/``-separated relative names such as ``objects/ab/<digest>``,
``actions/ab/<key>.json`` and ``checkpoints/ab/<key>`` (validated before they reach you):

* ``open_entry(name) -> BinaryIO``: the entry's bytes (seekable); ``FileNotFoundError`` if absent;
* ``write_entry(name, *parts)``: store ``b"".join(parts)`` atomically, replacing any entry;
* ``entry_info(name) -> EntryInfo | None``: its size and modification time, or None if absent;
* ``delete_entry(name)``: remove it, with no error if it is absent;
* ``list_entries(kind)``: the ``(two-hex folder, name)`` pairs under ``objects``/``actions``;

and set ``url``. Optionally override ``read_entry`` (one read into memory), ``put_file``
(publish a large object from a local temp file without loading it), ``entry_location`` (what
messages show; default ``f"{url}/{name}"``), ``always_verify = True`` (bytes that others can
change are always checked against their digest) and ``temp_dir``. The base derives the rest:
the streaming :class:`ObjectWriter`, ``put_bytes``, ``read_bytes``/``open_object`` with digest
checks, ``location``, ``object_info``, action records, checkpoints and their damage checks.
A store must be picklable. ``etherealfabric.testing`` has the contract suite to run against it.

**Serializers** turn output values into bytes: subclass :class:`Serializer` and
:func:`register_serializer` it (``docs/api.md``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..config import ENV, Settings, strict_options
from ..errors import ConfigError, StoreConfigError, StoreError
from ._base import EntryInfo, Store
from ._local import LocalStore
from ._serializers import Serializer, SerializerRegistry, get_serializer, register_serializer
from ._writer import ObjectWriter, StoredObject

log = logging.getLogger("etherealfabric.store")

__all__ = [
    "EntryInfo",
    "LayeredStore",
    "LocalStore",
    "ObjectStore",
    "ObjectWriter",
    "Serializer",
    "SerializerRegistry",
    "Store",
    "StoredObject",
    "check_run_writes",
    "get_serializer",
    "open_run_store",
    "open_store",
    "register_serializer",
]

if TYPE_CHECKING:
    from ._layered import LayeredStore
    from ._objectstore import ObjectStore


def __getattr__(name: str) -> Any:
    """The shared stores' classes, imported on first use: a run on the home's own store (the
    default) never loads them (PEP 562)."""
    if name == "LayeredStore":
        from ._layered import LayeredStore

        return LayeredStore
    if name == "ObjectStore":
        from ._objectstore import ObjectStore

        return ObjectStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@strict_options
def open_store(
    url_or_path: str | os.PathLike[str],
    *,
    durable: bool = False,
    shared: bool = False,
    timeout: float | None = None,
) -> Store:
    """The store at a folder path, a ``file://`` URL or an object-store URL.

    ``durable`` (survive a power loss) applies to local stores; an object store's PUT is
    durable once it is confirmed. ``shared`` says a folder is not the home's own store, so
    others can write it: its records and checkpoints are signed and verified like an object
    store's (which is always shared), with ``ETHEREALFABRIC_SIGNING_KEY``. An object store takes its credentials, endpoint
    (``ETHEREALFABRIC_S3_ENDPOINT_URL``) and signing key (``ETHEREALFABRIC_SIGNING_KEY``)
    from the environment; build an :class:`ObjectStore` to pass them explicitly. ``timeout``
    (seconds) bounds an object store's connections and reads (default
    ``ETHEREALFABRIC_STORE_TIMEOUT``, else 10).
    """
    location = os.fspath(url_or_path)
    if not _URL.match(location):
        return LocalStore(location, durable=durable, shared=shared)
    if urlsplit(location).scheme.lower() != "file":
        from ._objectstore import ObjectStore

        return ObjectStore(location, timeout=timeout)
    return LocalStore(_local_path(location), durable=durable, shared=shared)


def open_run_store(settings: Settings) -> Store:
    """The store runs use with ``settings``: the home's own, or, when ``ETHEREALFABRIC_STORE``
    names a shared store, a :class:`LayeredStore` of the home's in front of it (in
    ``ETHEREALFABRIC_STORE_MODE``).

    A store object given as ``store=`` (an ``ObjectStore`` built with its own options) is that
    shared store, used as it is; a :class:`LocalStore` of another folder than the home is
    shared like the folder's path would be (its records signed).
    """
    durable = settings.durability == "safe"
    given = settings.store if not isinstance(settings.store, str) else None
    if given is not None and not isinstance(given, Store):
        raise ConfigError(
            f"store={given!r} is not a store: pass a folder path, a URL such as "
            "s3://bucket/prefix, or a Store such as ObjectStore('s3://bucket/prefix', ...)",
            setting="store",
        )
    if not settings.shared_store:
        return open_store(settings.store_location, durable=durable)
    if isinstance(given, LocalStore):
        remote: Store = given.as_shared()
    elif given is not None:
        remote = given
    else:
        remote = open_store(
            settings.store_location, durable=durable, shared=True, timeout=settings.store_timeout
        )
    local = LocalStore(settings.home, durable=durable)
    if isinstance(remote, LocalStore):
        _check_apart(local.root, remote.root)
    from ._layered import LayeredStore

    return LayeredStore(local, remote, mode=settings.store_mode)


def _check_apart(home: str, shared: str) -> None:
    """A home inside the shared folder (or the shared folder inside the home): a
    :class:`StoreConfigError`. The home is trusted (its outputs load without checks): anyone
    who may write the shared folder could then write the home's journal and objects."""
    home_real, shared_real = os.path.realpath(home), os.path.realpath(shared)
    inside = [(a, b) for a, b in ((home_real, shared_real), (shared_real, home_real))
              if a.startswith(b.rstrip(os.sep) + os.sep)]  # fmt: skip
    if not inside:
        return
    what = (
        f"the home {home} lies inside the shared store {shared}"
        if inside[0][0] == home_real
        else f"the shared store {shared} lies inside the home {home}"
    )
    raise StoreConfigError(
        f"{what}: a home is trusted (what it holds loads without checks) and a shared store is "
        f"not, so they must be apart; point {ENV['home']} or {ENV['store']} elsewhere",
        setting=ENV["store"],
        path=shared,
    )


def check_run_writes(store: Store) -> None:
    """A run that would write a shared folder (mode read-write) that it cannot write (a
    read-only mount, say) goes on as in mode read-only, warned once, like a bucket that refuses
    writes (``store/_layered.py``); a shared folder that is a file raises
    :class:`StoreConfigError`. A few ``os.access`` calls, no request."""
    remote = getattr(store, "remote", None)
    if isinstance(remote, LocalStore):
        _check_folder(remote.root)
    if not isinstance(remote, LocalStore) or not getattr(store, "writes_remote", False):
        return
    path = remote.root
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)  # made on the first write: its parent must be writable
    folders = [path]
    if path == remote.root:
        folders += [os.path.join(path, k) for k in _WRITTEN if os.path.isdir(os.path.join(path, k))]
    for folder in folders:
        if os.access(folder, os.W_OK):
            continue
        why = "cannot be written by this user"
        with contextlib.suppress(OSError):
            if os.statvfs(folder).f_flag & os.ST_RDONLY:
                why = "is on a read-only file system"
        where = "" if folder == remote.root else f" ({folder})"
        mode = ENV["store_mode"]
        store.mode = "read-only"  # type: ignore[attr-defined]
        log.warning(
            "the shared store %s (%s) %s%s, so this run goes on as with %s=read-only (results "
            "stay in this home; `etherealfabric cache push` uploads them from where the store "
            "may be written; set %s=read-only to not try)",
            remote.root, ENV["store"], why, where, mode, mode,
        )  # fmt: skip
        return


def _check_folder(root: str) -> None:
    """A shared folder that is a file (or lies under one): a :class:`StoreConfigError` now,
    not a warning per lookup and a failure per node."""
    path = root
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        what = "a file" if os.path.isfile(path) else "not a folder"
        where = f"is {what}" if path == root else f"is under {path}, which is {what}"
        setting = ENV["store"]
        raise StoreConfigError(
            f"{setting}={root!r} {where}; a shared store is a folder or a URL such as "
            f"s3://bucket/prefix: point {setting} at a folder (it is created if missing)",
            setting=setting,
            path=root,
        )


#: the folders of a store that a run writes
_WRITTEN = ("objects", "actions", "checkpoints", "leases", "roots")


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
