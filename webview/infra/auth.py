"""Who is asking, in one place: starlette's AuthenticationBackend turns a request into
(AuthCredentials(scopes), user), and routes say the scope they need with `@requires`.

Credentials, by door (webview.infra.doors says which listener a request came in by):
- local door: the local API token (`Authorization: Bearer`, the CLI) -> scopes api, read,
  status; a read-only token made on the page (webview.infra.tokens) -> status only; a session
  cookie -> page, read, status (+ "strong" when a second factor was given); a valid
  Cloudflare Access token, when Access is configured -> page, read, status, strong.
- tunnel door: never an API token (neither kind). With Access configured every request needs a valid
  Access token (403 without); else a session made at the tunnel door with a second factor.
Every request at the local door from a loopback address also gets the scope "local"
(first-run setup needs it); the tunnel door never does.

Every POST is checked by webview.infra.csrf.CsrfGuard (with the form token `csrf_for` makes here)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast
from urllib.parse import quote

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    UnauthenticatedUser,
)
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from webview.infra import cookies, doors, tokens
from webview.infra.access import AccessDenied
from webview.infra.page import Page

PAGE, API, READ, STRONG, LOCAL = "page", "api", "read", "strong", "local"
STATUS = "status"  # /metrics and the status API: what a read-only token may read


class GatewayUser(BaseUser):
    """A signed-in person (session or Access) or the command line (API token)."""

    def __init__(self, name: str, via: str, key: str = "", second_factor: bool = False) -> None:
        self.name, self.via, self.key, self.second_factor = name, via, key, second_factor

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name


def _bearer(conn: HTTPConnection) -> str:
    scheme, _, given = conn.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


class GatewayAuth(AuthenticationBackend):
    """The one gate: API token, session cookie, Cloudflare Access token; what it looked up is
    remembered by the page (its `sessions` and `read_tokens`)."""

    def __init__(self, page: Page) -> None:
        self.page = page

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        page, gateway = self.page, self.page.gateway
        door = doors.door_of(conn.scope)
        forwarded = any(h in conn.headers for h in ("cf-connecting-ip", "cf-ray", "x-forwarded-for"))  # via a proxy
        base = [LOCAL] if door == doors.LOCAL and doors.from_loopback(conn) and not forwarded else []
        bearer = _bearer(conn)
        token = gateway.token
        if door == doors.LOCAL and bearer and token and hmac.compare_digest(bearer, token):
            return AuthCredentials([API, READ, STATUS, *base]), GatewayUser("cli", "token")
        if door == doors.LOCAL and bearer.startswith(tokens.PREFIX):  # a read-only token
            try:
                name = await page.read_tokens.lookup(gateway.store, bearer)
            except Exception as exc:  # noqa: BLE001 - e.g. PoolTimeout: say so
                raise DatabaseDown(str(exc)) from None
            if name is not None:
                return AuthCredentials([STATUS]), GatewayUser(f"token:{name}", "read-token")
        access = page.access
        assertion = conn.headers.get("cf-access-jwt-assertion", "")
        if access is not None and (assertion or door == doors.TUNNEL) and not conn.url.path.startswith("/static/"):
            try:
                who = await access.identity(assertion or "-")
            except AccessDenied as exc:
                raise AuthenticationError(f"Cloudflare Access: {exc}") from None
            return AuthCredentials([PAGE, READ, STATUS, STRONG, *base]), GatewayUser(who, "access", f"access:{who}",
                                                                                      True)
        cookie = cookies.get(conn, cookies.SESSION)  # at the tunnel door only its __Host- cookie
        if cookie and gateway.store is not None:
            try:
                session = await page.sessions.find(gateway.store, cookie)
            except Exception as exc:  # noqa: BLE001 - e.g. PoolTimeout: say so
                raise DatabaseDown(str(exc)) from None
            if session is not None and (door == doors.LOCAL or (session.door == doors.TUNNEL and session.second_factor)):
                scopes = [PAGE, READ, STATUS, *base] + ([STRONG] if session.second_factor else [])
                return AuthCredentials(scopes), GatewayUser(session.user, "session", session.token_hash,
                                                            session.second_factor)
        return AuthCredentials(base), UnauthenticatedUser()


class DatabaseDown(Exception):
    pass


def csrf_for(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:40]


class Authenticate:
    """Runs GatewayAuth for every http request: sets scope["auth"], scope["user"] and, for the
    templates, state.user (the name or None) and state.csrf (this visitor's form token)."""

    def __init__(self, app: ASGIApp, page: Page) -> None:
        self.app, self.backend, self.page = app, GatewayAuth(page), page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        try:
            creds, user = await self.backend.authenticate(conn) or (AuthCredentials(), UnauthenticatedUser())
        except AuthenticationError as exc:
            await PlainTextResponse(f"{exc}\n", status_code=403)(scope, receive, send)
            return
        except DatabaseDown as exc:
            message = f"the database is unreachable, so your sign-in cannot be checked: {exc}"
            await PlainTextResponse(message + "\n", status_code=503)(scope, receive, send)
            return
        scope["auth"], scope["user"] = creds, user
        if creds.scopes:  # a person (or their phone, or `gateway status`) looks: figures at full rate
            self.page.gateway.attention.looked()
        state = scope.setdefault("state", {})
        state["user"] = user.display_name if PAGE in creds.scopes else None
        state["csrf"] = csrf_for(self.page.secret, user.key) if isinstance(user, GatewayUser) and \
            PAGE in creds.scopes else ""
        await self.app(scope, receive, send)


# --- what a route requires: declared on every route -----------------------------------------
Endpoint = TypeVar("Endpoint", bound=Callable[..., Awaitable[object]])
_GUARD = "_requires"  # the attribute a guarded endpoint carries its Guard in


def has(request: HTTPConnection, *scopes: str) -> bool:
    return all(s in request.auth.scopes for s in scopes)


def signed_in(request: HTTPConnection) -> GatewayUser:
    """Who a guarded route acts for: the person (or the token) its Guard let in."""
    user = request.user
    assert isinstance(user, GatewayUser), user
    return user


def user_name(request: HTTPConnection) -> str:
    """The signed-in person's name (or the token's): what a guarded route acts as."""
    return signed_in(request).name


@dataclass(frozen=True)
class Guard:
    """What a route requires, as starlette's `@requires` declares it, with the page's answers to
    whoever lacks it: a GET page goes to the sign-in page and back (`sign_in`, a relative
    `next`), a route with `elsewhere` sends them there, anything else gets `status_code` and
    `message`. Every route declares one (`anyone` when nothing is required): `create_app`
    refuses a route without (see `undeclared`). The scopes come from `GatewayAuth`."""

    scopes: tuple[str, ...]
    message: str = "sign in first"
    status_code: int = 401
    sign_in: bool = False
    elsewhere: str | None = None

    def __call__(self, endpoint: Endpoint) -> Endpoint:
        if not self.scopes:  # nothing to check: the endpoint itself, marked (it may be an ASGI app)
            setattr(endpoint, _GUARD, self)
            return endpoint
        assert "request" in inspect.signature(endpoint).parameters, endpoint

        @functools.wraps(endpoint)
        async def guarded(request: Request) -> object:
            if not has(request, *self.scopes):
                if self.elsewhere is not None:
                    return RedirectResponse(self.elsewhere, status_code=303)
                if self.sign_in and request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
                raise HTTPException(self.status_code, self.message)
            return await endpoint(request)

        setattr(guarded, _GUARD, self)
        return cast(Endpoint, guarded)


def requires(*scopes: str, message: str = "sign in first", status_code: int = 401) -> Guard:
    return Guard(scopes, message, status_code)


def guard_of(endpoint: object) -> Guard | None:
    found = getattr(endpoint, _GUARD, None)
    return found if isinstance(found, Guard) else None


def undeclared(routes: Sequence[BaseRoute]) -> list[str]:
    """The paths of `routes` (and of those mounted under them) that declare no Guard."""
    missing = []
    for route in routes:
        if isinstance(route, Mount) and route.routes:
            missing += [f"{route.path}{path}" for path in undeclared(route.routes)]
        elif isinstance(route, Mount):
            missing += [] if guard_of(route.app) else [route.path]
        elif isinstance(route, Route):
            missing += [] if guard_of(route.endpoint) else [route.path]
        else:
            missing.append(str(getattr(route, "path", route)))  # a websocket or a host: not used here yet
    return missing


page = Guard((PAGE,), sign_in=True)  # a page a person reads: sign in, then back here
action = Guard((PAGE,))  # anything else a signed-in person sends or fetches (a form, a script's request): 401
api = requires(API, message="missing or wrong API token")  # the command line on this machine
read = requires(READ, message="send the API token or sign in")  # either
status = requires(STATUS, message="missing or wrong API token")  # any API token (a read-only one too) or a session
local = Guard((LOCAL,), elsewhere="/login")  # this laptop's own browser (first-run setup); anyone else: sign in
anyone = Guard(())  # the sign-in forms, the icon, the static files: nobody needs to be signed in
