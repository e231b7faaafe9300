"""A Windows program with a window and no interest in Ctrl-C: it ignores console control events,
opens a (hidden) top-level window and ends when that window is asked to close (WM_CLOSE), as a
GUI program does. Prints "window ready" once the window exists, "closed by WM_CLOSE" at the end."""

import ctypes
import sys
from ctypes import wintypes

WM_CLOSE, WM_DESTROY = 0x0010, 0x0002
kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
user32 = ctypes.WinDLL("user32", use_last_error=True)
kernel32.SetConsoleCtrlHandler(None, True)  # Ctrl-C and Ctrl-Break: ignored

LRESULT = ctypes.c_ssize_t
WNDPROC = ctypes.WINFUNCTYPE(LRESULT, wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM)
user32.DefWindowProcW.restype = LRESULT
user32.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM]


def procedure(hwnd, msg, wparam, lparam):
    if msg == WM_CLOSE:
        print("closed by WM_CLOSE", flush=True)
        user32.DestroyWindow(hwnd)
        return 0
    if msg == WM_DESTROY:
        user32.PostQuitMessage(0)
        return 0
    return user32.DefWindowProcW(hwnd, msg, wparam, lparam)


class WndClass(ctypes.Structure):
    _fields_ = [("style", wintypes.UINT), ("lpfnWndProc", WNDPROC), ("cbClsExtra", ctypes.c_int),
                ("cbWndExtra", ctypes.c_int), ("hInstance", wintypes.HINSTANCE), ("hIcon", wintypes.HICON),
                ("hCursor", wintypes.HANDLE), ("hbrBackground", wintypes.HBRUSH),
                ("lpszMenuName", wintypes.LPCWSTR), ("lpszClassName", wintypes.LPCWSTR)]


callback = WNDPROC(procedure)
kernel32.GetModuleHandleW.restype = wintypes.HINSTANCE
instance = kernel32.GetModuleHandleW(None)
user32.RegisterClassW(ctypes.byref(WndClass(0, callback, 0, 0, instance, None, None, None, None, "window-app")))
user32.CreateWindowExW.restype = wintypes.HWND
user32.CreateWindowExW.argtypes = [wintypes.DWORD, wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_int, ctypes.c_int, wintypes.HWND, wintypes.HMENU,
                                   wintypes.HINSTANCE, wintypes.LPVOID]
hwnd = user32.CreateWindowExW(0, "window-app", "window app", 0, 0, 0, 100, 100, None, None, instance, None)
if not hwnd:
    sys.exit(f"no window (error {ctypes.get_last_error()})")
print("window ready", flush=True)
message = wintypes.MSG()
while user32.GetMessageW(ctypes.byref(message), None, 0, 0) > 0:
    user32.TranslateMessage(ctypes.byref(message))
    user32.DispatchMessageW(ctypes.byref(message))
sys.exit(0)
