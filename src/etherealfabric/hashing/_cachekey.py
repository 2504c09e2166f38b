"""The Merkle cache key of a node, from the digests of what went into it.

The key is the digest of the value encoding (:mod:`etherealfabric.hashing._encoder`) of::

    ("cache-key" tag) (KEY_FORMAT_VERSION, kind, code, version, sorted((param, digest)...), outputs)

``KEY_FORMAT_VERSION`` changes whenever a change to the engine changes keys, so old cache
entries are never read with a different meaning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._encoder import Encoder

__all__ = ["KEY_FORMAT_VERSION", "cache_key"]

KEY_FORMAT_VERSION: int = 1


def cache_key(
    *,
    kind: str,
    code: str,
    version: str | None,
    params: Mapping[str, str],
    outputs: Sequence[str],
) -> str:
    """The Merkle cache key of a node, from its kind, code, version, params and outputs.

    ``params`` maps each parameter name to the digest of its value (upstream outputs already
    replaced by their content digests); ``outputs`` are the declared names, in order.
    """
    # The same bytes as ``encoder.value((KEY_FORMAT_VERSION, kind, code, version,
    # tuple(sorted(params.items())), tuple(outputs)))``, written without dispatch: this runs
    # once per node per run, so it is on the hot path of a warm run.
    e = Encoder(None)
    e.tag("cache-key")
    e.tag("tuple")
    e.integer(6)
    e.tag("int")
    e.integer(KEY_FORMAT_VERSION)
    _str(e, kind)
    _str(e, code)
    if version is None:
        e.tag("none")
    else:
        _str(e, version)
    items = sorted(params.items())
    e.tag("tuple")
    e.integer(len(items))
    for name, digest in items:
        e.tag("tuple")
        e.integer(2)
        _str(e, name)
        _str(e, digest)
    e.tag("tuple")
    e.integer(len(outputs))
    for name in outputs:
        _str(e, name)
    return e.hexdigest()


def _str(encoder: Encoder, value: str) -> None:
    encoder.tag("str")
    encoder.text(value)
