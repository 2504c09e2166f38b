"""The ``json`` serializer, and which values it stores exactly (:func:`is_json_safe`).

Compact JSON, keys in the dict's order, ASCII-escaped, no NaN or infinity. The text is built in one
piece (the C encoder is several times faster than streaming, and values that choose JSON are
small), so :func:`json_bytes` gives a value's object bytes without a writer: the store's
write of a small plain output (``_serializers.write_value``) uses them directly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from typing import Any, BinaryIO

from ._serializer_base import Serializer

__all__ = ["JsonSerializer", "is_json_safe", "json_bytes", "parse_json"]

_JSON_MAX_ITEMS = 100_000
_JSON_MAX_DEPTH = 100
_JSON_MAX_INT_BITS = 13_000  # ~3,900 digits: below Python's int/str conversion limit
#: what ``json.dumps(v, separators=(",", ":"), allow_nan=False)`` builds for each call (it
#: keeps no state between calls). Keys stay in the dict's order: a node that returns a ranked
#: dict gives its consumers that order (keys and value digests do not depend on it)
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class JsonSerializer(Serializer):
    """Compact JSON, keys in the dict's order, ASCII-escaped, no NaN or infinity."""

    name = "json"

    def dumps(self, value: object) -> bytes:
        """The bytes :meth:`dump` writes (in one write)."""
        return _ENCODER.encode(value).encode("ascii")

    def dump(self, value: object, fp: BinaryIO) -> None:
        fp.write(self.dumps(value))

    def load(self, fp: BinaryIO) -> object:
        return self.loads(fp.read())

    def loads(self, data: bytes) -> object:
        return parse_json(data)


def json_bytes(value: object, serializer: Serializer) -> bytes | None:
    """What ``serializer`` writes for ``value`` when it is the built-in ``json`` (not a
    subclass or a replacement); None for another serializer, or a value it cannot write
    (dumping it the usual way then reports the error)."""
    if type(serializer) is not JsonSerializer:
        return None
    try:
        return serializer.dumps(value)
    except Exception:
        return None


def parse_json(data: bytes | str) -> Any:
    """``json.loads(data)``, for data others can write (a shared store's entries): JSON nested
    too deep for the parser (``[`` repeated 100,000 times) is a ValueError like any other
    unreadable JSON, not a RecursionError that the callers' ``except ValueError`` misses."""
    if type(data) is bytes and data.isascii() and (len(data) < 2 or (data[0] and data[1])):
        # what json.loads would decode it as (no BOM, no NUL that means UTF-16/32), without
        # its encoding detection: a third of the parse of a small value (an input per node)
        data = data.decode("ascii")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep to read") from None


def is_json_safe(value: object) -> bool:
    """True if ``value`` comes back from JSON equal and of the same types.

    Gives up (False) on values with more than 100,000 items or nested over 100 deep.
    """
    if type(value) is not list and type(value) is not dict:
        return _is_json_scalar(value)
    stack: list[tuple[object, int]] = [(value, 0)]
    budget = _JSON_MAX_ITEMS
    while stack:
        container, depth = stack.pop()
        children = _json_children(container)
        if children is None or depth >= _JSON_MAX_DEPTH:
            return False
        budget -= len(children)
        if budget < 0:
            return False
        for child in children:
            if type(child) is list or type(child) is dict:
                stack.append((child, depth + 1))
            elif not _is_json_scalar(child):
                return False
    return True


def _json_children(container: object) -> Collection[object] | None:
    """The items of a list, or the values of a dict with str keys (else None)."""
    if type(container) is list:
        return container
    items: dict[object, object] = container  # type: ignore[assignment]
    return items.values() if all(type(k) is str for k in items) else None


def _is_json_scalar(item: object) -> bool:
    kind = type(item)
    if kind is str or kind is bool or item is None:
        return True
    if kind is int:
        return int.bit_length(item) <= _JSON_MAX_INT_BITS  # type: ignore[arg-type]
    return kind is float and math.isfinite(item)  # type: ignore[arg-type]
