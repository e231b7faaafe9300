"""The Cloudflare page: connect with one API token, then see the tunnel, its routes and what
is missing, in words.

GET /cloudflare: the state (connected to which account and tunnel, the domains, each
server's public address; or the step to connect: a link that opens Cloudflare's token page
with the permissions filled in, and what each permission is for), and cloudflared's
install command when it is missing (noticed by itself once installed: the page asks
/cloudflare/state.json every few seconds and reloads).
POST /cloudflare/connect: token -> (account / existing tunnel to pick, when there is a choice)
-> `reconciler.tunnel.connect.connect`; errors in words, Cloudflare's codes in "details".
POST /cloudflare/alarm: the outside alarm (Cloudflare's tunnel health notification) by email
or to an https webhook, with the token the gateway keeps.
POST /cloudflare/update: get the newest official cloudflared now (checked against Cloudflare's
published checksum); the tunnel moves to it through the two-connector handover, no gap.
Connecting another token changes the tunnel itself, so it is offered at the laptop only: the
tunnel door would cut the very connection the request came through.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reconciler.tunnel import locate
from reconciler.tunnel.cfapi import DEFAULT_API, Client  # httpx itself is imported when a Client is made
from reconciler.tunnel.connect import (
    PERMISSIONS,
    ConnectError,
    connect,
    find,
    read_summary,
    set_alarm,
    template_url,
)
from reconciler.tunnel.hook import plan_of
from reconciler.tunnel.status import public_url, tunnel_view
from webview.infra import auth
from webview.infra.doors import is_tunnel
from webview.infra.page import gateway_of
from webview.infra.render import redirect, render

WINGET = "winget install --id Cloudflare.cloudflared"
APPLY_WAIT = 5.0  # seconds to wait for the gateway to load the new [tunnel]


def _api_url(request: Request) -> str:
    plan = plan_of(gateway_of(request).rt)
    if plan is not None and plan.settings is not None and plan.settings.api_url != DEFAULT_API:
        return plan.settings.api_url
    return os.environ.get("GATEWAY_CLOUDFLARE_API") or DEFAULT_API


def _cloudflared(request: Request) -> str | None:
    daemon = gateway_of(request)
    plan = plan_of(daemon.rt)
    configured = plan.settings.cloudflared if plan is not None and plan.settings is not None else None
    found = locate.find(configured, data_dir=daemon.settings.data_dir)
    return str(found) if found else None


def _getting(request: Request) -> dict[str, Any]:
    """What the gateway does about cloudflared: the version in use, a newer one offered, what
    it is doing, and how the last try went (in words)."""
    from reconciler.tunnel.getter import offered
    from reconciler.tunnel.hook import getter_of

    daemon = gateway_of(request)
    got = getter_of(daemon.rt)
    offer = offered(daemon.rt, daemon.settings.data_dir)
    return {"version": got.version, "offer": offer.version if offer else None, "busy": got.busy,
            "said": got.said, "ok": got.ok}


def model(request: Request) -> dict[str, Any]:
    daemon = gateway_of(request)
    rt = daemon.rt
    plan = plan_of(rt)
    view = tunnel_view(rt)
    summary = read_summary(daemon.settings.data_dir)
    connected = plan is not None and plan.settings is not None
    specs = daemon.reconciler.result.specs if daemon.reconciler.result else {}
    routes = [{"server": r["server"], "url": public_url(specs.get(r["server"] or "")) or f"https://{r['hostname']}",
               "path": r["path"]} for r in view.get("routes", [])]
    errors = [str(e) for e in (plan.errors if plan else []) if "domain." in (e.key or "") or (e.key or "").startswith(
        "tunnel")]
    from reconciler.platform import current

    return {
        "connected": connected, "summary": summary, "view": view, "routes": routes, "errors": errors,
        "cloudflared": _cloudflared(request), "getting": _getting(request), "remote": is_tunnel(request),
        "configured_path": plan.settings.cloudflared if connected and plan and plan.settings else None,
        "windows": current().name == "windows", "winget": WINGET,
        "install": locate.INSTALL, "template_url": template_url(), "permissions": [p[2] for p in PERMISSIONS],
        "tunnel_id": plan.settings.id if connected and plan and plan.settings else None,
    }


@auth.page
async def page(request: Request) -> Response:
    return render(request, "cloudflare.html", **model(request), step="token", error=None, detail=None)


@auth.page
async def state(request: Request) -> Response:
    """For the page's script: is cloudflared there now, and the tunnel's state."""
    return JSONResponse({"cloudflared": _cloudflared(request), "state": tunnel_view(gateway_of(request).rt)["state"],
                         "said": _getting(request)["said"] or "", "at": time.time()})


@auth.page
async def zones(request: Request) -> Response:
    """The account's domains (as found when connecting), for the add/edit form's suggestions."""
    return JSONResponse({"zones": list(read_summary(gateway_of(request).settings.data_dir).get("zones") or [])})


@auth.action
async def connect_post(request: Request) -> Response:
    form = await request.form()
    if is_tunnel(request):
        return _again(request, "Connect another Cloudflare token on the laptop itself: this page reaches you through "
                               "the tunnel that connecting would replace.", status=403)
    token = str(form.get("token", "")).strip()
    account = str(form.get("account", "")).strip() or None
    choice = str(form.get("tunnel", "")).strip()  # "" (not asked yet), "new", or an existing tunnel's id
    if not token:
        return _again(request, "Paste the API token first (the link above creates one).")
    daemon = gateway_of(request)
    api_url = _api_url(request)
    try:
        async with Client(api_url, token) as client:
            found = await find(client, account)
            if not choice and found.tunnels:  # there are tunnels already: ask which one (new by default)
                return render(request, "cloudflare.html", **model(request), step="choose", token=token,
                              account=found.account, tunnels=found.tunnels, error=None, detail=None,
                              alarm=str(form.get("alarm", "")))
            done = await connect(client, daemon.settings.data_dir, daemon.settings.config_dir / "gateway.toml",
                                 token=token, account_id=found.account["id"],
                                 tunnel=None if choice in ("", "new") else choice, api_url=api_url)
    except ConnectError as exc:
        if exc.choices:
            return render(request, "cloudflare.html", **model(request), step="account", token=token,
                          accounts=exc.choices, error=str(exc), detail=exc.detail, alarm=str(form.get("alarm", "")))
        return _again(request, str(exc), exc.detail)
    deadline = time.monotonic() + APPLY_WAIT  # the watcher loads gateway.toml: show the page once it has
    while time.monotonic() < deadline:
        plan = plan_of(daemon.rt)
        if plan is not None and plan.settings is not None and plan.settings.id == done.tunnel_id:
            break
        await asyncio.sleep(0.05)
    what = "made a new tunnel" if done.created else "using your tunnel"
    said = (f"Connected to {done.account_name}: {what} “{done.tunnel_name}”. The servers with a domain are "
            "reachable from outside as soon as the tunnel is up.")
    alarm_to = str(form.get("alarm", "")).strip()
    if alarm_to:
        said += " " + await _alarm(api_url, token, daemon.settings.data_dir, done.account_id, done.tunnel_id,
                                   alarm_to)
    return redirect(request, "/cloudflare", said)


async def _alarm(api_url: str, token: str, data_dir: Path, account_id: str, tunnel_id: str, to: str) -> str:
    try:
        async with Client(api_url, token) as client:
            return await set_alarm(client, data_dir, account_id, tunnel_id, to)
    except ConnectError as exc:
        return f"The outside alarm is not on: {exc}"


@auth.action
async def alarm_post(request: Request) -> Response:
    """Set up the outside alarm later, with the token the gateway keeps."""
    form = await request.form()
    daemon = gateway_of(request)
    plan = plan_of(daemon.rt)
    settings = plan.settings if plan is not None else None
    token = settings.api_token(os.environ) if settings is not None else None
    uuid = settings.tunnel_uuid() if settings is not None else None
    if settings is None or token is None or uuid is None or not settings.account_id:
        return _again(request, "Connect Cloudflare first (below): the alarm is set up with the same token.")
    said = await _alarm(_api_url(request), token, daemon.settings.data_dir, settings.account_id, uuid,
                        str(form.get("alarm", "")))
    return redirect(request, "/cloudflare", said)


@auth.action
async def update_post(request: Request) -> Response:
    """Get the newest official cloudflared now (or the version offered); the tunnel moves to
    it without a gap. A download that fails or does not match changes nothing, in words."""
    from reconciler.tunnel.getter import install

    user = auth.user_name(request)
    daemon = gateway_of(request)
    plan = plan_of(daemon.rt)
    if plan is None or plan.settings is None:
        return _again(request, "Connect Cloudflare first (below): cloudflared runs the tunnel it makes.")
    if plan.settings.cloudflared:
        return _again(request, "The cloudflared in use is the one set in gateway.toml (tunnel.cloudflared): update "
                               "that one yourself, or remove the setting and the gateway keeps its own up to date.")
    _, said = await install(daemon.rt, daemon.settings.data_dir, None, f"operator:web:{user}",  # asks again
                            daemon.reconciler.mark_config_dirty)
    return redirect(request, "/cloudflare", said)


def _again(request: Request, error: str, detail: str | None = None, status: int = 422) -> Response:
    return render(request, "cloudflare.html", status=status, **model(request), step="token", error=error,
                  detail=detail)


routes = [
    Route("/cloudflare", page),
    Route("/cloudflare/state.json", state),
    Route("/cloudflare/zones.json", zones),
    Route("/cloudflare/connect", connect_post, methods=["POST"]),
    Route("/cloudflare/alarm", alarm_post, methods=["POST"]),
    Route("/cloudflare/update", update_post, methods=["POST"]),
]
