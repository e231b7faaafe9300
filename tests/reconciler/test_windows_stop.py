"""The graceful stop on Windows (NSSM's order, from a helper attached to the server's console):
the exact calls, in order, checked on any OS against a recording stand-in of the Win32 calls.
Wine cannot deliver console control events, so the delivery itself is verified only on a real
Windows; the helper's real run under the Windows lane is in tests/windows/."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.platform.windows_stop import CTRL_BREAK_EVENT, CTRL_C_EVENT, WM_CLOSE, stop_sequence


class Recorder:
    """Answers each call as told and writes down every call with its arguments."""

    def __init__(self, *, attach_ok: Sequence[int] = (), send_ok: bool = True, exits: bool = True,
                 windows: Sequence[int] = ()) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.attach_ok, self.send_ok, self.exits, self.windows = set(attach_ok), send_ok, exits, list(windows)

    def FreeConsole(self) -> bool:  # noqa: N802
        self.calls.append(("FreeConsole",))
        return True

    def AttachConsole(self, pid: int) -> bool:  # noqa: N802
        self.calls.append(("AttachConsole", pid))
        return pid in self.attach_ok

    def SetConsoleCtrlHandler(self, handler: None, add: bool) -> bool:  # noqa: N802
        self.calls.append(("SetConsoleCtrlHandler", handler, add))
        return True

    def GenerateConsoleCtrlEvent(self, event: int, group: int) -> bool:  # noqa: N802
        self.calls.append(("GenerateConsoleCtrlEvent", event, group))
        return self.send_ok

    def last_error(self) -> int:
        return 6  # ERROR_INVALID_HANDLE

    def wait_exit(self, pid: int, seconds: float) -> bool:
        self.calls.append(("wait_exit", pid, seconds))
        return self.exits

    def windows_of(self, pids: Sequence[int]) -> list[int]:
        self.calls.append(("windows_of", tuple(pids)))
        return self.windows

    def PostMessageW(self, hwnd: int, msg: int, wparam: int, lparam: int) -> bool:  # noqa: N802
        self.calls.append(("PostMessageW", hwnd, msg, wparam, lparam))
        return True


def test_ctrl_c_reaches_the_servers_console_and_nothing_more_when_it_stops() -> None:
    api = Recorder(attach_ok=[4120])
    said = stop_sequence(api, [4120, 4188], CTRL_C_EVENT, 1.5)
    assert api.calls == [
        ("FreeConsole",),                           # the helper leaves any console it was given
        ("AttachConsole", 4120),                     # joins the server's own console
        ("SetConsoleCtrlHandler", None, True),       # ignores the event itself
        ("GenerateConsoleCtrlEvent", CTRL_C_EVENT, 0),  # group 0: every process on that console
        ("FreeConsole",),
        ("wait_exit", 4120, 1.5),                    # stopped: no window is asked to close
    ]
    assert said == ["sent CTRL_C to the console of pid 4120", "it stopped"]


def test_a_server_still_running_after_the_event_gets_wm_close_on_its_windows() -> None:
    api = Recorder(attach_ok=[4120], exits=False, windows=[0x1A2B, 0x3C4D])
    said = stop_sequence(api, [4120, 4188], CTRL_BREAK_EVENT, 0.5)
    assert api.calls[3] == ("GenerateConsoleCtrlEvent", CTRL_BREAK_EVENT, 0)
    assert api.calls[5:] == [
        ("wait_exit", 4120, 0.5),
        ("windows_of", (4120, 4188)),                # the windows of every process of the server
        ("PostMessageW", 0x1A2B, WM_CLOSE, 0, 0),
        ("PostMessageW", 0x3C4D, WM_CLOSE, 0, 0),
    ]
    assert said == ["sent CTRL_BREAK to the console of pid 4120", "asked 2 windows to close"]


def test_a_root_without_a_console_falls_to_the_next_process_then_to_windows() -> None:
    api = Recorder(attach_ok=[4188], exits=False)
    said = stop_sequence(api, [4120, 4188], CTRL_C_EVENT, 1.5)
    assert api.calls[:3] == [("FreeConsole",), ("AttachConsole", 4120), ("AttachConsole", 4188)]
    assert said[0] == "sent CTRL_C to the console of pid 4188"

    nobody = Recorder(exits=False)  # Wine: no console can be attached to
    said = stop_sequence(nobody, [4120], CTRL_C_EVENT, 1.5)
    assert ("SetConsoleCtrlHandler", None, True) not in nobody.calls  # nothing is sent without a console
    assert not any(call[0] == "GenerateConsoleCtrlEvent" for call in nobody.calls)
    assert said == ["no console to attach to (error 6)", "no window to close"]


def test_a_refused_event_is_said_with_its_error() -> None:
    api = Recorder(attach_ok=[4120], send_ok=False)
    assert stop_sequence(api, [4120], CTRL_C_EVENT, 1.5)[0] == "could not send CTRL_C to the console of pid 4120 (error 6)"
