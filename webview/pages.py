"""The pages: overview, server detail (settings, events, log tail), control buttons, events
(sign-in lives in webview.signin). Routes build plain view models; templates only show them."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.core.rollout import in_force
from reconciler.core.spec import NAME_PATTERN, ServerSpec
from reconciler.core.state import Desired
from reconciler.engine.config import spec_to_toml
from reconciler.platform.fsutil import server_log
from webview import charts
from webview.control import ControlError, control
from webview.infra import auth
from webview.infra.doors import door_of, is_tunnel
from webview.infra.overview import CSRF_SLOT, card_view, config_problems
from webview.infra.page import gateway_of, page_of
from webview.infra.render import redirect, render
from webview.infra.views import server_names, server_view
from webview.infra.words import event_kinds, event_words

if TYPE_CHECKING:
    from webview.infra.gateway import Gateway

NAME_RE = re.compile(NAME_PATTERN)
CONTROL_WAIT = 20.0  # seconds a button waits for the outcome before answering "still working"
LOG_BYTES = 256 * 1024
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}


@auth.page
async def overview(request: Request) -> Response:
    q = request.query_params
    model, cards = page_of(request).cards.overview(gateway_of(request), door_of(request.scope), q.get("group") or None,
                                                   q.get("tag") or None)
    return render(request, "overview.html", **model, cards=Markup(cards.replace(CSRF_SLOT, request.state.csrf)))


def known(request: Request, name: str) -> str:
    daemon = gateway_of(request)
    result = daemon.reconciler.result
    if not NAME_RE.match(name) or (name not in daemon.rt.states and not (result and name in result.specs)):
        raise HTTPException(404, f"no server named {name!r}")
    return name


def log_tail(path: Path, query: str = "", lines: int = 200) -> list[str]:
    """The last `lines` lines of a log (those containing `query`, case-insensitive)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - LOG_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    rows = text.splitlines()[1:] if size > LOG_BYTES else text.splitlines()
    if query:
        rows = [r for r in rows if query.lower() in r.lower()]
    return rows[-lines:]


async def detail_model(request: Request, name: str) -> dict[str, Any]:
    daemon = gateway_of(request)
    result = daemon.reconciler.result
    spec = result.specs.get(name) if result else None
    running = version_in_force(daemon, name, spec)
    query = request.query_params.get("q", "")
    log = await asyncio.to_thread(log_tail, server_log(daemon.settings.data_dir, name), query)
    events: list[dict[str, Any]] = []
    events_error = None
    if daemon.store is not None:
        try:
            events = [{**e, "w": event_words(e)} for e in reversed(await daemon.store.list_events(server=name, limit=50))]
        except Exception as exc:  # noqa: BLE001 - the database is down: say so on the page
            events_error = f"the database is unreachable: {exc}"
    errors = [e for e in config_problems(daemon) if e["server"] == name]
    span = request.query_params.get("range", "1h")
    span = span if span in charts.RANGES else "1h"
    until = datetime.now(UTC)
    since = until - charts.RANGES[span][0]
    graphs: list[dict[str, Any]] = []
    if daemon.store is not None and events_error is None:
        try:
            series = await daemon.store.series(name, since, charts.RANGES[span][1])
            graphs = charts.server_charts(series, since, until)
        except Exception as exc:  # noqa: BLE001 - the database is down: the page says so above
            events_error = f"the database is unreachable: {exc}"
    return {
        "charts": graphs, "range": span, "ranges": list(charts.RANGES),
        "s": card_view(daemon, name), "settings": spec_to_toml(running) if running else "",
        "not_the_file": running is not spec,
        "file": result.files.get(name) if result else None, "events": events, "events_error": events_error,
        "log": log, "q": query, "config_errors": errors,
    }


def version_in_force(daemon: Gateway, name: str, spec: ServerSpec | None) -> ServerSpec | None:
    """The version that runs: the file's, unless that exact version failed and was rolled back
    (then the previous one's command, port, folder and environment: reconciler/core/rollout.py)."""
    if spec is None:
        return None
    rt = daemon.rt
    memory = rt.rollouts
    desired = Desired({name: spec}, last_good=memory.last_good, failed=memory.failed, answered=memory.answered)
    return in_force(name, desired)


@auth.page
async def detail(request: Request) -> Response:
    name = known(request, request.path_params["name"])
    return render(request, "server.html", **await detail_model(request, name))


@auth.page
async def log_part(request: Request) -> Response:
    name = known(request, request.path_params["name"])
    path = server_log(gateway_of(request).settings.data_dir, name)
    rows = await asyncio.to_thread(log_tail, path, request.query_params.get("q", ""))
    return JSONResponse({"lines": rows})


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


@auth.action
async def control_post(request: Request) -> Response:
    """The Start / Stop / Restart buttons, for one server, a group or all."""
    user, form = auth.user_name(request), await request.form()
    name = request.path_params.get("name")
    names = [known(request, name)] if name else [str(n) for n in form.getlist("name")]
    group = str(form.get("group") or "") or None
    verb = str(form.get("verb", ""))
    back = str(form.get("back") or "/")
    back = back if back.startswith("/") and not back.startswith("//") else "/"
    try:
        done = await control(gateway_of(request), verb, names, group, form.get("all") == "1",
                             actor=f"operator:web:{user}", wait=CONTROL_WAIT, remote=is_tunnel(request))
    except ControlError as exc:
        if wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return redirect(request, back, f"Could not {verb}: {exc}")
    views = [server_view(gateway_of(request), n) for n in done]
    cards = [card_view(gateway_of(request), n) for n in done]
    message = "; ".join(f"{c['name']}: {c['w']['status']}" + (f" ({c['w']['reason']})" if c["w"]["reason"] else "")
                        for c in cards)
    if wants_json(request):
        return JSONResponse({"verb": verb, "message": message, "servers": views})
    return redirect(request, back, message)


@auth.page
async def events_page(request: Request) -> Response:
    daemon = gateway_of(request)
    q = request.query_params
    server, kind, period = q.get("server") or None, q.get("kind") or None, q.get("period") or "24h"
    since = datetime.now(UTC) - PERIODS[period] if period in PERIODS else None
    rows: list[dict[str, Any]] = []
    error = None
    assert daemon.store is not None
    alerts: list[dict[str, Any]] = []
    commit: dict[str, Any] | None = None
    try:
        rows = [{**e, "w": event_words(e)} for e in
                reversed(await daemon.store.list_events(server=server, kind=kind, since=since, limit=500))]
        alerts = await daemon.store.recent_alerts()
        commit = await daemon.store.last_commit()
    except Exception as exc:  # noqa: BLE001 - the database is down: say so on the page
        error = f"the database is unreachable: {exc}"
    notifier = daemon.notifier
    return render(request, "events.html", events=rows, error=error, server=server, kind=kind, period=period,
                  alerts=alerts, commit=commit, can_alert=bool(notifier and notifier.settings().urls),
                  servers=server_names(daemon), periods=[*PERIODS, "all"],
                  kinds=event_kinds())


@auth.action
async def alert_test_post(request: Request) -> Response:
    """Send a test alert to every [notify] url, now; say whether it reached them."""
    from webview.settings_pages import send_test_alert

    ok, error = await send_test_alert(gateway_of(request).notifier, auth.user_name(request))
    if ok is None:
        return redirect(request, "/events", "No alert addresses yet: add one in Settings, Alerts.")
    return redirect(request, "/events", "Test alert sent." if ok else f"The test alert failed: {error}")


routes = [
    Route("/", overview),
    Route("/servers/{name}", detail),
    Route("/servers/{name}/log", log_part),
    Route("/servers/{name}/control", control_post, methods=["POST"]),
    Route("/control", control_post, methods=["POST"]),
    Route("/events", events_page),
    Route("/alerts/test", alert_test_post, methods=["POST"]),
]
