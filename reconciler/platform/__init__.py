"""Everything that differs between operating systems, behind one small interface.

`current()` is the single place in the codebase that asks which OS it is on; the rest of
the gateway calls the returned `Platform` and never looks at ``sys.platform`` itself.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

import psutil

if TYPE_CHECKING:
    from reconciler.platform.listening import ListenTable

# What the OS told the gateway about its session (see `Platform.host_events`):
# interrupt (Ctrl-C), terminate (SIGTERM: `kill`, systemd stop, logout, shutdown), hangup (the
# terminal closed), close (the console window closed), logoff, shutdown (Windows' own events), signout
# (Windows: the session of a gateway with no console ends: it and its servers end with it).
HostEvent = Literal["interrupt", "terminate", "hangup", "close", "logoff", "shutdown", "signout"]


# a process's figures from Linux's /proc/PID/stat: (parent pid, start in clock ticks since boot,
# CPU seconds, RSS bytes, when read: monotonic)
ProcessStat = tuple[int, int, float, int, float]


class ProcessStats(Protocol):
    """The process table read cheaply (reconciler/platform/linux_stat.py)."""

    def stat(self, pid: int) -> ProcessStat | None: ...

    def table(self) -> dict[int, ProcessStat]: ...


class Platform(Protocol):
    """How to start, signal, wait for and kill a process tree on one OS."""

    name: str
    reuse_address: bool  # set SO_REUSEADDR when testing whether a port is free (POSIX servers do)

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop every `asyncio` run of the gateway uses (`reconciler.platform.aio.run`). Windows:
        a selector loop, the one psycopg's async mode accepts (it refuses the Proactor, asyncio's
        default there); nothing the gateway runs needs the Proactor's pipes."""
        ...

    def spawn_kwargs(self, suspended: bool = False) -> dict[str, Any]:
        """Extra keyword arguments for `subprocess.Popen` of a server: its own process group (POSIX)
        or console (Windows). `suspended`: Windows creates it without running it, so that it is in
        its job before it can start a child of its own (then `resume`)."""
        ...

    def resume(self, pid: int) -> None:
        """Let a process started with `spawn_kwargs(suspended=True)` run."""
        ...

    def quiet_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for a short program the gateway runs itself (pg_ctl, git,
        schtasks, ...): on Windows no console window pops up for it when the gateway has no
        console of its own (pythonw, the autostart task)."""
        ...

    def shell_argv(self, command: str) -> list[str]:
        """The argv that runs `command` through the system shell."""
        ...

    def send_stop(self, pid: int, signal_name: str, known: Sequence[psutil.Process] = (),
                  timeout: float | None = None) -> None:
        """Ask the process group led by `pid` to stop (a spec signal name: TERM, INT, ..., BREAK).
        `known` descendants that left the group are asked too where the OS allows it. `timeout`:
        the stop's timeout, after which the caller kills the tree (Windows paces its steps by it)."""
        ...

    def kill_tree(self, pid: int, known: Sequence[psutil.Process]) -> list[psutil.Process]:
        """Kill `pid`, its group and every still-running process in `known`, at once; return
        the processes that were running and got killed. Blocking (a psutil sweep)."""
        ...

    def prepare_event_loop(self) -> None:
        """Once, in the daemon, before the first child is started."""
        ...

    def open_log(self, path: Path) -> BinaryIO:
        """A server's log opened so that every write, the child's included, lands at the end
        of the file even after the gateway truncated it (log rotation by copy-truncate)."""
        ...

    def group_alive(self, pid: int) -> bool:
        """Might a process of the group `pid` led still run? (True when unsure.)"""
        ...

    async def wait_exit(self, pid: int) -> None:
        """Return when `pid` (not necessarily our child) has exited."""
        ...

    def connect_done(self, sock: socket.socket) -> bool:
        """Has the non-blocking connect on `sock` already finished, one way or the other?
        (Over loopback it nearly always has by the time connect returns.)"""
        ...

    def listening(self) -> ListenTable | None:
        """The kernel's table of listening TCP sockets, read in one go, so that the periodic
        checks of running servers on one beat share it; None where there is no cheap way
        (the checks then connect). Linux: netlink sock_diag (reconciler/platform/listening.py)."""
        ...

    def try_lock(self, fd: int) -> bool:
        """Take an exclusive lock on the open file `fd` without waiting; False when another
        open of the file holds it. The OS drops the lock when the holder dies."""
        ...

    def suspend_clock(self) -> float:
        """Seconds on a clock that keeps counting while the host sleeps (`time.monotonic`
        stops during a suspend on Linux and macOS)."""
        ...

    def contain(self, data_dir: Path, name: str, pid: int) -> bool:
        """Hold the server `name`'s tree, rooted at the just-started (or adopted) `pid`, in something
        the OS stops and accounts as one, found again after a gateway restart (Windows: a job object
        named for the server and the pid). False where none could be had: then pid + create time
        are all there is. POSIX: the process group already is that; nothing to do."""
        ...

    def power_warnings(self) -> list[tuple[str, str]]:
        """What in the OS's power settings makes the servers unreachable while plugged in, as
        (words, the command that fixes it). Blocking (runs a program): call it from a thread."""
        ...

    def host_events(self, on_event: Callable[[HostEvent], None]) -> None:
        """Call `on_event` (from any thread) when the terminal closes, the user logs off, the
        console window is closed or the system shuts down; in the daemon, once."""
        ...

    def start_mark(self, pid: int) -> str | None:
        """What tells this run of `pid` apart from every other process that had or will have
        the pid, unchanged when the wall clock is set; None where the create time already is
        that, or the pid is gone. Linux: boot id + start tick (psutil's create time adds a boot
        time the kernel recomputes from the wall clock, so an NTP step or a laptop's wake-up
        can move it by a second or more)."""
        ...

    def changed_ns(self, path: str, st: os.stat_result) -> int:
        """When the file at `path` (whose `os.stat` is `st`) last changed in any way, content or
        metadata, in ns: what moves on every write even when the writer puts the mtime back.
        POSIX: st_ctime; Windows: the ChangeTime (its st_ctime is the creation time)."""
        ...

    def run_elevated(self, argv: Sequence[str], timeout: float) -> int | None:
        """Run `argv` with administrator rights after asking the person at the screen (Windows: the
        UAC prompt); its exit code, or None where there is no such prompt, or nobody said yes in time."""
        ...

    def show_message(self, title: str, text: str) -> None:
        """Tell the person at the screen (the launcher's words): Windows, a message box that closes
        by itself after a few seconds; elsewhere nothing (the launcher also prints it and logs it)."""
        ...

    def closed_pipe(self, exc: OSError) -> bool:
        """Whether a write failed because the reader of our stdout is gone (`gateway status | head -1`):
        BrokenPipeError on POSIX; on Windows the C runtime also says EINVAL for a pipe with no reader."""
        ...

    def process_stats(self) -> ProcessStats | None:
        """Linux: `reconciler.platform.linux_stat`, the process table at one read of /proc/PID/stat
        per process (`stat(pid)`, `table()`); None elsewhere, where psutil measures (under Wine
        Z:\\proc exists too, so the presence of /proc says nothing)."""
        ...

    def held_open(self, exc: OSError) -> bool:
        """Whether a rename or delete was refused only because another program has the file open
        right now (Windows: a sharing violation or access denied while cloudflared or an editor
        reads it; it passes in a moment). Never on POSIX, where an open file can be replaced."""
        ...

    def release_memory(self) -> bool:
        """Give the C heap's free pages back to the OS (Linux with glibc: `malloc_trim`,
        reconciler/platform/glibc.py); False where there is no such call (nothing was done)."""
        ...


def alive(proc: psutil.Process) -> bool:
    """The process still runs: same pid *and* create time, and not a zombie."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _wait_blocking(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        while alive(proc):
            try:
                proc.wait(timeout=1.0)  # returns early when it exits; the loop catches zombies
            except psutil.TimeoutExpired:
                continue
    except psutil.NoSuchProcess:
        pass


async def wait_in_thread(pid: int) -> None:
    """Portable fallback for `wait_exit`: psutil's wait in a daemon thread, so a process that
    never exits does not hold up the event loop's shutdown (as `asyncio.to_thread` would)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    def run() -> None:
        _wait_blocking(pid)
        try:
            loop.call_soon_threadsafe(finish)
        except RuntimeError:  # the loop was closed meanwhile: nobody is waiting any more
            pass

    threading.Thread(target=run, name=f"wait-exit-{pid}", daemon=True).start()
    await done


def console_python(executable: str = sys.executable) -> str:
    """The Python a server's bare `python` command runs: this one, but the console build where this
    is Windows' windowless pythonw.exe (autostart runs the gateway so): a program with no console
    cannot be asked to stop with Ctrl-C (reconciler/platform/windows_stop.py)."""
    path = Path(executable)
    if path.stem.lower().startswith("pythonw"):
        sibling = path.with_name(path.name[:6] + path.name[7:])  # pythonw3.13.exe -> python3.13.exe
        if sibling.exists():
            return str(sibling)
    return executable


IS_WINDOWS = sys.platform == "win32"
# which desktop OS: what starts programs at log-on differs (Task Scheduler, launchd, systemd)
SYSTEM = "windows" if IS_WINDOWS else "macos" if sys.platform == "darwin" else "linux"


@functools.cache
def current() -> Platform:
    """The platform this process runs on."""
    if IS_WINDOWS:
        from reconciler.platform.windows import WindowsPlatform

        return WindowsPlatform()
    from reconciler.platform.posix import PosixPlatform

    return PosixPlatform()
