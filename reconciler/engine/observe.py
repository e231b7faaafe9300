"""Facts about the world, fed back into the runtime: a child's exit (its own wait, not
polling), its health checks, and which recorded processes can be adopted at start."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Mapping

from reconciler.core.events import EventKind
from reconciler.core.facts import CheckFact, ExitFact, as_dict
from reconciler.core.reasons import Reason
from reconciler.core.spec import RunningHealth, ServerSpec
from reconciler.core.state import Phase
from reconciler.engine.children import Child
from reconciler.engine.health import HealthResult, probe
from reconciler.engine.runtime import Runtime
from reconciler.platform import current

P = Phase
FIRST_PROBE = 0.01  # seconds: while a server is starting, checks come quickly at first
PROBE_GROWTH = 1.5  # ... then further apart (10, 15, 22, 34, 51 ms ...: 12 checks in the first 2 s)
SLOW_PROBE = 0.5  # ... up to this, until it is healthy or its start period is over
REAL_CHECK_EVERY = 300.0  # seconds: a tcp check the listening table answers connects for real this often
# (a loopback connect costs ~0.3 ms of kernel time on a small VM; its latency is the kernel's, not the server's)


def watch_child(rt: Runtime, name: str, child: Child, spec: ServerSpec) -> None:
    rt.spawn_task(asyncio.ensure_future(_wait_exit(rt, name, child)))
    if spec.effective_health().type != "none":
        rt.spawn_task(asyncio.ensure_future(_health_loop(rt, name, child, spec)))


async def _wait_exit(rt: Runtime, name: str, child: Child) -> None:
    status = await child.wait()
    if rt.children.get(name) is not child:
        return  # replaced or being stopped: the stop records the outcome
    state = rt.state(name)
    if state.phase not in (P.STARTING, P.RUNNING):
        return
    # It ended by itself: whatever it left running (pre-fork workers, a helper) goes before
    # a restart, or it would keep serving old code or hold the port of the new instance.
    ended = await child.end_leftovers()
    if rt.children.get(name) is not child or rt.state(name).phase not in (P.STARTING, P.RUNNING):
        return
    del rt.children[name]
    detail = status.describe() + (f"; ended {ended} processes it left running" if ended else "")
    fact = ExitFact.of(status.code, status.signal, leftovers=ended)  # nobody asked: it, or someone outside
    rt.set_phase(
        name, P.EXITED, Reason.CRASH, detail=detail,
        pid=None, create_time=None, start_mark=None, exited_at=time.monotonic(), last_exit=status.describe(),
        exit_ok=status.code == 0, ended=fact,
    )


async def _health_loop(rt: Runtime, name: str, child: Child, spec: ServerSpec) -> None:
    starting_pause = FIRST_PROBE
    connected_at = -REAL_CHECK_EVERY  # the last check that connected (and gave a latency)
    while rt.children.get(name) is child:
        # the file may have changed the check since the start (that needs no restart)
        health = (rt.specs.get(name) or spec).effective_health()
        if health.type == "none":
            rt.update(name, healthy_since=rt.state(name).healthy_since or time.monotonic())
            rt.notify()
            return
        if isinstance(health, RunningHealth):  # a program with no web page: healthy once it kept running
            state = rt.state(name)
            if state.phase is not P.STARTING or state.healthy_since is not None:
                return
            left = (state.started_at or time.monotonic()) + health.min_uptime - time.monotonic()
            if left > 0:
                await rt.resume.nap(left)
                continue
            rt.update(name, healthy_since=time.monotonic())
            rt.notify()
            return
        state = rt.state(name)
        if state.phase not in (P.STARTING, P.RUNNING):
            return
        # A running server's check may take its answer from the kernel's table (one read for
        # every server on the beat), with a real connect at least once a REAL_CHECK_EVERY: the
        # first recorded check connects, so the response-time chart has a point at once.
        shared = state.phase is P.RUNNING and time.monotonic() - connected_at < REAL_CHECK_EVERY
        result = await probe(health, state.port, env=None, cwd=None, shared=shared)
        rt.resume.look()  # woken from a suspend since the last look: settling starts before this result counts
        if result.latency_ms is not None and state.phase is P.RUNNING:
            connected_at = time.monotonic()
        state = rt.state(name)  # as it is now: the probe took time
        if rt.children.get(name) is not child or state.phase not in (P.STARTING, P.RUNNING):
            return
        now = time.monotonic()
        if state.phase is P.RUNNING and (result.ok or not rt.resume.settling()):  # just after a sleep: not charged
            rt.checks.check(name, result.ok, result.latency_ms, result.error)
        if result.ok:
            # a check the listening table answered has no latency: the last measured one stays
            latency = state.last_latency_ms if result.latency_ms is None else result.latency_ms
            if state.healthy_since is None:
                rt.update(name, healthy_since=now, health_failures=0, health_error=None, last_latency_ms=latency,
                          not_answering=None, last_check=None)
                rt.notify()
            elif state.health_failures or state.health_error or state.not_answering:  # also one not counted
                rt.update(name, health_failures=0, health_error=None, last_latency_ms=latency, not_answering=None,
                          last_check=None)
                rt.notify()  # it answers again: the card and the alerts hear it now
            elif latency != state.last_latency_ms:
                rt.update(name, last_latency_ms=latency)
        elif state.phase is P.RUNNING and getattr(health, "needs_internet", False) and rt.internet_ok is False:
            rt.update(name, health_error=f"{result.error} (the internet is unreachable: not counted)")
        elif state.phase is P.RUNNING and rt.resume.settling():  # the host is waking up (reconciler/engine/resume.py)
            rt.update(name, health_error=f"{result.error} (just after a sleep: not counted)")
        elif state.phase is P.RUNNING:
            fact = failing(state.not_answering, result, now, state.health_failures + 1)
            rt.update(name, health_failures=state.health_failures + 1, health_error=result.error, not_answering=fact,
                      last_check=fact)
            rt.event(EventKind.HEALTH_FAILED, name, result.error or "check failed",
                     detail={"failures": state.health_failures + 1, "check": as_dict(fact)})
            rt.notify()
        elif state.not_answering is not None:  # restarted because it did not answer: still does not
            # (nothing listening yet is what a start looks like: the cause it was restarted for stays)
            booting = result.problem in ("refused", "connect")
            fact = state.not_answering if booting else failing(state.not_answering, result, now,
                                                                   state.not_answering.failures)
            rt.update(name, health_error=result.error, not_answering=fact, last_check=fact)
        else:  # starting: a failed check is expected for a while (kept: a start that times out names it)
            count = state.last_check.failures + 1 if state.last_check else 1
            rt.update(name, health_error=result.error, last_check=failing(state.last_check, result, now, count))
        if state.phase is P.STARTING and rt.state(name).healthy_since is None:
            pause = starting_pause
            starting_pause = min(SLOW_PROBE, starting_pause * PROBE_GROWTH)
        else:
            pause = on_the_beat(health.interval)  # type: ignore[union-attr]
        await rt.resume.nap(pause)  # asyncio.sleep, cut short by a resume: check again at once


def failing(fact: CheckFact | None, result: HealthResult, now: float, failures: int) -> CheckFact:
    """The not-answering fact after one more failed check: what it got now, since the first."""
    return CheckFact(result.error or "check failed", fact.since if fact else now, result.problem, result.status,
                     failures, fact.restarts if fact else 0, fact.since_wall if fact else time.time())


def on_the_beat(interval: float) -> float:
    """Seconds until the next multiple of `interval` on the loop's clock. Servers with the same
    interval are checked in the same turn of the loop: 100 servers every 10 s wake it once per
    10 s instead of ten times a second, and their samples share one transaction."""
    return interval - asyncio.get_running_loop().time() % interval


def adopt(rt: Runtime, rows: Mapping[str, Mapping[str, Any]], specs: Mapping[str, ServerSpec]) -> list[str]:
    """Take over children a previous gateway left running: same pid, same create time.

    A pid that was reused by an unrelated process is neither adopted nor touched."""
    adopted = []
    for name, row in rows.items():
        pid, ctime = row.get("pid"), row.get("create_time")
        if not pid or ctime is None or row.get("phase") not in ("starting", "running", "stopping"):
            continue
        child = Child.adopt(int(pid), float(ctime), start_mark=row.get("start_mark"))
        if child is None:
            rt.event(EventKind.NOT_ADOPTED, name, f"recorded pid {pid} is gone or now belongs to another program")
            continue
        spec = specs.get(name)
        now = time.monotonic()
        current().contain(rt.data_dir, name, child.pid)  # Windows: re-opens its job by name
        rt.children[name] = child
        rt.states[name] = rt.state(name).update(restarts=int(row.get("restarts") or 0))
        rt.set_phase(
            name, P.RUNNING, Reason.ADOPTED, detail=f"pid {pid}",
            pid=child.pid, create_time=child.create_time, start_mark=child.start_mark, port=row.get("port"), spec_hash=row.get("spec_hash"),
            started_at=now - max(0.0, time.time() - child.create_time),  # its uptime goes on
            healthy_since=now,
        )
        if spec is not None:
            watch_child(rt, name, child, spec)
        else:
            rt.spawn_task(asyncio.ensure_future(_wait_exit(rt, name, child)))
        adopted.append(name)
    return adopted
