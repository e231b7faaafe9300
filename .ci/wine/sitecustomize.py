"""The Windows lane's harness (never shipped in the zip: copied into the lane's unzipped copy).

1. Wine 8.0 gap: psutil 7's Process.exe()/name() ask NtQuerySystemInformation for
   SystemProcessIdInformation (class 88), which Wine 8.0 does not implement (error 87); fall back
   to QueryFullProcessImageNameW, which Windows' own psutil used before 7.
2. Wine 8.0 gap: KERNEL32's CopyFile2 is not implemented (the process aborts), and Python 3.12+'s
   shutil.copy2 calls it through _winapi: without it shutil copies as it does elsewhere.
3. The zip's python._pth makes Python ignore PYTHONPATH: GATEWAY_LANE_PATH (';'-separated) adds the
   test tools and the checkout's tests after the zip's own lib/.
"""

import ctypes
import os
import sys
from ctypes import wintypes

try:
    import _winapi

    if hasattr(_winapi, "CopyFile2"):
        del _winapi.CopyFile2
except ImportError:
    pass

for entry in filter(None, os.environ.get("GATEWAY_LANE_PATH", "").split(";")):
    if entry not in sys.path:
        sys.path.append(entry)

try:
    import psutil._psutil_windows as _cext
except Exception:  # noqa: BLE001 - not there: nothing to mend
    _cext = None

if _cext is not None:
    _original = _cext.proc_exe
    _k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _k32.OpenProcess.restype = wintypes.HANDLE
    _k32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    _k32.QueryFullProcessImageNameW.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.LPWSTR,
                                               ctypes.POINTER(wintypes.DWORD)]
    _k32.CloseHandle.argtypes = [wintypes.HANDLE]

    def proc_exe(pid):
        try:
            return _original(pid)
        except OSError as err:
            if getattr(err, "winerror", None) != 87:
                raise
        handle = _k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            raise ctypes.WinError(ctypes.get_last_error())
        try:
            buf, size = ctypes.create_unicode_buffer(32768), wintypes.DWORD(32768)
            if not _k32.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
                raise ctypes.WinError(ctypes.get_last_error())
            return buf.value
        finally:
            _k32.CloseHandle(handle)

    _cext.proc_exe = proc_exe
