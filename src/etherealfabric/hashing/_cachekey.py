"""The Merkle cache key of a node, from the digests of what went into it.

The key is the digest of the value encoding (:mod:`etherealfabric.hashing._encoder`) of::

    ("cache-key" tag) (KEY_FORMAT_VERSION, kind, code, version, sorted((param, digest)...), outputs)

``KEY_FORMAT_VERSION`` changes whenever a change to the engine changes keys, so old cache
entries are never read with a different meaning.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from ._digest import RefDigest, hexdigest

__all__ = [
    "KEY_FORMAT_VERSION",
    "cache_key",
    "key_of",
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
    return key_of(kind, code, version, params, tuple(outputs))


def key_of(
    kind: str, code: str, version: str | None, params: Mapping[str, str], outputs: tuple[str, ...]
) -> str:
    """:func:`cache_key` with its arguments in order (a warm run calls it once per node).

    The bytes are ``encoder.value((KEY_FORMAT_VERSION, kind, code, version,
    tuple(sorted(params.items())), tuple(outputs)))`` under the "cache-key" tag. Everything
    but the parameters' digests is the same for every node of one function: it is encoded
    once, as the pieces between the digests (:data:`_LAYOUTS`), and a key joins them with the
    digests' bytes, when each digest is the usual 32 characters; any other takes
    :func:`_key_bytes`."""
    names = tuple(params)
    layout = _LAYOUTS.get((kind, code, version, outputs, names))
    if layout is None:
        layout = _layout(kind, code, version, params, outputs)
    order, pieces = layout
    if len(order) == 1:  # (most nodes: one parameter)
        data = params[order[0]].encode("utf-8", "surrogatepass")
        if len(data) == 32:
            return hexdigest(pieces[0] + data + pieces[1])
    else:
        parts = [pieces[0]]
        for name, piece in zip(order, pieces[1:]):  # noqa: B905 (one piece per name, + tail)
            data = params[name].encode("utf-8", "surrogatepass")
            if len(data) != 32:
                break
            parts += (data, piece)
        else:
            return hexdigest(b"".join(parts))
    return hexdigest(_key_bytes(kind, code, version, params, outputs))


#: (kind, code, version, outputs, parameter names as given) -> the names in key order, and the
#: encoded pieces around their 32-character digests, the outputs' tuple last (see key_of)
_LAYOUTS: dict[tuple[Any, ...], tuple[tuple[str, ...], tuple[bytes, ...]]] = {}
_LAYOUTS_MAX = 10_000


def _layout(
    kind: str, code: str, version: str | None, params: Mapping[str, str], outputs: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """The layout :func:`key_of` joins for these parameter names, remembered."""
    order = tuple(sorted(params))
    pieces, before = [], _head(kind, code, version) + _count(len(order))
    for name in order:
        pieces.append(before + _pair(name) + _LEN32)
        before = b""
    pieces.append(before + _tail(outputs))
    layout = (order, tuple(pieces))
    if len(_LAYOUTS) >= _LAYOUTS_MAX:
        _LAYOUTS.clear()
    _LAYOUTS[(kind, code, version, outputs, tuple(params))] = layout
    return layout


def _key_bytes(
    kind: str, code: str, version: str | None, params: Mapping[str, str], outputs: Sequence[str]
) -> bytes:
    """The pre-image of a key, framed piece by piece (any digest length)."""
    count = len(params)
    parts = [_head(kind, code, version), _count(count)]
    for name, digest in sorted(params.items()):
        parts += (_pair(name), _text(digest))
    parts.append(_tail(outputs))
    return b"".join(parts)


def _head(kind: str, code: str, version: str | None) -> bytes:
    head = _HEADS.get((kind, code, version))
    if head is None:
        head = b"".join((
            _TAG["cache-key"], _TAG["tuple"], _int(6), _TAG["int"], _int(KEY_FORMAT_VERSION),
            _TAG["str"], _text(kind), _TAG["str"], _text(code),
            _TAG["none"] if version is None else _TAG["str"] + _text(version),
        ))  # fmt: skip
        if len(_HEADS) < 10_000:
            _HEADS[(kind, code, version)] = head
    return head


def _count(count: int) -> bytes:
    return _TUPLES[count] if count < len(_TUPLES) else _TAG["tuple"] + _int(count)


def _pair(name: str) -> bytes:
    pair = _NAMES.get(name)
    if pair is None:
        pair = _PAIR + _TAG["str"] + _text(name) + _TAG["str"]
        if len(_NAMES) < 10_000:
            _NAMES[name] = pair
    return pair


# a tuple's tag and length for the usual numbers of parameters; a digest's length (32 hex)
_TUPLES = [_TAG["tuple"] + _int(n) for n in range(16)]
_LEN32 = _LEN(32)
# what does not change from node to node, encoded once: a parameter's name with the frames
# around it, a node's declared outputs (a tuple in a node spec, hashable)
_NAMES: dict[str, bytes] = {}
_TAILS: dict[tuple[str, ...], bytes] = {}


def _tail(outputs: Sequence[str]) -> bytes:
    found = _TAILS.get(outputs) if type(outputs) is tuple else None
    if found is not None:
        return found
    tail = b"".join([_TAG["tuple"], _int(len(outputs)), *(_TAG["str"] + _text(n) for n in outputs)])
    if type(outputs) is tuple and len(_TAILS) < 10_000:
        _TAILS[outputs] = tail
    return tail
