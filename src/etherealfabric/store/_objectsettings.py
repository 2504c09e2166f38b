"""An object store's URL and settings, read and checked before anything is asked of it.

The URL is one fsspec URL (``s3://bucket/prefix``; no chained URLs, no read-only schemes); the
S3 options get the endpoint of ``ETHEREALFABRIC_S3_ENDPOINT_URL`` and the connect and read
timeouts of ``ETHEREALFABRIC_STORE_TIMEOUT``; a missing s3fs is said at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..config import DEFAULT_STORE_TIMEOUT, ENV
from ..errors import StoreConfigError, StoreError
from ._remoteerrors import ENDPOINT_ENV, check_endpoint

__all__ = [
    "S3_SCHEMES",
    "TIMEOUT_ENV",
    "check_bucket",
    "check_url",
    "env_timeout",
    "fsspec_options",
    "require_fsspec",
]

TIMEOUT_ENV = ENV["store_timeout"]
S3_SCHEMES = frozenset({"s3", "s3a"})
_READ_ONLY_SCHEMES = frozenset({"http", "https"})
#: the names botocore lets through (S3's own rules are stricter; S3-compatible servers vary)
_BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")


def check_url(url: str) -> str:
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
    start = url.index("://") + 3  # (a scheme is case-insensitive: S3:// is s3://)
    return scheme + url[len(parts.scheme) : start] + url[start:].rstrip("/")


def fsspec_options(scheme: str, given: Mapping[str, Any] | None, timeout: float) -> dict[str, Any]:
    options = dict(given or {})
    options.setdefault("use_listings_cache", False)  # teammates write behind our back
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip()
    if scheme in S3_SCHEMES:
        if options.get("endpoint_url") is not None:
            check_endpoint(options["endpoint_url"], setting="storage_options['endpoint_url']")
        elif endpoint:
            check_endpoint(endpoint, setting=ENDPOINT_ENV)
            options["endpoint_url"] = endpoint
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", timeout)
        config.setdefault("read_timeout", timeout)
        # two attempts in all (botocore's max_attempts counts the retries: 2 made it three)
        config.setdefault("retries", {"total_max_attempts": 2, "mode": "standard"})
        options["config_kwargs"] = config
    return options


def env_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_STORE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise StoreError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds > 0")
    return value


def require_fsspec(url: str) -> None:
    """A :class:`StoreError` now, not at the first request, when s3fs is not installed."""
    import importlib.util

    if importlib.util.find_spec("s3fs") is None or importlib.util.find_spec("fsspec") is None:
        raise StoreError(f"the store {url} needs s3fs: pip install 'etherealfabric[s3]'")


def check_bucket(url: str) -> None:
    """A :class:`StoreConfigError` now, not a failure of every node, when the bucket of the S3
    ``url`` is no bucket name."""
    bucket = urlsplit(url).netloc
    if not _BUCKET.fullmatch(bucket):
        raise StoreConfigError(
            f"{ENV['store']}: the store URL {url!r} names the bucket {bucket!r}, which is no "
            "bucket name (letters, digits, '.', '-' and '_' only); use s3://bucket/prefix",
            setting=ENV["store"],
            path=url,
        )
