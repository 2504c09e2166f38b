"""Which host names and addresses are loopback (stdlib only: the ``ui`` command and the
request checks of ``_gates`` both ask)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback", "loopback_host"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_host(header: str) -> bool:
    """Whether a ``Host`` header names loopback: localhost, 127.0.0.0/8 or [::1], any port."""
    try:
        parts = urlsplit(f"//{header}")
        parts.port  # noqa: B018  (a port that is not a number: not a host of ours)
    except ValueError:
        return False
    name = parts.hostname or ""
    return name != "" and is_loopback(name)
