"""What an object store's failure means: the store did not answer, or it is configured wrongly.

:class:`~etherealfabric.store.ObjectStore` asks these about every error of its file system:

* :func:`is_unreachable`: a connection error or a timeout (a run goes on without the store,
  ``store/_layered.py``);
* :func:`config_problem`: a configuration error, the same for every request, so that the first
  one (a run's first lookup, before any node runs) stops the run with a
  :class:`~etherealfabric.errors.StoreConfigError` naming the setting to fix, instead of every
  lookup being a miss and every node failing at its upload: a bucket that does not exist
  (``NoSuchBucket``, which s3fs turns into a ``FileNotFoundError`` like a missing key), no
  credentials (botocore's ``NoCredentialsError``), credentials the server does not know;
* :func:`write_refused`: a write the store refuses (read-only credentials or bucket policy):
  :class:`WriteRefusedError`, on which a run goes on as in mode ``read-only``
  (``store/_layered.py``).

Exception types are matched by name, so that none of them (botocore, aiohttp...) is imported.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..config import ENV, S3_ENDPOINT_ENV
from ..errors import StoreConfigError, StoreError

__all__ = [
    "ENDPOINT_ENV",
    "WriteRefusedError",
    "advice",
    "check_endpoint",
    "config_problem",
    "failed",
    "is_unreachable",
    "missing_bucket",
    "no_bucket",
    "write_refused",
]

ENDPOINT_ENV = S3_ENDPOINT_ENV


class WriteRefusedError(StoreError):
    """The store refused a write: its credentials or its policy allow reads only."""


STORE_ENV = ENV["store"]
#: Names of the exception types (or their bases) that mean the store did not answer: a
#: connection refused or reset, a DNS failure, a connect or read timeout (botocore, aiohttp,
#: fsspec, the standard library).
_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
        "ConnectionClosedError", "ClientConnectionError", "ClientConnectorError",
        "ServerDisconnectedError", "ServerTimeoutError", "FSTimeoutError", "TimeoutError",
        "ConnectionError",
    }
)  # fmt: skip
_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError"})
_BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
_NO_BUCKET_TEXT = "the specified bucket does not exist"
_WRITES = ("write", "create", "upload", "refresh", "delete")
_REFUSED = frozenset({"AccessDenied", "Forbidden", "403"})
CREDENTIAL_VARS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    return str(error.get("Code") or "") if isinstance(error, dict) else ""


def is_unreachable(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) says the store did not answer."""
    return any(
        cls.__name__ in _UNREACHABLE for current in _chain(exc) for cls in type(current).__mro__
    )


def missing_bucket(exc: BaseException) -> bool:
    """True if ``exc`` (a ``FileNotFoundError`` from s3fs, say) means the bucket is missing,
    not an entry in it."""
    return any(
        _code(current) == "NoSuchBucket" or _NO_BUCKET_TEXT in str(current).lower()
        for current in _chain(exc)
    )


def advice(exc: BaseException, what: str, *, s3: bool) -> str:
    """What to check after ``exc`` from the store failed the request ``what``."""
    if not s3:
        return write_refused(exc, what) or (
            "Check that the location exists and the credentials of its file system."
        )
    return write_refused(exc, what) or (
        "Check that the bucket exists, the credentials (storage_options or the AWS_* "
        f"variables) and, for an S3-compatible server, {ENDPOINT_ENV}."
    )


def failed(exc: BaseException, what: str, url: str, *, s3: bool) -> StoreError:
    """The error for the request ``what`` of the entry ``url`` that failed with ``exc``, with
    what to check: a :class:`WriteRefusedError` when the store refused a write."""
    kind = WriteRefusedError if write_refused(exc, what) else StoreError
    hint = advice(exc, what, s3=s3)
    return kind(f"cannot {what} {url}: {type(exc).__name__}: {exc}. {hint}", path=url)


def write_refused(exc: BaseException, what: str) -> str:
    """What to do when ``exc`` says the store refused the write ``what`` (a bucket policy or
    credentials that only allow reads); ``""`` for any other error."""
    if not what.startswith(_WRITES) or not any(
        isinstance(current, PermissionError) or _code(current) in _REFUSED
        for current in _chain(exc)
    ):
        return ""
    return (
        f"The store refuses writes with these credentials: to share it read-only, set "
        f"{ENV['store_mode']}=read-only (results then stay in this home until `cache push` "
        "with credentials that may write)."
    )


def config_problem(exc: BaseException, url: str) -> StoreConfigError | None:
    """The configuration error that ``exc`` from the store at ``url`` means, or None."""
    if missing_bucket(exc):
        return no_bucket(url)
    for current in _chain(exc):
        if type(current).__name__ in _NO_CREDENTIALS:
            return StoreConfigError(
                f"no credentials for the store {url} ({current}): set {CREDENTIAL_VARS} (or "
                "AWS_PROFILE, ~/.aws/credentials, an instance role), or pass key and secret "
                "in ObjectStore(storage_options=...)",
                setting="AWS_ACCESS_KEY_ID",
                path=url,
            )
        code = _code(current)
        if code in _BAD_CREDENTIALS:
            return StoreConfigError(
                f"the store {url} refused the credentials ({code}): check {CREDENTIAL_VARS} "
                f"(or AWS_PROFILE), and {ENDPOINT_ENV} for an S3-compatible server",
                setting="AWS_ACCESS_KEY_ID",
                path=url,
            )
    return None


def no_bucket(url: str) -> StoreConfigError:
    """The error of a store whose bucket does not exist."""
    bucket = url.split("://", 1)[-1].split("/", 1)[0]
    return StoreConfigError(
        f"the bucket {bucket!r} of the store {url} does not exist: point {STORE_ENV} (or "
        f"store=) at an existing bucket, or create it (EtherealFabric never creates buckets); "
        f"for an S3-compatible server, check {ENDPOINT_ENV} too",
        setting=STORE_ENV,
        path=url,
    )


def check_endpoint(endpoint: object, *, setting: str) -> None:
    """A :class:`StoreConfigError` naming ``setting`` for an endpoint URL without a scheme
    (``127.0.0.1:9000``): botocore would refuse it at the first request, in a node."""
    text = str(endpoint).strip()
    if not text.lower().startswith(("http://", "https://")):
        raise StoreConfigError(
            f"{setting}={text!r} is not an endpoint URL: it must start with http:// or "
            f"https:// (such as http://{text or 'minio.internal:9000'})",
            setting=setting,
        )
