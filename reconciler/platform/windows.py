"""Windows: each child starts in a new process group with no console window; a graceful
stop is CTRL_BREAK_EVENT to that group, and a kill takes the whole tree with psutil.

This module imports on any OS (Windows-only names are looked up lazily with getattr) so
its pure parts are contract-tested on Linux too.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import psutil

from reconciler.platform import HostEvent, alive, wait_in_thread

# Win32 process creation flags (winbase.h); the subprocess module only has them on Windows.
CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
CTRL_BREAK_EVENT = 1  # wincon.h; signal.CTRL_BREAK_EVENT on Windows

StopMethod = Literal["break", "kill"]

# A spec's stop signal -> what Windows can do. Console control events are the only graceful
# stop a console program can receive; CTRL_C cannot be sent to a new process group (Windows
# disables it there), so everything but KILL becomes CTRL_BREAK (Python raises
# KeyboardInterrupt or runs its SIGBREAK handler). The stop timeout still ends in a tree kill.
STOP_METHODS: dict[str, StopMethod] = {
    "TERM": "break",
    "INT": "break",
    "BREAK": "break",
    "HUP": "break",
    "QUIT": "break",
    "USR1": "break",
    "USR2": "break",
    "KILL": "kill",
}


def stop_method(signal_name: str) -> StopMethod:
    try:
        return STOP_METHODS[signal_name.upper().removeprefix("SIG")]
    except KeyError:
        raise ValueError(f"{signal_name!r} is not a stop signal (one of {', '.join(STOP_METHODS)})") from None


# Console control events (wincon.h) -> what they mean to the gateway. After CLOSE and SHUTDOWN
# Windows ends the process when the handler returns, or after about 5 s (the console's own
# timeout; WaitToKillServiceTimeout on shutdown): the handler waits for the daemon's stop up to
# CONSOLE_GRACE, so that what the daemon decided is done first. LOGOFF reaches only processes
# outside the user's session (a boot task, a service: interactive ones are simply ended), and
# does not say whose log-off it is: it is reported and handled (TRUE: not ended), never waited on.
CONSOLE_EVENTS: dict[int, HostEvent] = {0: "interrupt", 1: "interrupt", 2: "close", 5: "logoff", 6: "shutdown"}
CONSOLE_GRACE = 4.5  # seconds
LOCK_OFFSET = 1 << 30  # the byte locked: far past the holder's note, which stays readable


def console_event(code: int) -> HostEvent | None:
    """A console control code -> the host event (CTRL_C and CTRL_BREAK are both an interrupt)."""
    return CONSOLE_EVENTS.get(code)


_FILE_APPEND_DATA, _SYNCHRONIZE, _READ_ATTRIBUTES = 0x0004, 0x00100000, 0x0080
_SHARE_READ, _SHARE_WRITE, _SHARE_DELETE = 0x1, 0x2, 0x4
_OPEN_ALWAYS, _ATTRIBUTE_NORMAL = 4, 0x80
_INVALID_HANDLE = (1 << 64) - 1  # INVALID_HANDLE_VALUE as ctypes returns it (HANDLE is unsigned)


class WindowsPlatform:
    name = "windows"
    reuse_address = False  # on Windows SO_REUSEADDR lets a second socket steal a bound port

    def __init__(self) -> None:
        self.jobs: dict[int, Any] = {}  # root pid -> its server's windows_job.Job

    def contain(self, data_dir: Path, name: str, pid: int) -> bool:
        from reconciler.platform.windows_job import Job, job_name

        key = job_name(data_dir, name)
        try:
            job = Job.open(key)  # a gateway restart: the job the root process keeps alive
            if job is not None and pid not in job.pids():
                job.close()
                job = None
            job = job or Job.create(key)
            if pid not in job.pids():
                job.assign(pid)
        except (OSError, AttributeError):  # not Windows (ctypes.WinDLL), access denied, another session
            return False
        self.jobs[pid] = job
        return True

    def spawn_kwargs(self) -> dict[str, Any]:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}

    def shell_argv(self, command: str) -> list[str]:
        return [os.environ.get("COMSPEC") or "cmd.exe", "/d", "/s", "/c", command]

    def send_stop(self, pid: int, signal_name: str, known: Sequence[psutil.Process] = ()) -> None:
        # `known` is not signalled one by one: a console event sent to a pid that does not
        # lead a process group can reach every process on our console, the gateway included.
        if stop_method(signal_name) == "kill":
            self.kill_tree(pid, known)
            return
        try:
            os.kill(pid, getattr(signal, "CTRL_BREAK_EVENT", CTRL_BREAK_EVENT))
        except OSError:
            pass  # already gone, or not attached to a console: the timeout escalates to a kill

    def kill_tree(self, pid: int, known: Sequence[psutil.Process]) -> list[psutil.Process]:
        job = self.jobs.pop(pid, None)
        if job is not None:  # the job knows its members whatever their pids: no tree walk, no guess
            members: list[psutil.Process] | None
            try:
                members = [psutil.Process(p) for p in job.pids() if psutil.pid_exists(p)]
                job.terminate()
                job.close()
            except (OSError, psutil.Error):
                members = None  # fall back to the tree walk below
            if members is not None:
                inside = {proc.pid for proc in members}
                for proc in known:  # known processes that left the job (started by WMI, say)
                    if proc.pid not in inside and alive(proc):
                        try:
                            proc.kill()
                            members.append(proc)
                        except (psutil.NoSuchProcess, psutil.AccessDenied):
                            pass
                return members
        procs: list[psutil.Process] = []
        # Prefer the caller's snapshot of the root: it carries the create time, so a pid that
        # was reused after the root exited is never killed.
        root = next((proc for proc in known if proc.pid == pid), None)
        try:
            root = root or psutil.Process(pid)
            procs = root.children(recursive=True) if alive(root) else []
        except psutil.NoSuchProcess:
            root = None
        seen = {proc.pid for proc in procs}
        procs += [proc for proc in known if proc.pid not in seen and proc.pid != pid]
        if root is not None:
            procs.append(root)  # descendants first, so none is orphaned mid-way and missed
        killed: list[psutil.Process] = []
        for proc in procs:
            if alive(proc):
                try:
                    proc.kill()  # TerminateProcess; psutil checks the create time first
                    killed.append(proc)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        return killed

    def open_log(self, path: Path) -> BinaryIO:
        """The C runtime's "a" mode appends only for writes through this process's fd; the
        handle a child inherits would write at its own offset, past the end after a truncate
        (a hole of NULs). A handle opened with FILE_APPEND_DATA and no FILE_WRITE_DATA makes
        every write an append, in every process that holds it."""
        import ctypes
        import msvcrt
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        create = kernel32.CreateFileW
        create.restype = wintypes.HANDLE
        create.argtypes = [wintypes.LPCWSTR, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID,
                           wintypes.DWORD, wintypes.DWORD, wintypes.HANDLE]
        handle = create(str(path), _FILE_APPEND_DATA | _SYNCHRONIZE | _READ_ATTRIBUTES,
                        _SHARE_READ | _SHARE_WRITE | _SHARE_DELETE, None, _OPEN_ALWAYS, _ATTRIBUTE_NORMAL, None)
        if handle in (None, _INVALID_HANDLE):
            raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
        fd = msvcrt.open_osfhandle(handle, os.O_APPEND | os.O_WRONLY)  # type: ignore[attr-defined]
        return os.fdopen(fd, "ab")

    def prepare_event_loop(self) -> None:
        pass  # the proactor loop waits on process handles without threads

    def try_lock(self, fd: int) -> bool:
        import msvcrt

        # Windows locks are mandatory: lock one byte far past the content, so that a second
        # gateway can still read who holds the lock. Dropped by the OS when the holder dies.
        os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True

    def suspend_clock(self) -> float:
        import ctypes

        # GetTickCount64 counts through sleep and hibernation (QueryUnbiasedInterruptTime does not)
        ticks = ctypes.windll.kernel32.GetTickCount64  # type: ignore[attr-defined]
        ticks.restype = ctypes.c_uint64  # ctypes' default, a C int, would cut it to 32 bits (49 days)
        return float(ticks()) / 1000.0

    def power_warnings(self) -> list[tuple[str, str]]:
        from reconciler.platform.windows_power import read_warnings

        return [(w.text, w.fix) for w in read_warnings()]

    def host_events(self, on_event: Callable[[HostEvent], None]) -> None:
        import ctypes
        from ctypes import wintypes

        stopping = threading.Event()

        def handler(code: int) -> bool:
            kind = console_event(code)
            if kind is None:
                return False
            on_event(kind)
            if kind in ("close", "shutdown"):  # returning lets Windows end the process: give the stop its time
                stopping.wait(CONSOLE_GRACE)
            return True

        routine = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)(handler)  # type: ignore[attr-defined]
        self._console_handler = routine  # a ctypes callback must outlive the registration
        if not ctypes.windll.kernel32.SetConsoleCtrlHandler(routine, True):  # type: ignore[attr-defined]
            raise ctypes.WinError()  # type: ignore[attr-defined]

    def start_mark(self, pid: int) -> str | None:
        return None  # the create time is the FILETIME stamped at creation: the clock does not move it

    def release_memory(self) -> bool:
        return False  # no malloc_trim in the Windows C runtime (HeapCompact is untried)

    def group_alive(self, pid: int) -> bool:
        return True  # no cheap group probe here: always sweep the tree (kill_tree)

    async def wait_exit(self, pid: int) -> None:
        await wait_in_thread(pid)

    def listening(self) -> None:
        return None  # GetExtendedTcpTable would do; until it is tried on Windows, checks connect

    def connect_done(self, sock: socket.socket) -> bool:
        _, done, failed = select.select([], [sock], [sock], 0)  # Winsock reports a refusal in the third set
        return bool(done or failed)
