"""Carry out a `Replace`: a change of a server with an automatic port, without a gap.

1. the new version starts on a free port next to the running one (same log file);
2. it answers its check within its start period -> it takes over: the server's port, its
   process, its tunnel route (`reroute`, handed in by the loop, reads the folder again; the
   tunnel hands the route over with its own two-connector swap, and says when it has through
   `rt.routing.routes_applied`), and only once the route points at it does the old version stop
   gracefully, with the stop settings it ran with;
3. it does not -> it is stopped, the change is remembered as failed (not tried again by
   itself, as a rollback is), and the running version never stopped.
The server stays RUNNING throughout (`replacing` holds the planner back meanwhile).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from reconciler.core.actions import Replace
from reconciler.core.events import EventKind
from reconciler.core.facts import as_dict
from reconciler.core.state import Phase
from reconciler.engine import observe
from reconciler.engine.children import Child, SpawnError
from reconciler.engine.launch import first_answer, log_path, program_lines, spawn
from reconciler.engine.runtime import Runtime

Reroute = Callable[[], None]  # a server's port moved: whatever routes to it follows (the loop's reload)
ROUTE_WITHIN = 120.0  # seconds the tunnel may take to move the route before the old one stops anyway
DRAIN = 2.0  # seconds the old version still serves after the route moved (requests under way, and
# anyone who read the old port just before the switch)


def start_replace(rt: Runtime, action: Replace, actor: str, reroute: Reroute | None = None) -> None:
    """Start the replace in the background; `reroute()` once the new version has the port (None:
    nothing routes to the servers)."""
    rt.update(action.name, replacing=True)
    rt.spawn_task(_replace(rt, action, actor, reroute))


async def _replace(rt: Runtime, action: Replace, actor: str, reroute: Reroute | None) -> None:
    name, spec, port = action.name, action.spec, action.port
    old_state, old = rt.state(name), rt.children.get(name)
    old_spec = rt.rollouts.last_good.get(name)
    rt.event(EventKind.CHANGE_TRYING, name, f"the new version starts on port {port} next to the running one",
             actor=actor, detail={"port": port, "hash": spec.runtime_hash()})
    new: Child | None = None
    try:
        started = time.monotonic()
        try:
            new = await spawn(spec, port, config_dir=rt.config_dir, log_to=log_path(rt.data_dir, name),
                              job_dir=rt.data_dir, job_name=name)
        except SpawnError as exc:
            return _failed(rt, name, spec.runtime_hash(), f"could not start: {exc}", actor,
                           {"cause": "beside", "start_error": str(exc)})
        verdict = await first_answer(spec, new, port, started)
        now_state = rt.state(name)
        if now_state.phase is not Phase.RUNNING or rt.children.get(name) is not old or old is None:
            await new.stop(spec.stop.signal, spec.stop.timeout)  # the old one stopped or crashed meanwhile
            rt.update(name, replacing=False)
            rt.notify()
            return
        if not verdict.ok:
            await new.stop(spec.stop.signal, spec.stop.timeout)
            printed = program_lines(log_path(rt.data_dir, name))
            why = f"{verdict.text}: {printed[-1][:200]}" if printed and verdict.exit is not None else verdict.text
            facts = {"cause": "beside", "exit": as_dict(verdict.exit),
                     "never_answered": verdict.exit is None, "waited": verdict.seconds}
            return _failed(rt, name, spec.runtime_hash(), why, actor, facts)
        # the switch: from here on the server is the new process
        rt.children[name] = new
        rt.ports[name] = port
        rt.put({"op": "port", "name": name, "port": port})
        rt.states[name] = now_state.update(
            pid=new.pid, create_time=new.create_time, start_mark=new.start_mark, port=port, spec_hash=spec.runtime_hash(), started_at=started,
            healthy_since=time.monotonic(), health_failures=0, health_error=None, last_latency_ms=None,
            restarts=now_state.restarts + 1, replacing=False)
        rt.save(name)
        rt.rollouts.remember_answered(name, spec)
        rt.event(EventKind.SWITCHED, name, f"the new version answers on port {port}; the previous one "
                 f"(port {old_state.port}) stops once the route has moved", actor=actor,
                 detail={"port": port, "old_port": old_state.port, "pid": new.pid, "old_pid": old.pid})
        observe.watch_child(rt, name, new, spec)
        if reroute is not None:
            reroute()  # the loop reloads: the tunnel's route follows the new port
        rt.notify()
        new = None  # it is the server now: not stopped below
        await rt.wait_until(lambda: rt.routing.routes_applied(name, port), ROUTE_WITHIN)
        await asyncio.sleep(DRAIN)
        signal, timeout = (old_spec.stop.signal, old_spec.stop.timeout) if old_spec else ("TERM", 10.0)
        result = await old.stop(signal, timeout)
        rt.event(EventKind.SWITCHED, name, f"the previous version (pid {old.pid}) stopped: {result.exit.describe()}",
                 actor=actor, detail={"old_pid": old.pid, "forced": result.escalated})
    finally:
        if new is not None and new.is_alive():  # cancelled (the gateway stops): leave nothing behind
            await new.stop(spec.stop.signal, spec.stop.timeout)
        if rt.state(name).replacing:
            rt.update(name, replacing=False)


def _failed(rt: Runtime, name: str, failed_hash: str, why: str, actor: str, facts: dict[str, Any]) -> None:
    rt.rollouts.remember_failed(name, failed_hash, why, facts)
    rt.update(name, replacing=False)
    rt.event(EventKind.ROLLED_BACK, name, f"your change was not applied: {why}; the previous version kept "
             "running", actor=actor, detail={"failed_hash": failed_hash, "why": why, "gap": False, **facts})
    rt.notify()
