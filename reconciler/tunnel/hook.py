"""The loop's one tunnel hook: `Tunnel`, built with what it uses (the runtime, the folder, a
way to ask for a reload), owning the tunnel's memory for one gateway (`tunnel/memory.py`).

Each load (`Tunnel.load`): build the plan (validated by the installed cloudflared), write
config.yml when it changed, keep the running connector while a second one bridges the restart
(`handover`), and hold the connector back while the internet is away (`uplink`). The connector
is the gateway's own part (`reconciler.engine.own`): registered here, so bulk actions leave it alone,
its restarts are bridged and a gateway stop ends it within a few seconds. The tunnel is also
the runtime's `routing`: the no-gap change (reconciler/engine/replace.py) asks it whether a route has
moved. Readers that hold only the runtime (the page, `gateway status`, the DNS task) find the
tunnel there: `tunnel_of(rt)`, `plan_of(rt)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from reconciler.core.events import EventKind
from reconciler.core.names import CONNECTOR
from reconciler.core.state import Phase
from reconciler.engine.config import LoadResult
from reconciler.engine.own import OwnPart
from reconciler.engine.runtime import Runtime
from reconciler.platform.aio import wait_for
from reconciler.tunnel import handover, reach, uplink
from reconciler.tunnel.connector import SHUTDOWN_DRAIN, TunnelPlan, build, ingress_hash, merge, write_config
from reconciler.tunnel.memory import Getter, Memory

SECOND_SIGNAL = 1.0  # seconds between the second signal and a kill, at a gateway stop
PENDING_RELOADS = 60  # reloads (one a second) while auto ports are not handed out yet


class Tunnel:
    """One gateway's tunnel: the loop's load hook and the memory it keeps (`memory`)."""

    def __init__(self, rt: Runtime, config_dir: Path, reload: Callable[[], None]) -> None:
        self.rt = rt
        self.config_dir = config_dir
        self._reload = reload
        self.memory = Memory()
        rt.routing = self  # replace.py asks `routes_applied`; readers of the runtime find the tunnel

    def reload(self) -> None:
        """Read the folder again (the tunnel's plan is made anew with it)."""
        self._reload()

    @property
    def plan(self) -> TunnelPlan | None:
        return self.memory.plan

    async def load(self, result: LoadResult) -> LoadResult:
        """The loop's hook: the loaded folder plus the tunnel connector (when [tunnel] is set)."""
        rt, mem = self.rt, self.memory
        plan = await asyncio.to_thread(_apply, result, self.config_dir, rt.data_dir, dict(rt.ports), dict(mem.failed))
        plan = handover.hold(self, plan)  # a restart of a serving connector: a second connector first
        # no internet: the planner holds the connector (its check `needs_internet`), not this hook
        previous, mem.plan = mem.plan, plan
        if plan != previous:  # the 30 s resync's load of the same plan wakes nobody (issue 27)
            for changed in mem.waiters:
                changed.set()
        self._register(plan.settings is not None)
        if plan.written:
            rt.event(EventKind.TUNNEL_CONFIG, CONNECTOR, f"wrote {plan.config_path}: {len(plan.rules) - 1} routes",
                     actor="config", detail={"path": str(plan.config_path), "hash": ingress_hash(plan.text or ""),
                                             "hostnames": [r.hostname for r in plan.rules[:-1]]})
        if plan.missing and plan.settings and (previous is None or previous.missing != plan.missing):
            rt.event(EventKind.TUNNEL_UNAVAILABLE, CONNECTOR, plan.missing, actor="config")
        if plan.settings is not None and (mem.watch is None or mem.watch.done()):
            mem.watch = rt.spawn_task(uplink.watch(rt, mem.uplink, lambda: mem.plan, self.reload,
                                                   lambda: reach.reachable(rt, mem) is True, self._exited))
        if plan.settings is not None and (mem.poll is None or mem.poll.done()):
            mem.poll = rt.spawn_task(reach.watch(rt, mem))
        # auto ports are handed out by the first pass after this load: route them on a reload soon
        # after (for a minute at most, e.g. while such a server is held back by a dependency)
        mem.retries = mem.retries + 1 if previous is not None and previous.pending == plan.pending else 0
        if plan.pending and mem.retries < PENDING_RELOADS:
            asyncio.get_running_loop().call_later(1.0, self.reload)
        merged = merge(result, plan)
        mem.in_force = merged.specs
        return merged

    def routes_applied(self, name: str, port: int) -> bool:
        """Does the running tunnel connector route `name` to `port` (true when there is no tunnel,
        or no route for it)? It does once it runs on the config that says so. The no-gap change
        (reconciler/engine/replace.py) stops the old version only then."""
        plan = self.memory.plan
        if plan is None or plan.settings is None or plan.spec is None or plan.text is None:
            return True
        mine = [rule for rule in plan.rules if rule.server == name]
        if not mine:
            return True
        if not all(rule.service.endswith(f":{port}") for rule in mine if rule.service.startswith("http://127.0.0.1:")):
            return False  # the new config is not written yet
        running = self.memory.in_force.get(CONNECTOR)
        state = self.rt.state(CONNECTOR)
        return (running is not None and state.phase is Phase.RUNNING and state.spec_hash == running.runtime_hash()
                and running.env.get("GATEWAY_INGRESS_HASH") == ingress_hash(plan.text))

    def reachable(self) -> bool | None:
        """Is the tunnel reachable from outside, as its connectors that still run last said at
        /ready (None: not asked yet)?"""
        return reach.reachable(self.rt, self.memory)

    def _register(self, configured: bool) -> None:
        """The connector as the gateway's own part (see `reconciler.engine.own`)."""
        rt, mem = self.rt, self.memory
        if not configured:
            rt.own_parts.pop(CONNECTOR, None)
            return
        rt.own_parts[CONNECTOR] = OwnPart(
            what="the tunnel: the way in to your servers' addresses (and this page's) from the internet",
            restart=lambda actor: handover.restart(self, actor),
            stop_within=SHUTDOWN_DRAIN,
            shutdown=self._shutdown,
        )
        if not mem.registered:
            mem.registered = True
            if rt.intents.get(CONNECTOR) == "stop":  # remembered by an older gateway: never across a restart
                del rt.intents[CONNECTOR]
                rt.put({"op": "intent", "name": CONNECTOR, "intent": None, "actor": "gateway"})
                rt.event(EventKind.INTENT, CONNECTOR, "start requested: the tunnel runs again after a gateway "
                         "restart (a stop of the tunnel lasts until the gateway restarts, so it never locks you out)")

    async def _shutdown(self, within: float) -> None:
        """The gateway stops: the connectors end within `within` seconds. cloudflared drains for
        its grace period (30 s) after a first signal and exits at once on a second: so the first
        signal now (the edge sends it nothing new from then on; requests under way go on), the
        second after most of `within`, and a kill only if even that is not heard."""
        from reconciler.core.actions import Reason, Stop
        from reconciler.engine.act import act
        from reconciler.platform import current

        rt = self.rt
        bridge = asyncio.ensure_future(handover.shutdown(self.memory, within))
        child = rt.children.get(CONNECTOR)
        if child is not None and rt.state(CONNECTOR).phase in (Phase.STARTING, Phase.RUNNING) and child.is_alive():
            try:
                current().send_stop(child.pid, "TERM", [], timeout=within)
            except OSError:
                pass
            try:
                await wait_for(asyncio.shield(child.wait()), max(0.1, within - SECOND_SIGNAL))
            except TimeoutError:
                pass
            if rt.state(CONNECTOR).phase in (Phase.STARTING, Phase.RUNNING):
                await act(rt, Stop(CONNECTOR, Reason.SHUTDOWN, "TERM", SECOND_SIGNAL))
        await bridge

    def _exited(self, printed: str) -> None:
        """The managed connector exited: a route it could not start is left out on the next load."""
        plan = self.memory.plan
        if plan is None:
            return
        servers = handover.route_failed(self.memory, plan, printed)
        if servers:
            self.rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, f"cloudflared could not start the route of {servers}: "
                          "it is left out so the other routes run", detail={"servers": servers})
            self.reload()


def _apply(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int],
           failed: Mapping[str, str]) -> TunnelPlan:
    plan = build(result, config_dir, data_dir, ports, failed=failed)
    if plan.spec is not None and plan.text is not None and plan.config_path is not None and not plan.refused:
        plan = dataclasses.replace(plan, written=write_config(plan.config_path, plan.text))
    return plan


def tunnel_of(rt: object) -> Tunnel | None:
    """The tunnel of the gateway whose runtime is `rt` (None: it has none)."""
    routing = getattr(rt, "routing", None)
    return routing if isinstance(routing, Tunnel) else None


def plan_of(rt: object) -> TunnelPlan | None:
    """The tunnel plan of the last load (for the page and `gateway status`)."""
    tunnel = tunnel_of(rt)
    return tunnel.plan if tunnel else None


def plan_changes(memory: Memory) -> asyncio.Event:
    """An event set at every load that makes another tunnel plan from now on (and set now: look
    once at the start). A task that acts on the plan (DNS, fetching cloudflared) waits on it and clears it,
    instead of looking at the plan every few seconds (issue 27)."""
    changed = asyncio.Event()
    changed.set()
    memory.waiters.append(changed)
    return changed


def memory_of(rt: object) -> Memory | None:
    tunnel = tunnel_of(rt)
    return tunnel.memory if tunnel else None


def getter_of(rt: object) -> Getter:
    """The fetcher's state (a fresh one when the gateway has no tunnel)."""
    tunnel = tunnel_of(rt)
    return tunnel.memory.getter if tunnel else Getter()


def reachable(rt: object) -> bool | None:
    tunnel = tunnel_of(rt)
    return tunnel.reachable() if tunnel else None
