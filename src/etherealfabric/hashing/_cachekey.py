"""The Merkle cache key of a node, from the digests of what went into it.

The key is the digest of the value encoding (:mod:`etherealfabric.hashing._encoder`) of::

    ("cache-key" tag) (KEY_FORMAT_VERSION, kind, code, version, sorted((param, digest)...), outputs)

``KEY_FORMAT_VERSION`` changes whenever a change to the engine changes keys, so old cache
entries are never read with a different meaning.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from ._digest import RefDigest, hexdigest

__all__ = [
    "KEY_FORMAT_VERSION",
    "cache_key",
    "ref_digest",
    "ref_sequence_digest",
    "scalar_digest",
]

KEY_FORMAT_VERSION: int = 1

# The encoding of ``_encoder.Encoder`` written straight into bytes: this runs once per node per
# run (a 100,000-node warm run keys every node), where a method call per frame was most of the
# cost. The bytes, and so every key, are the same (tests/test_hashing_fastpath.py).
_LEN = struct.Struct("<Q").pack


def _frame(data: bytes) -> bytes:
    return _LEN(len(data)) + data


def _int(value: int) -> bytes:
    return _frame(value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True))


def _text(value: str) -> bytes:
    return _frame(value.encode("utf-8", "surrogatepass"))


_TAG = {
    name: _frame(name.encode())
    for name in ("cache-key", "tuple", "list", "int", "str", "none", "ref")
}
_PAIR = _TAG["tuple"] + _int(2)
_INT_HEAD, _STR_HEAD = _TAG["int"], _TAG["str"]
_SEQUENCE_TAGS: dict[type, bytes] = {list: _TAG["list"], tuple: _TAG["tuple"]}
_HEADS: dict[tuple[str, str, str | None], bytes] = {}


def scalar_digest(value: object) -> str | None:
    """``hash_value(value)`` for an exact ``int``, ``str`` or :class:`RefDigest` (the common
    parameters: an item's number or name, an upstream output), computed directly; None for
    anything else (hash it with ``hash_value``)."""
    tp = type(value)
    if tp is int:
        number: int = value  # type: ignore[assignment]
        data = number.to_bytes(number.bit_length() // 8 + 1, "little", signed=True)
        return hexdigest(_INT_HEAD + _LEN(len(data)) + data)
    if tp is str:
        return hexdigest(_STR_HEAD + _text(value))  # type: ignore[arg-type]
    if tp is RefDigest:
        ref: RefDigest = value  # type: ignore[assignment]
        return hexdigest(_TAG["ref"] + _text(ref.serializer) + _text(ref.digest))
    return None


def ref_digest(serializer: str, digest: str) -> str:
    """``scalar_digest(RefDigest(serializer, digest))`` (an upstream output as a parameter),
    without making the tuple: the same bytes (tests/test_hashing_fastpath.py)."""
    head = _REF_HEADS.get(serializer)
    if head is None:
        head = _TAG["ref"] + _text(serializer)
        if len(_REF_HEADS) < 1000:
            _REF_HEADS[serializer] = head
    data = digest.encode("utf-8", "surrogatepass")  # (_text, inline: once per node)
    return hexdigest(head + _LEN(len(data)) + data)


#: the frames of a reference's serializer name (a few names: "pickle", "=value"...)
_REF_HEADS: dict[str, bytes] = {}


def ref_sequence_digest(kind: type, refs: Sequence[tuple[str, str]]) -> str:
    """``hash_value`` of a ``kind`` (list or tuple) of ``RefDigest(serializer, digest)``, from
    the ``(serializer, digest)`` pairs: a gather's input, keyed without a handler call per
    item (the same bytes: tests/test_hashing_fastpath.py)."""
    parts = [_SEQUENCE_TAGS[kind], _int(len(refs))]
    extend = parts.extend
    # a reference's frames before its digest's bytes, by serializer name, for the usual
    # 32-character digest (the length frame included: two parts an item, no call)
    heads: dict[str, bytes] = {}
    for serializer, digest in refs:
        data = digest.encode("utf-8", "surrogatepass")
        if len(data) == 32:
            head = heads.get(serializer)
            if head is None:
                head = heads[serializer] = _TAG["ref"] + _text(serializer) + _LEN32
            extend((head, data))
        else:
            extend((_TAG["ref"] + _text(serializer), _frame(data)))
    return hexdigest(b"".join(parts))


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
    # the bytes of ``encoder.value((KEY_FORMAT_VERSION, kind, code, version,
    # tuple(sorted(params.items())), tuple(outputs)))`` under the "cache-key" tag
    head = _HEADS.get((kind, code, version))
    if head is None:
        head = b"".join((
            _TAG["cache-key"], _TAG["tuple"], _int(6), _TAG["int"], _int(KEY_FORMAT_VERSION),
            _TAG["str"], _text(kind), _TAG["str"], _text(code),
            _TAG["none"] if version is None else _TAG["str"] + _text(version),
        ))  # fmt: skip
        _HEADS[(kind, code, version)] = head
    tail = _TAILS.get(tuple(outputs)) if type(outputs) is tuple else None
    if tail is None:
        tail = _tail(outputs)
    count = len(params)
    parts = [head, _TUPLES[count] if count < len(_TUPLES) else _TAG["tuple"] + _int(count)]
    for name, digest in sorted(params.items()) if count > 1 else params.items():
        pair = _NAMES.get(name)
        if pair is None:
            pair = _PAIR + _TAG["str"] + _text(name) + _TAG["str"]
            if len(_NAMES) < 10_000:
                _NAMES[name] = pair
        data = digest.encode("utf-8", "surrogatepass")
        parts += (pair, _LEN32 + data if len(data) == 32 else _frame(data))
    parts.append(tail)
    return hexdigest(b"".join(parts))


# a tuple's tag and length for the usual numbers of parameters; a digest's length (32 hex)
_TUPLES = [_TAG["tuple"] + _int(n) for n in range(16)]
_LEN32 = _LEN(32)
# what does not change from node to node, encoded once: a parameter's name with the frames
# around it, a node's declared outputs (a tuple in a node spec, hashable)
_NAMES: dict[str, bytes] = {}
_TAILS: dict[tuple[str, ...], bytes] = {}


def _tail(outputs: Sequence[str]) -> bytes:
    tail = b"".join([_TAG["tuple"], _int(len(outputs)), *(_TAG["str"] + _text(n) for n in outputs)])
    if type(outputs) is tuple and len(_TAILS) < 10_000:
        _TAILS[outputs] = tail
    return tail
