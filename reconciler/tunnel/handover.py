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
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.children import Child, SpawnError
from reconciler.events import EventKind
from reconciler.health import probe
from reconciler.spec import HttpHealth
from reconciler.state import Phase
from reconciler.tunnel.uplink import error_line

if TYPE_CHECKING:
    from reconciler.loop import Reconciler
    from reconciler.tunnel.connector import TunnelPlan

RESERVED = "cloudflared"
READY_WITHIN = 30.0  # seconds the bridge has to become ready
SWAP_WITHIN = 120.0  # seconds the managed connector has to come back
RETRY_AFTER = 60.0  # seconds before a change whose bridge did not come up is tried again
_READY = HttpHealth(type="http", path="/ready", timeout="2s")
BRIDGE_LOG = "cloudflared-bridge.log"


@dataclass
class Handover:
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


_handovers: weakref.WeakKeyDictionary[Any, Handover] = weakref.WeakKeyDictionary()


def under_way(rt: Any) -> Handover | None:
    try:
        return _handovers.get(rt)
    except TypeError:  # not a Runtime
        return None


def serving(rt: Any) -> bool:
    """The managed connector runs and passed its last check: worth keeping during a restart."""
    st = rt.state(RESERVED)
    return st.phase is Phase.RUNNING and not st.health_failures and not st.health_error


def hold(rec: Reconciler, plan: TunnelPlan) -> TunnelPlan:
    """The plan to apply now: with the running connector's spec while a bridge comes up (or
    while a change whose bridge failed waits for its retry)."""
    rt = rec.rt
    if plan.spec is None or plan.executable is None or plan.config_path is None:
        return plan
    target = plan.spec.runtime_hash()
    state = rt.state(RESERVED)
    current = rec.result.specs.get(RESERVED) if rec.result else None
    running_other = (state.phase is Phase.RUNNING and state.spec_hash not in (None, target)
                     and current is not None and current.runtime_hash() == state.spec_hash)
    handover = _handovers.get(rt)
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
        _handovers[rt] = handover
        handover.task = rt.spawn_task(_bridge(rec, handover, plan, _change_done(rt, handover)))
    return dataclasses.replace(plan, spec=current)


def restart(rec: Reconciler, plan: TunnelPlan | None, actor: str) -> None:
    """The owner's (or a resume's) restart of the connector: bridged when it serves."""
    rt = rec.rt
    busy = under_way(rt)
    if busy is not None and not busy.failed:  # one switch at a time: this restart follows the one under way
        busy.asked = (time.monotonic(), actor)
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, "a switch of connectors is under way: the restart follows it",
                 actor=actor)
        return
    if plan is None or plan.spec is None or not serving(rt):
        rt.update(RESERVED, restart_requested=True, restart_by_owner=actor.startswith("operator"))  # nothing to keep
        rt.notify()
        return
    state = rt.state(RESERVED)
    handover = Handover(state.spec_hash or "", state.spec_hash, restart=True)
    _handovers[rt] = handover
    begun = time.monotonic()

    def restarted() -> bool:
        st = rt.state(RESERVED)
        return st.phase is Phase.RUNNING and st.started_at is not None and st.started_at > begun

    handover.task = rt.spawn_task(_bridge(rec, handover, plan, restarted, actor=actor))


def _change_done(rt: Any, handover: Handover) -> Callable[[], bool]:
    def swapped() -> bool:  # on the new spec, or on a newer one that came while it restarted
        st = rt.state(RESERVED)
        return st.phase is Phase.RUNNING and st.spec_hash not in (None, handover.source)
    return swapped


def _cancel(handover: Handover) -> None:
    if handover.task is not None:
        handover.task.cancel()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _bridge(rec: Reconciler, handover: Handover, plan: TunnelPlan, done: Callable[[], bool],
                  actor: str = "gateway") -> None:
    rt = rec.rt
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
            child = await Child.spawn(argv, env=dict(os.environ), cwd=str(rec.config_dir), log_path=log_path)
        except SpawnError as exc:
            return _failed(rec, handover, f"the second connector did not start: {exc}", plan, None)
        handover.child, handover.port = child, port
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, f"{what}: a second connector (pid {child.pid}) starts first, "
                 "so the tunnel has no gap", actor=actor, detail={"bridge_pid": child.pid, "port": port})
        ready = await _ready(child, port)
        if not ready:
            exited = not child.is_alive()
            text = _run_text(log_path, offset)
            line = error_line(text.splitlines())
            why = ("the second connector exited before it was ready" if exited else
                   f"the second connector was not ready within {READY_WITHIN:g}s") + (f": {line}" if line else "")
            return _failed(rec, handover, why, plan, text if exited else None)
        handover.ready = True
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, "the second connector is ready: restarting the main one "
                 + ("on the new routes" if not handover.restart else "now"), actor=actor)
        if handover.restart:
            rt.update(RESERVED, restart_requested=True, restart_by_owner=actor.startswith("operator"))
            rt.notify()
        else:
            rec.mark_config_dirty()
        came_back = await rt.wait_until(done, SWAP_WITHIN)
        await child.stop("TERM", drain)
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, "done: the main connector serves "
                 + ("again" if handover.restart else "the new routes") + "; the second one stopped" if came_back
                 else "the main connector did not come back in time; the second one stopped", actor=actor)
        if _handovers.get(rt) is handover:
            del _handovers[rt]
        _then_restart(rec, handover)
    finally:
        if child is not None and child.is_alive():  # cancelled (gateway stopping, or newer routes)
            await child.stop("TERM", handover.drain if handover.drain is not None else drain)


def _then_restart(rec: Reconciler, handover: Handover) -> None:
    """A restart asked for while this switch was under way, and not done by it: now."""
    if handover.asked is None:
        return
    asked_at, actor = handover.asked
    started = rec.rt.state(RESERVED).started_at
    if started is None or started < asked_at:
        from reconciler.tunnel.hook import plan_of

        restart(rec, plan_of(rec.rt), actor)


def _run_text(log_path: Path, offset: int) -> str:
    """What the bridge wrote in this run (its log after `offset`)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read(256 * 1024).decode("utf-8", "replace")
    except OSError:
        return ""


def _failed(rec: Reconciler, handover: Handover, why: str, plan: TunnelPlan, printed: str | None) -> None:
    """The bridge did not take over: nothing is restarted. A change waits for its retry (or
    for the hook to leave out a route the bridge could not start)."""
    rt = rec.rt
    handover.failed, handover.child = why, None
    handover.retry_at = time.monotonic() + RETRY_AFTER
    if handover.restart:
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, f"{why}; the tunnel was not restarted and keeps serving",
                 detail={"why": why})
        if _handovers.get(rt) is handover:
            del _handovers[rt]
        return
    if _upgrade_given_up(rec, plan, why):
        if _handovers.get(rt) is handover:
            del _handovers[rt]
        return
    from reconciler.tunnel.hook import route_failed

    left_out = route_failed(rt, plan, printed) if printed else None
    if left_out:
        rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, f"{why}; the tunnel keeps the previous routes, and the "
                 f"route of {left_out} is left out", detail={"why": why})
        if _handovers.get(rt) is handover:
            del _handovers[rt]
        rec.mark_config_dirty()
        return
    rt.event(EventKind.TUNNEL_HANDOVER, RESERVED, f"{why}; the tunnel keeps serving the previous routes; tried "
             f"again in {RETRY_AFTER:g}s", detail={"why": why})
    asyncio.get_running_loop().call_later(RETRY_AFTER, rec.mark_config_dirty)


def _upgrade_given_up(rec: Reconciler, plan: TunnelPlan, why: str) -> bool:
    """A new cloudflared the gateway fetched did not come up: the previous one is put back."""
    from reconciler.tunnel import fetch

    rt = rec.rt
    current = rec.result.specs.get(RESERVED) if rec.result else None
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
    rt.event(EventKind.CLOUDFLARED_FAILED, RESERVED, words,
             detail={"rejected": now.version if now else None, "version": back.version})
    from reconciler.tunnel.getter import getter_of

    got = getter_of(rt)
    got.version, got.offer, got.said, got.ok = back.version, None, words + ".", False
    rec.mark_config_dirty()
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


async def shutdown(rt: Any, within: float) -> None:
    """The gateway stops: the bridge (if any) ends within `within` seconds."""
    handover = under_way(rt)
    if handover is None or handover.task is None:
        return
    handover.drain = within
    handover.task.cancel()
    await asyncio.wait([handover.task], timeout=within + 2.0)
