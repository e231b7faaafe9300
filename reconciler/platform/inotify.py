"""Watch one folder with Linux inotify, on the event loop: no thread and no wake-up at rest
(watchfiles' thread wakes every `step` ms, ~50 times a second, to look for a stop).

`available()` says whether this kernel has it; elsewhere (Windows, macOS) the caller uses
watchfiles. Events for names `wanted(name)` says yes to are gathered for `debounce` seconds
after the first, so a `git pull` of many files is one batch.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW = 0x400, 0x800, 0x4000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF)
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 - present or AttributeError
    except (OSError, AttributeError):
        return None
    return libc


def available() -> bool:
    libc = _libc()
    if libc is None:
        return False
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return False
    os.close(fd)
    return True


async def watch(folder: Path, wanted: Callable[[str], bool], debounce: float,
                stop: asyncio.Event) -> AsyncIterator[set[str]]:
    """Yield the set of changed names (a batch) each time something in `folder` changes,
    until `stop` is set. The folder itself being moved or deleted yields {""}."""
    libc = _libc()
    assert libc is not None, "inotify is not available: check available() first"
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    try:
        if libc.inotify_add_watch(fd, os.fsencode(folder), MASK) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot watch {folder}: {os.strerror(err)}")
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(fd, readable.set)
        try:
            while not stop.is_set():
                stopping = asyncio.ensure_future(stop.wait())
                ready = asyncio.ensure_future(readable.wait())
                await asyncio.wait([stopping, ready], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                ready.cancel()
                if stop.is_set():
                    return
                names = _drain(fd, readable, wanted)
                if not names:
                    continue
                await asyncio.sleep(debounce)  # more of the same batch (an editor, a git pull)
                names |= _drain(fd, readable, wanted)
                yield names
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


def _drain(fd: int, readable: asyncio.Event, wanted: Callable[[str], bool]) -> set[str]:
    readable.clear()
    names: set[str] = set()
    while True:
        try:
            data = os.read(fd, 64 * 1024)
        except BlockingIOError:
            return names
        offset = 0
        while offset + _HEADER.size <= len(data):
            _, mask, _, size = _HEADER.unpack_from(data, offset)
            raw = data[offset + _HEADER.size: offset + _HEADER.size + size].rstrip(b"\0")
            offset += _HEADER.size + size
            name = os.fsdecode(raw)
            if mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF) or (name and wanted(name)):
                names.add(name)
