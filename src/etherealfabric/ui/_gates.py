"""The checks every request passes before the app answers it, each an ASGI wrapper.

In the order a request meets them (see :func:`guarded`):

- :class:`SiteGate`: served on loopback, a request whose ``Host`` is not a loopback name or
  address is ``421 Misdirected Request`` (a page of another site whose name was made to point
  at 127.0.0.1, DNS rebinding, must not read the runs); a cross-site request
  (``Sec-Fetch-Site: cross-site``) is 403 unless it opens a page (a GET navigation: a link from
  elsewhere still works), and so is any request other than GET or HEAD from another
  ``Origin``;
- :class:`TokenGate`: with a token, a request without it is 401;
- :class:`JournalGate`: a journal that is damaged, or is not a SQLite database at all, is 503
  on every route (but the page's static files), naming the file and what to do, instead of a
  traceback; damage met later by a query is the same 503 (the app's handler of
  :class:`DamagedJournalError`).

and every answer, refused or not, carries :data:`SECURITY_HEADERS` (:class:`SecureHeaders`):
a content security policy that runs the UI's own scripts only and lets no other site frame
the pages (clickjacking), no MIME sniffing, and no referrer (a ``?token=`` in the address
stays on this machine).
"""

from __future__ import annotations

import hmac
import os
import threading
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import DamagedJournalError
from ._hosts import loopback_host

__all__ = [
    "COOKIE",
    "SECURITY_HEADERS",
    "JournalGate",
    "SecureHeaders",
    "SiteGate",
    "TokenGate",
    "damaged",
    "guarded",
]

COOKIE = "etherealfabric_ui_token"
SQLITE_HEADER = b"SQLite format 3\x00"

#: Sent with every answer: the pages load their scripts, styles and data from this origin
#: only (the graph data travels in ``<script type="application/json">``, never executed), and
#: nothing may frame them.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _refuse(scope: Scope, text: str, status: int) -> Response:
    """``text`` as JSON (``{"error": text}``) to the API, as plain text to anything else."""
    if str(scope.get("path", "")).startswith("/api/"):
        return JSONResponse({"error": text}, status_code=status)
    return PlainTextResponse(text, status_code=status)


class SiteGate:
    """Refuse requests a browser makes for another site (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, loopback: bool) -> None:
        self.app, self.loopback = app, loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self._check(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> Response | None:
        headers = _headers(scope)
        host = headers.get("host")
        port = (scope.get("server") or ("", 0))[1]
        if self.loopback and host is not None and not loopback_host(host):
            return _refuse(
                scope,
                f"421 Misdirected Request: this UI listens on loopback and answers only requests "
                f"addressed to it (Host localhost, 127.0.0.1 or [::1]), not Host {host!r} (a "
                f"name made to point at this machine: DNS rebinding). Open "
                f"http://127.0.0.1:{port}/ instead, or serve the UI with --host (and --token) "
                "to reach it by another name.",
                421,
            )
        method = scope["method"]
        site, mode = headers.get("sec-fetch-site"), headers.get("sec-fetch-mode")
        if site == "cross-site" and not (mode == "navigate" and method in ("GET", "HEAD")):
            return _refuse(
                scope,
                "403: a cross-site request (from a page of another site) is refused; open the "
                "UI's pages directly (a link to one still opens it)",
                403,
            )
        origin = headers.get("origin")
        if method not in ("GET", "HEAD") and origin is not None:
            own = f"{scope.get('scheme', 'http')}://{host}" if host else None
            if origin != own:
                return _refuse(
                    scope,
                    f"403: a {method} request from another Origin ({origin!r}) is refused: the "
                    "UI answers only its own pages",
                    403,
                )
        return None


class TokenGate:
    """Let through only requests that carry the token.

    The token is accepted as ``Authorization: Bearer TOKEN``, as a cookie, or once as
    ``?token=TOKEN`` in a page's address: the page then sets the cookie (HttpOnly,
    SameSite=Strict) and redirects to the address without it, so the token does not stay in
    the browser's history. Anything else is 401.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    def _ok(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        bearer = headers.get("authorization", "")
        cookie = SimpleCookie(headers.get("cookie", ""))
        query = parse_qsl(scope.get("query_string", b"").decode())
        given = dict(query).get("token")
        if self._ok(given):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = quote(scope["path"]) + (f"?{rest}" if rest else "")
            response: Response = Response(status_code=303, headers={"location": location})
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            await response(scope, receive, send)
            return
        if self._ok(bearer[7:] if bearer.startswith("Bearer ") else None) or (
            COOKIE in cookie and self._ok(cookie[COOKIE].value)
        ):
            await self.app(scope, receive, send)
            return
        text = "a token is needed: open the address with ?token=TOKEN or send Authorization: Bearer"
        await Response(text, status_code=401, media_type="text/plain")(scope, receive, send)


class JournalGate:
    """503 on every route but ``/static`` while the journal file is damaged.

    The file is looked at again only when it changes (its size, time or inode): its first
    bytes must be SQLite's header, and its schema must read. Damage deeper in the file is
    found by the query that meets it (the same 503, see :func:`damaged`).
    """

    def __init__(self, app: ASGIApp, path: Path) -> None:
        self.app, self.path = app, path
        self._lock = threading.Lock()
        self._seen: tuple[tuple[int, int, int], str | None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not str(scope["path"]).startswith("/static/"):
            fault = await run_in_threadpool(self.fault)
            if fault is not None:
                await _refuse(scope, fault, 503)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def fault(self) -> str | None:
        """What is wrong with the journal file (None: nothing, or no journal yet)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return None  # none yet (the pages say so), or unreadable (each request says why)
        sign = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        with self._lock:
            if self._seen is not None and self._seen[0] == sign:
                return self._seen[1]
        found = _check_journal(self.path)
        with self._lock:
            self._seen = (sign, found)
        return found


def _check_journal(path: Path) -> str | None:
    from ..journal import browse

    try:
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except OSError:
        return None
    if head and head != SQLITE_HEADER:  # (an empty file is a journal being created)
        return _message(path, "it is not a SQLite database")
    try:
        journal = browse.open_reader(path)  # opening reads the schema: a damaged file says so
        if journal is not None:
            journal.close()
    except DamagedJournalError as exc:
        return _message(path, str(exc))
    except Exception:  # locked, being created...: each request says so itself
        return None
    return None


def _message(path: Path, why: str) -> str:
    # (no "503: " in the text: the status says it, and a page showing the text says it once)
    if str(path) in why:
        return f"the journal cannot be read: {why}"
    return (
        f"the journal {path} cannot be read: {why}: the file is damaged. Move it aside "
        "and a new one is created on the next run (its cache index and small outputs are "
        "lost with it)"
    )


def damaged(request: Request, exc: Exception) -> Response:
    """The answer when a query meets a damaged journal: 503, naming it."""
    return _refuse(request.scope, f"the journal cannot be read: {exc}", 503)


class SecureHeaders:
    """Add :data:`SECURITY_HEADERS` to every HTTP answer of ``app`` (those it sets stay)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                have = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in have]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured)


def guarded(app: ASGIApp, *, journal: Path, token: str | None, loopback: bool) -> ASGIApp:
    """``app`` behind every gate: site, then token, then journal; every answer secured."""
    inner = JournalGate(app, journal)
    gated = SiteGate(TokenGate(inner, token) if token else inner, loopback=loopback)
    return SecureHeaders(gated)
