"""What the gateway does when its session changes under it: Ctrl-C, a stop request, the terminal
closing, the console window closing, a log-off, a shutdown. Never a silent death: every event
is recorded (`host_event`) with what was decided, and the decision is one row of DECISIONS.

The OS side (signals on POSIX, the console control handler on Windows) is `platform.host_events`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from reconciler.core.events import EventKind
from reconciler.platform import HostEvent, current

log = logging.getLogger("gateway")


@dataclass(frozen=True)
class Decision:
    stop: bool  # stop the gateway
    keep_servers: bool | None  # None: as `gateway run` was told (--keep-servers), else forced
    words: str


DECISIONS: dict[str, Decision] = {
    "interrupt": Decision(True, None, "Ctrl-C: stopping"),
    "terminate": Decision(True, None, "asked to stop (SIGTERM: `kill`, the service manager, a log-out or a "
                                      "shutdown): stopping"),
    # POSIX: a closed terminal ends what runs in it, and `nohup` is easy to forget. The servers run in
    # sessions of their own and keep going; so does their supervisor, writing only to gateway.log.
    "hangup": Decision(False, None, "the terminal closed (SIGHUP): the gateway keeps running in the background, "
                                    "writing to gateway.log only; stop it with `kill {pid}`"),
    # Windows ends the process ~5 s after a console closes: too short to stop servers well. They
    # have no console of their own and keep running; the next `gateway run` adopts them.
    "close": Decision(True, True, "the console window closed: the gateway stops, the servers keep running "
                                  "and the next start adopts them"),
    # Only a gateway outside the user's session (the boot task) sees a log-off, and not whose: keep going.
    "logoff": Decision(False, None, "a user logged off: the gateway runs outside that session and keeps running"),
    "shutdown": Decision(True, False, "the system is shutting down: stopping the servers"),
    # A gateway with no console (pythonw: autostart) runs in the session that ends, as do its servers.
    "signout": Decision(True, False, "you are signing out of Windows: stopping the servers, which end with your "
                                     "session; they start again when the gateway does"),
}
assert set(DECISIONS) == set(get_args(HostEvent)), "every host event needs a decision"


def decide(kind: str) -> Decision:
    return DECISIONS[kind]


def detach_from_terminal() -> None:
    """The terminal is gone: writing to it would fail (EIO). Standard output and error now go
    nowhere; gateway.log still gets every record."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(null, fd)
    finally:
        os.close(null)


def listen(rt: Any, request_stop: Callable[[bool | None], None]) -> None:
    """In the daemon, on its loop: act on every host event as DECISIONS say, and record it."""
    loop = asyncio.get_running_loop()
    detached = False

    def on_loop(kind: str) -> None:
        nonlocal detached
        decision = decide(kind)
        rt.event(EventKind.HOST_EVENT, None, decision.words.format(pid=os.getpid()),
                 detail={"event": kind, "stop": decision.stop, "keep_servers": decision.keep_servers})
        if kind == "hangup" and not detached:
            detached = True
            detach_from_terminal()
        if decision.stop:
            request_stop(decision.keep_servers)

    def on_event(kind: HostEvent) -> None:  # any thread (Windows calls its handler on one of its own)
        try:
            loop.call_soon_threadsafe(on_loop, kind)
        except RuntimeError:  # the loop has closed: we are on the way out anyway
            pass

    try:
        current().host_events(on_event)
    except OSError as exc:  # e.g. Windows refused the console handler: run on, but say so
        log.warning("cannot listen for session events (%s): closing the window or a shutdown ends the gateway "
                    "without a clean stop", exc)
