"""`GET /stream`: server-sent events. Each time a server's status changes, the new card
(the same `_server_row.html` the page renders) is sent as an `event: server` message; the
page swaps it in by id. A comment every 15 s keeps proxies from closing an idle stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from webview.pages import CSRF_SLOT
from webview.render import daemon_of, fragment
from webview.security import current_user
from webview.views import server_names, server_view

KEEPALIVE = 15.0
COALESCE = 0.05  # seconds: changes this close together go out as one batch
VOLATILE = ("uptime_s", "next_try_in_s", "cpu_percent", "rss_bytes", "started_at")


def sse(event: str, data: str) -> str:
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in data.splitlines()) + "\n"


_rendered: dict[tuple[str, str], tuple[tuple[Any, ...], str]] = {}  # (name, back) -> (key, html)


def card(view: dict[str, Any], key: tuple[Any, ...], back: str) -> str:
    """One card's HTML, rendered once per change however many streams send it."""
    slot = (view["name"], back)
    hit = _rendered.get(slot)
    if hit is None or hit[0] != key:
        if len(_rendered) > 5000:
            _rendered.clear()
        hit = _rendered[slot] = (key, fragment("_server_row.html", s=view, csrf=CSRF_SLOT, back=back))
    return hit[1]


def _key(view: dict[str, Any]) -> tuple[Any, ...]:
    return tuple((k, str(v)) for k, v in view.items() if k not in VOLATILE)


async def stream(request: Request) -> StreamingResponse:
    if await current_user(request) is None:
        raise HTTPException(401, "sign in first")
    daemon = daemon_of(request)
    csrf = request.state.csrf
    back = request.query_params.get("back", "/")
    back = back if back.startswith("/") and not back.startswith("//") else "/"

    async def events() -> AsyncIterator[str]:
        sent: dict[str, tuple[Any, ...]] = {}
        yield "retry: 3000\n: connected\n\n"
        while not daemon.stop_event.is_set():
            changed = daemon.rt.changed
            out = []
            for name in server_names(daemon):
                view = server_view(daemon, name)
                key = _key(view)
                if sent.get(name) != key:
                    sent[name] = key
                    out.append(sse("server", card(view, key, back).replace(CSRF_SLOT, csrf)))
            if out:
                yield "".join(out)
            try:
                await asyncio.wait_for(changed.wait(), KEEPALIVE)
                await asyncio.sleep(COALESCE)
            except TimeoutError:
                yield ": keepalive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


routes = [Route("/stream", stream)]
