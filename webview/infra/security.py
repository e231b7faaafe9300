"""The page's protections that are not "who is asking" (that is webview.infra.auth): security
headers, the CSRF key file, whether a request came from our own pages (`same_site`, which
webview.infra.csrf.CsrfGuard asks of every POST), rate limits, and signed cookie values."""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler.platform.fsutil import write_secret
from webview.infra.doors import TUNNEL, door_of
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


HSTS = (b"strict-transport-security", b"max-age=31536000")  # a year; not includeSubDomains: the owner's zone
# may hold names that are not ours


NO_STORE = (b"cache-control", b"no-store")


class SecurityHeaders:
    """Adds the headers above to every response (pure ASGI: streams stay streams); at the
    tunnel door also Strict-Transport-Security (the browser then never uses plain http there).
    Every answer but a static file is `Cache-Control: no-store` unless it says otherwise (the
    backup download, env values, logs, /metrics: nothing a shared computer's cache or a proxy
    should keep); the overview's JSON says `private, no-cache` itself, to be asked with its ETag."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        extra = [*HEADERS, HSTS] if door_of(scope) == TUNNEL else HEADERS
        if not scope["path"].startswith("/static/"):
            extra = [*extra, NO_STORE]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in extra if h[0] not in have]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def read_or_create_secret(data_dir: Path) -> bytes:
    """The key CSRF tokens are derived with: a file only this user can read, so tokens
    outlive a gateway restart."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    key = secrets.token_bytes(32)
    write_secret(path, key.hex() + "\n")
    return key


def same_site(headers: Headers) -> bool:
    """Sent by our own pages: Sec-Fetch-Site when the browser sends it, else an Origin (or
    Referer) naming this host. A request with neither is refused."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = headers.get("origin") or headers.get("referer")
    return bool(origin) and urlsplit(origin).netloc == headers.get("host", "")


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


# --- a password given, the second step pending ----------------------------------------------
PENDING_TTL = 300  # seconds to give the second step


def sign(secret: bytes, payload: dict[str, object]) -> str:
    """`payload` as a cookie value only this gateway can have made (HMAC-SHA256)."""
    import base64
    import hashlib
    import hmac
    import json

    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
    mac = hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{mac}"


def unsign(secret: bytes, value: str) -> dict[str, object] | None:
    """The payload of a value `sign` made and that has not expired (its "exp"), else None."""
    import base64
    import hashlib
    import hmac
    import json

    body, _, mac = value.rpartition(".")
    if not body or not hmac.compare_digest(mac, hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:32]):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except ValueError:
        return None
    if not isinstance(payload, dict) or float(payload.get("exp", 0)) < time.time():
        return None
    return payload
