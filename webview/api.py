"""The local JSON API the command line uses: status, control, events.

Every request carries `Authorization: Bearer <token>`, the token being a file in the data
folder only the user can read; it is accepted at the local door only (webview.infra.auth)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from webview.control import ControlError
from webview.control import control as shared_control
from webview.infra import auth, users
from webview.infra.doors import is_tunnel
from webview.infra.page import gateway_of, page_of
from webview.infra.views import server_view, status_view


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BadBody(Exception):
    pass


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadBody("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object")
    return body


@auth.status
async def status(request: Request) -> JSONResponse:
    return JSONResponse(status_view(gateway_of(request)))


@auth.api
async def control(request: Request) -> JSONResponse:
    daemon = gateway_of(request)
    try:
        body = await json_body(request)
    except BadBody as exc:
        return _error(400, str(exc))
    verb = body.get("verb")
    try:
        names = await shared_control(
            daemon, str(verb), body.get("names") or [], body.get("group"), bool(body.get("all")),
            actor=f"operator:{body.get('actor') or 'cli'}", wait=float(body.get("wait", 0) or 0),
            remote=is_tunnel(request))
    except ControlError as exc:
        return _error(exc.status, str(exc))
    return JSONResponse({"verb": verb, "servers": [server_view(daemon, n) for n in names]})


@auth.api
async def events(request: Request) -> JSONResponse:
    daemon = gateway_of(request)
    q = request.query_params
    since = None
    if q.get("since"):
        try:
            since = datetime.fromisoformat(q["since"])
        except ValueError:
            return _error(400, f"since: {q['since']!r} is not an ISO time like 2026-11-24T10:00:00+00:00")
    try:
        limit = max(1, min(int(q.get("limit", "200")), 10_000))
    except ValueError:
        return _error(400, "limit must be a number")
    await daemon.sink.flush(2.0)
    assert daemon.store is not None
    try:
        rows = await daemon.store.list_events(server=q.get("server"), since=since, kind=q.get("kind"), limit=limit)
    except Exception as exc:  # noqa: BLE001 - the database is down: say so
        return _error(503, f"the database is unreachable: {exc}")
    return JSONResponse({"events": rows})


@auth.api
async def add_user(request: Request) -> JSONResponse:
    """`gateway user add`: only with the local API token (a file only this user can read)."""
    daemon = gateway_of(request)
    try:
        body = await json_body(request)
    except BadBody as exc:
        return _error(400, str(exc))
    assert daemon.store is not None
    try:
        created = await users.set_user(daemon.store, str(body.get("name", "")), str(body.get("password", "")),
                                       sessions=page_of(request).sessions)
    except users.UserError as exc:
        return _error(400, str(exc))
    return JSONResponse({"name": body["name"], "created": created})


def none_match(header: str, etag: str) -> bool:
    """If-None-Match names this ETag (weak comparison, RFC 9110 13.1.2) or is `*`."""
    if header.strip() == "*":
        return True
    return etag.removeprefix("W/") in {t.strip().removeprefix("W/") for t in header.split(",")}


@auth.status
async def servers(request: Request) -> Response:
    """Everything the overview shows (any API token or a signed-in session); 304 when the asker's
    If-None-Match is still current."""
    page = page_of(request)
    answer = page.servers
    body, etag = answer.current(page.gateway)
    headers = {"etag": etag, "cache-control": "private, no-cache", "vary": "accept-encoding"}  # ask each time
    if none_match(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        body, headers["content-encoding"] = answer.gzipped(), "gzip"
    return Response(body, media_type="application/json", headers=headers)


@auth.read
async def server(request: Request) -> JSONResponse:
    """Everything the detail page shows, less the log (token or a signed-in session)."""
    daemon = gateway_of(request)
    name = request.path_params["name"]
    result = daemon.reconciler.result
    spec = result.specs.get(name) if result else None
    if spec is None and name not in daemon.rt.states:
        return _error(404, f"no server named {name!r}")
    assert daemon.store is not None
    try:
        recent = await daemon.store.list_events(server=name, limit=50)
    except Exception as exc:  # noqa: BLE001 - the database is down: say so
        return _error(503, f"the database is unreachable: {exc}")
    return JSONResponse({**server_view(daemon, name),
                         "spec": spec.model_dump(mode="json") if spec else None,
                         "file": result.files.get(name) if result else None, "events": recent})


@auth.api
async def shutdown(request: Request) -> JSONResponse:
    """Stop the gateway itself (`gateway shutdown`, the Windows "Stop omen-gateway"): its
    servers too, unless `keep_servers`. Answered before the stop begins."""
    try:
        body = await json_body(request)
    except BadBody as exc:
        return _error(400, str(exc))
    keep = body.get("keep_servers", False)
    if not isinstance(keep, bool):
        return _error(400, "keep_servers must be true or false")
    daemon = gateway_of(request)
    return JSONResponse({"stopping": True, "keep_servers": keep},
                        background=BackgroundTask(daemon.request_stop, keep))


routes = [
    Route("/api/servers", servers),
    Route("/api/servers/{name}", server),
    Route("/api/users", add_user, methods=["POST"]),
    Route("/api/status", status),
    Route("/api/control", control, methods=["POST"]),
    Route("/api/events", events),
    Route("/api/shutdown", shutdown, methods=["POST"]),
]
