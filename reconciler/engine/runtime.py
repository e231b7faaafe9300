"""The loop's live bookkeeping: each server's `ServerState`, its `Child`, and the one
place a phase changes (`set_phase`), which is also the one place an event is recorded."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Coroutine, Iterable

from reconciler.core.events import EventKind
from reconciler.core.facts import as_dict
from reconciler.core.reasons import Reason
from reconciler.core.state import Phase, ServerState
from reconciler.engine.checklog import CheckLog
from reconciler.engine.children import Child
from reconciler.engine.own import NoRouting, OwnPart, Routing
from reconciler.engine.resume import ResumeState
from reconciler.engine.rollout_memory import RolloutMemory
from reconciler.platform.aio import wait_for

log = logging.getLogger("gateway")
_seq = itertools.count(time.time_ns())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def to_wall(mono: float | None) -> str | None:
    """A monotonic timestamp as an ISO wall-clock time (for rows and JSON)."""
    if mono is None:
        return None
    return datetime.fromtimestamp(time.time() - (time.monotonic() - mono), timezone.utc).isoformat()


class Runtime:
    def __init__(self, data_dir: Path, config_dir: Path, put: Callable[[dict[str, Any]], None]) -> None:
        self.data_dir = data_dir
        self.config_dir = config_dir
        self.put = put  # Sink.put: never blocks
        self.checks = CheckLog(lambda op: self.put(op))  # health results -> change rows and minutes (reconciler/engine/checklog.py)
        self.states: dict[str, ServerState] = {}
        self.children: dict[str, Child] = {}
        self.ports: dict[str, int] = {}
        self.busy_ports: set[int] = set()
        self.intents: dict[str, str] = {}
        # each server's remembered versions (last good, answered, a failed change), loaded from
        # PostgreSQL at start (reconciler/engine/remembered.py)
        self.rollouts = RolloutMemory(put)
        # the loaded specs, written by the loop at each load (Reconciler.load_config): the health
        # checks and the sampler read the settings that apply without a restart
        self.specs: dict[str, Any] = {}
        # the internet answers (True), does not (False) or is not checked (None): the sampler's
        # look, an input of the plan and of the checks (its other figures are its own: sampler.Figures)
        self.internet_ok: bool | None = None
        self.wake = asyncio.Event()
        self.changed = asyncio.Event()  # replaced on every change; waiters hold the old one
        self.tasks: set[asyncio.Task[Any]] = set()
        # after a sleep or a freeze: the settling window, the checks napping (reconciler/engine/resume.py writes it)
        self.resume = ResumeState()
        # who routes traffic to the servers (the tunnel, set by its hook): has a route moved yet?
        self.routing: Routing = NoRouting()
        # the gateway's own parts that run as servers (reconciler/engine/own.py), registered by their hook
        self.own_parts: dict[str, OwnPart] = {}
        self._listeners: list[tuple[Callable[[dict[str, Any]], None], frozenset[EventKind] | None]] = []

    # --- recording -------------------------------------------------------------------
    def subscribe(self, listener: Callable[[dict[str, Any]], None], kinds: Iterable[EventKind] | None = None) -> None:
        """Call `listener` with every recorded event (of `kinds`, or all), on the loop, right
        after it is queued for PostgreSQL. It must not block; what it raises is logged."""
        self._listeners.append((listener, frozenset(kinds) if kinds is not None else None))

    def event(
        self,
        kind: EventKind,
        server: str | None,
        reason: str,
        *,
        actor: str = "gateway",
        source: Phase | None = None,
        target: Phase | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        op = (
            {
                "op": "event",
                "id": str(uuid.uuid4()),
                "seq": next(_seq),
                "at": utcnow().isoformat(),
                "server": server,
                "kind": str(EventKind(kind)),
                "from_phase": str(source) if source else None,
                "to_phase": str(target) if target else None,
                "reason": reason,
                "actor": actor,
                "detail": detail or {},
            }
        )
        self.put(op)
        for listener, kinds in self._listeners:
            if kinds is None or op["kind"] in kinds:
                try:
                    listener(op)
                except Exception:  # a listener never breaks recording
                    log.exception("an event listener failed on %s", op["kind"])
        level = logging.WARNING if EventKind(kind).warning else logging.INFO
        log.log(level, "%s: %s%s", server or "gateway", f"{source} -> {target}: " if target else "", reason)

    def state(self, name: str) -> ServerState:
        return self.states.get(name) or ServerState(name)

    def set_phase(
        self, name: str, target: Phase, reason: Reason, *, actor: str = "gateway", detail: str = "", **changes: Any
    ) -> ServerState:
        """The one place a phase changes: the typed `reason` is kept as the state's `cause`
        (what the planner reads); the text, with the detail, is for people."""
        old = self.state(name)
        text = f"{reason}: {detail}" if detail and target in _SHOW_DETAIL else str(reason)
        new = old.advance(target, text, cause=Reason(reason), **changes)
        self.states[name] = new
        self.event(EventKind.TRANSITION, name, reason, actor=actor, source=old.phase, target=target,
                   detail={**({"detail": detail} if detail else {}), **facts_of(new, changes)} or None)
        self.save(name)
        self.notify()
        return new

    def update(self, name: str, **changes: Any) -> ServerState:
        new = self.state(name).update(**changes)
        self.states[name] = new
        return new

    def save(self, name: str) -> None:
        st = self.states.get(name)
        if st is None:
            self.put({"op": "state_delete", "name": name})
            return
        row = {
            "name": name,
            "pid": st.pid,
            "create_time": st.create_time,
            "start_mark": st.start_mark,
            "port": st.port,
            "phase": str(st.phase),
            "spec_hash": st.spec_hash,
            "started_at": to_wall(st.started_at),
            "restarts": st.restarts,
        }
        self.put({"op": "state", "row": row})

    def forget(self, name: str) -> None:
        self.states.pop(name, None)
        self.children.pop(name, None)
        self.ports.pop(name, None)
        self.put({"op": "state_delete", "name": name})
        self.put({"op": "server_delete", "name": name})
        self.rollouts.forget(name)
        self.event(EventKind.FORGOTTEN, name, "file removed; history kept")
        self.notify()

    # --- waking ------------------------------------------------------------------------
    def notify(self) -> None:
        """Something changed: wake the loop and anyone waiting for a phase."""
        self.wake.set()
        self.announce()

    def announce(self) -> None:
        """Wake only the waiters (`wait_until`), not the loop."""
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until `done()` holds (checked after every change), or the timeout."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return done()
        return True

    def spawn_task(self, work: Coroutine[Any, Any, Any] | asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Run `work` in the background; keep a reference (asyncio only keeps weak ones)
        and log a failure instead of losing it."""
        task = asyncio.ensure_future(work)
        self.tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        self.tasks.discard(task)  # type: ignore[arg-type]
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def snapshot(self, name: str) -> dict[str, Any]:
        st = self.state(name)
        out = asdict(st)
        out["phase"] = str(st.phase)
        out["after_stop"] = str(st.after_stop)
        return out


_SHOW_DETAIL = {Phase.ERROR, Phase.BACKOFF, Phase.EXITED, Phase.STOPPED}


def facts_of(st: ServerState, changes: dict[str, Any]) -> dict[str, Any]:
    """The typed facts a transition's event row carries (reconciler/core/facts.py), so the page
    writes its words from data: how the run ended and who ended it, the failure count and the
    next try, the program holding the port, the check that does not answer."""
    out: dict[str, Any] = {}
    if "ended" in changes and st.ended is not None:
        out["exit"] = as_dict(st.ended)
    if st.phase in (Phase.BACKOFF, Phase.ERROR):
        out["failures"] = st.failures
    if st.phase in (Phase.BACKOFF, Phase.ERROR) and st.next_try_at is not None:
        out["next_try_at"] = to_wall(st.next_try_at)
    if st.phase is Phase.ERROR and st.held is not None:
        out["held"] = as_dict(st.held)
    if st.phase is Phase.ERROR and st.start_error:
        out["start_error"] = st.start_error
    if st.not_answering is not None:
        out["check"] = as_dict(st.not_answering)
    return out
