"""Digests: the one place that imports xxhash.

Every digest in EtherealFabric (cache keys, value and file digests, object names in stores) is
xxh3-128 as 32 lowercase hex characters. Everything else gets its hasher here, so the hash
function can change in one place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import xxhash

__all__ = [
    "Hasher",
    "RefDigest",
    "digest_bytes",
    "hexdigest",
    "is_digest",
    "new_hasher",
    "raw_digest",
]

Hasher = xxhash.xxh3_128
"""A streaming hasher: ``.update(buffer)``, ``.hexdigest()``, ``.digest()``."""

_DIGEST = re.compile(r"[0-9a-f]{32}")


class RefDigest(NamedTuple):
    """An upstream output, already resolved to its content digest."""

    serializer: str
    digest: str


def new_hasher() -> Hasher:
    """A streaming xxh3-128 hasher (``.update(buffer)``, ``.hexdigest()``)."""
    return xxhash.xxh3_128()


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """The xxh3-128 hex digest of a buffer."""
    return xxhash.xxh3_128_hexdigest(data)


def raw_digest(data: bytes | bytearray | memoryview) -> bytes:
    """The xxh3-128 digest of a buffer, as 16 bytes (a hasher's ``.digest()``)."""
    return xxhash.xxh3_128_digest(data)


#: :func:`digest_bytes` without the Python call around it, for the callers that run once per
#: node or more (the cache key's encodings)
hexdigest: Callable[[bytes], str] = xxhash.xxh3_128_hexdigest


def is_digest(text: str) -> bool:
    """True iff ``text`` is 32 lowercase hex characters (check keys before they become paths)."""
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None
