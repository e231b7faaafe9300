"""Is the tunnel reachable from outside, and why not: what a laptop's owner needs to hear.

Offline, cloudflared exits 1 within a second of starting (it cannot reach the edge), so an
ordinary supervisor would restart it in a loop and raise "keeps crashing". Here, while the
host's internet check fails, a connector that exited waits for the internet (the planner's
`Reason.WAITING_FOR_INTERNET`, as for any server whose check `needs_internet`): no restarts,
no escalation; here, one `TUNNEL_WAITING` event ("waiting for the internet"); the moment the
check passes again it starts at once.

With the internet up, a connector that is not ready for `offline_alert_after` is offline:
one `TUNNEL_OFFLINE` event (the `tunnel` alert), and `TUNNEL_ONLINE` when it is ready again.
The real cause is kept: cloudflared's exit code and the last error line it printed, and the
time it really went offline (not the time someone looked).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.core.events import EventKind
from reconciler.core.names import CONNECTOR
from reconciler.core.state import Phase
from reconciler.engine.runtime import to_wall
from reconciler.platform.aio import wait_for
from reconciler.platform.fsutil import server_log
from reconciler.tunnel import locate

if TYPE_CHECKING:
    from reconciler.engine.runtime import Runtime
    from reconciler.tunnel.connector import TunnelPlan

TICK = 1.0  # seconds between looks when nothing changes (the internet check has its own pace)
INSTALLED_EVERY = 5  # ticks between looks for a cloudflared installed meanwhile
_EXITED = (Phase.EXITED, Phase.BACKOFF)
_ERROR_WORDS = (" ERR ", " FTL ", "error", "Error", "failed", "Failed", "Could not", "cannot", "refused")


@dataclass
class Uplink:
    held: bool = False  # the connector is held back until the internet is back
    since: float | None = None  # monotonic: when the tunnel really went offline
    clock: float | None = None  # monotonic: since when an outage with the internet up counts
    said: str | None = None  # "waiting" | "offline": what was announced for this outage
    cause: str | None = None  # exit code and cloudflared's last error line, in one line
    internet: bool | None = None
    cause_key: tuple[Any, ...] | None = None


def last_error_line(log: Path, limit: int = 64 * 1024, width: int = 300) -> str | None:
    """The last line of cloudflared's log that reads like an error (else its last line)."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return error_line(lines, width)


def error_line(lines: list[str], width: int = 300) -> str | None:
    """The last line that reads like an error (else the last line), at most `width` characters."""
    lines = [ln.strip() for ln in lines if ln.strip()]
    for line in reversed(lines):
        if any(word in line for word in _ERROR_WORDS):
            return line[-width:]
    return lines[-1][-width:] if lines else None


def cause_of(rt: Any) -> str | None:
    st = rt.state(CONNECTOR)
    parts = []
    if st.phase in _EXITED or st.phase is Phase.STOPPED:
        if st.last_exit:
            parts.append(st.last_exit)
    elif st.health_error:
        parts.append(f"not ready: {st.health_error}")
    line = last_error_line(server_log(rt.data_dir, CONNECTOR))
    if line:
        parts.append(f'"{line}"')
    return " · ".join(parts) or None


def is_up(st: Any) -> bool:
    return st.phase is Phase.RUNNING and not st.health_failures and not st.health_error


def step(rt: Runtime, up: Uplink, plan: TunnelPlan | None, now: float, reload: Callable[[], None],
         bridged: Callable[[], bool]) -> None:
    """Look once: hold or let go, and say what changed. `bridged()`: a second connector of a
    handover serves (the tunnel is reachable although the managed one does not run)."""
    if plan is None or plan.settings is None or (plan.spec is None and not up.held):
        return
    st = rt.state(CONNECTOR)
    internet = rt.internet_ok
    offline = internet is False
    serves = st.phase is not Phase.RUNNING and bridged()  # a second connector serves meanwhile
    if is_up(st) or serves or rt.intents.get(CONNECTOR) == "stop":
        if up.said is not None and (is_up(st) or serves):
            rt.event(EventKind.TUNNEL_ONLINE, CONNECTOR, f"reachable from outside again (offline since "
                     f"{_clock(up.since)})", detail={"offline_since": to_wall(up.since)})
        held, up.held = up.held, False
        up.since = up.clock = up.said = up.cause = up.cause_key = None
        up.internet = internet
        if held:
            reload()
        return
    if up.since is None:
        up.since = st.exited_at if st.phase in _EXITED and st.exited_at is not None else now
        up.clock = now
    if not offline and up.internet is False:
        up.clock = now  # the internet is back: give cloudflared its time before calling it offline
    up.internet = internet
    key = (st.phase, st.exited_at, st.last_exit, st.health_error)
    if key != up.cause_key:  # the log is read when something changed, not on every look
        up.cause, up.cause_key = cause_of(rt) or up.cause, key
    if offline:
        if up.said != "waiting":
            up.said = "waiting"
            rt.event(EventKind.TUNNEL_WAITING, CONNECTOR, "waiting for the internet: this laptop has no internet, "
                     "so the tunnel cannot connect; it retries as soon as the internet is back",
                     detail={"cause": up.cause, "offline_since": to_wall(up.since)})
        if not up.held and st.phase in _EXITED:
            up.held = True
            reload()
        return
    if up.held:
        up.held = False
        reload()  # the internet is back: start it now, not after a backoff
        return
    after = plan.settings.offline_alert_after
    if up.said != "offline" and up.clock is not None and now - up.clock >= after and st.phase is not Phase.STARTING:
        up.said = "offline"
        rt.event(EventKind.TUNNEL_OFFLINE, CONNECTOR, f"not reachable from outside since {_clock(up.since)}: "
                 f"{up.cause or st.reason or st.phase}", detail={"cause": up.cause, "offline_since": to_wall(up.since)})


def _clock(mono: float | None) -> str:
    wall = to_wall(mono)
    return wall[11:19] + " UTC" if wall else "?"


def exit_words(rt: Any) -> str | None:
    """When the connector has just exited because of an error it printed last, that text
    (the whole line: a route's service URL may be at its start)."""
    st = rt.state(CONNECTOR)
    if st.phase not in _EXITED:
        return None
    line = last_error_line(server_log(rt.data_dir, CONNECTOR), width=2000)
    return line if line and "Error starting local service" in line else None


async def watch(rt: Runtime, up: Uplink, plan: Callable[[], TunnelPlan | None], reload: Callable[[], None],
                bridged: Callable[[], bool], exited: Callable[[str], None] | None = None) -> None:
    """Look after every change of the runtime (a connector exit), and once a second.
    `exited(words)`: the connector stopped on an error naming a route (see `exit_words`)."""
    ticks = 0
    seen_exit: float | None = None
    while True:
        changed, ticked = rt.changed, False
        try:
            await wait_for(changed.wait(), TICK)
        except TimeoutError:
            ticks, ticked = ticks + 1, True
        current = plan()
        st = rt.state(CONNECTOR)
        if exited is not None and st.phase in _EXITED and st.exited_at is not None and st.exited_at != seen_exit:
            seen_exit = st.exited_at
            words = exit_words(rt)
            if words:
                exited(words)
        step(rt, up, current, time.monotonic(), reload, bridged)
        if ticked and ticks % INSTALLED_EVERY == 0 and current is not None and current.settings is not None \
                and current.executable is None \
                and locate.find(current.settings.cloudflared, data_dir=rt.data_dir) is not None:
            reload()  # cloudflared was just installed: noticed without a restart
