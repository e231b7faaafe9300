"""The tunnel's memory for one gateway, in one container its owner holds (kopf's
`ResourceMemories`: "instead of global or context variables"), and what its parts are handed.

`Tunnel` (tunnel/hook.py) owns one `Memory`: the plan of the last load, the specs that load
put in force, the routes cloudflared could not start, the uplink's outage, what the connectors
last said at /ready, the handover under way, the fetcher's state. The parts below the hook
(`handover`, `uplink`, `reach`, `getter`) get a `TunnelContext`: the runtime, the folder, a way
to ask for a reload and this memory; never the reconciler, never a module's dictionary.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.tunnel.uplink import Uplink

if TYPE_CHECKING:
    from reconciler.core.spec import ServerSpec
    from reconciler.engine.children import Child
    from reconciler.engine.runtime import Runtime
    from reconciler.tunnel.connector import TunnelPlan
    from reconciler.tunnel.release import Release

RETRY_START = 60.0  # seconds before a failed fetch of cloudflared is tried again (doubling, up to an hour)


@dataclass
class Reach:
    """What the connectors said at /ready (polled every few seconds: `reach.watch`)."""

    ready: dict[str, bool] = field(default_factory=dict)  # "main" | "bridge" -> /ready answered 200
    at: float | None = None  # monotonic: the last look


@dataclass
class Handover:
    """A switch of connectors under way (tunnel/handover.py)."""

    target: str  # the runtime hash of the connector spec being handed over to
    source: str | None = None  # the one the managed connector ran when the bridge started
    restart: bool = False  # a restart on the same spec (the owner's, a resume's), not a change
    ready: bool = False
    failed: str | None = None  # why the bridge did not take over (the change is held back)
    retry_at: float = 0.0  # monotonic: when a failed change is tried again
    port: int | None = None  # the bridge's metrics port
    drain: float | None = None  # set when the gateway stops: the bridge's stop is this short
    asked: tuple[float, str] | None = None  # a restart asked for meanwhile: (when, who), done after this one
    child: Child | None = None
    task: asyncio.Future[Any] | None = None


@dataclass
class Getter:
    """Fetching and updating cloudflared (tunnel/getter.py), as the page shows it."""

    version: str | None = None  # the version in use, when known
    offer: Release | None = None  # a newer release, offered on the page
    busy: str | None = None  # what is being done now, in words
    said: str | None = None  # the last outcome, in words
    ok: bool = True  # whether that outcome was good
    checked_at: float | None = None  # monotonic: the last look for a newer release
    retry_at: float = 0.0
    retry: float = RETRY_START


@dataclass
class Memory:
    plan: TunnelPlan | None = None  # the plan of the last load
    in_force: Mapping[str, ServerSpec] = field(default_factory=dict)  # the specs the last load put in force
    retries: int = 0  # reloads asked for while auto ports are not handed out yet
    failed: dict[str, str] = field(default_factory=dict)  # route key -> what cloudflared said starting it
    uplink: Uplink = field(default_factory=Uplink)
    reach: Reach = field(default_factory=Reach)
    handover: Handover | None = None
    getter: Getter = field(default_factory=Getter)
    watch: asyncio.Future[Any] | None = None  # the uplink's watch
    waiters: list[asyncio.Event] = field(default_factory=list)  # set at every load of the plan (`plan_changes`)
    poll: asyncio.Future[Any] | None = None  # the /ready poll
    registered: bool = False  # the connector was registered as an own part once


class TunnelContext(Protocol):
    """What the tunnel's parts are handed (tunnel/hook.py's `Tunnel` is one)."""

    @property
    def rt(self) -> Runtime: ...

    @property
    def config_dir(self) -> Path: ...

    @property
    def memory(self) -> Memory: ...

    def reload(self) -> None: ...  # read the folder again (the plan changes with it)
