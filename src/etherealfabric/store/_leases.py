"""Leases in a shared store: drivers that share a store but not a home compute each key once.

Each home's journal has leases of its own, which keep the runs of one home from computing a
key twice. Teammates and CI machines with homes of their own meet only in the store, so the
lease lives there too: the entry ``leases/<kk>/<key>.<generation>`` holds
``{"owner", "host", "pid", "expires"}`` (``expires``: Unix time; the holder renews it, see
:meth:`StoreLeases.renew`). The holder of a key is the owner of its highest generation, until
that expires.

Taking a lease is an exclusive create (:meth:`Store.create_entry`: ``If-None-Match: *`` on S3,
a hard link on a folder), so of two drivers that find a key free, or its lease expired, only one
creates the next generation. A released lease's entry is deleted; an expired one stays until
the key is leased again (the next generation takes over from it). Entries are untrusted, as
anything in a shared store: one that does not parse (only its first 64 KiB are read), or
claims an expiry beyond two lease times from now, is ignored (it could only make others wait).

A lease whose holder is known to be gone (the run gives :class:`StoreLeases` a test: a process
of this host that is no longer running, as for the journal's leases) is taken over at once: a
run resumed after ``kill -9`` does not wait a lease time for its own dead predecessor.

Clocks: expiry compares this machine's clock with the holder's, so a clock that is off by more
than the lease time (60 s) can let two drivers run one key. That costs work, never
correctness: results are content-addressed and the second record says the same.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import StoreError
from ._base import Store, check_name
from ._json import parse_json

__all__ = ["LEASE_SECONDS", "StoreLeases", "lease_name"]

log = logging.getLogger("etherealfabric.store")

#: How long a store lease lasts unless renewed.
LEASE_SECONDS = 60.0
#: Generations read past the first missing one: a released lease leaves a gap below a live one.
_PROBE_PAST_GAP = 1
#: Generations of one key's lease read at most: released leases are deleted (a key's next lease
#: takes their number again), so only crashed drivers leave a few; more were planted (each is a
#: read, one GET on S3, on every lease and heartbeat)
_MAX_GENERATIONS = 256
#: A lease entry is a few hundred bytes; no more than this is read (a longer one is not a lease).
_MAX_LEASE_BYTES = 64 * 1024


def lease_name(key: str, generation: int) -> str:
    """The entry name of generation ``generation`` of the lease of ``key`` (validated)."""
    check_name(key, "cache key")
    return f"leases/{key[:2]}/{key}.{generation}"


class StoreLeases:
    """The store leases one run holds. Thread-safe; every method is best effort on errors."""

    def __init__(
        self,
        store: Store,
        owner: str,
        *,
        ttl: float = LEASE_SECONDS,
        holder: Mapping[str, Any] | None = None,
        abandoned: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        """``holder``: who takes the leases (``host``, ``pid``, and whatever ``abandoned``
        reads); ``abandoned``: whether a live lease's holder is known to be gone (a process of
        this host that died: its lease is taken over at once instead of when it expires)."""
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self.holder = dict(holder) if holder is not None else None
        self.abandoned = abandoned
        self._held: dict[str, int] = {}  # key -> the generation we created
        #: key -> who held its lease when it was last refused to us (for the wait's message)
        self.held_by: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._disabled = False

    # -- taking and giving back ------------------------------------------------------------------
    def acquire(self, key: str) -> bool:
        """Take the lease of ``key``; False while another driver holds it."""
        if self._disabled:
            return True
        with self._lock:
            if key in self._held:
                return True
        try:
            top, holder = self._current(key)
            if holder is not None and holder.get("owner") != self.owner:
                self.held_by[key] = holder
                return False
            generation = top + 1 if holder is None else top
            if holder is None and not self.store.create_entry(
                lease_name(key, generation), self._payload()
            ):
                return False  # another driver took it just now
        except NotImplementedError:
            self._disable(f"{self.store.url} cannot create entries exclusively")
            return True
        except _TooMany as exc:
            self._disable(str(exc))
            return True
        except (StoreError, OSError) as exc:
            log.warning("could not take the store lease of %s (%s); computing it anyway", key, exc)
            return True
        with self._lock:
            self._held[key] = generation
        return True

    def release(self, key: str) -> None:
        """Give the lease of ``key`` back (its record is in the store by now)."""
        with self._lock:
            generation = self._held.pop(key, None)
        if generation is None:
            return
        name = lease_name(key, generation)
        try:
            if (_parse(self._read(name)) or {}).get("owner") == self.owner:
                self.store.delete_entry(name)
        except (StoreError, OSError) as exc:
            log.debug("could not release the store lease %s: %s", name, exc)

    def release_all(self) -> None:
        """Give every lease back (the run ends)."""
        with self._lock:
            keys = list(self._held)
        for key in keys:
            self.release(key)

    def renew(self) -> int:
        """The heartbeat: push the expiry of every lease still ours; returns how many."""
        with self._lock:
            held = list(self._held.items())
        renewed = 0
        for key, generation in held:
            name = lease_name(key, generation)
            try:
                top, holder = self._current(key)
                if top != generation or (holder or {}).get("owner") != self.owner:
                    with self._lock:  # taken over after we failed to renew in time
                        self._held.pop(key, None)
                    continue
                self.store.write_entry(name, self._payload())
                renewed += 1
            except (StoreError, OSError, _TooMany) as exc:
                log.warning("could not renew the store lease %s: %s", name, exc)
        return renewed

    # -- reading ---------------------------------------------------------------------------------
    def _current(self, key: str) -> tuple[int, dict[str, Any] | None]:
        """``(highest generation present, its holder if the lease is live)``; (0, None): none."""
        top, entry, gap, generation = 0, None, 0, 1
        while gap <= _PROBE_PAST_GAP:
            if generation > _MAX_GENERATIONS:
                raise _TooMany(
                    f"the lease entries of key {key} in {self.store.url} go past "
                    f"{_MAX_GENERATIONS} generations (planted?)"
                )
            data = self._read(lease_name(key, generation))
            if data is None:
                gap += 1
            else:
                top, entry, gap = generation, _parse(data), 0
            generation += 1
        now = time.time()
        live = entry is not None and now < float(entry["expires"]) <= now + 2 * self.ttl
        if live and entry is not None and entry["owner"] != self.owner and self.abandoned:
            live = not self.abandoned(entry)
        return top, entry if live else None

    def _read(self, name: str) -> bytes | None:
        try:
            return self.store.read_head(name, _MAX_LEASE_BYTES)  # (a planted huge entry)
        except FileNotFoundError:
            return None

    def _payload(self) -> bytes:
        if self.holder is None:
            import socket  # here: only a run that leases in a shared store needs it

            self.holder = {"host": socket.gethostname(), "pid": os.getpid()}
        return json.dumps(
            {"owner": self.owner, **self.holder, "expires": time.time() + self.ttl}
        ).encode()

    def _disable(self, why: str) -> None:
        if not self._disabled:
            self._disabled = True
            log.warning(
                "%s: drivers with other homes that share this store may compute the same "
                "node at the same time (results stay correct)",
                why,
            )


def _parse(data: bytes | None) -> dict[str, Any] | None:
    """A lease entry's fields, or None for one that is not a lease (forged or damaged)."""
    if data is None:
        return None
    try:
        entry = parse_json(data)
        float(entry["expires"])
    except (ValueError, TypeError, KeyError, OverflowError):  # (an integer no float can hold)
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("owner"), str) else None


class _TooMany(Exception):
    """A key's lease entries go past :data:`_MAX_GENERATIONS`."""
