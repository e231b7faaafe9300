"""Who is asking, and may they: session cookies, CSRF tokens, login rate limits, security headers.

Every POST goes through `guard_post`: a valid session (401 without), a same-site request and
the page's CSRF token (403 without). GETs change nothing."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webview import users

if TYPE_CHECKING:
    from reconciler.daemon import Daemon

COOKIE = "gw_session"
SECRET_FILE = "web-secret"
HEADERS = [
    (b"content-security-policy", (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                  b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self';"
                                  b" object-src 'none'")),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the headers above to every response (pure ASGI: streams stay streams)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in HEADERS if h[0] not in have]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def read_or_create_secret(data_dir: Path) -> bytes:
    """The key CSRF tokens are derived with: a file only this user can read, so tokens
    outlive a gateway restart."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key


def _daemon(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


def _from_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_ip(request: Request) -> str:
    """The browser's address. Behind cloudflared (a local process) every request comes
    from 127.0.0.1, so a loopback peer's Cf-Connecting-Ip is believed; nobody else's."""
    peer = request.client.host if request.client else "?"
    forwarded = request.headers.get("cf-connecting-ip")
    return forwarded.strip() if forwarded and _from_loopback(request) else peer


def is_https(request: Request) -> bool:
    if request.url.scheme == "https":
        return True
    return _from_loopback(request) and request.headers.get("x-forwarded-proto", "").lower() == "https"


async def current_user(request: Request) -> str | None:
    """The signed-in user (cached on the request), or None."""
    if "user" in request.state._state:
        return request.state.user  # type: ignore[no-any-return]
    user: str | None = None
    key = ""
    if request.app.state.access is not None:
        user = request.scope.get("state", {}).get("access_user")  # AccessGuard checked the token
        key = f"access:{user}" if user else ""
    if user is None:
        token = request.cookies.get(COOKIE)
        store = _daemon(request).store
        if token and store is not None:
            try:
                session = await users.find_session(store, token)
            except Exception as exc:  # noqa: BLE001 - e.g. PoolTimeout, OperationalError: say so
                raise HTTPException(503, f"the database is unreachable, so your sign-in cannot be checked: {exc}") from None
            if session is not None:
                user, key = session.user, session.token_hash
    request.state.user = user
    request.state.csrf = _csrf_for(request, key) if user else ""
    return user


def _csrf_for(request: Request, key: str) -> str:
    secret: bytes = request.app.state.secret
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:40]


def same_site(request: Request) -> bool:
    """The request was sent by our own pages: Sec-Fetch-Site when the browser sends it,
    else an Origin (or Referer) naming this host. A request with neither is refused."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    from urllib.parse import urlsplit

    return urlsplit(origin).netloc == request.headers.get("host", "")


async def guard_post(request: Request) -> tuple[str, FormData]:
    """(user, form) of an authorised POST, else HTTPException 401 / 403."""
    user = await current_user(request)
    if user is None:
        raise HTTPException(401, "sign in first")
    if not same_site(request):
        raise HTTPException(403, "this request came from another site")
    form = await request.form()
    given = str(form.get("csrf", "")) or request.headers.get("x-csrf-token", "")
    if not given or not hmac.compare_digest(given, request.state.csrf):
        raise HTTPException(403, "the form expired or did not come from this page: reload and try again")
    return user, form


class RateLimit:
    """At most `limit` failures per key in `window` seconds (a sliding window in memory)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self.hits: dict[str, deque[float]] = {}

    def _live(self, key: str) -> deque[float]:
        hits = self.hits.setdefault(key, deque())
        cutoff = self.clock() - self.window
        while hits and hits[0] < cutoff:
            hits.popleft()
        if not hits:
            del self.hits[key]
            return deque()
        return hits

    def retry_after(self, key: str) -> float:
        """0 when `key` may try now, else the seconds until it may."""
        hits = self._live(key)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - self.clock())

    def fail(self, key: str) -> None:
        self._live(key)
        self.hits.setdefault(key, deque()).append(self.clock())
        if len(self.hits) > 10_000:  # bound memory under a spray of addresses
            for stale in list(self.hits)[:1000]:
                del self.hits[stale]

    def clear(self, key: str) -> None:
        self.hits.pop(key, None)
