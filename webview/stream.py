"""`GET /stream`: server-sent events. Each time a server's card changes, the new card (the
same `_server_row.html` the page renders) is sent as an `event: server` message; the page
swaps it in by id. Every few seconds (and after each change) an `event: stats` message
carries what moves without a state change: the counts ("N of M running", who needs
attention) and each server's CPU and memory. Uptime and the retry countdown tick in the
browser from the card's own times. The stats message also keeps proxies from closing an
idle stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from webview.infra import auth
from webview.infra.doors import door_of
from webview.infra.overview import CSRF_SLOT, sse
from webview.infra.page import page_of

STATS_EVERY = 5.0  # seconds between looks at the figures when nothing changes (sent when they moved)
KEEPALIVE = 15.0
COALESCE = 0.05  # seconds: changes this close together go out as one batch


@auth.action
async def stream(request: Request) -> StreamingResponse:
    page = page_of(request)
    daemon, memory = page.gateway, page.cards
    csrf = request.state.csrf
    back = request.query_params.get("back", "/")
    back = back if back.startswith("/") and not back.startswith("//") else "/"
    door = door_of(request.scope)

    async def events() -> AsyncIterator[str]:
        sent: dict[str, tuple[Any, ...]] = {}
        last_stats, last_out = "", time.monotonic()
        stopping = asyncio.ensure_future(daemon.stop_event.wait())  # the stream ends when the gateway stops
        yield "retry: 3000\n: connected\n\n"
        try:
            while not daemon.stop_event.is_set():
                daemon.attention.looked()  # an open live page: its figures come at the full rate
                changed = asyncio.ensure_future(daemon.rt.changed.wait())
                out = []
                cards, stats_message = memory.now(daemon)
                for view, key in cards:
                    if sent.get(view["name"]) != key:
                        sent[view["name"]] = key
                        out.append(sse("server", memory.card(view, key, back, door).replace(CSRF_SLOT, csrf)))
                for gone in set(sent) - {view["name"] for view, _ in cards}:
                    del sent[gone]
                    out.append(sse("gone", gone))  # its file was removed: the page drops its card
                if stats_message != last_stats:  # the same figures again: nothing to say
                    out.append(stats_message)
                    last_stats = stats_message
                if not out and time.monotonic() - last_out >= KEEPALIVE:
                    out.append(": keepalive\n\n")  # proxies close a stream that says nothing for long
                if out:
                    last_out = time.monotonic()
                    yield "".join(out)
                done, _ = await asyncio.wait({changed, stopping}, timeout=STATS_EVERY,
                                             return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if changed in done:
                    await asyncio.sleep(COALESCE)
        finally:
            stopping.cancel()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


routes = [Route("/stream", stream)]
