"""The page's cookies, named for the door they are used at (issue 25, item 10).

Over https (the tunnel door: Cloudflare's edge speaks https to the browser) every cookie is a
`__Host-` cookie: Secure, Path=/, no Domain. A browser takes such a cookie only from this very
host over https, so a sibling subdomain (blog.example.com, run by anyone the owner lets serve
there) can neither set nor shadow it: it cannot sign the owner out or put its own words on
the page. A cookie without the prefix is never read there.

The laptop's door is plain http, where a Secure cookie (and so a `__Host-` one) cannot be
set: there the cookies keep their plain names. No other site can set cookies for 127.0.0.1
or localhost."""

from __future__ import annotations

from typing import Literal

from starlette.requests import HTTPConnection
from starlette.responses import Response

from webview.infra.doors import is_https

SESSION, PENDING, CHALLENGE, FLASH = "gw_session", "gw_pending", "gw_webauthn", "gw_flash"
PREFIX = "__Host-"
SameSite = Literal["lax", "strict", "none"]


def name(conn: HTTPConnection, base: str) -> str:
    """The cookie's name at this request's door."""
    return PREFIX + base if is_https(conn) else base


def get(conn: HTTPConnection, base: str) -> str:
    """The value this browser sent under the door's name ("" when none)."""
    return conn.cookies.get(name(conn, base), "")


def put(response: Response, conn: HTTPConnection, base: str, value: str, max_age: int,
        samesite: SameSite = "lax") -> None:
    response.set_cookie(name(conn, base), value, max_age=max_age, path="/", httponly=True, samesite=samesite,
                        secure=is_https(conn))


def drop(response: Response, conn: HTTPConnection, base: str, samesite: SameSite = "lax") -> None:
    """Ends the cookie (with the same attributes: a browser refuses a __Host- one without Secure)."""
    response.delete_cookie(name(conn, base), path="/", httponly=True, samesite=samesite, secure=is_https(conn))
