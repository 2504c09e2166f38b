"""A store in an object store (S3, MinIO, GCS, Azure, ``memory://``...) through fsspec.

Layout under the store's URL (``s3://bucket/prefix``)::

    objects/ab/<digest>        an object, named by the digest of its bytes
    actions/ab/<key>.json      an action record (canonical JSON, signed)
    checkpoints/ab/<key>       the checkpoint of a running node (signature + header + bytes)

**Writes.** Nothing is ever visible half-written because every name is written by one PUT of
the whole object, which S3, GCS and Azure make atomic (a multipart upload appears only when
completed). A large output is hashed while the :class:`~etherealfabric.store._base.ObjectWriter`
spills it to a local temp file, then uploaded under its digest (skipped when an object of
that size is already there: content-addressed names make the upload idempotent; a copy
changed in the bucket is found when it is loaded, and the engine then deletes and rewrites
it); small objects (:meth:`ObjectStore.put_bytes`) go up in one PUT from memory. The engine
writes an action record only after its objects, so a record never names missing bytes.

**Reads.** Remote bytes are untrusted: every read verifies the digest (``verify=False`` is
ignored here). :meth:`ObjectStore.open_object` downloads to an anonymous local temp file,
hashes it and returns it rewound, so a consumer never sees unchecked bytes.

**Signing** (the security model: :mod:`etherealfabric.store._signing`, ``docs/stores.md``).
:meth:`ObjectStore.get_action` is the one door through which remote records reach the engine
(the cache indexes only what it returns), so it is where the check lives: a record that may
not be trusted is a cache miss, logged as a warning. Checkpoints are pickled, so they are
signed too, and loaded only when their signature verifies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from ..errors import ArtifactMissingError, CorruptArtifactError, StoreError
from ..hashing._values import digest_bytes, new_hasher
from ._base import (
    DEFAULT_INLINE_LIMIT,
    ObjectWriter,
    Store,
    check_name,
    checkpoint_header,
    checkpoint_payload,
    create_temp_file,
)
from ._signing import (
    MIN_KEY_BYTES,
    SIGNATURE_FIELD,
    SIGNING_KEY_ENV,
    UNSIGNED_SERIALIZERS,
    Signer,
    canonical,
    encode_record,
    load_signer,
    read_record,
    split_checkpoint,
    unsigned_problem,
)

__all__ = [  # the signing names are re-exported from .signing, where they live
    "ENDPOINT_ENV",
    "MIN_KEY_BYTES",
    "SIGNATURE_FIELD",
    "SIGNING_KEY_ENV",
    "UNSIGNED_SERIALIZERS",
    "ObjectStore",
    "Signer",
]

log = logging.getLogger("etherealfabric.store")

ENDPOINT_ENV = "ETHEREALFABRIC_S3_ENDPOINT_URL"

_S3_SCHEMES = frozenset({"s3", "s3a"})
_READ_ONLY_SCHEMES = frozenset({"http", "https"})
_READ_CHUNK = 1024 * 1024


class ObjectStore(Store):
    """Objects, action records and checkpoints under an fsspec URL; see the module docstring.

    ``storage_options`` go to the fsspec file system (``key``, ``secret``, ``endpoint_url``,
    ``client_kwargs``...); credentials otherwise come from the usual environment (``AWS_*``
    variables, ``~/.aws``), and ``ETHEREALFABRIC_S3_ENDPOINT_URL`` sets the endpoint of an
    S3-compatible server (MinIO, moto). ``signing_key`` defaults to
    ``ETHEREALFABRIC_SIGNING_KEY``. Large outputs are spilled to ``temp_dir`` (default: a
    private folder in the system temp folder, see ``TMPDIR``) before they are uploaded.

    Picklable: the file system is reconnected in the receiving process, and the signing key
    travels with the store, so worker processes sign what they publish even when their
    environment differs (a forkserver keeps the environment it started with). Whoever can
    send tasks to your workers can run code there anyway, so this adds no new exposure.
    """

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        signing_key: bytes | str | None = None,
        temp_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.url = _check_url(url)
        self.scheme = urlsplit(self.url).scheme.lower()
        self.storage_options = _storage_options(self.scheme, storage_options)
        self.temp_dir = os.fspath(temp_dir) if temp_dir is not None else _default_temp_dir()
        self._signer = load_signer(signing_key)
        self._fs: Any = None
        self.root = ""
        self._init_local()
        self._connect()

    def _init_local(self) -> None:
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_fs", "_warned", "_lock"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs = None
        self._init_local()

    @property
    def signed(self) -> bool:
        """True when a signing key is configured (records are signed and checked)."""
        return self._signer is not None

    @property
    def key_id(self) -> str | None:
        """A short, non-secret name of the signing key (to compare keys with teammates)."""
        return self._signer.key_id if self._signer is not None else None

    # -- the file system ---------------------------------------------------------------------
    @property
    def fs(self) -> Any:
        """The fsspec file system (connected on first use in each process)."""
        if self._fs is None:
            self._connect()
        return self._fs

    def _connect(self) -> None:
        try:
            import fsspec
        except ImportError:
            raise StoreError(
                f"the store {self.url} needs fsspec: pip install 'etherealfabric[s3]'"
            ) from None
        try:
            fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except ImportError as exc:
            extra = " (pip install 'etherealfabric[s3]')" if self.scheme in _S3_SCHEMES else ""
            raise StoreError(f"cannot open the store {self.url}: {exc}{extra}") from exc
        except (ValueError, TypeError) as exc:
            raise StoreError(f"cannot open the store {self.url}: {exc}") from exc
        self.root = str(root).rstrip("/")
        if self.scheme in _S3_SCHEMES and not self.root:
            raise StoreError(f"the store URL {self.url!r} names no bucket; use s3://bucket/prefix")
        self._fs = fs

    @contextlib.contextmanager
    def _remote(self, what: str, url: str) -> Iterator[None]:
        """Turn the file system's errors into a :class:`StoreError` naming ``url``."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"cannot {what} {url}: {type(exc).__name__}: {exc}. {self._advice()}", path=url
            ) from exc

    def _advice(self) -> str:
        if self.scheme in _S3_SCHEMES:
            return (
                "Check that the bucket exists, the credentials (storage_options or the AWS_* "
                f"variables) and, for an S3-compatible server, {ENDPOINT_ENV}."
            )
        return "Check that the location exists and the credentials of its file system."

    # -- names -------------------------------------------------------------------------------
    def _where(self, *parts: str) -> tuple[str, str]:
        """The file system path and the URL of ``parts`` under the root."""
        relative = "/".join(parts)
        return f"{self.root}/{relative}", f"{self.url}/{relative}"

    def object_url(self, digest: str) -> str:
        """The URL of the object ``digest`` (validated)."""
        check_name(digest)
        return self._where("objects", digest[:2], digest)[1]

    object_path = object_url  # reports name an object's location the same way for every store

    def _object(self, digest: str) -> tuple[str, str]:
        check_name(digest)
        return self._where("objects", digest[:2], digest)

    def _action(self, key: str) -> tuple[str, str]:
        check_name(key, "cache key")
        return self._where("actions", key[:2], f"{key}.json")

    def _checkpoint(self, key: str) -> tuple[str, str]:
        check_name(key, "cache key")
        return self._where("checkpoints", key[:2], key)

    # -- writing objects ---------------------------------------------------------------------
    def writer(self, *, inline_limit: int = DEFAULT_INLINE_LIMIT) -> ObjectWriter:
        return ObjectWriter(
            inline_limit=inline_limit, open_temp=self._open_temp, publish=self._publish
        )

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` in one PUT from memory.

        Always written (no existence check first): one request either way for small data,
        and it repairs a copy that was changed in the bucket.
        """
        digest = digest_bytes(data)
        path, url = self._object(digest)
        with self._remote("write", url):
            self.fs.pipe_file(path, bytes(data))
        return digest

    def _open_temp(self) -> tuple[BinaryIO, str]:
        os.makedirs(self.temp_dir, mode=0o700, exist_ok=True)  # again, if it was removed
        return create_temp_file(self.temp_dir)

    def _publish(self, temp_path: str, digest: str, size: int) -> None:
        """Upload a finished temp file under its digest, then remove it."""
        path, url = self._object(digest)
        try:
            if self._size(path, url) != size:  # absent, or a damaged copy: replace it
                with self._remote("upload an object to", url):
                    self.fs.put_file(temp_path, path)
        finally:
            _unlink(temp_path)

    # -- reading objects ---------------------------------------------------------------------
    def has_object(self, digest: str) -> bool:
        return self.object_size(digest) is not None

    def object_size(self, digest: str) -> int | None:
        return self._size(*self._object(digest))

    def _size(self, path: str, url: str) -> int | None:
        with self._remote("read", url):
            try:
                info = self.fs.info(path)
            except FileNotFoundError:
                return None
        return int(info["size"]) if info.get("type") == "file" else None

    def open_object(self, digest: str, *, verify: bool = True) -> BinaryIO:
        """The object's verified bytes, in an anonymous local temp file (always verified)."""
        path, url = self._object(digest)
        fp = self._download(path, url, digest)
        try:
            hasher = new_hasher()
            buffer = bytearray(_READ_CHUNK)
            view = memoryview(buffer)
            while count := fp.readinto(view):  # type: ignore[attr-defined]
                hasher.update(view[:count])
            fp.seek(0)
            _check_digest(hasher.hexdigest(), digest, url)
        except BaseException:
            fp.close()
            raise
        return fp

    def _download(self, path: str, url: str, digest: str) -> BinaryIO:
        file, temp_path = self._open_temp()
        file.close()
        try:
            with self._remote("download", url):
                try:
                    self.fs.get_file(path, temp_path)
                except FileNotFoundError:
                    raise _missing(digest, url) from None
            return open(temp_path, "rb")
        finally:
            _unlink(temp_path)  # the open file lives on, unnamed: nothing to clean up later

    def read_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        """The object's bytes in one GET (always verified)."""
        path, url = self._object(digest)
        with self._remote("read", url):
            try:
                data = bytes(self.fs.cat_file(path))
            except FileNotFoundError:
                raise _missing(digest, url) from None
        _check_digest(digest_bytes(data), digest, url)
        return data

    def delete_object(self, digest: str) -> None:
        self._delete(*self._object(digest))

    def _delete(self, path: str, url: str) -> None:
        with self._remote("delete", url), contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    # -- action records ----------------------------------------------------------------------
    def put_action(self, key: str, record: dict[str, Any]) -> None:
        """Write ``record`` as canonical JSON, signed when a key is configured."""
        path, url = self._action(key)
        body = encode_record(key, record, self._signer)
        if self._signer is None and unsigned_problem(body):
            # nobody would load it (see get_action); writing it could only replace a record
            # that a teammate with the key signed
            self._warn_once(
                "unsigned records",
                "not publishing action records of pickled outputs to %s: they are used from a "
                "shared store only when signed; set %s to share them",
                self.url,
                SIGNING_KEY_ENV,
            )
            return
        with self._remote("write", url):
            self.fs.pipe_file(path, canonical(body).encode())

    def get_action(self, key: str) -> dict[str, Any] | None:
        """The record of ``key`` if it may be trusted (see the module docstring), else None."""
        path, url = self._action(key)
        with self._remote("read", url):
            try:
                data = self.fs.cat_file(path)
            except FileNotFoundError:
                return None
        record, problem = read_record(key, data, self._signer)
        if problem:
            self._reject(key, url, problem)
        return record

    def _reject(self, key: str, url: str, problem: str) -> None:
        """Log (once per key and reason) why a record is ignored: a cache miss."""
        with self._lock:
            if (key, problem) in self._warned:
                return
            self._warned.add((key, problem))
        log.warning(
            "ignoring the action record %s (a cache miss: the node runs again): %s",
            url,
            problem,
        )

    def delete_action(self, key: str) -> None:
        self._delete(*self._action(key))

    # -- checkpoints -------------------------------------------------------------------------
    def put_checkpoint(self, key: str, data: bytes) -> None:
        """One PUT of signature line + checkpoint header + ``data`` (unsigned without a key)."""
        path, url = self._checkpoint(key)
        header = checkpoint_header(data)
        if self._signer is not None:
            line = self._signer.checkpoint_line(key, header)
        else:
            line = b""
            self._warn_once(
                "unsigned checkpoints",
                "checkpoints saved to %s are not signed, so no run will load them (they are "
                "pickled); set %s to resume long nodes from their checkpoints",
                self.url,
                SIGNING_KEY_ENV,
            )
        with self._remote("write", url):
            self.fs.pipe_file(path, line + header + bytes(data))

    def get_checkpoint(self, key: str) -> bytes | None:
        """The checkpoint's bytes if signed with our key and intact, else None (logged)."""
        path, url = self._checkpoint(key)
        with self._remote("read", url):
            try:
                blob = bytes(self.fs.cat_file(path))
            except FileNotFoundError:
                return None
        if self._signer is None:
            log.warning(
                "ignoring the checkpoint %s: checkpoints are pickled, and one from a shared "
                "store is loaded only when signed; set %s (the node starts from the beginning)",
                url,
                SIGNING_KEY_ENV,
            )
            return None
        line, header, payload = split_checkpoint(blob)
        problem = self._signer.check_checkpoint(key, line, header)
        if problem:
            log.warning(
                "ignoring the checkpoint %s: %s (the node starts from the beginning)", url, problem
            )
            return None
        return checkpoint_payload(header, payload, url)

    def delete_checkpoint(self, key: str) -> None:
        self._delete(*self._checkpoint(key))

    # -- maintenance -------------------------------------------------------------------------
    def list_entries(self, kind: str) -> Iterator[tuple[str, str]]:
        """``(prefix, name)`` of the entries in the two-hex-digit folders of ``kind``."""
        base, url = self._where(kind)
        with self._remote("list", url):
            paths = self.fs.find(base)
        start = base.strip("/") + "/"
        for path in paths:
            relative = str(path).strip("/")
            if not relative.startswith(start):
                continue
            folder, _, name = relative[len(start) :].partition("/")
            if len(folder) == 2 and name and "/" not in name:
                yield folder, name

    def cleanup_temp(self, *, max_age: float = 3600.0) -> int:
        """Remove local temp files older than ``max_age`` seconds (left by killed writers)."""
        removed = 0
        cutoff = time.time() - max_age
        with contextlib.suppress(FileNotFoundError), os.scandir(self.temp_dir) as entries:
            for entry in entries:
                if entry.name.startswith(".tmp-") and _mtime(entry) < cutoff:
                    _unlink(entry.path)
                    removed += 1
        return removed

    def _warn_once(self, topic: str, message: str, *args: object) -> None:
        with self._lock:
            if ("", topic) in self._warned:
                return
            self._warned.add(("", topic))
        log.warning(message, *args)


# -- helpers -------------------------------------------------------------------------------------
def _check_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "::" in url or not scheme or "://" not in url:
        raise StoreError(
            f"cannot open the store {url!r}: use a single URL such as s3://bucket/prefix "
            "(chained fsspec URLs are not supported)"
        )
    if scheme in _READ_ONLY_SCHEMES:
        raise StoreError(
            f"cannot open the store {url!r}: {scheme}:// is read-only; use a folder, or an "
            "object store such as s3://bucket/prefix"
        )
    start = url.index("://") + 3
    return url[:start] + url[start:].rstrip("/")


def _storage_options(scheme: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(given or {})
    options.setdefault("use_listings_cache", False)  # teammates write behind our back
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if scheme in _S3_SCHEMES and endpoint:
        options.setdefault("endpoint_url", endpoint)
    return options


def _default_temp_dir() -> str:
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"etherealfabric-{user}")


def _check_digest(actual: str, digest: str, url: str) -> None:
    if actual != digest:
        raise CorruptArtifactError(
            f"object {digest} at {url} is corrupt: its bytes hash to {actual} (changed or "
            "damaged after it was written). Delete it; the outputs that use it will be "
            "recomputed.",
            path=url,
            digest=digest,
        )


def _missing(digest: str, url: str) -> ArtifactMissingError:
    return ArtifactMissingError(
        f"object {digest} is missing from the store (expected at {url}); the outputs that use "
        "it must be recomputed",
        path=url,
        digest=digest,
    )


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
