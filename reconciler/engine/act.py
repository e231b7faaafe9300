"""Carry out the planner's actions: one small coroutine per action type.

Starting is quick and done inline; stopping runs in the background (a stop can take the
whole `stop.timeout`) and wakes the loop when the process tree is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from reconciler.core.actions import Action, Answered, Forget, Kill, Mark, Promote, Reason, Replace, RollBack, Start, Stop
from reconciler.core.backoff import Backoff
from reconciler.core.events import EventKind
from reconciler.core.facts import EndedBy, ExitFact, HeldPort
from reconciler.core.spec import ServerSpec
from reconciler.core.state import Phase
from reconciler.engine import observe
from reconciler.engine.children import Child, SpawnError
from reconciler.engine.health import port_holder, port_is_free
from reconciler.engine.launch import log_path, spawn
from reconciler.engine.replace import Reroute, start_replace
from reconciler.engine.runtime import Runtime

log = logging.getLogger("gateway")

P = Phase


async def act(rt: Runtime, action: Action, actor: str = "gateway", *, reroute: Reroute | None = None) -> None:
    """Carry out one action; `reroute()`: the routes follow a server's new port (a `Replace`)."""
    if isinstance(action, Start):
        await _start(rt, action, actor)
    elif isinstance(action, Stop):
        _stop(rt, action, actor)
    elif isinstance(action, Kill):
        await _kill(rt, action)
    elif isinstance(action, Mark):
        changes: dict[str, object] = {}
        if action.next_try_at is not None or action.to in (P.STOPPED, P.STARTING):
            changes["next_try_at"] = action.next_try_at
        if action.failures is not None:
            changes["failures"] = action.failures
        if action.to is P.RUNNING:
            changes["health_failures"] = 0
        if action.to is P.STOPPED:
            changes["not_answering"] = None  # not meant to run: nothing that does not answer
        rt.set_phase(action.name, action.to, action.reason, actor=actor, detail=action.detail, **changes)
        if action.escalate:
            _escalate(rt, action.name, action.failures)
    elif isinstance(action, Forget):
        rt.forget(action.name)
    elif isinstance(action, Promote):
        _promote(rt, action)
    elif isinstance(action, Answered):
        rt.rollouts.remember_answered(action.name, action.spec)
    elif isinstance(action, RollBack):
        _roll_back(rt, action, actor)
    elif isinstance(action, Replace):
        start_replace(rt, action, actor, reroute)


def _promote(rt: Runtime, action: Promote) -> None:
    """The running version passed its probation: remember it as the last good one."""
    name, spec = action.name, action.spec
    memory = rt.rollouts
    if (answered := memory.answered.get(name)) is None or answered.runtime_hash() != spec.runtime_hash():
        memory.remember_answered(name, spec)  # (an adopted version never passed a first check here)
    memory.remember_good(name, spec)
    if action.changed:
        rt.event(EventKind.CHANGE_APPLIED, name, f"your change is in force: it ran well for {spec.restart.probation:g}s",
                 detail={"hash": spec.runtime_hash()})
    rt.notify()


def _roll_back(rt: Runtime, action: RollBack, actor: str) -> None:
    """Remember the failed change (it is not tried again by itself); a Start of the last
    good version follows in the same plan."""
    name = action.name
    rt.rollouts.remember_failed(name, action.failed_hash, action.detail, dict(action.facts))
    rt.event(EventKind.ROLLED_BACK, name, f"your change was not applied: {action.detail}; "
             "the previous version runs again", actor=actor,
             detail={"failed_hash": action.failed_hash, "why": action.detail, **action.facts})


def _escalate(rt: Runtime, name: str, failures: int | None) -> None:
    """Automatic recovery is not working: say so once per run of failures (alerts hook here)."""
    rt.event(EventKind.ESCALATED, name, f"{failures} failures in a row; still retrying with backoff",
             detail={"failures": failures})


async def _start(rt: Runtime, action: Start, actor: str) -> None:
    name, spec, port = action.name, action.spec, action.port
    if action.escalate:
        _escalate(rt, name, action.failures)
    old = rt.state(name)
    failures = action.failures if action.failures is not None else old.failures
    now = time.monotonic()
    if port is not None and not port_is_free(port):
        holder = await asyncio.to_thread(port_holder, port)  # a sweep of every connection: ~30 s once under Wine
        who = f"pid {holder[0]} ({holder[1]})" if holder else "another program"
        if spec.port == "auto":  # not the server's failure: the next pass gives it another port
            rt.busy_ports.add(port)
            log.info("%s: port %d is held by %s; taking another", name, port, who)
            rt.wake.set()
            return
        held = HeldPort(port, holder[0] if holder else None, holder[1] if holder else None)
        _failed(rt, name, spec, failures, f"port {port} is held by {who}", actor, now, held)
        return
    try:
        child = await spawn(spec, port, config_dir=rt.config_dir, log_to=log_path(rt.data_dir, name),
                            job_dir=rt.data_dir, job_name=name)  # Windows: its own job object
    except SpawnError as exc:
        _failed(rt, name, spec, failures, str(exc), actor, now)
        return
    except Exception as exc:  # noqa: BLE001 - whatever the OS refused: a failed start, with backoff
        _failed(rt, name, spec, failures, f"cannot start {spec.command[0]!r}: {exc}", actor, now)
        return
    if spec.port == "auto" and port is not None and rt.ports.get(name) != port:
        rt.ports[name] = port
        rt.put({"op": "port", "name": name, "port": port})
    health_none = spec.effective_health().type == "none"
    first_start = old.started_at is None and old.restarts == 0 and old.phase is P.STOPPED
    # a restart because it did not answer keeps that fact until a check passes; another version
    # (a fix, a rollback) or a start after a stop begins without it
    failing = old.not_answering
    if failing is not None and (old.spec_hash != spec.runtime_hash() or old.phase is P.STOPPED):
        failing = None
    elif failing is not None:
        failing = dataclasses.replace(failing, restarts=failing.restarts + 1)
    rt.children[name] = child
    rt.set_phase(
        name, P.STARTING, action.reason, actor=actor, detail=action.detail or f"pid {child.pid}",
        pid=child.pid, create_time=child.create_time, start_mark=child.start_mark, port=port, spec_hash=spec.runtime_hash(),
        started_at=now, healthy_since=now if health_none else None, health_failures=0, health_error=None,
        next_try_at=None, failures=failures, restarts=old.restarts + (0 if first_start else 1),
        restart_requested=False, kill_requested=False, after_stop=P.STOPPED, held=None, start_error=None,
        not_answering=failing, last_check=None,
    )
    observe.watch_child(rt, name, child, spec)


def _failed(rt: Runtime, name: str, spec: ServerSpec, failures: int, why: str, actor: str, now: float,
            held: HeldPort | None = None) -> None:
    failures += 1
    delay = max(Backoff.of(spec.restart).delay(failures), spec.restart.backoff_start)
    rt.set_phase(
        name, P.ERROR, Reason.START_FAILED, actor=actor, detail=why,  # the next try: `next_try_at` (one countdown, the page's)
        next_try_at=now + delay, failures=failures, pid=None, create_time=None, start_mark=None,
        spec_hash=spec.runtime_hash(),  # the version that could not start (a change is rolled back)
        held=held, start_error=None if held else why,
    )
    ports = {"port": held.port, "holder_pid": held.pid, "holder_name": held.program} if held else {}
    rt.event(EventKind.ERROR, name, why, detail={"failures": failures, **ports})
    if failures == spec.restart.alert_after:
        _escalate(rt, name, failures)


def _stop(rt: Runtime, action: Stop, actor: str) -> None:
    name = action.name
    child = rt.children.get(name)
    changes: dict[str, object] = {} if action.failures is None else {"failures": action.failures}
    if action.reason is Reason.OPERATOR_KILL:
        changes["kill_requested"] = False  # this stop is the kill: no Kill on top of it
    state = rt.state(name)
    if action.reason is Reason.START_TIMEOUT and state.not_answering is None and state.last_check is not None:
        changes["not_answering"] = state.last_check  # it never answered: that check is why, through the restarts
    rt.set_phase(name, P.STOPPING, action.reason, actor=actor, detail=action.detail, after_stop=action.then,
                 **changes)
    rt.spawn_task(_finish_stop(rt, name, child, action, actor))


async def _kill(rt: Runtime, action: Kill) -> None:
    """End the stop under way now: the whole tree is killed (the psutil sweep in a thread,
    off the loop); `_finish_stop` sees the exit and records it."""
    rt.update(action.name, kill_requested=False)  # carried out: planned once
    child = rt.children.get(action.name)
    if child is not None:
        killed = await asyncio.to_thread(child.kill)
        log.info("%s: killed the process tree of pid %s (%d processes)", action.name, child.pid, len(killed))


async def _finish_stop(rt: Runtime, name: str, child: Child | None, action: Stop, actor: str) -> None:
    if child is None:
        rt.set_phase(name, action.then, action.reason, actor=actor, pid=None, create_time=None, start_mark=None)
        return
    result = await child.stop(action.signal, action.timeout)
    if result.escalated:
        rt.event(
            EventKind.STOP_ESCALATED, name,
            f"did not stop within {action.timeout:g}s of SIG{action.signal}; killed the process tree",
            actor=actor, detail={"leftovers_killed": result.leftovers_killed},
        )
    await asyncio.sleep(0)
    if rt.children.get(name) is child:
        del rt.children[name]
    if rt.state(name).phase is not P.STOPPING:
        return
    now = time.monotonic()
    by = (EndedBy.OWNER_KILL if action.reason is Reason.OPERATOR_KILL
          else EndedBy.FORCED if result.escalated else EndedBy.ASKED)
    fact = ExitFact.of(result.exit.code, result.exit.signal, by, result.leftovers_killed)
    rt.set_phase(
        name, action.then, action.reason, actor=actor, detail=result.exit.describe(),
        pid=None, create_time=None, start_mark=None, exited_at=now, last_exit=result.exit.describe(), exit_ok=False,
        ended=fact, **({"not_answering": None} if action.then is P.STOPPED else {}),
    )
