"""Is the tunnel reachable from outside right now? Ask the connectors themselves: cloudflared's
``/ready`` answers 200 exactly while it has a registered connection to Cloudflare's edge
(``readyConnections`` > 0), 503 otherwise. Every `EVERY` seconds the managed connector (while
it runs) and a bridge of a handover (while it runs) are asked, each with a `TIMEOUT`, so a
lost connection shows on the page within EVERY + TIMEOUT seconds (the health check, for
restarts, keeps its own slower beat)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from reconciler.core.names import CONNECTOR
from reconciler.core.spec import HttpHealth
from reconciler.core.state import Phase
from reconciler.engine.health import probe
from reconciler.tunnel.memory import Memory

if TYPE_CHECKING:
    from reconciler.engine.runtime import Runtime

EVERY = 2.0  # seconds between looks
TIMEOUT = "1s"
STALE = 30.0  # seconds after which the last look says nothing any more
_READY = HttpHealth(type="http", path="/ready", timeout=TIMEOUT)


def ports(rt: Runtime, memory: Memory) -> dict[str, int]:
    """The metrics ports of the connectors that run now: the managed one, and a bridge."""
    out: dict[str, int] = {}
    st = rt.state(CONNECTOR)
    if st.phase in (Phase.STARTING, Phase.RUNNING) and st.port:
        out["main"] = st.port
    bridge = memory.handover
    if bridge is not None and bridge.port and bridge.child is not None and bridge.child.is_alive():
        out["bridge"] = bridge.port
    return out


async def look(rt: Runtime, memory: Memory) -> None:
    reach = memory.reach
    asked = ports(rt, memory)
    answers = await asyncio.gather(*(probe(_READY, port) for port in asked.values()))
    reach.ready = {name: result.ok for name, result in zip(asked, answers)}
    reach.at = time.monotonic()


def reachable(rt: Runtime, memory: Memory) -> bool | None:
    """Is the tunnel reachable from outside, as its connectors that still run last said at
    /ready (None: not asked yet, or not lately)?"""
    reach = memory.reach
    if reach.at is None or time.monotonic() - reach.at > STALE:
        return None
    running = ports(rt, memory)
    return any(ok for name, ok in reach.ready.items() if name in running)


async def watch(rt: Runtime, memory: Memory) -> None:
    reach = memory.reach
    while True:
        before = dict(reach.ready)
        await look(rt, memory)
        if reach.ready != before:
            rt.announce()  # the page's live view (and the uplink's look) follow
        await asyncio.sleep(EVERY)
