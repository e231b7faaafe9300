"""Is the tunnel reachable from outside right now? Ask the connectors themselves: cloudflared's
``/ready`` answers 200 exactly while it has a registered connection to Cloudflare's edge
(``readyConnections`` > 0), 503 otherwise. Every `EVERY` seconds the managed connector (while
it runs) and a bridge of a handover (while it runs) are asked, each with a `TIMEOUT`, so a
lost connection shows on the page within EVERY + TIMEOUT seconds (the health check, for
restarts, keeps its own slower beat)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from reconciler.health import probe
from reconciler.spec import HttpHealth
from reconciler.state import Phase
from reconciler.tunnel import handover

if TYPE_CHECKING:
    from reconciler.tunnel.hook import Reach

RESERVED = "cloudflared"
EVERY = 2.0  # seconds between looks
TIMEOUT = "1s"
_READY = HttpHealth(type="http", path="/ready", timeout=TIMEOUT)


def ports(rt: Any) -> dict[str, int]:
    """The metrics ports of the connectors that run now: the managed one, and a bridge."""
    out: dict[str, int] = {}
    st = rt.state(RESERVED)
    if st.phase in (Phase.STARTING, Phase.RUNNING) and st.port:
        out["main"] = st.port
    bridge = handover.under_way(rt)
    if bridge is not None and bridge.port and bridge.child is not None and bridge.child.is_alive():
        out["bridge"] = bridge.port
    return out


async def look(rt: Any, reach: Reach) -> None:
    asked = ports(rt)
    answers = await asyncio.gather(*(probe(_READY, port) for port in asked.values()))
    reach.ready = {name: result.ok for name, result in zip(asked, answers)}
    reach.at = time.monotonic()


def now_ready(rt: Any, reach: Reach) -> bool:
    """Any connector that still runs said it is ready at the last look."""
    running = ports(rt)
    return any(ok for name, ok in reach.ready.items() if name in running)


async def watch(rt: Any, reach: Reach) -> None:
    while True:
        before = dict(reach.ready)
        await look(rt, reach)
        if reach.ready != before:
            rt.announce()  # the page's live view (and the uplink's look) follow
        await asyncio.sleep(EVERY)
