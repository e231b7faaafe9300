"""The local JSON API the command line uses: status, control, events.

Every request carries `Authorization: Bearer <token>`, the token being a file in the data
folder only the user can read."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reconciler.state import ALIVE, Phase
from webview.views import server_view, status_view

if TYPE_CHECKING:
    from reconciler.daemon import Daemon

VERBS = ("start", "stop", "restart")
SETTLED = {Phase.RUNNING, Phase.STOPPED, Phase.BACKOFF, Phase.ERROR}


def _daemon(request: Request) -> Daemon:
    return request.app.state.daemon  # type: ignore[no-any-return]


def token_ok(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), _daemon(request).token)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def status(request: Request) -> JSONResponse:
    if not token_ok(request):
        return _error(401, "missing or wrong API token")
    return JSONResponse(status_view(_daemon(request)))


async def control(request: Request) -> JSONResponse:
    if not token_ok(request):
        return _error(401, "missing or wrong API token")
    daemon = _daemon(request)
    try:
        body: dict[str, Any] = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON")
    verb = body.get("verb")
    if verb not in VERBS:
        return _error(400, f"verb must be one of {', '.join(VERBS)}")
    rec = daemon.reconciler
    names = rec.select(body.get("names") or [], body.get("group"), bool(body.get("all")))
    known = set(rec.result.specs if rec.result else ()) | set(daemon.rt.states)
    unknown = [n for n in names if n not in known]
    if unknown:
        return _error(404, f"no server named {', '.join(unknown)}")
    if not names:
        return _error(404, "no server matches" + (f" group {body['group']!r}" if body.get("group") else ""))
    actor = f"operator:{body.get('actor') or 'cli'}"
    before = {n: daemon.rt.state(n).started_at for n in names}
    rec.control(verb, names, actor)
    after_pass = rec.passes + 1  # the loop has seen the command once it completes one more pass
    wait = min(float(body.get("wait", 0) or 0), 120.0)
    if wait > 0:
        await daemon.rt.wait_until(
            lambda: rec.passes > after_pass and all(_settled(daemon, n, verb, before[n]) for n in names), wait)
    return JSONResponse({"verb": verb, "servers": [server_view(daemon, n) for n in names]})


def _settled(daemon: Daemon, name: str, verb: str, started_before: float | None) -> bool:
    state = daemon.rt.state(name)
    if verb == "stop":
        return state.phase not in ALIVE
    if verb == "restart" and state.started_at == started_before and state.phase in ALIVE:
        return False
    spec = daemon.reconciler.result.specs.get(name) if daemon.reconciler.result else None
    if spec is None or not spec.enabled:
        return state.phase not in ALIVE
    return state.phase in SETTLED and not state.restart_requested


async def events(request: Request) -> JSONResponse:
    if not token_ok(request):
        return _error(401, "missing or wrong API token")
    daemon = _daemon(request)
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


routes = [
    Route("/api/status", status),
    Route("/api/control", control, methods=["POST"]),
    Route("/api/events", events),
]
