"""The gateway's own parts that run as servers: today the tunnel connector (`cloudflared`),
registered on the runtime by the tunnel's load hook (the loop imports no hook).

An own part is not one of the owner's servers:
- bulk actions ("Start all", "Stop all", a group, ``gateway stop --all``) leave it alone;
- a restart of it goes through `restart` (the tunnel: a second connector first, so no gap);
- a stop the owner asks for lasts until the gateway restarts (it is not remembered, so a
  stop never locks the owner out for good across a reboot);
- when the gateway stops, it is stopped first and within `stop_within` seconds (the few
  seconds an OS gives at shutdown or log-off): by its `shutdown` (which ends its helpers too),
  else by an ordinary stop with that timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OwnPart:
    what: str  # what it is, in words: "the tunnel (the way in from the internet)"
    restart: Callable[[str], None]  # restart(actor): without a gap, or say why not
    stop_within: float  # seconds it may take when the gateway stops
    shutdown: Callable[[float], Awaitable[None]] | None = None  # stop it and its helpers within N s


class Routing(Protocol):
    """What routes traffic to the servers from outside (the tunnel, registered on the runtime
    by its hook): the no-gap change (reconciler/engine/replace.py) stops the old version only once
    the route of `name` points at its new `port`."""

    def routes_applied(self, name: str, port: int) -> bool: ...


class NoRouting:
    """No tunnel: nothing routes to a server, so any route is where it should be."""

    def routes_applied(self, name: str, port: int) -> bool:
        return True
