"""Every restart of a serving tunnel connector without a gap: a second connector ("the
bridge") starts and serves while the managed one restarts.

Cloudflare balances a tunnel's traffic over all its connectors (replicas), so:
1. something asks for a restart of a serving connector: new routes or settings, a new
   cloudflared (an upgrade), or the owner's (or a resume's) restart. The bridge starts
   (`cloudflared tunnel --config CONFIG --metrics 127.0.0.1:FREE run`; for a change, the
   loop keeps the running connector's spec meanwhile);
2. the bridge is ready (/ready answers 200) -> the managed connector restarts (on the new
   spec; or, for a plain restart, on the same one) while the bridge serves;
3. the managed connector runs again -> the bridge is stopped gracefully (the edge sends it
   nothing new from its first signal on).
If the bridge does not become ready, nothing is restarted: the serving connector keeps
serving (the previous routes, for a change), the events say why, and a change is tried again
a minute later. A bridge that exits at once names what it could not start (a route's origin,
`Error starting local service URL`): the hook leaves that route out (`failed_routes`).
A connector that is not serving (crashed, not ready) is simply (re)started: there is nothing
to keep. Everything is recorded as `tunnel_handover` events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.events import EventKind
from reconciler.core.names import CONNECTOR
from reconciler.core.spec import HttpHealth
from reconciler.core.state import Phase
from reconciler.engine.children import Child, SpawnError
from reconciler.engine.health import probe
from reconciler.tunnel.memory import Handover, Memory, TunnelContext
from reconciler.tunnel.routes import route_key
from reconciler.tunnel.uplink import error_line

if TYPE_CHECKING:
    from reconciler.engine.runtime import Runtime
    from reconciler.tunnel.connector import TunnelPlan

READY_WITHIN = 30.0  # seconds the bridge has to become ready
SWAP_WITHIN = 120.0  # seconds the managed connector has to come back
RETRY_AFTER = 60.0  # seconds before a change whose bridge did not come up is tried again
_READY = HttpHealth(type="http", path="/ready", timeout="2s")
_LOCAL_SERVICE = re.compile(r"Error starting local service (\S+?)(?::\s|\"|$)", re.MULTILINE)
BRIDGE_LOG = "cloudflared-bridge.log"


def serving(rt: Runtime) -> bool:
    """The managed connector runs and passed its last check: worth keeping during a restart."""
    st = rt.state(CONNECTOR)
    return st.phase is Phase.RUNNING and not st.health_failures and not st.health_error


def hold(ctx: TunnelContext, plan: TunnelPlan) -> TunnelPlan:
    """The plan to apply now: with the running connector's spec while a bridge comes up (or
    while a change whose bridge failed waits for its retry)."""
    rt, memory = ctx.rt, ctx.memory
    if plan.spec is None or plan.executable is None or plan.config_path is None:
        return plan
    target = plan.spec.runtime_hash()
    state = rt.state(CONNECTOR)
    current = memory.in_force.get(CONNECTOR)
    running_other = (state.phase is Phase.RUNNING and state.spec_hash not in (None, target)
                     and current is not None and current.runtime_hash() == state.spec_hash)
    handover = memory.handover
    if handover is not None and handover.restart:
        if not running_other:
            return plan  # a plain restart is bridged: the spec is the same
        _cancel(handover)  # a change came meanwhile: it is bridged instead (the restart is part of it)
        handover = None
    if handover is not None and handover.target == target and handover.ready:
        return plan  # the bridge serves: now the managed connector restarts on the new spec
    if not running_other or not serving(rt):
        return plan  # nothing serving to keep (or the main one restarts now): an ordinary (re)start
    if handover is not None and handover.target == target and handover.failed:
        if time.monotonic() < handover.retry_at:
            return dataclasses.replace(plan, spec=current)  # keep serving the previous routes
        handover = None  # try again
    if handover is None or handover.target != target:
        if handover is not None:
            _cancel(handover)  # the routes changed again meanwhile: bridge to the newest
        handover = Handover(target, state.spec_hash)
        memory.handover = handover
        handover.task = rt.spawn_task(_bridge(ctx, handover, plan, _change_done(rt, handover)))
    return dataclasses.replace(plan, spec=current)


def restart(ctx: TunnelContext, actor: str) -> None:
    """The owner's (or a resume's) restart of the connector: bridged when it serves."""
    rt, memory, plan = ctx.rt, ctx.memory, ctx.memory.plan
    busy = memory.handover
    if busy is not None and not busy.failed:  # one switch at a time: this restart follows the one under way
        busy.asked = (time.monotonic(), actor)
        rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, "a switch of connectors is under way: the restart follows it",
                 actor=actor)
        return
    if plan is None or plan.spec is None or not serving(rt):
        rt.update(CONNECTOR, restart_requested=True, restart_by_owner=actor.startswith("operator"))  # nothing to keep
        rt.notify()
        return
    state = rt.state(CONNECTOR)
    handover = Handover(state.spec_hash or "", state.spec_hash, restart=True)
    memory.handover = handover
    begun = time.monotonic()

    def restarted() -> bool:
        st = rt.state(CONNECTOR)
        return st.phase is Phase.RUNNING and st.started_at is not None and st.started_at > begun

    handover.task = rt.spawn_task(_bridge(ctx, handover, plan, restarted, actor=actor))


def _change_done(rt: Runtime, handover: Handover) -> Callable[[], bool]:
    def swapped() -> bool:  # on the new spec, or on a newer one that came while it restarted
        st = rt.state(CONNECTOR)
        return st.phase is Phase.RUNNING and st.spec_hash not in (None, handover.source)
    return swapped


def _cancel(handover: Handover) -> None:
    if handover.task is not None:
        handover.task.cancel()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _bridge(ctx: TunnelContext, handover: Handover, plan: TunnelPlan, done: Callable[[], bool],
                  actor: str = "gateway") -> None:
    rt = ctx.rt
    from reconciler.tunnel.connector import run_argv, stop_timeout

    assert plan.settings is not None and plan.executable is not None and plan.config_path is not None
    port = _free_port()
    argv = run_argv(plan.settings, plan.executable, plan.config_path, f"127.0.0.1:{port}")
    drain = stop_timeout(plan.settings)  # cloudflared drains for up to its grace period
    log_path = rt.data_dir / "logs" / BRIDGE_LOG
    what = "restart" if handover.restart else "new routes"
    child: Child | None = None
    try:
        offset = log_path.stat().st_size if log_path.exists() else 0
        try:
            child = await Child.spawn(argv, env=dict(os.environ), cwd=str(ctx.config_dir), log_path=log_path)
        except SpawnError as exc:
            return _failed(ctx, handover, f"the second connector did not start: {exc}", plan, None)
        handover.child, handover.port = child, port
        rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, f"{what}: a second connector (pid {child.pid}) starts first, "
                 "so the tunnel has no gap", actor=actor, detail={"bridge_pid": child.pid, "port": port})
        ready = await _ready(child, port)
        if not ready:
            exited = not child.is_alive()
            text = _run_text(log_path, offset)
            line = error_line(text.splitlines())
            why = ("the second connector exited before it was ready" if exited else
                   f"the second connector was not ready within {READY_WITHIN:g}s") + (f": {line}" if line else "")
            return _failed(ctx, handover, why, plan, text if exited else None)
        handover.ready = True
        rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, "the second connector is ready: restarting the main one "
                 + ("on the new routes" if not handover.restart else "now"), actor=actor)
        if handover.restart:
            rt.update(CONNECTOR, restart_requested=True, restart_by_owner=actor.startswith("operator"))
            rt.notify()
        else:
            ctx.reload()
        came_back = await rt.wait_until(done, SWAP_WITHIN)
        await child.stop("TERM", drain)
        rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, "done: the main connector serves "
                 + ("again" if handover.restart else "the new routes") + "; the second one stopped" if came_back
                 else "the main connector did not come back in time; the second one stopped", actor=actor)
        _done(ctx.memory, handover)
        _then_restart(ctx, handover)
    finally:
        if child is not None and child.is_alive():  # cancelled (gateway stopping, or newer routes)
            await child.stop("TERM", handover.drain if handover.drain is not None else drain)


def _done(memory: Memory, handover: Handover) -> None:
    """This switch is over: no longer the one under way (a newer one may be)."""
    if memory.handover is handover:
        memory.handover = None


def _then_restart(ctx: TunnelContext, handover: Handover) -> None:
    """A restart asked for while this switch was under way, and not done by it: now."""
    if handover.asked is None:
        return
    asked_at, actor = handover.asked
    started = ctx.rt.state(CONNECTOR).started_at
    if started is None or started < asked_at:
        restart(ctx, actor)


def _run_text(log_path: Path, offset: int) -> str:
    """What the bridge wrote in this run (its log after `offset`)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read(256 * 1024).decode("utf-8", "replace")
    except OSError:
        return ""


def _failed(ctx: TunnelContext, handover: Handover, why: str, plan: TunnelPlan, printed: str | None) -> None:
    """The bridge did not take over: nothing is restarted. A change waits for its retry (or
    for the hook to leave out a route the bridge could not start)."""
    rt = ctx.rt
    handover.failed, handover.child = why, None
    handover.retry_at = time.monotonic() + RETRY_AFTER
    if handover.restart:
        rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, f"{why}; the tunnel was not restarted and keeps serving",
                 detail={"why": why})
        _done(ctx.memory, handover)
        return
    if _upgrade_given_up(ctx, plan, why):
        _done(ctx.memory, handover)
        return
    left_out = route_failed(ctx.memory, plan, printed) if printed else None
    if left_out:
        rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, f"{why}; the tunnel keeps the previous routes, and the "
                 f"route of {left_out} is left out", detail={"why": why})
        _done(ctx.memory, handover)
        ctx.reload()
        return
    rt.event(EventKind.TUNNEL_HANDOVER, CONNECTOR, f"{why}; the tunnel keeps serving the previous routes; tried "
             f"again in {RETRY_AFTER:g}s", detail={"why": why})
    asyncio.get_running_loop().call_later(RETRY_AFTER, ctx.reload)


def _upgrade_given_up(ctx: TunnelContext, plan: TunnelPlan, why: str) -> bool:
    """A new cloudflared the gateway fetched did not come up: the previous one is put back."""
    from reconciler.tunnel import fetch

    rt = ctx.rt
    current = ctx.memory.in_force.get(CONNECTOR)
    if current is None or plan.executable is None or current.command[0] == str(plan.executable):
        return False
    if fetch.executable(rt.data_dir) != plan.executable:
        return False
    now = fetch.installed(rt.data_dir)
    back = fetch.revert(rt.data_dir)
    if back is None:
        return False
    words = (f"cloudflared {now.version if now else '?'} did not connect ({why}): cloudflared {back.version} is "
             "back in use, and the tunnel kept serving")
    rt.event(EventKind.CLOUDFLARED_FAILED, CONNECTOR, words,
             detail={"rejected": now.version if now else None, "version": back.version})
    got = ctx.memory.getter
    got.version, got.offer, got.said, got.ok = back.version, None, words + ".", False
    ctx.reload()
    return True


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


def route_failed(memory: Memory, plan: TunnelPlan, printed: str) -> str | None:
    """A connector stopped with ``Error starting local service URL``: remember the routes to
    URL as failed (the next load leaves them out, named on their files). Returns their
    servers in words, or None when the words name no route."""
    found = _LOCAL_SERVICE.findall(printed)
    if not found:
        return None
    service = found[-1].rstrip(":")
    line = next((ln for ln in reversed(printed.splitlines()) if "Error starting local service" in ln), "")
    why = line[line.index("Error starting local service"):].strip().rstrip('"')[:400]
    hit = [rule for rule in plan.rules[:-1] if rule.service.rstrip("/") == service.rstrip("/")]
    for rule in hit:
        memory.failed[route_key(rule)] = why
    return ", ".join(sorted({rule.server or "?" for rule in hit})) or None


async def shutdown(memory: Memory, within: float) -> None:
    """The gateway stops: the bridge (if any) ends within `within` seconds."""
    handover = memory.handover
    if handover is None or handover.task is None:
        return
    handover.drain = within
    handover.task.cancel()
    await asyncio.wait([handover.task], timeout=within + 2.0)
