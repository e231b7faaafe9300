"""`plan(desired, observed, now) -> Plan`: the one place decisions are made.

Pure and total: no I/O, no clock, no randomness. Level based: it looks at what is and
what should be, never at what happened, so planning again after the actions were applied
yields nothing new. `requeue_after` says when to look again if nothing else wakes the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from reconciler.core.actions import Action, Answered, Forget, Kill, Mark, Promote, Reason, Replace, RollBack, Start, Stop
from reconciler.core.backoff import Backoff
from reconciler.core.ports import NoFreePort, choose_port
from reconciler.core.rollout import failure_facts, in_force, is_trial, promotion_due, replaceable, rollback_target
from reconciler.core.spec import ServerSpec
from reconciler.core.state import Desired, Observed, Phase, ServerState

P = Phase
# How a start after a stop is explained, from why it had stopped.
_RESTART_REASON = {
    Reason.OPERATOR_STOP: Reason.OPERATOR_START,
    Reason.OPERATOR_KILL: Reason.OPERATOR_START,
    Reason.OPERATOR_RESTART: Reason.OPERATOR_RESTART,
    Reason.CHANGE: Reason.CHANGE,
    Reason.DISABLE: Reason.CHANGE,
    Reason.OPERATOR_START: Reason.OPERATOR_START,
    Reason.WOKE_UP: Reason.WOKE_UP,
    Reason.SHUTDOWN: Reason.BOOT,  # stopped with the gateway: starts with it
    Reason.NO_RESTART: Reason.CHANGE,  # (only a new version of its file starts it again by itself)
}
# a run that ended for these keeps them as its cause through the backoff and the restart (the
# page says "not answering", not "crashed")
_NOT_ANSWERING = (Reason.UNHEALTHY, Reason.START_TIMEOUT)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    waiting: Mapping[str, str] = field(default_factory=dict)  # name -> why it is not started yet


def plan(desired: Desired, observed: Observed, now: float) -> Plan:
    actions: list[Action] = []
    wakes: list[float] = []
    waiting: dict[str, str] = {}
    # a change that failed and was rolled back is not what runs: the last good version is
    desired = replace(desired, specs={name: s for name in desired.specs if (s := in_force(name, desired))})
    for name in sorted(set(desired.specs) | set(observed.servers)):
        spec = desired.specs.get(name)
        state = observed.servers.get(name, ServerState(name))
        acts, wake, wait = _plan_one(name, spec, state, desired, observed, now)
        actions.extend(acts)
        for act in acts:  # a port handed out in this pass is taken for the servers after it
            if isinstance(act, Start) and act.port is not None and act.spec.port == "auto":
                observed = replace(observed, ports={**observed.ports, name: act.port})
        if wake is not None:
            wakes.append(wake)
        if wait:
            waiting[name] = wait
    requeue = max(0.0, min(wakes) - now) if wakes else None
    return Plan(tuple(actions), requeue, waiting)


def _why_not_running(name: str, spec: ServerSpec | None, desired: Desired) -> Reason | None:
    if spec is None:
        return Reason.DELETE
    if not spec.enabled:
        return Reason.DISABLE
    if name in desired.stopped_by_operator:
        return Reason.OPERATOR_STOP
    return None


_Result = tuple[list[Action], float | None, str]


def _plan_one(
    name: str, spec: ServerSpec | None, state: ServerState, desired: Desired, observed: Observed, now: float
) -> _Result:
    if state.phase is P.STOPPING:
        if state.kill_requested:  # the owner forces the stop under way
            return [Kill(name)], None, ""
        return [], None, ""  # the stop finishes on its own and wakes the loop
    why_not = _why_not_running(name, spec, desired)
    if state.phase in (P.STARTING, P.RUNNING):
        if why_not is not None:
            dependents = _dependents_going(name, desired, observed)
            if dependents:
                return [], None, f"waiting for {', '.join(dependents)} to stop first"
        return _plan_alive(state, spec, why_not, desired, observed, now)
    if state.phase is P.EXITED:
        return _plan_exited(state, spec, why_not, desired, observed, now)
    return _plan_idle(name, state, spec, why_not, desired, observed, now)


def _stop(spec: ServerSpec | None, name: str, reason: Reason, then: Phase = P.STOPPED, detail: str = "") -> Stop:
    signal, timeout = (spec.stop.signal, spec.stop.timeout) if spec else ("TERM", 10.0)
    return Stop(name, reason, signal, timeout, then, detail)


def _plan_alive(
    state: ServerState, spec: ServerSpec | None, why_not: Reason | None, desired: Desired, observed: Observed,
    now: float,
) -> _Result:
    name = state.name
    if state.replacing and why_not is None:
        return [], None, ""  # the new version is coming up next to this one; it wakes the loop
    # stops that are not failures: a run that was healthy for `backoff_reset` clears the count
    failures = _count_after_run(state, spec, now)
    if why_not is Reason.OPERATOR_STOP and state.kill_requested:
        return [Stop(name, Reason.OPERATOR_KILL, "KILL", 0.0, failures=failures)], None, ""
    if why_not is not None or spec is None:
        # a deleted file's server stops with the settings it last had, not the defaults
        last = spec or desired.last_known.get(name)
        return [replace(_stop(last, name, why_not or Reason.DELETE), failures=failures)], None, ""
    if state.spec_hash != spec.runtime_hash():
        if state.phase is P.RUNNING and replaceable(name, state, spec, desired):
            port = _fresh_port(name, state, desired, observed)
            if port is not None:
                return [Replace(name, spec, port)], None, ""
        return [replace(_stop(spec, name, Reason.CHANGE), failures=failures)], None, ""
    if state.restart_requested:
        why = Reason.OPERATOR_RESTART if state.restart_by_owner else Reason.WOKE_UP
        return [replace(_stop(spec, name, why), failures=failures)], None, ""
    health = spec.effective_health()
    if state.phase is P.STARTING:
        if state.healthy_since is not None:
            up = {"none": Reason.UP, "running": Reason.KEPT_RUNNING}.get(health.type, Reason.HEALTHY)
            acts: list[Action] = [Mark(name, P.RUNNING, up)]
            answered = desired.answered.get(name)
            if answered is None or answered.runtime_hash() != spec.runtime_hash():
                # a rollback target from now on, probation or not (first: acting on the Mark
                # changes the phase, and the loop replans the actions after it)
                acts.insert(0, Answered(name, spec))
            return acts, None, ""
        started = state.started_at if state.started_at is not None else now
        deadline = started + getattr(health, "start_period", 0.0)
        if now >= deadline:
            detail = f"not healthy {_secs(deadline - started)} after start"
            if state.health_error:
                detail += f": {state.health_error}"
            return [_stop(spec, name, Reason.START_TIMEOUT, P.EXITED, detail)], None, ""
        return [], deadline, ""
    threshold = getattr(health, "failures", None)
    if threshold is not None and state.health_failures >= threshold:
        detail = f"{state.health_failures} checks failed in a row"
        if state.health_error:
            detail += f": {state.health_error}"
        return [_stop(spec, name, Reason.UNHEALTHY, P.EXITED, detail)], None, ""
    good = desired.last_good.get(name)
    if good is None or is_trial(name, state, desired):  # not yet the last good version
        due = promotion_due(state, spec)
        if due is not None and now >= due:
            return [Promote(name, spec, changed=good is not None)], None, ""
        return [], due, ""
    return [], None, ""


def _plan_exited(
    state: ServerState,
    spec: ServerSpec | None,
    why_not: Reason | None,
    desired: Desired,
    observed: Observed,
    now: float,
) -> _Result:
    name = state.name
    if why_not is not None or spec is None:
        return [Mark(name, P.STOPPED, why_not or Reason.DELETE)], None, ""
    rolled = _roll_back(name, spec, state, desired, observed, now)
    if rolled is not None:
        return rolled
    if desired.offline and getattr(spec.effective_health(), "needs_internet", False):
        # restarting it cannot bring the internet back: no failure counted, no escalation;
        # it starts again the moment the internet check passes
        return [Mark(name, P.BACKOFF, Reason.WAITING_FOR_INTERNET, "retried as soon as the internet is back",
                     next_try_at=now)], None, ""
    if _new_version(state, spec) and not _blocked_by(spec, observed):
        return _start(spec, Reason.CHANGE, desired, observed, now, failures=0)  # a fix: at once, count reset
    backoff = Backoff.of(spec.restart)
    ended = state.exited_at if state.exited_at is not None else now
    failures = backoff.failures_after_exit(state.failures, state.healthy_since, ended)
    policy = spec.restart.policy
    if policy == "never" or (policy == "on-failure" and state.exit_ok):
        return [Mark(name, P.STOPPED, Reason.NO_RESTART, f"policy {policy}", failures=failures)], None, ""
    why = state.cause if state.cause in _NOT_ANSWERING else Reason.CRASH
    delay = backoff.delay(failures)
    if delay == 0:
        blocked = _blocked_by(spec, observed)
        if not blocked:
            return _start(spec, why, desired, observed, now, failures=failures,
                          escalate=failures == spec.restart.alert_after)
    retry_at = ended + delay
    detail = f"failure {failures} in a row"  # the next try is `next_try_at`: no countdown baked into words
    return [Mark(name, P.BACKOFF, why, detail, next_try_at=retry_at, failures=failures,
                 escalate=failures == spec.restart.alert_after)], None, ""


def _plan_idle(
    name: str,
    state: ServerState,
    spec: ServerSpec | None,
    why_not: Reason | None,
    desired: Desired,
    observed: Observed,
    now: float,
) -> _Result:
    if why_not is not None or spec is None:
        if spec is None and name in observed.servers:
            if state.phase is P.STOPPED:
                return [Forget(name)], None, ""
            return [Mark(name, P.STOPPED, Reason.DELETE)], None, ""
        if state.phase is not P.STOPPED:
            return [Mark(name, P.STOPPED, why_not or Reason.DELETE)], None, ""
        return [], None, ""
    if state.phase is P.ERROR:  # a change that could not even start goes back at once
        rolled = _roll_back(name, spec, state, desired, observed, now)
        if rolled is not None:
            return rolled
    new_version = _new_version(state, spec)  # a fix saved: the backoff is over (a changed spec in Kubernetes)
    if state.phase is P.BACKOFF and state.cause is Reason.WAITING_FOR_INTERNET and desired.offline and not new_version:
        return [], None, ""  # the sampler wakes the loop when the internet check changes
    if state.phase is P.STOPPED and state.cause is Reason.NO_RESTART and not new_version:
        return [], None, ""  # it ended and is set not to restart: until its file changes or the owner starts it
    if (state.phase in (P.BACKOFF, P.ERROR) and state.next_try_at is not None and state.next_try_at > now
            and not new_version):
        return [], state.next_try_at, ""
    blocked = _blocked_by(spec, observed)
    if blocked:
        return [], None, f"waiting for {', '.join(blocked)} to be running"
    if new_version and state.phase is not P.STOPPED:
        return _start(spec, Reason.CHANGE, desired, observed, now, failures=0)
    if state.phase in (P.BACKOFF, P.ERROR):
        reason = Reason.CHANGE if state.cause is Reason.CHANGE else Reason.RETRY  # (its file changed meanwhile)
    elif name not in observed.servers or state.cause is None:
        reason = Reason.CREATE
    else:
        reason = _RESTART_REASON.get(state.cause, Reason.CREATE)
    return _start(spec, reason, desired, observed, now)


def _start(
    spec: ServerSpec, reason: Reason, desired: Desired, observed: Observed, now: float,
    failures: int | None = None, escalate: bool = False,
) -> _Result:
    try:
        port = choose_port(spec.name, desired.specs, observed.ports, observed.busy_ports, desired.port_range)
    except NoFreePort as exc:
        # a failed start like any other: counted, and tried again after the backoff delay
        state = observed.servers.get(spec.name, ServerState(spec.name))
        count = failures if failures is not None else state.failures + 1
        retry_at = now + max(Backoff.of(spec.restart).delay(count), spec.restart.backoff_start)
        detail = str(exc)
        return [Mark(spec.name, P.ERROR, Reason.NO_FREE_PORT, detail, next_try_at=retry_at, failures=count,
                     escalate=count == spec.restart.alert_after)], retry_at, ""
    return [Start(spec.name, spec, port, reason, failures=failures, escalate=escalate)], None, ""


def _fresh_port(name: str, state: ServerState, desired: Desired, observed: Observed) -> int | None:
    """A free automatic port other than the one the running version holds (None: none left)."""
    others = {n: p for n, p in observed.ports.items() if n != name}
    busy = observed.busy_ports | ({state.port} if state.port is not None else set())
    try:
        return choose_port(name, desired.specs, others, busy, desired.port_range)
    except NoFreePort:
        return None


def _roll_back(
    name: str, spec: ServerSpec, state: ServerState, desired: Desired, observed: Observed, now: float
) -> _Result | None:
    """The change on probation failed: remember it, and start the last good version."""
    good = rollback_target(name, spec, state, desired)
    if good is None or state.spec_hash is None:
        return None
    back = replace(desired, specs={**desired.specs, name: good})
    acts, wake, wait = _start(good, Reason.ROLLBACK, back, observed, now, failures=0)
    return [RollBack(name, state.spec_hash, state.reason or "it failed", facts=failure_facts(state)), *acts], wake, wait


def _new_version(state: ServerState, spec: ServerSpec) -> bool:
    """The file now holds another version than the one that last ran (or could not start)."""
    return state.spec_hash is not None and state.spec_hash != spec.runtime_hash()


def _count_after_run(state: ServerState, spec: ServerSpec | None, now: float) -> int | None:
    """The failure count after a run that ends now without failing: cleared when the run
    was healthy for `backoff_reset` (however it ends), else kept (None: nothing to change)."""
    if spec is None or not state.failures:
        return None
    return 0 if Backoff.of(spec.restart).is_stable(state.healthy_since, now) else None


def _dependents_going(name: str, desired: Desired, observed: Observed) -> list[str]:
    """Servers that depend on `name`, still run, and are being stopped too (a group or an
    --all stop): they go first. A dependent that stays up does not hold the stop back."""
    going = []
    for other, st in observed.servers.items():
        spec = desired.specs.get(other)
        if other == name or st.phase not in (P.STARTING, P.RUNNING, P.STOPPING):
            continue
        if spec is not None and name in spec.depends_on and (
            st.phase is P.STOPPING or _why_not_running(other, spec, desired) is not None
        ):
            going.append(other)
    return sorted(going)


def _blocked_by(spec: ServerSpec, observed: Observed) -> list[str]:
    blocked = []
    for dep in spec.depends_on:
        dep_state = observed.servers.get(dep)
        if dep_state is None or dep_state.phase is not P.RUNNING:
            blocked.append(dep)
    return blocked


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
