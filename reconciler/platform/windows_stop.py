"""A graceful stop on Windows, in NSSM's order, from a short-lived helper process.

A server runs with a console of its own (CREATE_NO_WINDOW gives it a hidden one), and a console
control event reaches only the processes attached to the sender's console: the gateway, on its
own console or on none, cannot send one to a server. So the gateway starts this helper without a
console (DETACHED_PROCESS), which

1. attaches to the server's console (`AttachConsole(pid)`, the first of the server's processes
   that still has one),
2. ignores the event itself (`SetConsoleCtrlHandler(NULL, TRUE)`) and sends CTRL_C (or
   CTRL_BREAK) to process group 0, i.e. every process on that console: the server's tree, as a
   signal to a POSIX process group,
3. detaches, and if the server still runs `close_after` seconds later, posts WM_CLOSE to the top-
   level windows of its processes (a program with a window: its "close"),

then exits. Whatever still runs at the server's stop timeout is ended with its job object by the
gateway. Children must not be started with CREATE_NEW_PROCESS_GROUP: Windows disables CTRL_C in
a new process group.

    python -m reconciler.platform.windows_stop EVENT CLOSE_AFTER PID [PID ...]

`stop_sequence` is the order of calls, written against the small `Win32` protocol so that it is
contract-tested on any OS (Wine cannot deliver console control events at all); `Kernel32` makes
the calls on Windows.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Protocol

CTRL_C_EVENT, CTRL_BREAK_EVENT = 0, 1  # wincon.h
WM_CLOSE = 0x0010  # winuser.h
CLOSE_AFTER = 1.5  # seconds from the console event to WM_CLOSE (NSSM's default method timeout)


class Win32(Protocol):
    """The calls the sequence makes (kernel32 / user32 names, Python arguments)."""

    def FreeConsole(self) -> bool: ...  # noqa: N802 - the Win32 names, so the contract reads like NSSM's code
    def AttachConsole(self, pid: int) -> bool: ...  # noqa: N802
    def SetConsoleCtrlHandler(self, handler: None, add: bool) -> bool: ...  # noqa: N802
    def GenerateConsoleCtrlEvent(self, event: int, group: int) -> bool: ...  # noqa: N802
    def last_error(self) -> int: ...
    def wait_exit(self, pid: int, seconds: float) -> bool: ...  # True: it has exited (or is gone)
    def windows_of(self, pids: Sequence[int]) -> list[int]: ...  # top-level windows of these processes
    def PostMessageW(self, hwnd: int, msg: int, wparam: int, lparam: int) -> bool: ...  # noqa: N802


def stop_sequence(api: Win32, pids: Sequence[int], event: int, close_after: float) -> list[str]:
    """Ask the server whose processes are `pids` (its root first) to stop; what was done, in words."""
    said: list[str] = []
    api.FreeConsole()  # a helper started with a console of its own could not attach to another
    attached = next((pid for pid in pids if api.AttachConsole(pid)), None)
    if attached is None:
        said.append(f"no console to attach to (error {api.last_error()})")
    else:
        api.SetConsoleCtrlHandler(None, True)  # the helper is on that console now: it must not stop itself
        name = "CTRL_BREAK" if event == CTRL_BREAK_EVENT else "CTRL_C"
        if api.GenerateConsoleCtrlEvent(event, 0):
            said.append(f"sent {name} to the console of pid {attached}")
        else:
            said.append(f"could not send {name} to the console of pid {attached} (error {api.last_error()})")
        api.FreeConsole()
    if pids and api.wait_exit(pids[0], close_after):
        said.append("it stopped")
        return said
    windows = api.windows_of(pids)
    for hwnd in windows:
        api.PostMessageW(hwnd, WM_CLOSE, 0, 0)
    said.append(f"asked {len(windows)} windows to close" if windows else "no window to close")
    return said


class Kernel32:  # pragma: no cover - Windows only; the sequence above is tested anywhere
    """The real calls, through ctypes."""

    SYNCHRONIZE, WAIT_OBJECT_0 = 0x00100000, 0

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self.ctypes, self.wintypes = ctypes, wintypes
        self.k32: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        self.u32: Any = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
        self.k32.OpenProcess.restype = wintypes.HANDLE
        self.k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        self.k32.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
        self.k32.CloseHandle.argtypes = [wintypes.HANDLE]
        self.u32.PostMessageW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]

    def FreeConsole(self) -> bool:  # noqa: N802
        return bool(self.k32.FreeConsole())

    def AttachConsole(self, pid: int) -> bool:  # noqa: N802
        return bool(self.k32.AttachConsole(self.wintypes.DWORD(pid)))

    def SetConsoleCtrlHandler(self, handler: None, add: bool) -> bool:  # noqa: N802
        return bool(self.k32.SetConsoleCtrlHandler(None, add))

    def GenerateConsoleCtrlEvent(self, event: int, group: int) -> bool:  # noqa: N802
        return bool(self.k32.GenerateConsoleCtrlEvent(event, group))

    def last_error(self) -> int:
        return int(self.ctypes.get_last_error())  # type: ignore[attr-defined]

    def wait_exit(self, pid: int, seconds: float) -> bool:
        handle = self.k32.OpenProcess(self.SYNCHRONIZE, False, pid)
        if not handle:
            return True  # gone already (or never ours to wait on)
        try:
            return bool(self.k32.WaitForSingleObject(handle, int(seconds * 1000)) == self.WAIT_OBJECT_0)
        finally:
            self.k32.CloseHandle(handle)

    def windows_of(self, pids: Sequence[int]) -> list[int]:
        ctypes, wintypes = self.ctypes, self.wintypes
        wanted, found = set(pids), []

        def each(hwnd: int, _: int) -> bool:
            owner = wintypes.DWORD()
            self.u32.GetWindowThreadProcessId(hwnd, ctypes.byref(owner))
            if owner.value in wanted:
                found.append(hwnd)
            return True

        callback = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)(each)  # type: ignore[attr-defined]
        self.u32.EnumWindows(callback, 0)
        return found

    def PostMessageW(self, hwnd: int, msg: int, wparam: int, lparam: int) -> bool:  # noqa: N802
        return bool(self.u32.PostMessageW(hwnd, msg, wparam, lparam))


def main(argv: Sequence[str]) -> int:
    event, close_after, *pids = argv
    for line in stop_sequence(Kernel32(), [int(pid) for pid in pids], int(event), float(close_after)):
        print(line, flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - the helper process
    sys.exit(main(sys.argv[1:]))
