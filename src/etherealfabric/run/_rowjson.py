"""The JSON of the journal's rows (records, key components, event data): compact, and made
by the C encoder without the per-call set-up of ``json.dumps`` (``run/_recorder.py`` writes
four such texts per node)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "event_json"]

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # made once: json.dumps makes one a call


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """The C encoder ``_ENCODER.encode`` makes for every call (half of its time on a small
    dict; four calls per node), made once: stateless (no circular-reference ``markers``,
    which a failed call would leave filled; a cycle is a ``RecursionError``), so any thread
    may use it. None where this Python's ``json`` has no C accelerator."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        made = make(None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":",
                    ",", False, False, True)  # fmt: skip
        same = "".join(made({"a": [1.5, None, "é"]}, 0)) == _ENCODER.encode({"a": [1.5, None, "é"]})
    except Exception:  # another signature
        return None
    return made if same else None


_C_ENCODE = _c_encoder()


def dumps(value: Any) -> str:
    """``value`` as compact JSON (the C encoder, made once)."""
    if _C_ENCODE is None:
        return _ENCODER.encode(value)
    try:
        return "".join(_C_ENCODE(value, 0))
    except RecursionError:  # a cycle: the error json.dumps gives
        raise ValueError("Circular reference detected") from None


def event_json(data: dict[str, Any]) -> str:
    """Event data as JSON; the C encoder's fast path, ``str()`` for odd values."""
    try:
        return dumps(data)
    except (TypeError, ValueError):
        return json.dumps(data, separators=(",", ":"), default=str)
