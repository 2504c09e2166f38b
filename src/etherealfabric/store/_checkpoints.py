"""The checkpoint format every store shares: a magic line, the digest of the bytes, the bytes.

Re-exported by ``_base`` (where stores and callers import it from).
"""

from __future__ import annotations

import logging

from ..hashing._digest import digest_bytes

__all__ = ["CHECKPOINT_HEADER_SIZE", "CHECKPOINT_MAGIC", "checkpoint_header", "checkpoint_payload"]

log = logging.getLogger("etherealfabric.store")

#: First line of a stored checkpoint; the second is the digest of the bytes that follow.
CHECKPOINT_MAGIC = b"EFCHECKPOINT1\n"
#: Length of the magic line plus the digest line.
CHECKPOINT_HEADER_SIZE = len(CHECKPOINT_MAGIC) + 33


def checkpoint_header(data: bytes) -> bytes:
    """What a store writes before a checkpoint's bytes: a magic line and their digest line.

    Stores share this format (``header + data``) so that a checkpoint moves between them
    unchanged and damage is always detected by :func:`checkpoint_payload`.
    """
    return CHECKPOINT_MAGIC + digest_bytes(data).encode("ascii") + b"\n"


def checkpoint_payload(header: bytes, payload: bytes, where: str) -> bytes | None:
    """``payload`` if ``header`` is a checkpoint header whose digest matches it, else None.

    A mismatch is logged as a warning naming ``where`` (the checkpoint's location).
    """
    if (
        len(header) != CHECKPOINT_HEADER_SIZE
        or not header.startswith(CHECKPOINT_MAGIC)
        or not header.endswith(b"\n")
    ):
        log.warning(
            "ignoring the damaged checkpoint %s: it does not start with a checkpoint header "
            "(the node starts from the beginning)",
            where,
        )
        return None
    expected = header[len(CHECKPOINT_MAGIC) : -1].decode("ascii", "replace")
    actual = digest_bytes(payload)
    if actual != expected:
        log.warning(
            "ignoring the damaged checkpoint %s: its bytes hash to %s, not %s "
            "(the node starts from the beginning)",
            where,
            actual,
            expected,
        )
        return None
    return payload
