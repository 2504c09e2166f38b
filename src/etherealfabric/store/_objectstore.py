"""A store in an object store (S3, MinIO, GCS, Azure, ``memory://``...) through fsspec.

Layout under the store's URL (``s3://bucket/prefix``)::

    objects/ab/<digest>        an object, named by the digest of its bytes
    actions/ab/<key>.json      an action record (canonical JSON, signed)
    checkpoints/ab/<key>       the checkpoint of a running node (signature + header + bytes)

**Writes.** Nothing is ever visible half-written: every name is written by one PUT of the
whole object, which S3, GCS and Azure make atomic (a multipart upload, over 100 MB, appears
only when completed). A large output is hashed while the ``ObjectWriter`` spills it to a local
temp file, then uploaded under its digest, unless an object of that size is already there
(content-addressed names make the upload idempotent; a copy changed in the bucket is found
when it is loaded, and the engine then deletes and rewrites it): on S3, one older than
:data:`REFRESH_AGE` is then marked as just written, so a collection never takes it for garbage
before the record naming it is written. Small objects (:meth:`ObjectStore.put_bytes`) go up in
one PUT from memory. The engine writes an action record only after its objects.

**Reads.** Remote bytes are untrusted: every read verifies the digest (``verify=False`` is
ignored here). :meth:`ObjectStore.open_object` downloads to an anonymous local temp file,
which the base :class:`~etherealfabric.store.Store` hashes and returns rewound. Objects of
128 MiB or more come in parallel ranged GETs (:meth:`ObjectStore.get_file`).

**Network errors.** Connecting and each read are bounded by ``timeout`` seconds (default
``ETHEREALFABRIC_STORE_TIMEOUT``, else 10) with one retry; a connection error or a timeout is
a :class:`~etherealfabric.errors.StoreUnreachableError` (a run then goes on without the store,
see ``store/_layered.py``); a missing bucket or missing credentials, or an endpoint URL
without ``http://``, a :class:`~etherealfabric.errors.StoreConfigError`
(``store/_remoteerrors.py``); a refused write (read-only credentials) a ``WriteRefusedError``
(a run goes on as in mode read-only); any other failure a ``StoreError``.

**Signing** (the security model: :mod:`etherealfabric.store._trust`, ``docs/stores.md``).
:meth:`ObjectStore.get_action` is the one door through which remote records reach the engine,
so it is where the check lives: a record that may not be trusted is a cache miss, logged.
Checkpoints are pickled, so they are signed too, and loaded only when their signature
verifies. Both go through ``UntrustedEntries`` (``store/_trust.py``), shared with a shared
folder's :class:`~etherealfabric.store.LocalStore`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from ..config import ENV
from ..errors import ConfigError, StoreError, StoreUnreachableError
from ..hashing._digest import digest_bytes, is_digest
from ._base import EntryInfo, Store, object_name
from ._objectsettings import (
    S3_SCHEMES,
    TIMEOUT_ENV,
    check_bucket,
    check_url,
    env_timeout,
    fsspec_options,
    require_fsspec,
)
from ._remoteerrors import (
    ENDPOINT_ENV,
    config_problem,
    failed,
    is_unreachable,
    no_bucket,
)
from ._remoteerrors import missing_bucket as _missing_bucket
from ._signing import Signer, load_signer
from ._spill import default_temp_dir
from ._trust import UntrustedEntries
from ._writer import remove_quietly

__all__ = ["ENDPOINT_ENV", "ObjectStore"]

log = logging.getLogger("etherealfabric.store")

#: Objects at least this large are downloaded in parallel ranged GETs of :data:`RANGE_BYTES`,
#: :data:`RANGE_THREADS` at a time (on a loopback server, 16 MiB ranges 8 at a time were
#: slower than one GET; 64 MiB 4 at a time about 1.5x faster).
RANGED_BYTES = 128 * 1024 * 1024
RANGE_BYTES = 64 * 1024 * 1024
#: an entry below RANGED_BYTES comes in reads of this many bytes (one ranged GET each)
COPY_BYTES = 16 * 1024 * 1024
#: the slowest a download may go (bytes per second) past the store's timeout before the store
#: counts as not answering; and the size assumed of an entry whose size is not known
SLOWEST_RATE = 256 * 1024
UNKNOWN_BYTES = 8 * 1024 * 1024
RANGE_THREADS = 4
#: An object a write finds there, older than this, is copied onto itself (S3): gc keeps it.
REFRESH_AGE = 60.0
_COPY_LIMIT = 5 * 1024**3  # the largest object one CopyObject request copies
#: Fields of an fsspec ``info()`` that may hold when an entry was last written.
_MODIFIED_FIELDS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")


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

    _untrusted: UntrustedEntries  # always: a bucket is written by others

    always_verify = True  # remote bytes are untrusted
    temp_dir: str  # never None: the default is resolved when the store is made

    def __init__(
        self,
        url: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        signing_key: bytes | str | None = None,
        temp_dir: str | os.PathLike[str] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.url = check_url(url)
        self.scheme = urlsplit(self.url).scheme.lower()
        self.timeout = timeout if timeout is not None else env_timeout()
        self.storage_options = fsspec_options(self.scheme, storage_options, self.timeout)
        self.temp_dir = os.fspath(temp_dir) if temp_dir is not None else default_temp_dir()
        self._untrusted = UntrustedEntries(load_signer(signing_key))
        self._fs: Any = None
        self.root = ""
        if self.scheme in S3_SCHEMES:
            # the root is the URL's own path: connecting (importing s3fs and botocore, about
            # 0.3 s) waits for the first request, which a warm run never makes
            self.root = self.url.split("://", 1)[1].strip("/")
            if not urlsplit(self.url).netloc:
                raise StoreError(
                    f"the store URL {self.url!r} names no bucket; use s3://bucket/prefix"
                )
            check_bucket(self.url)
            require_fsspec(self.url)
        else:
            self._connect()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_fs", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fs = None

    @property
    def _signer(self) -> Signer | None:
        return self._untrusted.signer

    @property
    def signed(self) -> bool:
        """True when a signing key is configured (records are signed and checked)."""
        return self._signer is not None

    @property
    def key_id(self) -> str | None:
        """A short, non-secret name of the signing key (to compare keys with teammates)."""
        return self._untrusted.key_id

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
            extra = " (pip install 'etherealfabric[s3]')" if self.scheme in S3_SCHEMES else ""
            raise StoreError(f"cannot open the store {self.url}: {exc}{extra}") from exc
        except (ValueError, TypeError) as exc:  # (a scheme fsspec does not know: s4://)
            raise StoreError(
                f"cannot open the store {self.url} ({ENV['store']}, or store=): {exc}"
            ) from exc
        except OSError as exc:  # a file system that connects when made (ftp://, sftp://)
            with self._remote("connect to the store", self.url):
                raise exc
        self.root = str(root).rstrip("/")
        if self.scheme in S3_SCHEMES and not self.root:
            raise StoreError(f"the store URL {self.url!r} names no bucket; use s3://bucket/prefix")
        if self.scheme in S3_SCHEMES:
            fs.retries = 1  # botocore retries once (config_kwargs): at most two timeouts in all
        self._fs = fs

    @contextlib.contextmanager
    def _remote(self, what: str, url: str) -> Iterator[None]:
        """Turn the file system's errors into a :class:`StoreError` naming ``url``."""
        try:
            yield
        except (StoreError, ConfigError):
            raise
        except Exception as exc:
            problem = config_problem(exc, self.url)
            if problem is not None:  # the same for every request: not the entry's
                raise problem from exc
            if is_unreachable(exc):
                raise StoreUnreachableError(
                    f"cannot {what} {url}: the store did not answer ({type(exc).__name__}: "
                    f"{exc}). Check the network and the endpoint; {TIMEOUT_ENV} sets how long "
                    f"to wait (now {self.timeout:g} s)",
                    path=url,
                ) from exc
            raise failed(exc, what, url, s3=self.scheme in S3_SCHEMES) from exc

    def _entry_absent(self, exc: FileNotFoundError) -> None:
        """Return if ``exc`` says an entry is absent; raise if it says the bucket is."""
        if _missing_bucket(exc):
            raise no_bucket(self.url) from exc

    # -- the store's primitives --------------------------------------------------------------------
    def _where(self, name: str) -> tuple[str, str]:
        """The file system path and the URL of the entry ``name``."""
        return f"{self.root}/{name}", f"{self.url}/{name}"

    def object_url(self, digest: str) -> str:
        """The URL of the object ``digest`` (validated); the same as :meth:`location`."""
        return self.location(digest)

    def open_entry(self, name: str) -> BinaryIO:
        """The entry, downloaded to an anonymous local temp file (rewound)."""
        path, url = self._where(name)
        file, temp_path = self.open_temp()
        file.close()
        absent = False
        try:
            with self._remote("download", url):
                try:
                    self._bounded("get_file", path, temp_path, size=None)
                except FileNotFoundError as exc:
                    self._entry_absent(exc)
                    absent = True
            if absent:  # (raised here: _remote would take it for a failure)
                raise _absent(url)
            return open(temp_path, "rb")
        finally:
            remove_quietly(temp_path)  # the open file lives on, unnamed: nothing to clean up

    def get_file(self, name: str, path: str, max_bytes: int | None = None) -> int:
        """Download the entry into the existing local file ``path``; its size. Large entries
        come in parallel ranged GETs (each written at its offset), the others in one GET.
        ``FileNotFoundError`` if absent; one larger than ``max_bytes`` is not downloaded."""
        remote, url = self._where(name)
        info = self.entry_info(name)
        if info is None:
            raise _absent(url)
        if max_bytes is not None and info.size > max_bytes:
            return info.size
        with self._remote("download", url):
            if info.size < RANGED_BYTES:
                self._get_bounded(remote, path, info.size)
            else:
                self._get_ranges(remote, path, info.size)
        return info.size

    def _get_bounded(self, remote: str, path: str, size: int) -> None:
        """Stream the entry into ``path``, at most ``size`` bytes (the size it had when asked:
        a bigger object swapped in meanwhile is cut there, and its digest refused; before,
        the whole of it was downloaded to disk first)."""
        with open(path, "wb") as out:
            for start in range(0, size, COPY_BYTES):  # (none for an empty entry: S3 refuses
                end = min(start + COPY_BYTES, size)  # any range of one)
                data = self._cat(remote, end - start, start=start, end=end)
                out.write(data)
                if len(data) != end - start:  # shorter: changed meanwhile (the digest says so)
                    return

    def _cat(self, remote: str, size: int | None, **where: int) -> bytes:
        """One GET (ranged by ``where``) of about ``size`` bytes (None: not known, a record),
        given at most the store's timeout plus the time to receive them at
        :data:`SLOWEST_RATE`: a server that trickles its answer is one that did not answer
        (before, an 800 KB object sent at 64 bytes a second held the run for hours)."""
        return bytes(self._bounded("cat_file", remote, size=size, **where))

    def _bounded(self, method: str, *args: Any, size: int | None = 0, **kwargs: Any) -> Any:
        """``self.fs.<method>(*args, **kwargs)`` given at most the store's timeout plus the time
        to move ``size`` bytes (None: not known) at :data:`SLOWEST_RATE`: a server that stops
        answering in the middle of a request is one that did not answer. Writes were not
        bounded: a network cut during a checkpoint's upload held a training run for good, and
        its SIGTERM with it (the stop waits for a save in progress)."""
        if not getattr(self.fs, "async_impl", False):
            return getattr(self.fs, method)(*args, **kwargs)
        from fsspec.asyn import sync

        budget = self.timeout + (size if size is not None else UNKNOWN_BYTES) / SLOWEST_RATE
        return sync(self.fs.loop, getattr(self.fs, f"_{method}"), *args, timeout=budget, **kwargs)

    def _get_ranges(self, remote: str, path: str, size: int) -> None:
        starts = range(0, size, RANGE_BYTES)
        with open(path, "r+b") as fp:
            fp.truncate(size)
            fd = fp.fileno()

            def fetch(start: int) -> None:
                end = min(start + RANGE_BYTES, size)
                data = self._cat(remote, end - start, start=start, end=end)
                if len(data) != end - start:  # changed meanwhile: the digest check says so
                    raise StoreError(f"{remote} changed while it was downloaded")
                os.pwrite(fd, data, start)

            with ThreadPoolExecutor(min(RANGE_THREADS, len(starts))) as pool:
                for _ in pool.map(fetch, starts):
                    pass

    def read_entry(self, name: str) -> bytes:
        """The entry's bytes in one GET."""
        path, url = self._where(name)
        with self._remote("read", url):
            try:
                return self._cat(path, None)
            except FileNotFoundError as exc:
                self._entry_absent(exc)
        raise _absent(url)

    def read_head(self, name: str, size: int) -> bytes:
        """The first ``size`` bytes of the entry, in one ranged GET."""
        path, url = self._where(name)
        with self._remote("read", url):
            try:
                return self._cat(path, size, start=0, end=size)
            except FileNotFoundError as exc:
                self._entry_absent(exc)
            except OSError as exc:  # S3 refuses any range of an empty object (416)
                if exc.errno != errno.EINVAL or self._bounded("info", path).get("size") != 0:
                    raise
                return b""
        raise _absent(url)

    def write_entry(self, name: str, *parts: bytes) -> None:
        """One PUT of the whole entry (atomic on S3, GCS and Azure)."""
        path, url = self._where(name)
        with self._remote("write", url):
            data = b"".join(parts)
            self._bounded("pipe_file", path, data, size=len(data))

    def create_entry(self, name: str, data: bytes) -> bool:
        """One conditional PUT (``If-None-Match: *``); S3 and S3-compatible servers only."""
        if self.scheme not in S3_SCHEMES:
            raise NotImplementedError(f"{self.scheme}:// has no exclusive create here")
        path, url = self._where(name)
        with self._remote("create", url):
            try:
                self._bounded("pipe_file", path, data, size=len(data), mode="create")
            except FileExistsError:
                return False
            except OSError as exc:  # s3fs raises PreconditionFailed as a plain OSError
                if "PreconditionFailed" in str(exc) or "412" in str(exc):
                    return False
                raise
        return True

    def put_file(self, name: str, path: str, size: int) -> None:
        """Upload a finished temp file, unless an object of that size is already there."""
        remote, url = self._where(name)
        info = self.entry_info(name)
        if info is None or info.size != size:  # absent, or a damaged copy: replace it
            with self._remote("upload an object to", url):
                self._bounded("put_file", path, remote, size=size)
        else:
            self._refresh(name, info)

    def refresh_entry(self, name: str) -> None:
        """Mark the entry as just written if it is older than :data:`REFRESH_AGE` (S3)."""
        info = self.entry_info(name)
        if info is not None:
            self._refresh(name, info)

    def _refresh(self, name: str, info: EntryInfo) -> None:
        if self.scheme not in S3_SCHEMES or (info.modified or 0.0) >= time.time() - REFRESH_AGE:
            return
        path, url = self._where(name)
        bucket, key, _ = self.fs.split_path(path)
        with self._remote("refresh", url):
            if info.size < _COPY_LIMIT:  # a copy onto itself must change something: metadata
                self._bounded("call_s3", "copy_object", CopySource={"Bucket": bucket, "Key": key},
                              Bucket=bucket, Key=key, MetadataDirective="REPLACE")  # fmt: skip
            else:  # a multipart copy
                self._bounded("copy", path, path, size=info.size)

    def entry_info(self, name: str) -> EntryInfo | None:
        path, url = self._where(name)
        with self._remote("read", url):
            try:
                info = self._bounded("info", path)
            except FileNotFoundError as exc:
                self._entry_absent(exc)
                return None
        if info.get("type") != "file":
            return None
        return EntryInfo(int(info["size"]), _modified(info))

    def delete_entry(self, name: str) -> None:
        path, url = self._where(name)
        with self._remote("delete", url), contextlib.suppress(FileNotFoundError):
            self._bounded("rm_file", path)

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

    def list_infos(self, kind: str) -> dict[str, EntryInfo]:
        """``entry name -> size and time`` of every entry under ``kind``, from one listing."""
        base, url = self._where(kind)
        with self._remote("list", url):
            listed = self.fs.find(base, detail=True)
        start = base.strip("/") + "/"
        found = {}
        for path, info in listed.items():
            relative = str(path).strip("/")
            if relative.startswith(start) and info.get("type") == "file":
                found[f"{kind}/{relative[len(start) :]}"] = EntryInfo(
                    int(info.get("size", 0)), _modified(info)
                )
        return found

    # -- objects -----------------------------------------------------------------------------------
    def object_sizes(self) -> dict[str, int]:
        """``digest -> size`` of every object (``objects/<hh>/<digest>``), from one listing."""
        found = {}
        for name, info in self.list_infos("objects").items():
            digest = name.rsplit("/", 1)[-1]
            if is_digest(digest) and name == f"objects/{digest[:2]}/{digest}":
                found[digest] = info.size
        return found

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` in one PUT from memory.

        Always written (no existence check first): one request either way for small data,
        and it repairs a copy that was changed in the bucket.
        """
        digest = digest_bytes(data)
        self.write_entry(object_name(digest), bytes(data))
        return digest


# -- helpers -------------------------------------------------------------------------------------
def _absent(url: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "no such entry", url)


def _modified(info: Mapping[str, Any]) -> float | None:
    """When an entry was last written, from an fsspec ``info()``; None if it does not say."""
    for field in _MODIFIED_FIELDS:
        value = info.get(field)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(value).timestamp()
    return None
