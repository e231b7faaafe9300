"""The session changing under the gateway: every host event has a decision and is recorded; a
closed terminal (SIGHUP) no longer ends the gateway; SIGTERM stops it and says why."""

from __future__ import annotations

import signal
import sys
import time
from typing import get_args

import pytest

from reconciler.host.hostevents import DECISIONS, decide
from reconciler.platform import HostEvent
from reconciler.platform.windows import console_event
from tests.fix_gateway import Gateway
from tests.reconciler.test_instance import HTTP


def test_every_host_event_has_a_decision() -> None:
    assert set(DECISIONS) == set(get_args(HostEvent))
    assert decide("hangup").stop is False and decide("logoff").stop is False
    assert decide("close").keep_servers is True  # Windows ends us in 5 s: servers stay, the next start adopts
    assert decide("interrupt").keep_servers is None and decide("terminate").stop


def test_windows_console_codes() -> None:  # wincon.h: CTRL_C 0, BREAK 1, CLOSE 2, LOGOFF 5, SHUTDOWN 6
    assert [console_event(c) for c in (0, 1, 2, 5, 6)] == ["interrupt", "interrupt", "close", "logoff", "shutdown"]
    assert console_event(3) is None


def test_the_end_of_a_windowless_gateways_session_stops_it_and_its_servers() -> None:
    from reconciler.platform.windows_session import ENDSESSION_LOGOFF, WM_ENDSESSION, WM_QUERYENDSESSION, end_session_event

    assert end_session_event(WM_ENDSESSION, 1, ENDSESSION_LOGOFF) == "signout"
    assert end_session_event(WM_ENDSESSION, 1, 0) == "shutdown"  # a shutdown or a restart
    assert end_session_event(WM_ENDSESSION, 0, ENDSESSION_LOGOFF) is None  # the end was called off
    assert end_session_event(WM_QUERYENDSESSION, 0, 0) is None  # a question, answered yes
    assert decide("signout").stop and decide("signout").keep_servers is False  # they end with the session


@pytest.mark.skipif(sys.platform != "win32", reason="a real window on Windows (the Windows lane sends the message)")
def test_the_hidden_window_hears_the_end_of_the_session() -> None:
    import ctypes
    import threading

    from reconciler.platform.windows_session import CLASS_NAME, ENDSESSION_LOGOFF, WM_ENDSESSION, SessionWindow

    heard: list[str] = []
    window = SessionWindow(heard.append, grace=0.2)
    assert window.hwnd
    user32 = ctypes.WinDLL("user32")
    assert user32.FindWindowW(CLASS_NAME, None) == window.hwnd  # a top-level window: broadcasts reach it
    sent = threading.Thread(target=user32.SendMessageW, args=(window.hwnd, WM_ENDSESSION, 1, ENDSESSION_LOGOFF))
    sent.start()
    sent.join(10)
    assert heard == ["signout"]


def _host_events(gw: Gateway) -> list[dict]:
    return [e for e in gw.events() if e["kind"] == "host_event"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP and SIGTERM: POSIX (Windows' console and session "
                    "events are this file's other tests)")
def test_a_closed_terminal_leaves_the_gateway_running_and_sigterm_stops_it(gateway: Gateway) -> None:
    gateway.write("web", HTTP)
    gateway.start()
    pid = gateway.wait_phase("web", "running")["pid"]
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not _host_events(gateway):
        assert time.monotonic() < deadline, "no host_event recorded for SIGHUP"
        time.sleep(0.05)
    [hangup] = _host_events(gateway)
    assert hangup["detail"]["event"] == "hangup" and "keeps running" in hangup["reason"]
    assert gateway.proc.poll() is None
    assert gateway.status()["web"]["pid"] == pid
    assert gateway.stop() == 0
    kinds = [(e["kind"], (e["detail"] or {}).get("event")) for e in gateway.events()]
    assert kinds.index(("host_event", "terminate")) < kinds.index(("gateway_stopped", None))
