"""Change the tunnel's routes without a gap: a second connector ("the bridge") starts on the
new config.yml and serves while the managed connector restarts on it.

Cloudflare balances a tunnel's traffic over all its connectors (replicas), so:
1. the routes change -> the loop keeps the running connector's spec for now, and the bridge
   (`cloudflared tunnel --config NEW --metrics 127.0.0.1:FREE run`) starts;
2. the bridge is ready (/ready answers 200) -> the loop is asked to reload, and this time the
   new spec goes through: the managed connector restarts on the new routes (the bridge serves);
3. the managed connector runs healthy on the new spec -> the bridge is stopped gracefully.
If the bridge is not ready in time, it is stopped and the connector simply restarts (said
in an event). Everything is recorded as `tunnel_handover` events."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.children import Child, SpawnError
from reconciler.events import EventKind
from reconciler.health import probe
from reconciler.spec import HttpHealth
from reconciler.state import Phase

if TYPE_CHECKING:
    from reconciler.loop import Reconciler
    from reconciler.tunnel.connector import TunnelPlan

RESERVED = "cloudflared"
READY_WITHIN = 30.0  # seconds the bridge has to become ready
SWAP_WITHIN = 120.0  # seconds the managed connector has to come back on the new routes
_READY = HttpHealth(type="http", path="/ready", timeout="2s")


@dataclass
class Handover:
    target: str  # the runtime hash of the connector spec being handed over to
    source: str | None = None  # the one the managed connector ran when the bridge started
    ready: bool = False
    failed: bool = False
    task: asyncio.Future[Any] | None = None


_handovers: weakref.WeakKeyDictionary[Any, Handover] = weakref.WeakKeyDictionary()


def hold(rec: Reconciler, plan: TunnelPlan) -> TunnelPlan:
    """The plan to apply now: with the running connector's spec while a bridge comes up."""
    rt = rec.rt
    if plan.spec is None or plan.executable is None or plan.config_path is None:
        return plan
    target = plan.spec.runtime_hash()
    state = rt.state(RESERVED)
    current = rec.result.specs.get(RESERVED) if rec.result else None
    running_other = (state.phase is Phase.RUNNING and state.spec_hash not in (None, target)
                     and current is not None and current.runtime_hash() == state.spec_hash)
    handover = _handovers.get(rt)
    if handover is not None and handover.failed and state.spec_hash == handover.target:
        del _handovers[rt]  # the fallback restart happened
        handover = None
    if handover is not None and handover.target == target and (handover.ready or handover.failed):
        return plan  # the bridge serves (or could not): now the managed connector restarts
    if not running_other or state.health_failures:
        return plan  # nothing healthy to keep serving: an ordinary (re)start
    if handover is None or handover.target != target:
        if handover is not None and handover.task is not None:
            handover.task.cancel()  # the routes changed again meanwhile: bridge to the newest
        handover = Handover(target, state.spec_hash)
        _handovers[rt] = handover
        handover.task = rt.spawn_task(_bridge(rec, handover, plan))
    return dataclasses.replace(plan, spec=current)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _bridge(rec: Reconciler, handover: Handover, plan: TunnelPlan) -> None:
    rt = rec.rt
    from reconciler.tunnel.connector import run_argv, stop_timeout

    assert plan.settings is not None and plan.executable is not None and plan.config_path is not None
    port = _free_port()
    argv = run_argv(plan.settings, plan.executable, plan.config_path, f"127.0.0.1:{port}")
    drain = stop_timeout(plan.settings)  # cloudflared drains for up to its grace period
    child: Child | None = None
    try:
        try:
            child = await Child.spawn(argv, env=dict(os.environ), log_path=rt.data_dir / "logs" / "cloudflared-bridge.log")
        except SpawnError as exc:
            return _give_up(rec, handover, f"the second connector did not start: {exc}")
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, f"new routes: a second connector (pid {child.pid}) starts on them first",
                 detail={"bridge_pid": child.pid})
        if not await _ready(child, port):
            return _give_up(rec, handover, f"the second connector was not ready within {READY_WITHIN:g}s")
        handover.ready = True
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, "the second connector is ready: restarting the main one on the new routes")
        rec.mark_config_dirty()

        def swapped() -> bool:  # on these routes, or on newer ones that came while it restarted
            st = rt.state(RESERVED)
            return st.phase is Phase.RUNNING and st.spec_hash not in (None, handover.source)

        came_back = await rt.wait_until(swapped, SWAP_WITHIN)
        await child.stop("TERM", drain)
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, "done: the main connector serves the new routes; the second one stopped"
                 if came_back else "the main connector did not come back in time; the second one stopped")
        if _handovers.get(rt) is handover:
            del _handovers[rt]
    finally:
        if child is not None and child.is_alive():  # cancelled (gateway stopping, or newer routes)
            await child.stop("TERM", drain)


def _give_up(rec: Reconciler, handover: Handover, why: str) -> None:
    handover.failed = True
    rec.rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, f"{why}; restarting the connector instead (a short gap)")
    rec.mark_config_dirty()


async def _ready(child: Child, port: int) -> bool:
    deadline = time.monotonic() + READY_WITHIN
    pause = 0.05
    while time.monotonic() < deadline:
        if not child.is_alive():
            return False
        if (await probe(_READY, port)).ok:
            return True
        await asyncio.sleep(pause)
        pause = min(0.5, pause * 1.5)
    return False
