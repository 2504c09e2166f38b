"""The trust boundary: action records and checkpoints of a store that others can write.

The home's own store is trusted (it is your own disk). Every other store, a shared folder
(``ETHEREALFABRIC_STORE=/shared/folder``) as much as an object store (``s3://...``), is not:
its records and checkpoints go through :class:`UntrustedEntries`, the one place where they
are signed when written and checked when read (the signatures themselves are in
:mod:`etherealfabric.store._signing`; the model is described in ``docs/stores.md``).

Reading. A record is used only when it verifies with our key (or, without a key, when every
output it names uses a serializer that cannot run code: ``json``, ``npy``) *and* has the shape
of an action record (:func:`~etherealfabric.store._signing.record_problem`). Anything else,
unsigned, tampered, foreign, malformed, is a cache miss with one warning naming the key and
the entry, and nothing it names is ever loaded. A checkpoint (always pickled) is loaded only
when signed with our key; without a key, never.

One record per signer. The first signer of a key writes the canonical name
(``actions/ab/<key>.json``, by an exclusive create where the store has one, so two first
writers at the same moment cannot replace each other's record); a teammate whose key differs (the canonical record's signature
names a key id that is not theirs) writes and reads their own copy under a name that carries
their key id (``actions/ab/<key>.<key id>.json``) and never replaces the canonical one. A member
without a key never replaces a signed record. So a misconfigured teammate costs a
recomputation for themselves, never for the team. The claimed key id only chooses which
record to read; what is used is always verified. Checkpoints (``checkpoints/ab/<key>``, only
alive while a node runs) have one name: the last writer's, loaded only by whoever holds its
key; a member without a key writes none (nobody could load them).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._base import (
    CHECKPOINT_HEADER_SIZE,
    Store,
    action_name,
    checkpoint_header,
    checkpoint_name,
    checkpoint_payload,
)
from ._signing import (
    SIGNATURE_LINE_SIZE,
    SIGNING_KEY_ENV,
    Signer,
    canonical,
    checkpoint_key_id,
    encode_record,
    read_record,
    signed_key_id,
    split_checkpoint,
    unsigned_problem,
)

__all__ = ["UntrustedEntries"]

log = logging.getLogger("etherealfabric.store")

#: An action record is a few kB (one naming every file a node read: a few MB). A larger entry
#: (planted by a bucket writer) is refused, never read beyond this: read whole, it took four
#: times its size in memory from every teammate whose run looked its key up.
MAX_RECORD_BYTES = 64 * 1024 * 1024
_CHECKPOINT_HEAD = SIGNATURE_LINE_SIZE + CHECKPOINT_HEADER_SIZE  # signature line and header


class UntrustedEntries:
    """Signed records and checkpoints for one untrusted store; ``signer`` None: no key.

    Picklable (it travels with its store to worker processes): the signer goes along, the
    per-process warning memory and lock do not.
    """

    def __init__(self, signer: Signer | None) -> None:
        self.signer = signer
        self._init_local()

    def _init_local(self) -> None:
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"signer": self.signer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.signer = state["signer"]
        self._init_local()

    @property
    def key_id(self) -> str | None:
        return self.signer.key_id if self.signer is not None else None

    def _own(self, name: str) -> str:
        """The name of this signer's own copy of the canonical record ``name``."""
        return f"{name.removesuffix('.json')}.{self.key_id}.json"

    def _foreign(self, claimed: str | None) -> bool:
        """True if an entry claiming ``claimed`` belongs to another signer (never replaced)."""
        return claimed is not None and claimed != self.key_id

    # -- action records ----------------------------------------------------------------------
    def get_action(self, store: Store, key: str) -> dict[str, Any] | None:
        """The record of ``key`` if it may be trusted, else None (a miss, warned once)."""
        name = action_name(key)
        data = _read_record(store, name)
        if data is None:
            return None
        if self.signer is not None and self._foreign(signed_key_id(data)):
            own = self._own(name)
            mine = _read_record(store, own)
            if mine is not None:
                name, data = own, mine
        if len(data) > MAX_RECORD_BYTES:
            problem = f"it is larger than {MAX_RECORD_BYTES} bytes (an action record is a few kB)"
            self.reject(key, store.entry_location(name), problem)
            return None
        record, problem = read_record(key, data, self.signer)
        if problem:
            self.reject(key, store.entry_location(name), problem)
            return None
        return record

    def put_action(self, store: Store, key: str, record: dict[str, Any]) -> None:
        """Write ``record`` signed (when there is a key), never over another signer's."""
        name = action_name(key)
        body = encode_record(key, record, self.signer)
        if self.signer is None and unsigned_problem(body):
            # nobody would load it (see get_action); writing it could only replace a record
            # that a teammate with the key signed
            self.warn_once(
                "unsigned records",
                "not publishing action records of pickled outputs or file outputs to %s: they "
                "are used from a shared store only when signed; set %s to share them",
                store.url,
                SIGNING_KEY_ENV,
            )
            return
        data = canonical(body).encode()
        if _create(store, name, data):
            return  # the first record of this key: ours is the canonical one
        existing = _read_record(store, name)
        if existing is not None and self._foreign(signed_key_id(existing)):
            if self.signer is None:
                return  # a signed record serves readers without a key as well
            name = self._own(name)
        store.write_entry(name, data)

    def delete_action(self, store: Store, key: str) -> None:
        """Remove our record of ``key`` (the canonical one only if it is not another's)."""
        name = action_name(key)
        if self.signer is not None:
            store.delete_entry(self._own(name))
        existing = _read_record(store, name)
        if existing is not None and not self._foreign(signed_key_id(existing)):
            store.delete_entry(name)

    def reject(self, key: str, where: str, problem: str) -> None:
        """Log (once per key and reason) why a record is ignored: a cache miss."""
        with self._lock:
            if (key, problem) in self._warned:
                return
            self._warned.add((key, problem))
        log.warning(
            "ignoring the action record %s (a cache miss: the node runs again): %s",
            where,
            problem,
        )

    # -- checkpoints -------------------------------------------------------------------------
    def put_checkpoint(self, store: Store, key: str, data: bytes) -> None:
        """Signature line + checkpoint header + ``data``; nothing without a key."""
        name = checkpoint_name(key)  # an invalid key is refused first
        if self.signer is None:
            self.warn_once(
                "unsigned checkpoints",
                "checkpoints are not saved to %s: without a key they would be not signed, and "
                "an unsigned checkpoint (pickled) is never loaded from a shared store; set %s "
                "to resume long nodes from their checkpoints",
                store.url,
                SIGNING_KEY_ENV,
            )
            return
        header = checkpoint_header(data)
        line = self.signer.checkpoint_line(key, header)
        store.write_entry(name, line, header, bytes(data))

    def get_checkpoint(self, store: Store, key: str) -> bytes | None:
        """The checkpoint's bytes if signed with our key and intact, else None (logged)."""
        name = checkpoint_name(key)
        url = store.entry_location(name)
        if self.signer is None:
            if store.entry_info(name) is not None:
                log.warning(
                    "ignoring the checkpoint %s: checkpoints are pickled, and one from a "
                    "shared store is loaded only when signed; set %s (the node starts from "
                    "the beginning)",
                    url,
                    SIGNING_KEY_ENV,
                )
            return None
        # its head first: an unsigned entry (however large) is refused after a few bytes
        head = store._read(name, lambda n: store.read_head(n, _CHECKPOINT_HEAD))
        if head is None:
            return None
        line, header, payload = split_checkpoint(head)
        problem = self.signer.check_checkpoint(key, line, header)
        if not problem:
            blob = store._read(name, store.read_entry)
            if blob is None:
                return None
            line, header, payload = split_checkpoint(blob)  # (it may have changed meanwhile)
            problem = self.signer.check_checkpoint(key, line, header)
        if problem:
            log.warning(
                "ignoring the checkpoint %s: %s (the node starts from the beginning)", url, problem
            )
            return None
        return checkpoint_payload(header, payload, url)

    def delete_checkpoint(self, store: Store, key: str) -> None:
        """Remove the checkpoint of ``key`` unless another signer wrote it (theirs is alive)."""
        name = checkpoint_name(key)
        try:
            line = store.read_head(name, SIGNATURE_LINE_SIZE)
        except FileNotFoundError:
            return
        if self._foreign(checkpoint_key_id(line)):
            return
        store.delete_entry(name)

    def warn_once(self, topic: str, message: str, *args: object) -> None:
        """Log ``message`` once per process and ``topic``."""
        with self._lock:
            if ("", topic) in self._warned:
                return
            self._warned.add(("", topic))
        log.warning(message, *args)


def _create(store: Store, name: str, data: bytes) -> bool:
    """Write ``name`` only if it is absent (exclusive create): True if this call wrote it.

    Two signers publishing the first record of a key at the same moment then never replace
    each other's: one creates the canonical name, the other finds it taken and writes its own
    copy. Stores without an exclusive create fall back to look-then-write.
    """
    try:
        return store.create_entry(name, data)
    except NotImplementedError:
        return False


def _read_record(store: Store, name: str) -> bytes | None:
    """The record ``name``, at most :data:`MAX_RECORD_BYTES` and one byte (one ranged GET);
    None if absent."""
    return store._read(name, lambda n: store.read_head(n, MAX_RECORD_BYTES + 1))
