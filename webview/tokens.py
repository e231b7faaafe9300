"""Read-only API tokens (issue 25, item 11): what a metrics scraper or a status widget gets
instead of the api-token file, which can do everything the command line can (make users,
reset passwords, stop servers). Made and revoked on Settings -> API tokens; a token is
shown once, only its SHA-256 is kept.

A read-only token is accepted at the laptop's door only (as the api-token is) and gives the
scope "status": /metrics, /api/status and /api/servers. Not a server's settings (its env
values), not the history, not a page, no change of anything."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.store import tokens as sql
from webview import auth
from webview.render import daemon_of, redirect, render

PREFIX = "gwr_"  # a read-only token, recognisable in a config file
CACHE_FOR = 5.0  # seconds a looked-up token is trusted without asking PostgreSQL again
MARK_EVERY = 60.0  # seconds between two writes of a token's "last used"
_known: dict[str, tuple[str | None, float]] = {}  # hash -> (its name or None: not a token, when looked up)
_marked: dict[str, float] = {}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def lookup(store: Any, token: str) -> str | None:
    """The name of the read-only token `token`, or None. Looked up at most every CACHE_FOR s."""
    if not token.startswith(PREFIX) or store is None:
        return None
    key, now = token_hash(token), time.monotonic()
    cached = _known.get(key)
    if cached is not None and now - cached[1] < CACHE_FOR:
        name = cached[0]
    else:
        row = await sql.find(store, key)
        name = str(row["name"]) if row else None
        if len(_known) > 10_000:
            _known.clear()
        _known[key] = (name, now)
    if name is not None and now - _marked.get(key, float("-inf")) > MARK_EVERY:
        _marked[key] = now
        await sql.used(store, key)
    return name


def _store(request: Request) -> Any:
    store = daemon_of(request).store
    assert store is not None
    return store


@auth.page
async def tokens_page(request: Request) -> Response:
    return await _page(request)


async def _page(request: Request, status: int = 200, made: dict[str, str] | None = None,
                error: str | None = None) -> Response:
    found = await sql.listed(_store(request))
    base = str(request.base_url).rstrip("/")
    return render(request, "settings_tokens.html", status=status, tokens=found, made=made, error=error,
                  section="tokens", metrics_url=f"{base}/metrics", target=request.url.netloc)


@auth.action
async def make(request: Request) -> Response:
    form = await request.form()
    name = " ".join(str(form.get("name", "")).split())[:60]
    if not name:
        return await _page(request, 422, error="Give the token a name: what will use it (like “prometheus”).")
    token = PREFIX + secrets.token_urlsafe(32)
    me = str(request.user.display_name)
    await sql.add(_store(request), token_hash(token), name, "status", me)
    from reconciler.events import EventKind
    from webview.signin import Audit

    Audit(request).event(EventKind.ACCOUNT_CHANGED, f"{me}: made the read-only API token “{name}”", user=me,
                         change="api token made")
    return await _page(request, made={"name": name, "token": token})


@auth.action
async def revoke(request: Request) -> Response:
    form = await request.form()
    key = str(form.get("id", ""))
    name = await sql.revoke(_store(request), key)
    _known.pop(key, None)
    if name is None:
        return redirect(request, "/settings/tokens", "No such token (it was revoked already).")
    from reconciler.events import EventKind
    from webview.signin import Audit

    me = str(request.user.display_name)
    Audit(request).event(EventKind.ACCOUNT_CHANGED, f"{me}: revoked the read-only API token “{name}”", user=me,
                         change="api token revoked")
    return redirect(request, "/settings/tokens", f"“{name}” no longer works.")


routes = [
    Route("/settings/tokens", tokens_page),
    Route("/settings/tokens", make, methods=["POST"]),
    Route("/settings/tokens/revoke", revoke, methods=["POST"]),
]
