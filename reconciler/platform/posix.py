"""Linux and macOS: each child leads its own session and process group, so one
``killpg`` reaches the whole tree (except descendants that called ``setsid``, which are
signalled one by one from a snapshot of the tree)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import psutil

from reconciler.platform import SYSTEM, HostEvent, ProcessStats, alive, wait_in_thread
from reconciler.platform.listening import ListenTable, read_table

# A spec's stop signal -> the POSIX signal. BREAK is the Windows graceful stop; here it means TERM.
SIGNALS: dict[str, signal.Signals] = {
    "TERM": signal.SIGTERM,
    "INT": signal.SIGINT,
    "HUP": signal.SIGHUP,
    "QUIT": signal.SIGQUIT,
    "KILL": signal.SIGKILL,
    "USR1": signal.SIGUSR1,
    "USR2": signal.SIGUSR2,
    "BREAK": signal.SIGTERM,
}


# A clock that counts while the host sleeps: Linux's CLOCK_BOOTTIME; macOS's CLOCK_MONOTONIC
# does (its CLOCK_UPTIME_RAW, behind time.monotonic, does not); else plain monotonic.
SUSPEND_CLOCK = getattr(time, "CLOCK_BOOTTIME", None) or time.CLOCK_MONOTONIC
HOST_SIGNALS: dict[signal.Signals, HostEvent] = {
    signal.SIGINT: "interrupt", signal.SIGTERM: "terminate", signal.SIGHUP: "hangup",
}


def to_signal(signal_name: str) -> signal.Signals:
    try:
        return SIGNALS[signal_name.upper().removeprefix("SIG")]
    except KeyError:
        raise ValueError(f"{signal_name!r} is not a stop signal (one of {', '.join(SIGNALS)})") from None


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def _signal_group_or_pid(pid: int, sig: int) -> None:
    """killpg when `pid` leads its group (our children always do), else kill just the pid:
    an adopted process that shares a group with others must not take them down with it."""
    try:
        if _leads_group(pid):
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _outside_group(pid: int, known: Sequence[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in known:
        try:
            if proc.pid != pid and alive(proc) and os.getpgid(proc.pid) != pid:
                out.append(proc)
        except ProcessLookupError:
            pass
    return out


class PosixPlatform:
    name = "posix"
    reuse_address = True

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()  # asyncio's default

    def spawn_kwargs(self, suspended: bool = False) -> dict[str, Any]:
        return {"start_new_session": True}  # a process group is had at once: nothing to wait for

    def resume(self, pid: int) -> None:
        pass

    def quiet_kwargs(self) -> dict[str, Any]:
        return {}

    def shell_argv(self, command: str) -> list[str]:
        return ["/bin/sh", "-c", command]

    def send_stop(self, pid: int, signal_name: str, known: Sequence[psutil.Process] = (),
                  timeout: float | None = None) -> None:
        sig = to_signal(signal_name)
        escaped = _outside_group(pid, known)  # before signalling: afterwards they may be gone
        _signal_group_or_pid(pid, sig)
        for proc in escaped:
            _signal_group_or_pid(proc.pid, sig)

    def kill_tree(self, pid: int, known: Sequence[psutil.Process]) -> list[psutil.Process]:
        targets = {proc.pid: proc for proc in known if alive(proc)}
        group = _group_is_ours(pid, known)
        if group:
            for proc in psutil.process_iter():  # members seen nowhere else (orphans of the group)
                if proc.pid not in targets and _pgid(proc) == pid and alive(proc):
                    targets[proc.pid] = proc
            try:
                os.killpg(pid, signal.SIGKILL)  # one atomic call: no member can fork away first
            except (ProcessLookupError, PermissionError):
                pass
        for proc in targets.values():
            try:
                proc.kill()  # psutil checks the create time first: a reused pid is left alone
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return list(targets.values())

    def open_log(self, path: Path) -> BinaryIO:
        return open(path, "ab")  # O_APPEND: the kernel puts every write at the current end

    def prepare_event_loop(self) -> None:
        """Python 3.11's asyncio waits for each child in a thread of its own; a pidfd per
        child in the event loop does the same with no thread (3.12+ does this by itself)."""
        if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
            return
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:  # kernel older than 5.3, or a sandbox that forbids it
            return
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.get_event_loop_policy().set_child_watcher(watcher)  # type: ignore[attr-defined]

    def group_alive(self, pid: int) -> bool:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def connect_done(self, sock: socket.socket) -> bool:
        poller = select.poll()  # select() would fail on a descriptor above 1023
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(0))

    def listening(self) -> ListenTable | None:
        if SYSTEM != "linux":
            return None  # macOS has no sock_diag: its checks connect
        return read_table()

    def try_lock(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: dropped when the holder dies
        except BlockingIOError:
            return False
        return True

    def suspend_clock(self) -> float:
        return time.clock_gettime(SUSPEND_CLOCK)

    def contain(self, data_dir: Path, name: str, pid: int) -> bool:
        return True  # each server leads its own session and process group (spawn_kwargs)

    def power_warnings(self) -> list[tuple[str, str]]:
        from reconciler.platform.posix_power import read_warnings

        return read_warnings(macos=SYSTEM == "macos")  # logind's lid and idle actions; pmset on a Mac

    def host_events(self, on_event: Callable[[HostEvent], None]) -> None:
        loop = asyncio.get_running_loop()
        for sig, kind in HOST_SIGNALS.items():
            loop.add_signal_handler(sig, on_event, kind)

    def run_elevated(self, argv: Sequence[str], timeout: float) -> int | None:
        return None  # sudo asks in a terminal: the commands say so instead

    def show_message(self, title: str, text: str) -> None:
        pass  # the launcher prints and logs it; a terminal user reads it there

    def changed_ns(self, path: str, st: os.stat_result) -> int:
        return st.st_ctime_ns

    def start_mark(self, pid: int) -> str | None:
        if SYSTEM != "linux":
            return None  # macOS: psutil's create time is all there is
        from reconciler.platform.linux_start import start_mark

        return start_mark(pid)

    def closed_pipe(self, exc: OSError) -> bool:
        return isinstance(exc, BrokenPipeError)

    def held_open(self, exc: OSError) -> bool:
        return False

    def process_stats(self) -> ProcessStats | None:
        if SYSTEM != "linux":
            return None  # macOS: no /proc (psutil's sysctl path)
        from reconciler.platform import linux_stat

        return linux_stat

    def release_memory(self) -> bool:
        if SYSTEM != "linux":
            return False  # no malloc_trim in macOS's libc (malloc_zone_pressure_relief is untried)
        from reconciler.platform.glibc import trim

        return trim()  # False on a C library without it (musl)

    async def wait_exit(self, pid: int) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is None:
            await wait_in_thread(pid)
            return
        try:
            fd = pidfd_open(pid)
        except ProcessLookupError:
            return
        except OSError:  # kernel older than 5.3, or a sandbox that forbids it
            await wait_in_thread(pid)
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not exited.done():
                exited.set_result(None)

        try:
            loop.add_reader(fd, on_readable)
            try:
                await exited
            finally:
                loop.remove_reader(fd)
        finally:
            os.close(fd)


def _group_is_ours(pid: int, known: Sequence[psutil.Process]) -> bool:
    """May we killpg(pid)? Yes while the root runs (same create time) and leads its group,
    or is a zombie, or is gone: a group id stays reserved while members remain, so a group
    `pid` then can only be the root's. No when `pid` now belongs to another process."""
    root = next((proc for proc in known if proc.pid == pid), None)
    try:
        now = psutil.Process(pid)
        if root is not None and now != root:
            return False
        return now.status() == psutil.STATUS_ZOMBIE or _leads_group(pid)
    except psutil.NoSuchProcess:
        return True


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None
