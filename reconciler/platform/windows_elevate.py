"""Windows: run one program with administrator rights, asking the person at the screen first (the
UAC prompt), as an installer does: ShellExecuteExW with the verb "runas". Used for the one thing
that needs it, registering the task that starts the gateway at boot. Returns the program's exit
code, or None when the person said no or nobody answered in time."""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Sequence
from typing import Any

SEE_MASK_NOCLOSEPROCESS, SEE_MASK_NOASYNC = 0x00000040, 0x00000100
SW_HIDE = 0
ERROR_CANCELLED = 1223  # the person said no
WAIT_OBJECT_0 = 0


def parameters(argv: Sequence[str]) -> str:
    """The command line after the program, quoted as Windows programs read it."""
    return subprocess.list2cmdline(list(argv[1:]))


def run_elevated(argv: Sequence[str], timeout: float) -> int | None:  # pragma: no cover - Windows only
    from ctypes import wintypes

    class ShellExecuteInfo(ctypes.Structure):  # SHELLEXECUTEINFOW
        _fields_ = [("cbSize", wintypes.DWORD), ("fMask", ctypes.c_ulong), ("hwnd", wintypes.HWND),
                    ("lpVerb", wintypes.LPCWSTR), ("lpFile", wintypes.LPCWSTR), ("lpParameters", wintypes.LPCWSTR),
                    ("lpDirectory", wintypes.LPCWSTR), ("nShow", ctypes.c_int), ("hInstApp", wintypes.HINSTANCE),
                    ("lpIDList", ctypes.c_void_p), ("lpClass", wintypes.LPCWSTR), ("hkeyClass", wintypes.HKEY),
                    ("dwHotKey", wintypes.DWORD), ("hIconOrMonitor", wintypes.HANDLE), ("hProcess", wintypes.HANDLE)]

    shell32: Any = ctypes.WinDLL("shell32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    info = ShellExecuteInfo(cbSize=ctypes.sizeof(ShellExecuteInfo), fMask=SEE_MASK_NOCLOSEPROCESS | SEE_MASK_NOASYNC,
                            lpVerb="runas", lpFile=argv[0], lpParameters=parameters(argv), nShow=SW_HIDE)
    if not shell32.ShellExecuteExW(ctypes.byref(info)):
        return None  # ERROR_CANCELLED: the person said no; anything else: it could not be asked
    if not info.hProcess:
        return None
    kernel32.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    kernel32.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    try:
        if kernel32.WaitForSingleObject(info.hProcess, int(timeout * 1000)) != WAIT_OBJECT_0:
            return None
        code = wintypes.DWORD()
        kernel32.GetExitCodeProcess(info.hProcess, ctypes.byref(code))
        return int(code.value)
    finally:
        kernel32.CloseHandle(info.hProcess)
