"""Action records as the journal holds them: decoded fast, and refused when of the wrong shape.

The journal's records are the engine's own, so a lookup trusts their shape (checking it costs
more than decoding them). A record that breaks a lookup all the same (a journal edited by hand,
or damaged) is checked then (:func:`malformed`): one of the wrong shape is a miss with a
warning naming its key and what is wrong, and its node runs again; any other error is raised.
The one field checked on every hit is each output's serializer (:func:`serializer_problem`, a
set lookup): one that names none, or one this process does not know, would break only the node
that loads the output later (or ``Results``), so the hit is refused now and the node runs again.
A serializer registered inside a node's code is such a one for every later run: the run that
writes an output with it says so at once (:class:`LateSerializers`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..journal._index import as_text
from ..journal._liveness import HOST
from ..store._serializers import default_registry
from ..store._trees import DIRECTORY_SERIALIZER, FILE_SERIALIZER

__all__ = [
    "LateSerializers",
    "action_record",
    "decode_record",
    "decode_records",
    "inline_known",
    "malformed",
    "plain_hit",
    "serializer_problem",
]

log = logging.getLogger("etherealfabric.cache")

_FILES = frozenset((FILE_SERIALIZER, DIRECTORY_SERIALIZER))
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_record(text: str | bytes) -> dict[str, Any] | None:
    """``json.loads`` of a record's text (None if it is not a JSON object), without its
    Python-level layers (decode, raw_decode and two whitespace matches): 1.4 us of its 3.9
    for each record of a warm run. Anything but one compact JSON value takes ``json.loads``.
    The journal gives it as UTF-8 bytes (``journal/_index.py``: ``RECORD``)."""
    if not isinstance(text, str):
        text = as_text(text)
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


def decode_records(rows: Iterable[tuple[str, str, bytes]]) -> dict[str, Any]:
    """The records of ``(node, key, UTF-8 bytes)`` rows by key, decoded in one ``json.loads``
    of them all as one JSON array (a warm run's records, read up front: one scan shares its
    decoded keys, no call per record). If that fails, or a text is not one JSON object,
    the texts are kept as they are: each lookup decodes its own (:func:`decode_record`)."""
    keys, texts = [row[1] for row in rows], [row[2] for row in rows]
    try:
        try:
            joined: bytes | str = b"[" + b",".join(texts) + b"]"
        except TypeError:  # texts given as str (or a NULL row: None, then not JSON)
            joined = "[" + ",".join(map(as_text, texts)) + "]"
        records = json.loads(joined)
    except ValueError:
        records = None
    if (
        type(records) is list
        and len(records) == len(keys)
        and (not records or set(map(type, records)) == {dict})  # (a C loop, no step a record)
    ):
        return dict(zip(keys, records, strict=True))
    return dict(zip(keys, texts, strict=True))


def plain_hit(record: dict[str, Any]) -> bool:
    """Whether a hit on ``record`` has nothing to check (``ArtifactCache.usable`` would
    return it as it is): no file read or written, no map's children, every output inline
    by a serializer this process knows. Most records of a warm run; may raise on a record
    of the wrong shape (the caller takes the checked path then)."""
    if record.get("reads") or record.get("files") or "children" in record:
        return False
    knows = default_registry.knows
    for out in record["outputs"].values():
        if not out.get("inline") or not knows(out.get("serializer")):
            return False
    return True


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


def serializer_problem(record: Mapping[str, Any]) -> str | None:
    """Why an output of ``record`` cannot be loaded by its serializer (it names none, or one
    not registered in this process), or None: then the record is a miss, never a failure of
    the node that loads the output, nor data read by another serializer than wrote it."""
    knows = default_registry.knows
    for name, out in record["outputs"].items():
        serializer = out.get("serializer")
        if serializer in _FILES or knows(serializer):
            continue
        node = record.get("node", "?")
        if not serializer:
            return (
                f"the action record of node {node!r} names no serializer for its output "
                f"{name!r} (a journal or store edited by hand, or damaged)"
            )
        return (
            f"the action record of node {node!r} names the serializer {serializer!r} for its "
            f"output {name!r}, which this process does not know: it was registered inside "
            "a node's code (known only once that node runs), or in a module the workflow "
            "does not import. Register it with register_serializer(...) before the run, at "
            f"import of the workflow module, or node {node!r} runs again on every run"
        )
    return None


def inline_known(record: Mapping[str, Any]) -> bool:
    """Whether every output of ``record`` is kept inline by a serializer this process knows:
    then a hit has nothing to check before it is used (the bytes are checked when read);
    :func:`serializer_problem`'s test and the inline test in one pass (most records)."""
    knows = default_registry.knows
    for out in record["outputs"].values():
        if not out.get("inline") or not knows(out.get("serializer")):
            return False
    return True


class LateSerializers:
    """Warns (once per serializer) when a record is written whose output names a serializer
    the run did not know when it started, registered while it ran (inside a node's code, or by
    a module a node imports). The next run will not know it until the node runs: it refuses
    the hit (:func:`serializer_problem`) and runs the node again, every run. The journal
    recorder checks each record it writes (``run/_recorder.py``)."""

    def __init__(self) -> None:
        self.known = frozenset(default_registry.names()) | _FILES  # at the start of the run
        self.warned: set[str] = set()

    def check(self, key: str, node: str, record: Mapping[str, Any]) -> None:
        for name, out in (record.get("outputs") or {}).items():
            serializer = out.get("serializer")
            if serializer in self.known or serializer in self.warned or not serializer:
                continue
            self.warned.add(serializer)
            log.warning(
                "node %r wrote its output %r (cache key %s) with the serializer %r, which was "
                "not registered when the run started (registered inside a node's code, or by "
                "a module a node imports): the next run will not know it, so it will refuse "
                "this result and run node %r again, on every run. Register it with "
                "register_serializer(...) before the run, at import of the workflow module",
                node, name, key, serializer, node,
            )  # fmt: skip


def action_record(
    node: str,
    outputs: Mapping[str, Mapping[str, Any]],
    files: Mapping[str, Mapping[str, Any]] | None = None,
    reads: Mapping[str, Mapping[str, Any]] | None = None,
    host: str = HOST,
) -> dict[str, Any]:
    """The action record stored under a cache key (``files``: stored file outputs, if any;
    ``reads``: data files the node read, checked before a hit: ``run/_reads.py``; ``host``:
    the machine whose worker read them, ``TaskResult.host``)."""
    record: dict[str, Any] = {
        "node": node,
        "outputs": {k: dict(v) for k, v in outputs.items()},
        "created_at": time.time(),
    }
    if files:
        record["files"] = {k: dict(v) for k, v in files.items()}
    if reads:
        record["reads"] = {k: dict(v) for k, v in reads.items()}
        # a file read gone from this machine (from this folder, for ./paths) is a change here
        record["read_on"], record["read_in"] = host, os.getcwd()
    return record
