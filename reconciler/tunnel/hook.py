"""The loop's one tunnel hook, `with_tunnel`, and the tunnel's memory per runtime.

Each load: build the plan (validated by the installed cloudflared), write config.yml when
it changed, keep the running connector while a second one bridges the restart (`handover`),
and hold the connector back while the internet is away (`uplink`). The connector is the
gateway's own part (`reconciler.own`): registered here, so bulk actions leave it alone, its
restarts are bridged and a gateway stop ends it within a few seconds. The memory of all that
is one `Memory` per runtime (the last plan, the auto-port retries, the uplink's state, the
routes cloudflared could not start, what the connectors last said at /ready).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.aio import wait_for
from reconciler.config import LoadResult
from reconciler.events import EventKind
from reconciler.own import OwnPart
from reconciler.tunnel import handover, uplink
from reconciler.tunnel.connector import (
    RESERVED,
    SHUTDOWN_DRAIN,
    TunnelPlan,
    build,
    ingress_hash,
    merge,
    write_config,
)
from reconciler.tunnel.routed import routes_applied
from reconciler.tunnel.routes import route_key

if TYPE_CHECKING:
    from reconciler.loop import Reconciler

SECOND_SIGNAL = 1.0  # seconds between the second signal and a kill, at a gateway stop
_LOCAL_SERVICE = re.compile(r"Error starting local service (\S+?)(?::\s|\"|$)", re.MULTILINE)


@dataclass
class Reach:
    """What the connectors said at /ready (polled every few seconds: `reach.watch`)."""

    ready: dict[str, bool] = field(default_factory=dict)  # "main" | "bridge" -> /ready answered 200
    at: float | None = None  # monotonic: the last look


@dataclass
class Memory:
    plan: TunnelPlan | None = None
    retries: int = 0
    uplink: uplink.Uplink = field(default_factory=uplink.Uplink)
    watch: asyncio.Future[Any] | None = None
    reach: Reach = field(default_factory=Reach)
    poll: asyncio.Future[Any] | None = None
    registered: bool = False  # the connector was registered as an own part once
    failed: dict[str, str] = field(default_factory=dict)  # route key -> what cloudflared said starting it
    waiters: list[asyncio.Event] = field(default_factory=list)  # set at every load of the plan (`plan_changes`)


_memory: weakref.WeakKeyDictionary[Any, Memory] = weakref.WeakKeyDictionary()


def memory_of(rt: Any) -> Memory | None:
    try:
        return _memory.get(rt)
    except TypeError:  # not a Runtime (e.g. a stand-in in a test)
        return None


def plan_of(rt: Any) -> TunnelPlan | None:
    """The tunnel plan of the last load (for the page and `gateway status`)."""
    mem = memory_of(rt)
    return mem.plan if mem else None


def plan_changes(rt: Any) -> asyncio.Event:
    """An event set at every load of the tunnel's plan from now on (and set now: look once at
    the start). A task that acts on the plan (DNS, fetching cloudflared) waits on it and clears
    it, instead of looking at the plan every few seconds."""
    changed = asyncio.Event()
    changed.set()
    _memory.setdefault(rt, Memory()).waiters.append(changed)
    return changed


def route_failed(rt: Any, plan: TunnelPlan, printed: str) -> str | None:
    """A connector stopped with ``Error starting local service URL``: remember the routes to
    URL as failed (the next load leaves them out, named on their files). Returns their
    servers in words, or None when the words name no route."""
    mem = memory_of(rt)
    found = _LOCAL_SERVICE.findall(printed)
    if mem is None or not found:
        return None
    service = found[-1].rstrip(":")
    line = next((ln for ln in reversed(printed.splitlines()) if "Error starting local service" in ln), "")
    why = line[line.index("Error starting local service"):].strip().rstrip('"')[:400]
    hit = [rule for rule in plan.rules[:-1] if rule.service.rstrip("/") == service.rstrip("/")]
    for rule in hit:
        mem.failed[route_key(rule)] = why
    return ", ".join(sorted({rule.server or "?" for rule in hit})) or None


def _register(rec: Reconciler, mem: Memory, configured: bool) -> None:
    """The connector as the gateway's own part (see `reconciler.own`)."""
    rt = rec.rt
    if not configured:
        rt.own_parts.pop(RESERVED, None)
        return
    rt.own_parts[RESERVED] = OwnPart(
        what="the tunnel: the way in to your servers' addresses (and this page's) from the internet",
        restart=lambda actor: handover.restart(rec, mem.plan, actor),
        stop_within=SHUTDOWN_DRAIN,
        shutdown=lambda within: _shutdown(rt, within),
    )
    if not mem.registered:
        mem.registered = True
        if rt.intents.get(RESERVED) == "stop":  # remembered by an older gateway: never across a restart
            del rt.intents[RESERVED]
            rt.put({"op": "intent", "name": RESERVED, "intent": None, "actor": "gateway"})
            rt.event(EventKind.INTENT, RESERVED, "start requested: the tunnel runs again after a gateway restart "
                     "(a stop of the tunnel lasts until the gateway restarts, so it never locks you out)")


async def _shutdown(rt: Any, within: float) -> None:
    """The gateway stops: the connectors end within `within` seconds. cloudflared drains for
    its grace period (30 s) after a first signal and exits at once on a second: so the first
    signal now (the edge sends it nothing new from then on; requests under way go on), the
    second after most of `within`, and a kill only if even that is not heard."""
    from reconciler.act import act
    from reconciler.actions import Reason, Stop
    from reconciler.platform import current
    from reconciler.state import Phase

    bridge = asyncio.ensure_future(handover.shutdown(rt, within))
    child = rt.children.get(RESERVED)
    if child is not None and rt.state(RESERVED).phase in (Phase.STARTING, Phase.RUNNING) and child.is_alive():
        try:
            current().send_stop(child.pid, "TERM", [], timeout=within)
        except OSError:
            pass
        try:
            await wait_for(asyncio.shield(child.wait()), max(0.1, within - SECOND_SIGNAL))
        except TimeoutError:
            pass
        if rt.state(RESERVED).phase in (Phase.STARTING, Phase.RUNNING):
            await act(rt, Stop(RESERVED, Reason.SHUTDOWN, "TERM", SECOND_SIGNAL))
    await bridge


def _apply(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int],
           failed: Mapping[str, str]) -> TunnelPlan:
    plan = build(result, config_dir, data_dir, ports, failed=failed)
    if plan.spec is not None and plan.text is not None and plan.config_path is not None and not plan.refused:
        plan = dataclasses.replace(plan, written=write_config(plan.config_path, plan.text))
    return plan


async def with_tunnel(rec: Reconciler, result: LoadResult) -> LoadResult:
    """The loop's hook: the loaded folder plus the tunnel connector (when [tunnel] is set)."""
    rt = rec.rt
    mem = _memory.setdefault(rt, Memory())
    rt.routes_applied = lambda name, port: routes_applied(rt, name, port)
    plan = await asyncio.to_thread(_apply, result, rec.config_dir, rt.data_dir, dict(rt.ports), dict(mem.failed))
    plan = handover.hold(rec, plan)  # a restart of a serving connector: a second connector first
    # no internet: the planner holds the connector (its check `needs_internet`), not this hook
    previous, mem.plan = mem.plan, plan
    for changed in mem.waiters:
        changed.set()
    _register(rec, mem, plan.settings is not None)
    if plan.written:
        rt.event(EventKind.TUNNEL_CONFIG, RESERVED, f"wrote {plan.config_path}: {len(plan.rules) - 1} routes",
                 actor="config", detail={"path": str(plan.config_path), "hash": ingress_hash(plan.text or ""),
                                         "hostnames": [r.hostname for r in plan.rules[:-1]]})
    if plan.missing and plan.settings and (previous is None or previous.missing != plan.missing):
        rt.event(EventKind.TUNNEL_UNAVAILABLE, RESERVED, plan.missing, actor="config")
    if plan.settings is not None and (mem.watch is None or mem.watch.done()):
        mem.watch = rt.spawn_task(uplink.watch(rec, mem.uplink, lambda: mem.plan, lambda text: _exited(rec, text)))
    if plan.settings is not None and (mem.poll is None or mem.poll.done()):
        from reconciler.tunnel.reach import watch as watch_reach

        mem.poll = rt.spawn_task(watch_reach(rt, mem.reach))
    # auto ports are handed out by the first pass after this load: route them on a reload soon
    # after (for a minute at most, e.g. while such a server is held back by a dependency)
    mem.retries = mem.retries + 1 if previous is not None and previous.pending == plan.pending else 0
    if plan.pending and mem.retries < 60:
        asyncio.get_running_loop().call_later(1.0, rec.mark_config_dirty)
    return merge(result, plan)


def _exited(rec: Reconciler, printed: str) -> None:
    """The managed connector exited: a route it could not start is left out on the next load."""
    mem = memory_of(rec.rt)
    if mem is None or mem.plan is None:
        return
    servers = route_failed(rec.rt, mem.plan, printed)
    if servers:
        rec.rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, f"cloudflared could not start the route of {servers}: it "
                     "is left out so the other routes run", detail={"servers": servers})
        rec.mark_config_dirty()


def reachable(rt: Any) -> bool | None:
    """Is the tunnel reachable from outside, as its connectors that still run last said at
    /ready (None: not asked yet)?"""
    from reconciler.tunnel.reach import now_ready

    mem = memory_of(rt)
    if mem is None or mem.reach.at is None or time.monotonic() - mem.reach.at > 30.0:
        return None
    return now_ready(rt, mem.reach)
