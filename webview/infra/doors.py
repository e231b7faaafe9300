"""The two listeners the page answers on, which cannot be mistaken for each other.

- the local door: the address in `listen` (127.0.0.1:8765). It answers only a Host that is an
  IP address, `localhost`, or a name the owner configured (GATEWAY_LOCAL_NAMES, comma
  separated, or `[web] local_names`), so a web page elsewhere cannot reach it by DNS
  rebinding. First-run setup is offered here, to a loopback peer only.
- the tunnel door: its own loopback port (Settings.tunnel_host_port), the one cloudflared's
  ingress rule for `[web] hostname` points at. Everything arriving here came from the
  internet, however it looks (cloudflared connects from 127.0.0.1): the client address is
  Cf-Connecting-Ip, setup is never offered, the API token is not accepted, and a sign-in
  needs a second factor (or Cloudflare Access).

Each uvicorn server wraps the one app in `Door(app, LOCAL | TUNNEL)`, which puts the door
into the request's scope; nothing a client sends can change it.

At the tunnel door a request that reached Cloudflare by plain http (X-Forwarded-Proto: http)
gets a 308 to the same address over https and nothing else (`HttpsOnly`), and every answer
carries Strict-Transport-Security (webview.infra.security), so a browser that saw the page once
never sends it anything over plain http again."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from reconciler.core.spec import WebSettings

LOCAL, TUNNEL = "local", "tunnel"
KEY = "gateway.door"
LOCAL_NAMES = {"localhost"}


class Door:
    """The app as served at one door."""

    def __init__(self, app: ASGIApp, door: str) -> None:
        assert door in (LOCAL, TUNNEL)
        self.app, self.door = app, door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, KEY: self.door}
        await self.app(scope, receive, send)


def door_of(scope: Scope) -> str:
    return str(scope.get(KEY, LOCAL))


def is_tunnel(conn: HTTPConnection) -> bool:
    return door_of(conn.scope) == TUNNEL


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_loopback(conn: HTTPConnection) -> bool:
    """The peer is on this machine (meaningful at the local door only)."""
    return _is_loopback(conn.client.host if conn.client else "")


def client_ip(conn: HTTPConnection) -> str:
    """The browser's address: at the tunnel door Cloudflare's Cf-Connecting-Ip (cloudflared
    is the peer), at the local door the peer itself, never a header."""
    peer = conn.client.host if conn.client else "?"
    if is_tunnel(conn):
        return (conn.headers.get("cf-connecting-ip") or "").strip() or f"tunnel:{peer}"
    return peer


def is_https(conn: HTTPConnection) -> bool:
    """The browser talks https: the tunnel's edge always does (cloudflared says so in
    X-Forwarded-Proto); the local door is plain http."""
    if conn.url.scheme == "https":
        return True
    return is_tunnel(conn) and conn.headers.get("x-forwarded-proto", "https").lower() == "https"


def configured_names(web: WebSettings | None = None) -> set[str]:
    raw = os.environ.get("GATEWAY_LOCAL_NAMES", "")
    names = {n.strip().lower() for n in raw.split(",") if n.strip()}
    names |= {str(n).lower() for n in (web.local_names if web else [])}
    return names


def host_allowed(host_header: str, names: set[str]) -> bool:
    """A Host the local door answers: an IP address (a rebinding attack needs a name), localhost,
    or a configured name; with or without a port."""
    host = host_header.strip().lower()
    if host.startswith("["):
        literal, _, _ = host[1:].partition("]")
        return _is_ip(literal)
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if _is_ip(name):
        return True
    name = name.rstrip(".")
    return name in LOCAL_NAMES or name.endswith(".localhost") or name in names


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class HttpsOnly:
    """At the tunnel door: a request the browser sent by plain http gets a 308 (the method and
    the body are kept: a form sent again goes to https) to the page's https address, before
    any sign-in, form or page sees it. `hostname()`: the page's configured public name (else the
    request's Host, which Cloudflare's edge sets to the routed name)."""

    def __init__(self, app: ASGIApp, hostname: Callable[[], str | None]) -> None:
        self.app, self.hostname = app, hostname

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and door_of(scope) == TUNNEL and not is_https(HTTPConnection(scope)):
            headers = dict(scope["headers"])
            host = self.hostname() or headers.get(b"host", b"").decode("latin-1")
            path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            query = scope.get("query_string", b"").decode("latin-1")
            location = f"https://{host}{path}" + (f"?{query}" if query else "")
            body = f"This page is served over https only: {location}\n"
            await PlainTextResponse(body, status_code=308, headers={"location": location})(scope, receive, send)
            return
        await self.app(scope, receive, send)


class HostGuard:
    """At the local door: a request whose Host is not ours gets 421 and nothing else."""

    def __init__(self, app: ASGIApp, names: Callable[[], set[str]]) -> None:
        self.app, self.names = app, names  # names: a callable, so settings changes apply live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and door_of(scope) == LOCAL:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.names()):
                body = (f"This address ({host or 'no Host'}) is not this gateway's. Open it as"
                        " http://127.0.0.1 or http://localhost, or add the name to GATEWAY_LOCAL_NAMES.\n")
                await PlainTextResponse(body, status_code=421)(scope, receive, send)
                return
        await self.app(scope, receive, send)
