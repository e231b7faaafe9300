"""Windows: each child starts with a console of its own and no window; a graceful stop is a
console control event sent from a helper attached to that console, then WM_CLOSE
(reconciler/platform/windows_stop.py, NSSM's order), and a kill takes the server's job object.

This module imports on any OS (Windows-only names are looked up lazily with getattr) so
its pure parts are contract-tested on Linux too.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Literal

import psutil

from reconciler.platform import HostEvent, ProcessStats, alive, wait_in_thread
from reconciler.platform.listening import ListenTable
from reconciler.platform.windows_stop import CLOSE_AFTER, CTRL_BREAK_EVENT, CTRL_C_EVENT

log = logging.getLogger(__name__)

# Win32 process creation flags (winbase.h); the subprocess module only has them on Windows.
CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
DETACHED_PROCESS = getattr(subprocess, "DETACHED_PROCESS", 0x00000008)
CREATE_SUSPENDED = 0x00000004

StopMethod = Literal["ctrl-c", "break", "kill"]

# A spec's stop signal -> what Windows can do. A console control event is the only graceful stop
# a console program can receive: CTRL_C (Python raises KeyboardInterrupt, Node and Go programs
# stop as they do on Ctrl-C), or CTRL_BREAK when asked for by name (Python's default for it
# ends the process at once). The stop timeout still ends in a kill of the server's job.
STOP_METHODS: dict[str, StopMethod] = {
    "TERM": "ctrl-c",
    "INT": "ctrl-c",
    "HUP": "ctrl-c",
    "QUIT": "ctrl-c",
    "USR1": "ctrl-c",
    "USR2": "ctrl-c",
    "BREAK": "break",
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
MESSAGE_SECONDS = 8.0  # a launcher's message box closes by itself after this
NO_DIALOG = "GATEWAY_NO_DIALOG"  # set: no message box (a test, a script)
LOCK_OFFSET = 1 << 30  # the byte locked: far past the holder's note, which stays readable


def console_event(code: int) -> HostEvent | None:
    """A console control code -> the host event (CTRL_C and CTRL_BREAK are both an interrupt)."""
    return CONSOLE_EVENTS.get(code)


_FILE_APPEND_DATA, _SYNCHRONIZE, _READ_ATTRIBUTES = 0x0004, 0x00100000, 0x0080
_SHARE_READ, _SHARE_WRITE, _SHARE_DELETE = 0x1, 0x2, 0x4
_OPEN_ALWAYS, _ATTRIBUTE_NORMAL = 4, 0x80
_INVALID_HANDLE = (1 << 64) - 1  # INVALID_HANDLE_VALUE as ctypes returns it (HANDLE is unsigned)


def _console_host(proc: psutil.Process) -> bool:
    """conhost.exe, the host of a server's console (Wine puts it in the server's job): it ends with
    the console's last program and is never counted as one of the server's processes."""
    try:
        return bool(proc.name().lower() == "conhost.exe")
    except psutil.Error:
        return False


class WindowsPlatform:
    name = "windows"
    reuse_address = False  # on Windows SO_REUSEADDR lets a second socket steal a bound port

    def __init__(self) -> None:
        self.jobs: dict[int, Any] = {}  # root pid -> its server's windows_job.Job
        self.helpers: dict[int, subprocess.Popen[bytes]] = {}  # root pid -> its graceful stop under way

    def contain(self, data_dir: Path, name: str, pid: int) -> bool:
        from reconciler.platform.windows_job import Job, job_name

        key = job_name(data_dir, name, pid)
        try:
            job = Job.open(key)  # an adoption after a gateway restart: the job its root process keeps alive
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

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        # psycopg's async mode refuses the Proactor loop (asyncio's default on Windows). Children,
        # command checks and tries run through subprocess.Popen, which needs no Proactor.
        return asyncio.SelectorEventLoop()

    def spawn_kwargs(self, suspended: bool = False) -> dict[str, Any]:
        # A console of its own, without a window (not CREATE_NEW_PROCESS_GROUP: it disables CTRL_C)
        return {"creationflags": CREATE_NO_WINDOW | (CREATE_SUSPENDED if suspended else 0)}

    def resume(self, pid: int) -> None:
        psutil.Process(pid).resume()  # NtResumeProcess: its one thread starts

    def quiet_kwargs(self) -> dict[str, Any]:
        return {"creationflags": CREATE_NO_WINDOW}  # a hidden console, not a window flashing up

    def shell_argv(self, command: str) -> list[str]:
        return [os.environ.get("COMSPEC") or "cmd.exe", "/d", "/s", "/c", command]

    def send_stop(self, pid: int, signal_name: str, known: Sequence[psutil.Process] = (),
                  timeout: float | None = None) -> None:
        method = stop_method(signal_name)
        if method == "kill":
            self.kill_tree(pid, known)
            return
        event = CTRL_BREAK_EVENT if method == "break" else CTRL_C_EVENT
        close_after = CLOSE_AFTER if timeout is None else min(CLOSE_AFTER, timeout / 2)
        pids = [pid, *(proc.pid for proc in known if proc.pid != pid)]
        argv = [sys.executable, "-m", "reconciler.platform.windows_stop", str(event), f"{close_after:g}",
                *map(str, pids)]
        try:  # no console of its own: it attaches to the server's (reconciler/platform/windows_stop.py)
            helper = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, creationflags=DETACHED_PROCESS)
        except OSError as exc:
            log.warning("pid %s: cannot start the stop helper: %s", pid, exc)
            return

        self.helpers[pid] = helper

        def report() -> None:  # the helper says what it did; its end is waited for here, off the loop
            said = helper.communicate()[0].decode(errors="replace").strip()
            if self.helpers.get(pid) is helper:
                del self.helpers[pid]
            log.info("pid %s: graceful stop: %s", pid, "; ".join(said.splitlines()) or f"exit {helper.returncode}")

        threading.Thread(target=report, name=f"stop-{pid}", daemon=True).start()

    def kill_tree(self, pid: int, known: Sequence[psutil.Process]) -> list[psutil.Process]:
        helper = self.helpers.pop(pid, None)
        if helper is not None and helper.poll() is None:
            helper.kill()  # a graceful stop still trying: the kill ends that too
        job = self.jobs.pop(pid, None)
        if job is not None:  # the job knows its members whatever their pids: no tree walk, no guess
            members: list[psutil.Process] | None
            try:
                members = [psutil.Process(p) for p in job.pids() if psutil.pid_exists(p)]
                members = [proc for proc in members if not _console_host(proc)]  # the console's, not the server's
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
        pass  # the selector loop (loop_factory) has nothing to prepare: exits are waited on in threads

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
        # Without a console (pythonw: autostart), the session's end comes to a window instead.
        from reconciler.platform.windows_session import SessionWindow

        self._session_window = SessionWindow(on_event, CONSOLE_GRACE)  # type: ignore[arg-type]
        if not ctypes.windll.kernel32.SetConsoleCtrlHandler(routine, True):  # type: ignore[attr-defined]
            raise ctypes.WinError()  # type: ignore[attr-defined]

    def start_mark(self, pid: int) -> str | None:
        return None  # the create time is the FILETIME stamped at creation: the clock does not move it

    def run_elevated(self, argv: Sequence[str], timeout: float) -> int | None:
        from reconciler.platform.windows_elevate import run_elevated

        return run_elevated(argv, timeout)

    def show_message(self, title: str, text: str) -> None:
        if os.environ.get(NO_DIALOG):
            return
        import ctypes

        user32: Any = ctypes.WinDLL("user32")  # type: ignore[attr-defined]
        flags = 0x40 | 0x10000 | 0x40000  # MB_ICONINFORMATION | MB_SETFOREGROUND | MB_TOPMOST
        box = getattr(user32, "MessageBoxTimeoutW", None)  # exported since XP, undocumented
        if box is not None:
            box(None, text, title, flags, 0, int(MESSAGE_SECONDS * 1000))
        else:
            user32.MessageBoxW(None, text, title, flags)

    def changed_ns(self, path: str, st: os.stat_result) -> int:
        from reconciler.platform.windows_files import change_time_ns

        changed = change_time_ns(path)  # st_ctime is the creation time here: a write does not move it
        return st.st_mtime_ns if changed is None else changed

    def closed_pipe(self, exc: OSError) -> bool:
        return isinstance(exc, BrokenPipeError) or exc.errno == errno.EINVAL

    def process_stats(self) -> ProcessStats | None:
        return None  # psutil (NtQuerySystemInformation)

    def held_open(self, exc: OSError) -> bool:
        # ERROR_ACCESS_DENIED (5), ERROR_SHARING_VIOLATION (32): a reader opened the file without
        # FILE_SHARE_DELETE (Python's open() and Go's os.Open both do)
        return isinstance(exc, PermissionError) and getattr(exc, "winerror", None) in (5, 32)

    def release_memory(self) -> bool:
        return False  # no malloc_trim in the Windows C runtime (HeapCompact is untried)

    def group_alive(self, pid: int) -> bool:
        return True  # no cheap group probe here: always sweep the tree (kill_tree)

    async def wait_exit(self, pid: int) -> None:
        await wait_in_thread(pid)

    def listening(self) -> ListenTable | None:
        from reconciler.platform.windows_tcp import listeners, to_table

        rows = listeners()  # GetExtendedTcpTable: the listeners only, IPv4 and IPv6
        return None if rows is None else to_table(rows)

    def connect_done(self, sock: socket.socket) -> bool:
        _, done, failed = select.select([], [sock], [sock], 0)  # Winsock reports a refusal in the third set
        return bool(done or failed)
