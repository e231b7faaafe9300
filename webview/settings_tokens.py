"""Settings -> API tokens: make a read-only API token (shown once) and revoke one. What a
read-only token may do, and how it is looked up: webview.infra.tokens."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.core.events import EventKind
from reconciler.store import Store
from reconciler.store import tokens as sql
from webview.infra import auth
from webview.infra.page import gateway_of, page_of
from webview.infra.render import redirect, render
from webview.infra.tokens import PREFIX, token_hash
from webview.signin import Audit


def _store(request: Request) -> Store:
    store = gateway_of(request).store
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
    me = auth.user_name(request)
    await sql.add(_store(request), token_hash(token), name, "status", me)
    Audit(request).event(EventKind.ACCOUNT_CHANGED, f"{me}: made the read-only API token “{name}”", user=me,
                         change="api token made")
    return await _page(request, made={"name": name, "token": token})


@auth.action
async def revoke(request: Request) -> Response:
    form = await request.form()
    key = str(form.get("id", ""))
    name = await sql.revoke(_store(request), key)
    page_of(request).read_tokens.forget(key)
    if name is None:
        return redirect(request, "/settings/tokens", "No such token (it was revoked already).")
    me = auth.user_name(request)
    Audit(request).event(EventKind.ACCOUNT_CHANGED, f"{me}: revoked the read-only API token “{name}”", user=me,
                         change="api token revoked")
    return redirect(request, "/settings/tokens", f"“{name}” no longer works.")


routes = [
    Route("/settings/tokens", tokens_page),
    Route("/settings/tokens", make, methods=["POST"]),
    Route("/settings/tokens/revoke", revoke, methods=["POST"]),
]
