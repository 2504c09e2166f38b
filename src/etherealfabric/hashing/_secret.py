"""Secret parameters in cache keys: an HMAC-SHA256 keyed digest, never an unkeyed hash.

A plain hash of a token stored in the journal would let anyone who reads the journal test
guesses offline. So a :class:`~etherealfabric.define._secret.Secret` enters a key only through
:meth:`SecretHasher.digest`, an HMAC-SHA256 (Python's :mod:`hmac`) keyed with:

- the team's signing key (``ETHEREALFABRIC_SIGNING_KEY``) when the run uses a shared store, so
  teammates compute the same keys and share hits;
- otherwise the home's own key, ``<home>/secret.key``: 32 random bytes created on first use
  with mode 0600 (a shared store without a signing key uses it too, with a warning: such nodes
  are then not shared).

The key reaches the hashing code as an argument: the run (``run/_session.py``) and the dry run
(``observe/_dryrun.py``) build a :class:`SecretHasher` from their settings and hand it to
``plan._keys.node_key``, which replaces each Secret by its :class:`SecretDigest` before hashing
the parameter. A Secret that reaches the value encoder any other way (inside an object the
keys code does not look into) is refused: the fallback would pickle and hash the plain value.

Encodings (see :mod:`etherealfabric.hashing._encoder`)::

    secret <hex HMAC-SHA256 of "etherealfabric secret v1" \\0 kind \\0 value>
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..config import SIGNING_KEY_ENV
from ..define._secret import Secret
from ..errors import ConfigError, HashingError
from ._encoder import Encoder, register_builtin

__all__ = ["SECRET_KEY_FILE", "SecretDigest", "SecretHasher", "home_secret_key", "secret_hasher"]

SECRET_KEY_FILE = "secret.key"
KEY_BYTES = 32
_DOMAIN = b"etherealfabric secret v1"

log = logging.getLogger("etherealfabric")


class SecretDigest(NamedTuple):
    """A secret value, already replaced by its keyed digest (hex HMAC-SHA256)."""

    mac: str


class SecretHasher:
    """Keyed digests of secrets; the key is loaded (or created) on the first digest only."""

    def __init__(self, key: bytes | Callable[[], bytes], *, source: str = "a given key") -> None:
        self._key = key if isinstance(key, bytes) else None
        self._load = None if isinstance(key, bytes) else key
        self.source = source

    def __repr__(self) -> str:
        return f"<SecretHasher keyed with {self.source}>"

    def digest(self, secret: Secret) -> SecretDigest:
        """The keyed digest of ``secret``'s value."""
        if self._key is None:
            assert self._load is not None
            self._key = self._load()
        value = secret.reveal()
        kind, data = (
            (b"str", value.encode("utf-8", "surrogatepass"))
            if isinstance(value, str)
            else (b"bytes", bytes(value))
        )
        import hashlib  # (and hmac) here: only a workflow with a secret parameter needs them
        import hmac

        mac = hmac.new(self._key, b"\0".join((_DOMAIN, kind, data)), hashlib.sha256)
        return SecretDigest(mac.hexdigest())


def secret_hasher(
    home: Path,
    *,
    shared_store: bool,
    read_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> SecretHasher:
    """The hasher of a run with this home and store (see the module docstring).

    ``read_only`` (a dry run) never creates the home's key: without one, a random key that is
    forgotten afterwards is used (no cached result can match it anyway).
    """
    env = os.environ if env is None else env
    team = env.get(SIGNING_KEY_ENV, "").strip()
    if shared_store and team:
        return SecretHasher(team.encode(), source=SIGNING_KEY_ENV)

    def load() -> bytes:
        if shared_store:
            log.warning(
                "secret parameters are keyed with this home's own key because %s is not set: "
                "nodes with secrets will not share cached results through the shared store",
                SIGNING_KEY_ENV,
            )
        return home_secret_key(home, create=not read_only)

    return SecretHasher(load, source=str(home / SECRET_KEY_FILE))


def home_secret_key(home: Path, *, create: bool = True) -> bytes:
    """The home's secret key (``<home>/secret.key``), created with mode 0600 when missing.

    Two processes creating it at once agree: each writes a private temp file and links it to
    the final name, which only the first link gets. With ``create=False`` a missing key is a
    fresh random key that is not saved.
    """
    path = home / SECRET_KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            return os.urandom(KEY_BYTES)  # what secrets.token_bytes gives
        key = _create(path)
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{path} is damaged ({len(key)} bytes instead of {KEY_BYTES}); delete it to make "
            "a new one (every cached result of a node with a secret parameter is then a miss)",
            setting=str(path),
        )
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users; run `chmod 600 %s`", path, path)
    return key


def _create(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(os.urandom(KEY_BYTES))
            fp.flush()
            os.fsync(fp.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(temp, path)  # never replaces an existing key
    finally:
        temp.unlink(missing_ok=True)
    return path.read_bytes()


def _enc_secret_digest(value: SecretDigest, encoder: Encoder) -> None:
    encoder.tag("secret")
    encoder.text(value.mac)


def _refuse_secret(value: Any, encoder: Encoder) -> None:
    raise HashingError(
        "a Secret can be hashed only with a key: pass it as a node parameter (directly, or "
        "inside lists, tuples, sets and dict values), not inside another object"
    )


register_builtin({SecretDigest: _enc_secret_digest, Secret: _refuse_secret})
