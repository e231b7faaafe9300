"""Every POST (PUT, PATCH, DELETE) is checked before any route runs: same-site always, and the
page's CSRF token whenever the request is signed in by cookie or Access (a bearer token is
not sent by browsers by itself). The token is the one webview.infra.auth.Authenticate made for
this visitor (`auth.csrf_for`)."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webview.infra.auth import GatewayUser
from webview.infra.security import same_site

FORM_LIMIT = 512 * 1024 * 1024  # bytes of a POST body read before the CSRF check (a backup upload)


class CsrfGuard:
    """Every POST (PUT, PATCH, DELETE): from our own pages, and with the form's CSRF token when
    it is signed in by cookie or Access. The body is read once and handed on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        user = scope.get("user")
        if isinstance(user, GatewayUser) and user.via in ("token", "read-token"):  # a bearer token: never sent by a browser itself
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        expected = scope.get("state", {}).get("csrf", "")
        if not expected and scope["path"].startswith("/api/"):  # not signed in: the API answers 401
            await self.app(scope, receive, send)
            return
        if not same_site(request.headers):
            await _refuse(scope, receive, send, 403, "this request came from another site")
            return
        if not expected:  # not signed in: sign-in and setup forms; same-site is the check
            await self.app(scope, receive, send)
            return
        given = request.headers.get("x-csrf-token", "")
        if not given:
            try:
                body, receive = await _buffer(receive)
            except TooLarge:
                await _refuse(scope, receive, send, 413, "this upload is too large")
                return
            given = await _form_token(scope, body)
        if not given or not hmac.compare_digest(given, expected):
            await _refuse(scope, receive, send, 403,
                          "the form expired or did not come from this page: reload and try again")
            return
        await self.app(scope, receive, send)


class TooLarge(Exception):
    pass


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > FORM_LIMIT:
            raise TooLarge
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _form_token(scope: Scope, body: bytes) -> str:
    kind = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
    if kind.startswith("application/x-www-form-urlencoded"):
        return (parse_qs(body.decode("utf-8", "replace")).get("csrf") or [""])[0]
    if kind.startswith("multipart/form-data"):
        async def once() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(scope, once).form()
        try:
            return str(form.get("csrf", ""))
        finally:
            await form.close()
    return ""


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    request = Request(scope, receive)
    from webview.infra.render import render  # the error page, in the page's own look

    if scope["path"].startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        from starlette.responses import JSONResponse

        response: Response = JSONResponse({"error": message}, status_code=status)
    else:
        response = render(request, "error.html", status=status, code=status, message=message)
    await response(scope, receive, send)
