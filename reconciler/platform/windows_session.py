"""Windows: the end of the user's session (signing out, a shutdown, a restart) for a gateway with no
console (pythonw.exe: the autostart task, or a start without a window). A console program hears
these as console control events (windows.py); a windowless one only as WM_QUERYENDSESSION and
WM_ENDSESSION, sent to its top-level windows. So the gateway keeps one hidden top-level window,
on a thread of its own, whose window procedure reports them (a message-only window would not get
them: they are broadcast to top-level windows).

After WM_ENDSESSION returns, Windows ends the process; it waits a few seconds for the window
procedure first, so the procedure waits for the gateway's stop up to `grace` seconds.
`end_session_event` is pure and tested anywhere; the window runs on Windows (under Wine the test
sends the message itself: Wine has no sign-out to send it).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

WM_QUERYENDSESSION, WM_ENDSESSION, WM_CLOSE, WM_DESTROY = 0x0011, 0x0016, 0x0010, 0x0002
ENDSESSION_LOGOFF = 0x80000000
CLASS_NAME = "omen-gateway-session"

EndEvent = str  # "signout" or "shutdown" (reconciler.platform.HostEvent)


def end_session_event(msg: int, wparam: int, lparam: int) -> EndEvent | None:
    """What a window message says about the session: only a WM_ENDSESSION that really ends it
    (wParam TRUE) counts; WM_QUERYENDSESSION is a question, answered yes, not an end yet."""
    if msg != WM_ENDSESSION or not wparam:
        return None
    return "signout" if lparam & ENDSESSION_LOGOFF else "shutdown"


class SessionWindow:  # pragma: no cover - Windows only; end_session_event is tested anywhere
    """A hidden top-level window whose procedure calls `on_end` when the session ends."""

    def __init__(self, on_end: Callable[[EndEvent], None], grace: float) -> None:
        self.on_end, self.grace = on_end, grace
        self.stopped = threading.Event()  # set by whoever finishes the stop: the procedure returns
        self.hwnd: int | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="session-window", daemon=True)
        self._thread.start()
        ready.wait(5.0)

    def _run(self, ready: threading.Event) -> None:
        from ctypes import wintypes

        user32: Any = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
        kernel32: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        lresult = ctypes.c_ssize_t
        proc_type = ctypes.WINFUNCTYPE(lresult, wintypes.HWND, wintypes.UINT, wintypes.WPARAM,  # type: ignore[attr-defined]
                                       wintypes.LPARAM)
        user32.DefWindowProcW.restype = lresult
        user32.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]

        def procedure(hwnd: int, msg: int, wparam: int, lparam: int) -> int:
            if msg == WM_QUERYENDSESSION:
                return 1  # yes, the session may end
            kind = end_session_event(msg, wparam, lparam)
            if kind is not None:
                self.on_end(kind)
                self.stopped.wait(self.grace)  # Windows ends the process once this returns
                return 0
            return int(user32.DefWindowProcW(hwnd, msg, wparam, lparam))

        self._procedure = proc_type(procedure)  # a ctypes callback must outlive the window

        class WndClass(ctypes.Structure):  # WNDCLASSW
            _fields_ = [("style", wintypes.UINT), ("lpfnWndProc", proc_type), ("cbClsExtra", ctypes.c_int),
                        ("cbWndExtra", ctypes.c_int), ("hInstance", wintypes.HINSTANCE), ("hIcon", wintypes.HICON),
                        ("hCursor", wintypes.HANDLE), ("hbrBackground", wintypes.HBRUSH),
                        ("lpszMenuName", wintypes.LPCWSTR), ("lpszClassName", wintypes.LPCWSTR)]

        kernel32.GetModuleHandleW.restype = wintypes.HINSTANCE
        instance = kernel32.GetModuleHandleW(None)
        klass = WndClass(0, self._procedure, 0, 0, instance, None, None, None, None, CLASS_NAME)
        user32.RegisterClassW(ctypes.byref(klass))
        user32.CreateWindowExW.restype = wintypes.HWND
        user32.CreateWindowExW.argtypes = [wintypes.DWORD, wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD,
                                           ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, wintypes.HWND,
                                           wintypes.HMENU, wintypes.HINSTANCE, wintypes.LPVOID]
        # a top-level window never shown (no WS_VISIBLE), so it gets the session's broadcasts
        self.hwnd = user32.CreateWindowExW(0, CLASS_NAME, "omen-gateway", 0, 0, 0, 0, 0, None, None, instance, None)
        ready.set()
        if not self.hwnd:
            return
        message = wintypes.MSG()
        while user32.GetMessageW(ctypes.byref(message), None, 0, 0) > 0:
            user32.TranslateMessage(ctypes.byref(message))
            user32.DispatchMessageW(ctypes.byref(message))
