"""Sleep, resume and freezes: notice that the laptop slept (or the gateway was frozen: SIGSTOP,
a debugger, a VM paused), and keep the gap from looking like an outage.

A timer that wakes every BEAT seconds compares how long it really slept with what it asked for,
on two clocks: `time.monotonic` (stops during a suspend on Linux and macOS, runs on through a
freeze) and `platform.suspend_clock` (counts through both: CLOCK_BOOTTIME, GetTickCount64).
Between two beats, every health check looks too before its result is judged (`rt.resume.look()`): a
suspend shows at any moment as the suspend clock ahead of the monotonic one, so the first
check after a wake finds it, whatever the beat. Late by JUMP or more: one `host_resumed`
event with how long, then

- every server's count of failed health checks starts again from zero, and the loop runs at once;
- for SETTLE seconds failed checks are not failures (`rt.resume.settling()`; the network and the disks
  are waking up) and alerts for servers going down stay quiet (ops.notify's Classifier);
- the gap has no health samples, so availability (the share of passed checks) is not charged;
- the cloudflared connector, known to stay down after a hibernation, is restarted if it is not
  ready TUNNEL_AFTER seconds after the resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.core.events import EventKind
from reconciler.core.names import CONNECTOR
from reconciler.core.state import Phase, ServerState
from reconciler.platform import current

log = logging.getLogger("gateway")
# A freeze that begins while the timer sleeps shows as late by (freeze - what was left of the
# beat): every freeze longer than BEAT + JUMP is seen, and its length is known to within BEAT.
# A suspend needs no beat on Linux and macOS (the checks' `look` sees the two clocks part); on
# Windows both clocks count the sleep, and the beat, overdue at the wake, fires with the checks'
# own overdue timers, before any of their probes has an answer to judge. The beat was 1 s: a
# wake-up a second, a third of the gateway's at rest (issue 27); 5 s leaves freezes of 6-10 s unseen.
BEAT = 5.0  # seconds between two looks
JUMP = 5.0  # this much later than asked: slept or frozen (a busy loop is late by milliseconds)
SETTLE = 20.0  # seconds after a resume in which failed checks are not counted
TUNNEL_AFTER = 15.0  # seconds after a resume: cloudflared not ready by then is restarted


@dataclass(frozen=True)
class Gap:
    seconds: float  # how much later than asked the timer fired, on the clock that counted most
    slept: bool  # the suspend clock ran ahead of the monotonic one: the host was suspended

    def describe(self) -> str:
        what = "the laptop slept" if self.slept else "the laptop slept or the gateway was frozen"
        return f"{what} for {_words(self.seconds)}; every server is checked again now"


def gap(asked: float, monotonic: float, suspend: float, jump: float = JUMP) -> Gap | None:
    """Pure: the timer asked for `asked` seconds; the two clocks moved `monotonic` and `suspend`."""
    late = max(monotonic, suspend) - asked
    if late < jump:
        return None
    return Gap(round(late, 1), suspend - monotonic >= jump / 2)


def _words(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 \
        else f"{seconds / 3600:.1f} h"


class ResumeState:
    """What a resume leaves for the health checks (reconciler/engine/observe.py), which hold only the
    runtime: it holds one (`rt.resume`), and only this module writes it. The settling window,
    the checks napping, and the watch they ask between its beats."""

    def __init__(self) -> None:
        self.settling_until = 0.0  # monotonic: after a sleep or freeze, failed checks are not counted until then
        self.sleepers: set[asyncio.Future[None]] = set()  # health loops napping (a resume wakes them)
        self.watch: ResumeWatch | None = None  # the running watch, which the checks ask between its beats

    async def nap(self, seconds: float) -> None:
        """`asyncio.sleep(seconds)`, cut short by a resume: a health loop that naps with it checks
        again at once after the laptop wakes (after a suspend the monotonic clock stood still, so a
        plain sleep would still have most of its time to run). As cheap as asyncio.sleep."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _wake, woken)
        self.sleepers.add(woken)
        try:
            await woken
        finally:
            timer.cancel()
            self.sleepers.discard(woken)

    def settling(self, now: float | None = None) -> bool:
        """Just after a resume: a failed check now says nothing about the server."""
        return self.settling_until > (time.monotonic() if now is None else now)

    def look(self) -> None:
        """A health check is about to judge its result: a suspend since the last look is handled
        first (settling starts, the failure counts are cleared), not at the watch's next beat."""
        if self.watch is not None:
            self.watch.look()


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


class Resumable(Protocol):
    """What a resume touches of the runtime (reconciler/engine/runtime.py `Runtime`): its own
    state, each server's health record, one event, a wake-up of the loop."""

    resume: ResumeState
    states: dict[str, ServerState]

    def state(self, name: str) -> ServerState: ...

    def update(self, name: str, **changes: Any) -> ServerState: ...

    def event(self, kind: EventKind, server: str | None, reason: str, *, actor: str = "gateway",
              source: Phase | None = None, target: Phase | None = None,
              detail: dict[str, Any] | None = None) -> None: ...

    def notify(self) -> None: ...

    def spawn_task(self, work: Coroutine[Any, Any, Any] | asyncio.Future[Any]) -> asyncio.Future[Any]: ...


class ResumeWatch:
    def __init__(self, rt: Resumable, restart: Callable[[str], None] | None = None, *, beat: float = BEAT, jump: float = JUMP,
                 settle: float = SETTLE, tunnel_after: float = TUNNEL_AFTER, clock: Any = None) -> None:
        self.rt = rt
        self.restart = restart  # restart(name): an owner-like restart through the reconciler
        self.beat, self.jump, self.settle, self.tunnel_after = beat, jump, settle, tunnel_after
        self.resumes = 0
        self.clock = clock or current().suspend_clock
        self.mark = (time.monotonic(), self.clock())  # both clocks at the last look

    async def run(self) -> None:
        self.rt.resume.watch = self  # the checks look between beats (`ResumeState.look`)
        while True:
            self.mark = (time.monotonic(), self.clock())
            await asyncio.sleep(self.beat)
            mono, suspend = self.mark  # (moved on if a check found a suspend meanwhile)
            self._found(gap(self.beat, time.monotonic() - mono, self.clock() - suspend, self.jump))

    def look(self) -> Gap | None:
        """Between beats: the suspend clock ahead of the monotonic one by JUMP since the last look."""
        mono, suspend = time.monotonic(), self.clock()
        ran = mono - self.mark[0]
        found = gap(ran, ran, suspend - self.mark[1], self.jump)
        if found is not None:
            self.mark = (mono, suspend)
            self._found(found)
        return found

    def _found(self, found: Gap | None) -> None:
        if found is not None:
            try:
                self.resumed(found)
            except Exception:  # never end the watch (the daemon takes an ended task for a crash)
                log.exception("handling a resume failed")

    def resumed(self, found: Gap) -> None:
        rt = self.rt
        self.resumes += 1
        rt.resume.settling_until = time.monotonic() + self.settle
        for name, state in list(rt.states.items()):
            if state.health_failures or state.health_error:
                rt.update(name, health_failures=0, health_error=None)
        rt.event(EventKind.HOST_RESUMED, None, found.describe(),
                 detail={"seconds": found.seconds, "slept": found.slept, "settle": self.settle})
        rt.notify()  # the loop looks at everything now
        for woken in list(rt.resume.sleepers):  # and every check that naps (`ResumeState.nap`) runs now
            _wake(woken)
        if self.restart is not None and CONNECTOR in rt.states:
            rt.spawn_task(self._tunnel_check(self.resumes))

    async def _tunnel_check(self, resume: int) -> None:
        await asyncio.sleep(self.tunnel_after)
        state = self.rt.state(CONNECTOR)
        if resume != self.resumes or str(state.phase) != "running":
            return  # another resume came since (it checks), or the connector is not up to restart
        if (state.health_failures or state.health_error) and self.restart is not None:
            log.warning("cloudflared is not ready %.0fs after a resume: restarting it", self.tunnel_after)
            self.restart(CONNECTOR)

