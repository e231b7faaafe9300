"""`GET /stream`: server-sent events. Each time a server's card changes, the new card (the
same `_server_row.html` the page renders) is sent as an `event: server` message; the page
swaps it in by id. Every few seconds (and after each change) an `event: stats` message
carries what moves without a state change: the counts ("N of M running", who needs
attention) and each server's CPU and memory. Uptime and the retry countdown tick in the
browser from the card's own times. The stats message also keeps proxies from closing an
idle stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from webview import auth
from webview.doors import door_of
from webview.overview import CSRF_SLOT, all_names, card_view, counts, host_words
from webview.render import _mb, daemon_of, fragment

STATS_EVERY = 5.0  # seconds between looks at the figures when nothing changes (sent when they moved)
KEEPALIVE = 15.0
COALESCE = 0.05  # seconds: changes this close together go out as one batch


def sse(event: str, data: str) -> str:
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in data.splitlines()) + "\n"


_rendered: dict[tuple[str, str, str], tuple[tuple[Any, ...], str]] = {}  # (name, back, door) -> (key, html)


def card(view: dict[str, Any], key: tuple[Any, ...], back: str, door: str = "local") -> str:
    """One card's HTML, rendered once per change however many streams send it (per door: the
    tunnel door's cards offer no way to cut the tunnel)."""
    slot = (view["name"], back, door)
    hit = _rendered.get(slot)
    if hit is None or hit[0] != key:
        if len(_rendered) > 5000:
            _rendered.clear()
        hit = _rendered[slot] = (key, fragment("_server_row.html", s=view, csrf=CSRF_SLOT, back=back, door=door))
    return hit[1]


_now: dict[str, Any] = {}  # the cards and stats of this second and state, shared by every open stream


def cards_now(daemon: Any) -> tuple[list[tuple[dict[str, Any], tuple[Any, ...]]], str]:
    """Every server's card view and the stats message, built at most once per state change and
    second however many streams are open (50 phones: one build, not fifty)."""
    key = (daemon.rt.changed, int(time.monotonic()))
    if _now.get("key") != key:
        cards = [card_view(daemon, name) for name in all_names(daemon)]
        _now.update(key=key, cards=[(view, (view["v"],)) for view in cards],
                    stats=sse("stats", stats(cards, daemon.rt.host)))
    return _now["cards"], _now["stats"]


def stats(cards: list[dict[str, Any]], host: dict[str, Any]) -> str:
    c = counts(cards)
    return json.dumps({
        **c, "attention_names": [s["name"] for s in cards if s["w"]["attention"]], "host": host_words(host),
        "servers": {s["name"]: {"cpu": f"{s['cpu_percent']:.0f} %" if s["cpu_percent"] is not None else "-",
                                "mem": _mb(s["rss_bytes"])} for s in cards},
    })


@auth.action
async def stream(request: Request) -> StreamingResponse:
    daemon = daemon_of(request)
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
                daemon.rt.looked()  # an open live page: its figures come at the full rate
                changed = asyncio.ensure_future(daemon.rt.changed.wait())
                out = []
                cards, stats_message = cards_now(daemon)
                for view, key in cards:
                    if sent.get(view["name"]) != key:
                        sent[view["name"]] = key
                        out.append(sse("server", card(view, key, back, door).replace(CSRF_SLOT, csrf)))
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
