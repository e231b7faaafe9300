"""The loop's one tunnel hook, `with_tunnel`, and the tunnel's memory per runtime.

Each load: build the plan (validated by the installed cloudflared), write config.yml when
it changed, keep the running connector while a second one bridges new routes (`handover`),
and hold the connector back while the internet is away (`uplink`). The memory of all that
is one `Memory` per runtime (the last plan, the auto-port retries, the uplink's state).
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.config import LoadResult
from reconciler.events import EventKind
from reconciler.tunnel import handover, uplink
from reconciler.tunnel.connector import RESERVED, TunnelPlan, build, ingress_hash, merge, write_config

from reconciler.tunnel.routed import routes_applied

if TYPE_CHECKING:
    from reconciler.loop import Reconciler


@dataclass
class Memory:
    plan: TunnelPlan | None = None
    retries: int = 0
    uplink: uplink.Uplink = field(default_factory=uplink.Uplink)
    watch: asyncio.Future[Any] | None = None


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


def _apply(result: LoadResult, config_dir: Path, data_dir: Path, ports: Mapping[str, int]) -> TunnelPlan:
    plan = build(result, config_dir, data_dir, ports)
    if plan.spec is not None and plan.text is not None and plan.config_path is not None and not plan.refused:
        plan = dataclasses.replace(plan, written=write_config(plan.config_path, plan.text))
    return plan


async def with_tunnel(rec: Reconciler, result: LoadResult) -> LoadResult:
    """The loop's hook: the loaded folder plus the tunnel connector (when [tunnel] is set)."""
    rt = rec.rt
    mem = _memory.setdefault(rt, Memory())
    rt.routes_applied = lambda name, port: routes_applied(rt, name, port)
    plan = await asyncio.to_thread(_apply, result, rec.config_dir, rt.data_dir, dict(rt.ports))
    plan = handover.hold(rec, plan)  # new routes: a second connector first, then the restart
    # no internet: the planner holds the connector (its check `needs_internet`), not this hook
    previous, mem.plan = mem.plan, plan
    if plan.written:
        rt.event(EventKind.TUNNEL_CONFIG, RESERVED, f"wrote {plan.config_path}: {len(plan.rules) - 1} routes",
                 actor="config", detail={"path": str(plan.config_path), "hash": ingress_hash(plan.text or ""),
                                         "hostnames": [r.hostname for r in plan.rules[:-1]]})
    if plan.missing and plan.settings and (previous is None or previous.missing != plan.missing):
        rt.event(EventKind.TUNNEL_UNAVAILABLE, RESERVED, plan.missing, actor="config")
    if plan.settings is not None and (mem.watch is None or mem.watch.done()):
        mem.watch = rt.spawn_task(uplink.watch(rec, mem.uplink, lambda: mem.plan))
    # auto ports are handed out by the first pass after this load: route them on a reload soon
    # after (for a minute at most, e.g. while such a server is held back by a dependency)
    mem.retries = mem.retries + 1 if previous is not None and previous.pending == plan.pending else 0
    if plan.pending and mem.retries < 60:
        asyncio.get_running_loop().call_later(1.0, rec.mark_config_dirty)
    return merge(result, plan)
