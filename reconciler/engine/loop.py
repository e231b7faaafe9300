"""The reconciler: wake on a file change, a child exit, a health result, an operator
command or the resync tick; then load -> plan -> act until nothing is left to do.

One timer (the plan's `requeue_after`), one wake event; wake sources only mark work."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Iterable, Mapping

from reconciler.core.actions import Reason, Stop
from reconciler.core.events import EventKind
from reconciler.core.plan import Plan, plan
from reconciler.core.state import ALIVE, Desired, Observed, Phase, ServerState
from reconciler.engine import observe
from reconciler.engine.act import act
from reconciler.engine.config import LoadResult, load_dir
from reconciler.engine.runtime import Runtime
from reconciler.platform.aio import wait_for

log = logging.getLogger("gateway")
P = Phase
RESYNC_TICK = 30.0  # seconds: the safety net; everything else wakes the loop directly
SHUTDOWN_PASS_WAIT = 30.0  # seconds the pass in progress has to end when the gateway stops


# What may join the loading of the folder: the tunnel adds its connector this way. A hook
# gets the loaded result and returns the result to use; it was built with whatever else it
# uses (the tunnel: the runtime, the folder, a way to ask for a reload). The loop imports no
# hook; the daemon hands them in.
LoadHook = Callable[[LoadResult], Awaitable[LoadResult]]


class Reconciler:
    def __init__(self, rt: Runtime, config_dir: Path, tick: float = RESYNC_TICK,
                 load_hooks: Sequence[LoadHook] = ()) -> None:
        self.rt = rt
        self.load_hooks = tuple(load_hooks)
        self.config_dir = config_dir
        self.tick = tick
        self.result: LoadResult | None = None
        self.config_dirty = True
        self.shown_errors: frozenset[str] = frozenset()
        self.closing = False
        self.between_passes = asyncio.Event()  # clear while a pass plans and acts
        self.between_passes.set()
        self.last_plan = Plan()
        self.passes = 0  # completed reconcile passes: commands wait for one after them
        self.loaded_at = 0.0  # when the folder was last read
        self.last_known: dict[str, Any] = {}  # every server's last loaded spec, also once its file is gone

    # --- inputs -----------------------------------------------------------------------
    def mark_config_dirty(self) -> None:
        self.config_dirty = True
        self.rt.wake.set()

    async def load_config(self) -> LoadResult:
        previous = self.result
        # Cleared before the read: a file saved while the folder is being read marks it
        # dirty again, and the next pass reads it (clearing after would lose that change).
        self.config_dirty = False
        self.loaded_at = time.monotonic()
        held = {n: p for n, p in self.rt.ports.items() if self.rt.state(n).phase in ALIVE}
        result = await asyncio.to_thread(load_dir, self.config_dir, previous, held)
        for hook in self.load_hooks:  # e.g. + the cloudflared connector when [tunnel] is set
            result = await hook(result)
        self.result = result
        self.rt.specs = result.specs
        self.last_known.update(result.specs)
        self._record_config(previous, result)
        for name, failed_hash in list(self.rt.rollouts.failed.items()):  # saved again, reverted or fixed: over
            spec = result.specs.get(name)
            if spec is not None and spec.runtime_hash() != failed_hash:
                self.rt.rollouts.clear_failed(name)
        return result

    def _record_config(self, previous: LoadResult | None, result: LoadResult) -> None:
        old_specs = previous.specs if previous else {}
        for name, spec in result.specs.items():
            if old_specs.get(name) != spec:
                self.rt.put({"op": "server", "name": name, "spec": spec.model_dump(mode="json"),
                             "runtime_hash": spec.runtime_hash()})
                state = self.rt.state(name)
                if name in old_specs and state.phase in (P.BACKOFF, P.ERROR) and state.next_try_at is not None:
                    # a new version of its file (its check, its restart settings too): the backoff is
                    # over, tried at once (plan.py does the same for a new command, port, folder, env)
                    self.rt.update(name, next_try_at=None, failures=0, cause=Reason.CHANGE)
        errors = frozenset(str(e) for e in result.errors)
        for err in result.errors:
            if str(err) not in self.shown_errors:
                name = Path(err.path).stem
                self.rt.event(EventKind.CONFIG_ERROR, name, str(err), actor="config",
                              detail={"path": err.path, "line": err.line, "column": err.column,
                                      "key": err.key, "message": err.message})
        for text in self.shown_errors - errors:
            self.rt.event(EventKind.CONFIG_FIXED, None, f"resolved: {text}", actor="config")
        self.shown_errors = errors

    def desired(self) -> Desired:
        assert self.result is not None
        stopped = frozenset(n for n, i in self.rt.intents.items() if i == "stop")
        rt = self.rt
        return Desired(self.result.specs, stopped, tuple(self.result.settings.ports.range),  # type: ignore[arg-type]
                       last_good=dict(rt.rollouts.last_good), failed=dict(rt.rollouts.failed),
                       answered=dict(rt.rollouts.answered),
                       last_known=dict(self.last_known),
                       offline=rt.internet_ok is False)

    def observed(self) -> Observed:
        return Observed(dict(self.rt.states), dict(self.rt.ports), frozenset(self.rt.busy_ports))

    # --- the loop -----------------------------------------------------------------------
    async def start(self, rows: Mapping[str, Mapping[str, Any]],
                    fallback: Mapping[str, Any] | None = None) -> list[str]:
        """Load the folder, then adopt what a previous gateway left running. `fallback`: the
        version of each server PostgreSQL remembers, in force while its file does not load."""
        if fallback:
            self.result = LoadResult(specs=dict(fallback))
        await self.load_config()
        assert self.result is not None
        adopted = observe.adopt(self.rt, rows, self.result.specs)
        for name in rows:  # stopped with the previous gateway: started with this one ("started with the gateway")
            if name in self.result.specs and name not in self.rt.states:
                self.rt.states[name] = ServerState(name, cause=Reason.SHUTDOWN)
        return adopted

    async def run(self) -> None:
        while not self.closing:
            self.rt.wake.clear()
            self.between_passes.clear()
            try:
                if self.config_dirty or time.monotonic() - self.loaded_at >= self.tick:
                    await self.load_config()  # the tick re-reads the folder too: a missed file event heals
                p = await self.reconcile()
            finally:
                self.between_passes.set()
            self.passes += 1
            self.rt.announce()
            timeout = self.tick if p.requeue_after is None else min(self.tick, p.requeue_after + 0.001)
            try:
                await wait_for(self.rt.wake.wait(), timeout)
            except TimeoutError:
                pass

    async def reconcile(self) -> Plan:
        """Plan and act until the plan is empty (bounded, in case of a planner bug)."""
        for _ in range(8):
            if self.closing:  # the gateway is stopping: no pass may start what shutdown stops
                return Plan()
            observed = self.observed()
            p = plan(self.desired(), observed, time.monotonic())
            self._show_waiting(p)
            self.last_plan = p
            if not p.actions:
                return p
            for action in p.actions:
                if self.closing:
                    break
                # acting awaits (a spawn), and meanwhile a child may exit or pass its check:
                # an action planned on a phase that has changed since is planned again
                planned_on = observed.servers.get(action.name)
                if self.rt.state(action.name).phase is not (planned_on.phase if planned_on else P.STOPPED):
                    break
                try:
                    await act(self.rt, action, reroute=self.mark_config_dirty)  # a moved port: reload, routes follow
                except Exception as exc:  # a bug must not stop the supervision of every server
                    log.exception("acting on %s failed", action)
                    self.rt.event(EventKind.INTERNAL_ERROR, action.name, f"{type(action).__name__} failed: {exc!r}")
        log.error("the plan did not settle after 8 passes: %s", p.actions)
        return p

    def _show_waiting(self, p: Plan) -> None:
        for name, why in p.waiting.items():
            if self.rt.state(name).reason != why:
                self.rt.update(name, reason=why)

    # --- operator commands ----------------------------------------------------------------
    def select(self, names: Iterable[str] = (), group: str | None = None, everything: bool = False) -> list[str]:
        """The servers a command names; "all" and a group never include the gateway's own parts
        (the tunnel): only a command that names one touches it."""
        specs = self.result.specs if self.result else {}
        own = self.rt.own_parts
        if everything:
            return sorted(n for n in specs if n not in own)
        if group is not None:
            return sorted(n for n, s in specs.items() if s.group == group and n not in own)
        return list(names)

    def control(self, verb: str, names: list[str], actor: str) -> None:
        """Record an operator intent (kept in PostgreSQL) and wake the loop."""
        rt = self.rt
        for name in names:
            own = rt.own_parts.get(name)
            if verb in ("stop", "kill"):
                rt.intents[name] = "stop"
                if own is None:  # an own part's stop lasts until the gateway restarts
                    rt.put({"op": "intent", "name": name, "intent": "stop", "actor": actor})
                if verb == "kill":  # the plan kills it: at once, or ends a graceful stop under way (Kill)
                    rt.update(name, kill_requested=True)
            elif verb == "retry":  # try the change that was rolled back once more
                rt.rollouts.clear_failed(name)
            else:
                if rt.intents.pop(name, None) is not None:
                    rt.put({"op": "intent", "name": name, "intent": None, "actor": actor})
                state = rt.state(name)
                if verb == "restart" and state.phase in ALIVE:
                    if own is not None:
                        rt.event(EventKind.INTENT, name, f"{verb} requested", actor=actor)
                        own.restart(actor)  # without a gap (the tunnel: a second connector first)
                        continue
                    rt.update(name, restart_requested=True, restart_by_owner=actor.startswith("operator"))
                if state.phase in (P.BACKOFF, P.ERROR):
                    rt.update(name, next_try_at=None)  # an operator start means now
                if state.phase is P.STOPPED and state.cause is Reason.NO_RESTART:
                    rt.update(name, cause=Reason.OPERATOR_START)  # it was set not to restart: the owner says now
            rt.event(EventKind.INTENT, name, f"{verb} requested", actor=actor)
        rt.notify()

    def _all_stopped(self, names: list[str]) -> Callable[[], bool]:
        return lambda: all(self.rt.state(n).phase not in ALIVE for n in names)

    # --- shutdown -------------------------------------------------------------------------
    async def shutdown(self, keep_servers: bool = False, timeout_cap: float | None = None) -> None:
        """Stop every server (dependents first), or leave them running for adoption."""
        self.closing = True
        self.rt.wake.set()
        # A pass in progress ends after the action it is on; then nothing else starts anything.
        try:
            await wait_for(self.between_passes.wait(), SHUTDOWN_PASS_WAIT)
        except TimeoutError:
            log.error("stopping: the pass in progress did not end within %.0f s", SHUTDOWN_PASS_WAIT)
        if keep_servers:
            self.rt.event(EventKind.GATEWAY_STOPPING, None, "leaving servers running for the next gateway")
            return
        specs = self.result.specs if self.result else {}
        await self._stop_own_parts(specs, timeout_cap)
        alive = [n for n, s in self.rt.states.items() if s.phase in ALIVE and n not in self.rt.own_parts]
        for layer in _stop_layers(specs, alive):
            for name in layer:
                state = self.rt.state(name)
                if state.phase in (P.STARTING, P.RUNNING):
                    spec = specs.get(name)
                    signal, timeout = (spec.stop.signal, spec.stop.timeout) if spec else ("TERM", 10.0)
                    if timeout_cap is not None:
                        timeout = min(timeout, timeout_cap)
                    await act(self.rt, Stop(name, Reason.SHUTDOWN, signal, timeout))
            await self.rt.wait_until(self._all_stopped(layer), 60.0)


    async def _stop_own_parts(self, specs: Mapping[str, Any], timeout_cap: float | None) -> None:
        """The gateway's own parts go first, each within its `stop_within` (the tunnel: the
        edge sends it nothing new from the first signal; requests under way get those seconds),
        so that a stop fits the few seconds an OS gives at shutdown or log-off."""
        work: list[Awaitable[Any]] = []
        for name, own in self.rt.own_parts.items():
            cap = own.stop_within if timeout_cap is None else min(own.stop_within, timeout_cap)
            if own.shutdown is not None:
                work.append(own.shutdown(cap))
            elif self.rt.state(name).phase in (P.STARTING, P.RUNNING):
                spec = specs.get(name)
                signal, timeout = (spec.stop.signal, spec.stop.timeout) if spec else ("TERM", cap)
                work.append(act(self.rt, Stop(name, Reason.SHUTDOWN, signal, min(timeout, cap))))
        if work:
            await asyncio.gather(*work, return_exceptions=True)
            names = list(self.rt.own_parts)
            await self.rt.wait_until(self._all_stopped(names), max(o.stop_within for o in self.rt.own_parts.values())
                                     + 2.0)


def _stop_layers(specs: Mapping[str, Any], alive: list[str]) -> list[list[str]]:
    """Group names so that a server is stopped before anything it depends on."""
    remaining = set(alive)
    layers: list[list[str]] = []
    while remaining:
        needed = {d for n in remaining if n in specs for d in specs[n].depends_on}
        layer = sorted(n for n in remaining if n not in needed) or sorted(remaining)
        layers.append(layer)
        remaining -= set(layer)
    return layers
