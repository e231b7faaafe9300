"""`Check port`: is a port free, and if not, who holds it, naming our own servers (the one
being edited, or another) by name, and the next step in words."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reconciler.core.digits import plain_digits
from reconciler.engine.health import port_holder, port_is_free
from webview.infra import auth
from webview.infra.gateway import Gateway
from webview.infra.page import gateway_of


async def port_message(request: Request, raw: str, name: str = "") -> str:
    raw = raw.strip()
    if raw in ("", "auto"):
        return "The gateway picks a free port from its range."
    if not plain_digits(raw) or not 1 <= int(raw) <= 65535:
        return f"{raw!r} is not a port (1-65535)."
    port = int(raw)
    free = await asyncio.to_thread(port_is_free, port)
    if free:
        return f"Port {port} is free."
    holder = await asyncio.to_thread(port_holder, port)
    if holder is None:
        return f"Port {port} is in use by another program; pick another port or choose auto."
    owner = await asyncio.to_thread(server_holding, gateway_of(request), holder[0])
    if owner is not None and owner == name:
        return f"Port {port} is used by {name} itself (this server, pid {holder[0]}): that is fine."
    if owner is not None:
        return f"Port {port} is used by your server {owner} (pid {holder[0]}); pick another port or choose auto."
    return f"Port {port} is in use" + (f" by pid {holder[0]} ({holder[1]})" if holder else "") + \
        "; pick another port or choose auto."


def server_holding(daemon: Gateway, pid: int) -> str | None:
    """Which of our servers runs `pid` (itself or as a process it started), or None."""
    import psutil

    ours = {st.pid: name for name, st in daemon.rt.states.items() if st.pid}
    try:
        proc: Any = psutil.Process(pid)
        chain = [proc, *proc.parents()]
    except psutil.Error:
        return ours.get(pid)
    for p in chain:
        if p.pid in ours:
            return ours[p.pid]
    return None


@auth.action
async def check_port(request: Request) -> Response:
    message = await port_message(request, request.query_params.get("port", ""), request.query_params.get("name", ""))
    return JSONResponse({"message": message, "free": message.endswith("is free.")})


