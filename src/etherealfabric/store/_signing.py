"""Signing for shared stores: which action records and checkpoints may be trusted.

This is the security model of :class:`~etherealfabric.store._objectstore.ObjectStore` (see
``docs/stores.md``). With a signing key (the ``signing_key=`` argument or
``ETHEREALFABRIC_SIGNING_KEY``), an action record carries an HMAC-SHA256 over the cache key,
the record's canonical JSON and the digests it names (:func:`encode_record`); :func:`read_record`
refuses, with the reason, a record that is unsigned, signed with another key or changed after
signing. A verified record names digests, and every object is checked against its digest, so
the bytes of a pickled output are covered by the signature too.

Without a key, records are written unsigned, and only records whose outputs all use
serializers that cannot run code when loaded (``json``, ``npy``, ``parquet`` and ``arrow``,
see :data:`UNSIGNED_SERIALIZERS`) may be used; a record with a pickled output (or any other
serializer) is refused with a reason that says to set ``ETHEREALFABRIC_SIGNING_KEY``, and the
store does not even publish one (nobody could use it, and it would replace a teammate's
signed record). Checkpoints are pickled, so they are stored after a signature line
(:meth:`Signer.checkpoint_line`) over their header, which names the payload's digest.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError, StoreError
from ..hashing._digest import is_digest
from ._base import CHECKPOINT_HEADER_SIZE
from ._json import parse_json
from ._trees import DIRECTORY_SERIALIZER, FILE_SERIALIZER, files_problem, path_problem

__all__ = [
    "MIN_KEY_BYTES",
    "SIGNATURE_FIELD",
    "SIGNATURE_LINE_SIZE",
    "SIGNING_KEY_ENV",
    "UNSIGNED_SERIALIZERS",
    "Signer",
    "canonical",
    "checkpoint_key_id",
    "encode_record",
    "load_signer",
    "read_record",
    "record_digests",
    "record_problem",
    "signed_key_id",
    "split_checkpoint",
    "unsigned_problem",
]

SIGNING_KEY_ENV = "ETHEREALFABRIC_SIGNING_KEY"
#: Serializers whose loading never runs code from the data: the only ones accepted from
#: unsigned records (parquet and arrow: see ``store/_tables.py`` for why, and its pyarrow check;
#: polars reads parquet in Rust, building types by name).
UNSIGNED_SERIALIZERS = frozenset({"json", "npy", "parquet", "arrow", "polars"})
MIN_KEY_BYTES = 16
SIGNATURE_FIELD = "signature"

#: SQLite's integers are 64-bit: a larger one (JSON has no limit) cannot go into the journal
_INT64 = 2**63
_SIGNED_CHECKPOINT = b"EFSIGNED1 "
_SIGNATURE_LINE_SIZE = len(_SIGNED_CHECKPOINT) + 12 + 1 + 64 + 1  # magic, key id, mac, newline


class Signer:
    """HMAC-SHA256 signatures with the team's key; ``key_id`` names the key, never shows it."""

    def __init__(self, key: bytes, *, setting: str = SIGNING_KEY_ENV) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(
                f"{setting} is too short ({len(key)} bytes): use a random secret of at least "
                f"{MIN_KEY_BYTES} bytes, for example the output of "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`",
                setting=setting,
            )
        self._key = key
        self.key_id = self._mac(b"etherealfabric key id")[:12]

    def __repr__(self) -> str:
        return f"<Signer key id {self.key_id}>"

    def _mac(self, *parts: bytes) -> str:
        import hashlib  # (and hmac) here: a run with no shared store signs nothing
        import hmac

        return hmac.new(self._key, b"\0".join(parts), hashlib.sha256).hexdigest()

    def sign_action(self, key: str, body: str, digests: list[str]) -> dict[str, str]:
        """The signature of the record ``body`` (canonical JSON) stored under ``key``."""
        mac = self._action_mac(key, body, digests)
        return {"alg": "hmac-sha256", "key_id": self.key_id, "mac": mac}

    def check_action(self, key: str, body: str, digests: list[str], signature: object) -> str:
        """Why ``signature`` does not vouch for this record; ``""`` when it does."""
        if signature is None:
            return "it is not signed"
        if not isinstance(signature, dict) or not isinstance(signature.get("mac"), str):
            return "its signature is malformed"
        expected = self._action_mac(key, body, digests)
        return self._mismatch(signature["mac"], expected, signature.get("key_id"))

    def _action_mac(self, key: str, body: str, digests: list[str]) -> str:
        joined = ",".join(digests)
        return self._mac(b"etherealfabric action v1", key.encode(), body.encode(), joined.encode())

    def checkpoint_line(self, key: str, header: bytes) -> bytes:
        """The signature line stored before a checkpoint's header (which names its digest)."""
        mac = self._mac(b"etherealfabric checkpoint v1", key.encode(), header)
        return _SIGNED_CHECKPOINT + f"{self.key_id} {mac}\n".encode()

    def check_checkpoint(self, key: str, line: bytes, header: bytes) -> str:
        """Why ``line`` does not vouch for this checkpoint header; ``""`` when it does."""
        if not line.startswith(_SIGNED_CHECKPOINT) or not line.endswith(b"\n"):
            return "it is not signed"
        key_id, _, mac = (
            line[len(_SIGNED_CHECKPOINT) : -1].decode("ascii", "replace").partition(" ")
        )
        expected = self._mac(b"etherealfabric checkpoint v1", key.encode(), header)
        return self._mismatch(mac, expected, key_id)

    def _mismatch(self, mac: str, expected: str, key_id: object) -> str:
        import hmac

        if hmac.compare_digest(mac.encode(), expected.encode()):
            return ""
        if key_id != self.key_id:
            return (
                f"it was signed with another key (key id {key_id!r}; yours is {self.key_id}): "
                f"everyone sharing this store must use the same {SIGNING_KEY_ENV}"
            )
        return "its signature does not match its content: it was changed after it was signed"


def load_signer(key: bytes | str | None) -> Signer | None:
    """A signer for ``key``, else for ``ETHEREALFABRIC_SIGNING_KEY``; None when neither is set."""
    if key is not None:
        return Signer(key.encode() if isinstance(key, str) else bytes(key), setting="signing_key")
    text = os.environ.get(SIGNING_KEY_ENV, "").strip()
    return Signer(text.encode()) if text else None


# -- action records --------------------------------------------------------------------------


def canonical(value: object) -> str:
    """The canonical JSON of ``value`` (sorted keys, no spaces, no NaN): what is signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def record_digests(record: Mapping[str, Any]) -> list[str]:
    """The digests an action record names, sorted (they are signed explicitly)."""
    outputs = record.get("outputs")
    if not isinstance(outputs, dict):
        return []
    found = {
        out["digest"]
        for out in outputs.values()
        if isinstance(out, dict) and isinstance(out.get("digest"), str)
    }
    return sorted(found)


def encode_record(key: str, record: dict[str, Any], signer: Signer | None) -> dict[str, Any]:
    """``record`` as it is stored under ``key``: JSON data, signed when ``signer`` is set."""
    if SIGNATURE_FIELD in record:
        raise StoreError(f"the action record for key {key} uses the reserved field 'signature'")
    try:
        body: dict[str, Any] = json.loads(canonical(record))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"the action record for key {key} is not valid JSON: {exc}") from exc
    if signer is not None:
        body[SIGNATURE_FIELD] = signer.sign_action(key, canonical(body), record_digests(body))
    return body


def read_record(key: str, data: bytes, signer: Signer | None) -> tuple[dict[str, Any] | None, str]:
    """The record in ``data`` (stored under ``key``) and ``""``, or None and why it is refused."""
    try:
        record = parse_json(data)
    except ValueError as exc:
        return None, f"it is not JSON ({exc})"
    if not isinstance(record, dict):
        return None, "it is not a JSON object"
    if _LONE_SURROGATE.search(data) and not _valid_text(record):
        # (json reads "\\ud800" as a lone surrogate, which no file name, log line or SQLite
        # row can hold: such a record would fail the node, or the run, that uses it)
        return None, "it holds text that is not valid Unicode (an escaped lone surrogate)"
    signature = record.pop(SIGNATURE_FIELD, None)
    if signer is None:  # its shape first: a forged entry is named, whatever it claims to hold
        problem = record_problem(record) or unsigned_problem(record)
    else:
        try:
            body = canonical(record)
        except ValueError:  # NaN or infinity: never written by encode_record
            return None, "it is not canonical JSON"
        problem = signer.check_action(key, body, record_digests(record), signature)
        if problem:  # a forged file entry (a path out of the project) is named as such
            problem = files_problem(record.get("files")) or problem
    return (None, problem) if problem else (record, "")


#: A JSON escape of a surrogate code point (a pair of them is valid text; one alone is not).
_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _valid_text(value: object) -> bool:
    """Whether every string in the JSON value ``value`` is valid Unicode (encodes as UTF-8)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def unsigned_problem(record: Mapping[str, Any]) -> str:
    """Why an unsigned record may not be used (without a key); ``""`` if it may."""
    outputs = record.get("outputs", {})
    if not isinstance(outputs, dict):
        return "its outputs are malformed"
    if record.get("files"):  # restoring writes files into the project: as risky as code
        return (
            "it names file outputs, which are restored into your project from a shared store "
            f"only when their record is signed. Set {SIGNING_KEY_ENV} to your team's signing "
            "key to share them"
        )
    for name, out in outputs.items():
        if not isinstance(out, dict) or not is_digest(out.get("digest", "")):
            return f"its output {name!r} is malformed"
        serializer = out.get("serializer")
        if serializer in (FILE_SERIALIZER, DIRECTORY_SERIALIZER):
            return (
                f"its output {name!r} is a returned {serializer}, which is restored into your "
                "project from a shared store only when its record is signed. Set "
                f"{SIGNING_KEY_ENV} to your team's signing key to share it"
            )
        if serializer not in UNSIGNED_SERIALIZERS:
            return (
                f"its output {name!r} uses the {serializer!r} serializer, and outputs that "
                "could run code when loaded (pickle, cloudpickle, custom serializers) are "
                f"loaded from a shared store only when their record is signed. Set "
                f"{SIGNING_KEY_ENV} to your team's signing key to share them"
            )
    return ""


def record_problem(record: object) -> str:
    """Why ``record`` is not a well-formed action record; ``""`` if it is.

    The one check of a record's shape, for every record that comes from a store others can
    write (the engine then reads ``node``, ``created_at`` and each output's ``digest``,
    ``serializer``, ``size``, ``inline``, ``value`` and ``code`` without further checks). ``value``, the
    output's value digest that downstream keys use, is optional; like every field it is part
    of the signed canonical JSON, so it cannot be changed after signing.
    """
    if not isinstance(record, dict):
        return "it is not a JSON object"
    if not isinstance(record.get("node"), str):
        return "its 'node' is missing or not a string"
    created = record.get("created_at", 0.0)
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        return "its 'created_at' is not a number"
    if not (-_INT64 <= created < _INT64 if isinstance(created, int) else math.isfinite(created)):
        return "its 'created_at' is out of range (the journal keeps it: SQLite's numbers)"
    outputs = record.get("outputs")
    if not isinstance(outputs, dict):
        return "its 'outputs' is missing or not an object"
    files = record.get("files")
    problem = files_problem(files)
    if problem:
        return problem
    for name, out in outputs.items():
        if not isinstance(out, dict):
            return f"its output {name!r} is not an object"
        if not isinstance(out.get("digest"), str) or not is_digest(out["digest"]):
            return f"its output {name!r} has no valid digest (32 lowercase hex characters)"
        if not isinstance(out.get("serializer"), str) or not out["serializer"]:
            return f"its output {name!r} names no serializer"
        size = out.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < _INT64:
            return f"its output {name!r} has no valid size"
        if not isinstance(out.get("inline", False), bool):
            return f"its output {name!r} has a non-boolean 'inline'"
        if not isinstance(out.get("type", ""), str):
            return f"its output {name!r} has a non-string 'type'"
        if "value" in out and not (isinstance(out["value"], str) and is_digest(out["value"])):
            return f"its output {name!r} has an invalid 'value' digest"
        code = out.get("code", [])
        if not isinstance(code, list) or not all(isinstance(c, str) for c in code):
            return f"its output {name!r} has a malformed 'code' (a list of names)"
        versions = out.get("versions", {})
        if not isinstance(versions, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in versions.items()
        ):
            return f"its output {name!r} has malformed 'versions'"
        if out["serializer"] in (FILE_SERIALIZER, DIRECTORY_SERIALIZER):
            problem = _file_output_problem(out, files)
            if problem:
                return f"its file output {name!r} {problem}"
    return ""


def _file_output_problem(out: Mapping[str, Any], files: object) -> str:
    """Why a returned file's output record does not match the record's ``files``; ``""``."""
    folder = out["serializer"] == DIRECTORY_SERIALIZER
    where = path_problem(out.get("path"), folder=folder)
    if where:
        return f"names an unsafe path: {where}"
    entry = files.get(out["path"]) if isinstance(files, dict) else None
    kind = "dir" if folder else "file"
    if not isinstance(entry, dict) or entry.get("kind") != kind:
        return f"names {out['path']!r}, which the record's file entries do not list"
    if entry.get("digest") != out["digest"]:
        return f"and the file entry {out['path']!r} name different digests"
    return ""


def signed_key_id(data: bytes) -> str | None:
    """The key id a stored record claims to be signed with (unverified); None if none."""
    try:
        stored = parse_json(data)
    except ValueError:
        return None
    signature = stored.get(SIGNATURE_FIELD) if isinstance(stored, dict) else None
    key_id = signature.get("key_id") if isinstance(signature, dict) else None
    return key_id if isinstance(key_id, str) else None


# -- checkpoints -----------------------------------------------------------------------------


def split_checkpoint(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """The signature line, the checkpoint header and the payload of a stored checkpoint."""
    header_end = _SIGNATURE_LINE_SIZE + CHECKPOINT_HEADER_SIZE
    return blob[:_SIGNATURE_LINE_SIZE], blob[_SIGNATURE_LINE_SIZE:header_end], blob[header_end:]


def checkpoint_key_id(line: bytes) -> str | None:
    """The key id a checkpoint's signature line claims (unverified); None if unsigned."""
    if not line.startswith(_SIGNED_CHECKPOINT) or not line.endswith(b"\n"):
        return None
    return line[len(_SIGNED_CHECKPOINT) : -1].decode("ascii", "replace").partition(" ")[0]


#: How many bytes of a stored checkpoint hold its signature line.
SIGNATURE_LINE_SIZE = _SIGNATURE_LINE_SIZE
