"""Windows: a file's ChangeTime, which moves on every write and every change of its metadata
(NTFS keeps it; `os.stat`'s st_ctime is the creation time on Windows, and a tool may put the
mtime back after a write). From GetFileInformationByHandleEx(FileBasicInfo)."""

from __future__ import annotations

import ctypes
from typing import Any

FILE_BASIC_INFO_CLASS = 0  # FileBasicInfo
FILE_READ_ATTRIBUTES = 0x80
SHARE_ALL = 0x1 | 0x2 | 0x4
OPEN_EXISTING = 3
FILE_FLAG_BACKUP_SEMANTICS = 0x02000000  # folders too
EPOCH_AS_FILETIME = 116444736000000000  # 1970-01-01 in 100 ns units since 1601-01-01


class FileBasicInfo(ctypes.Structure):  # FILE_BASIC_INFO
    _fields_ = [("CreationTime", ctypes.c_int64), ("LastAccessTime", ctypes.c_int64),
                ("LastWriteTime", ctypes.c_int64), ("ChangeTime", ctypes.c_int64),
                ("FileAttributes", ctypes.c_uint32)]


def filetime_ns(filetime: int) -> int:
    """A FILETIME (100 ns units since 1601) -> ns since the Unix epoch."""
    return (filetime - EPOCH_AS_FILETIME) * 100


def change_time_ns(path: str) -> int | None:  # pragma: no cover - Windows only
    """The file's ChangeTime in ns since the epoch; None when it cannot be read."""
    from ctypes import wintypes

    k32: Any = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    k32.CreateFileW.restype = wintypes.HANDLE
    k32.CreateFileW.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                                wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    handle = k32.CreateFileW(path, FILE_READ_ATTRIBUTES, SHARE_ALL, None, OPEN_EXISTING,
                             FILE_FLAG_BACKUP_SEMANTICS, None)
    if handle in (None, wintypes.HANDLE(-1).value):
        return None
    try:
        info = FileBasicInfo()
        if not k32.GetFileInformationByHandleEx(wintypes.HANDLE(handle), FILE_BASIC_INFO_CLASS,
                                                ctypes.byref(info), ctypes.sizeof(info)):
            return None
        return filetime_ns(info.ChangeTime)
    finally:
        k32.CloseHandle(handle)
