"""Action records as the journal holds them: decoded fast, and refused when of the wrong shape.

The journal's records are the engine's own, so a lookup trusts their shape (checking it costs
more than decoding them). A record that breaks a lookup all the same (a journal edited by hand,
or damaged) is checked then (:func:`malformed`): one of the wrong shape is a miss with a
warning naming its key and what is wrong, and its node runs again; any other error is raised.
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["decode_record", "malformed"]

log = logging.getLogger("etherealfabric.cache")

_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_record(text: str) -> dict[str, Any] | None:
    """``json.loads`` of a record's text (None if it is not a JSON object), without its
    Python-level layers (decode, raw_decode and two whitespace matches): 1.4 us of its 3.9
    for each record of a warm run. Anything but one compact JSON value takes ``json.loads``."""
    try:
        record, end = _scan(text, 0)
    except (StopIteration, ValueError):
        record, end = None, -1
    if end != len(text):
        try:
            record = json.loads(text)
        except ValueError:
            return None
    return record if isinstance(record, dict) else None


def malformed(key: str, record: object, error: BaseException) -> bool:
    """Whether ``record`` (of ``key``), whose use raised ``error``, is of the wrong shape: then
    say so (the caller forgets it: a miss)."""
    from ..store._signing import record_problem  # (only when a record broke a lookup)

    problem = record_problem(record)
    if not problem:
        return False
    log.warning(
        "ignoring the action record of cache key %s in the journal (the node runs again): %s "
        "(%s: %s)",
        key,
        problem,
        type(error).__name__,
        error,
    )
    return True
