"""One real child process: spawned with its output going straight to a log file, its exit
awaited through the process's own wait (never polling), stopped by signal -> timeout ->
tree kill, or adopted from a previous gateway that left it running.

The gateway holds no pipe to a child, so a child keeps running (and logging) when the
gateway dies; a later gateway adopts it by pid *and* create time, never by pid alone.
A child is a plain `subprocess.Popen`, not an asyncio subprocess: asyncio's transport
kills a still-running process when it is closed or garbage-collected, which would end every
server on any exit of the gateway (a clean one with --keep-servers, a crash, a bug).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shlex
import signal as _signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil

from reconciler.platform import alive, current
from reconciler.platform.aio import wait_for

log = logging.getLogger(__name__)
TABLE_FRESH_FOR = 0.05  # seconds a process-table scan is reused (stopping 100 servers: one scan)
Table = dict[int, list[tuple[psutil.Process, float]]]  # parent pid -> its children, each with its create time
_table: tuple[float, Table] = (-1.0, {})


def _children_map() -> Table:
    """parent pid -> its children, from one pass over the process table, reused for
    `TABLE_FRESH_FOR` (psutil's children() scans the whole table on every call)."""
    global _table
    now = time.monotonic()
    if now - _table[0] > TABLE_FRESH_FOR:
        kids: Table = {}
        for proc in psutil.process_iter(["ppid", "create_time"]):
            kids.setdefault(proc.info["ppid"], []).append((proc, proc.info["create_time"] or 0.0))
        _table = (now, kids)
    return _table[1]


def descendants_in(table: Table, pid: int, create_time: float) -> list[psutil.Process]:
    """The processes below `pid` (created at `create_time`) in `table`. A child is never older
    than its parent: on Windows a process keeps the pid of a parent that has exited, and that
    pid is soon another process's, so a walk by parent pid alone reaches strangers (seen under
    Wine: a server's kill took the PostgreSQL whose pg_ctl had had the server's pid)."""
    out, todo = [], [(pid, create_time)]
    while todo:
        parent, born = todo.pop()
        for proc, ctime in table.get(parent, ()):
            if ctime + CREATE_TIME_TOLERANCE >= born and proc.pid != parent:
                out.append(proc)
                todo.append((proc.pid, ctime))
    return out


def _descendants(root: psutil.Process) -> list[psutil.Process]:
    try:
        born = psutil.Process(root.pid).create_time()  # read now, as the table's were (a clock step moves both)
    except psutil.NoSuchProcess:
        return []
    return [proc for proc in descendants_in(_children_map(), root.pid, born) if alive(proc)]


CREATE_TIME_TOLERANCE = 0.01  # seconds, where the create time is all there is (no start mark: Windows, macOS, old rows)
GIVE_UP_AFTER = 2.0  # seconds after the tree kill to wait for the tree to be gone
ERROR_BAD_EXE_FORMAT = 193  # Windows: "%1 is not a valid Win32 application"
ERROR_FILENAME_EXCED_RANGE = 206  # Windows: a command line over 32,767 characters ("filename ... too long")
STATUS_CONTROL_C_EXIT = 0xC000013A  # Windows: the exit code of a program the Ctrl-C event ended


class SpawnError(Exception):
    """The command could not be started; the message says why, in words."""


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended. Both None: unknown (an adopted process is not our child)."""

    code: int | None
    signal: int | None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        return cls(None, -returncode) if returncode < 0 else cls(returncode, None)

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = "unknown signal"
            return f"killed by signal {self.signal} ({name})"
        if self.code == STATUS_CONTROL_C_EXIT:  # Windows: ended by the Ctrl-C it did not handle
            return f"stopped by Ctrl-C (exit code 0x{self.code:X})"
        if self.code is not None:
            return f"exited with code {self.code}"
        return "exited (code unknown: adopted process)"


@dataclass(frozen=True)
class StopResult:
    exit: ExitStatus
    escalated: bool  # the main process outlived the timeout and was killed
    leftovers_killed: int  # other processes of the tree still running at the kill
    seconds: float = 0.0  # from the stop signal until the tree was gone (or we gave up)
    survivors: tuple[int, ...] = ()  # pids still running when we gave up: should stay empty


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


class Child:
    """A process the gateway started (or adopted), and the tree below it."""

    def __init__(
        self,
        pid: int,
        create_time: float,
        *,
        log_path: Path | None = None,
        adopted: bool = False,
        proc: subprocess.Popen[bytes] | None = None,
        ps: psutil.Process | None = None,
        start_mark: str | None = None,
    ) -> None:
        self.pid = pid
        self.create_time = create_time
        self.start_mark = start_mark  # Platform.start_mark: what the clock does not move (None: the create time)
        self.log_path = log_path
        self.adopted = adopted
        self._proc = proc
        self._ps = ps  # carries the create time: psutil never acts on a reused pid through it
        self._seen: dict[int, psutil.Process] = {}  # descendants seen so far, by pid
        self._waiter: asyncio.Future[ExitStatus] | None = None

    def __repr__(self) -> str:
        return f"<Child pid={self.pid}{' adopted' if self.adopted else ''}>"

    # --- starting -------------------------------------------------------------------------
    @classmethod
    async def spawn(
        cls, argv: list[str], *, shell: bool = False, cwd: str | None = None,
        env: dict[str, str] | None = None, log_path: Path, contain: Callable[[int], object] | None = None,
    ) -> Child:
        """Start `argv` (without a shell unless `shell`; then argv holds the command line)
        in its own process group, stdin from the null device, stdout and stderr appended to
        `log_path`. `contain(pid)` is called before the program runs (Windows: it is created
        suspended, put in its job, then resumed), so that nothing it starts escapes."""
        if not argv:
            raise SpawnError("cannot start an empty command")
        platform = current()
        run = platform.shell_argv(" ".join(argv)) if shell else list(argv)
        if cwd is not None and not os.path.isdir(cwd):
            what = "is not a folder" if os.path.exists(cwd) else "does not exist"
            raise SpawnError(f"working folder {cwd} {what}")
        log_path = Path(log_path)
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = platform.open_log(log_path)
        except OSError as exc:
            raise SpawnError(f"cannot open the log file {log_path}: {exc.strerror or exc}") from None
        with out:
            out.write(f"--- gateway: starting {shlex.join(run)} at {_now()} ---\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(
                    run, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd, env=env,
                    **platform.spawn_kwargs(suspended=contain is not None),
                )
            except OSError as exc:
                if getattr(exc, "winerror", None) == ERROR_FILENAME_EXCED_RANGE:  # Python calls it ENOENT
                    raise SpawnError(f"the command is too long for the OS ({len(subprocess.list2cmdline(run))} "
                                     "characters; Windows takes 32,767): make it shorter") from None
                if isinstance(exc, FileNotFoundError):
                    raise SpawnError(f"cannot start {run[0]!r}: no such file or directory") from None
                if isinstance(exc, PermissionError):
                    raise SpawnError(f"cannot start {run[0]!r}: permission denied") from None
                if exc.errno == errno.E2BIG:
                    raise SpawnError(too_big(run, env)) from None
                if getattr(exc, "winerror", None) == ERROR_BAD_EXE_FORMAT:
                    raise SpawnError(f"cannot start {run[0]!r}: it is not a program Windows can start (a script "
                                     "is run by its program, e.g. python script.py)") from None
                raise SpawnError(f"cannot start {run[0]!r}: {(exc.strerror or str(exc)).lower()}") from None
            except ValueError as exc:  # e.g. "embedded null byte"
                raise SpawnError(f"cannot start {run[0]!r}: {exc}") from None
        if contain is not None:
            try:
                contain(proc.pid)
            finally:
                platform.resume(proc.pid)  # contained or not, it runs
        ps: psutil.Process | None
        try:
            ps = psutil.Process(proc.pid)
            create_time = ps.create_time()
        except psutil.NoSuchProcess:  # it exited (and was reaped) already
            ps, create_time = None, time.time()
        mark = platform.start_mark(proc.pid) if ps is not None else None
        child = cls(proc.pid, create_time, log_path=log_path, proc=proc, ps=ps, start_mark=mark)
        child._note(f"pid {proc.pid} started")
        return child

    @classmethod
    def adopt(
        cls, pid: int, create_time: float, argv_hint: list[str] | None = None, *,
        start_mark: str | None = None, log_path: Path | None = None,
    ) -> Child | None:
        """Take over a process a previous gateway started. None unless `pid` runs and is the
        run that was recorded (and runs `argv_hint`, when given): a reused pid is never
        adopted, so it is never signalled either. The run is told by its `start_mark` where
        both it and the platform have one, which no setting of the clock moves; else by
        `create_time`."""
        try:
            ps = psutil.Process(pid)
            mark = current().start_mark(pid)  # kept on the adopted child: a row without one gets one
            if mark is not None and start_mark is not None:
                same_run = mark == start_mark
            else:
                same_run = abs(ps.create_time() - create_time) <= CREATE_TIME_TOLERANCE
            if not same_run or not alive(ps):
                return None
            if argv_hint is not None and not _same_command(ps.cmdline(), argv_hint):
                return None
            return cls(pid, ps.create_time(), log_path=log_path, adopted=True, ps=ps, start_mark=mark)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    # --- watching -------------------------------------------------------------------------
    async def wait(self) -> ExitStatus:
        """The exit status, once the process has exited. Any number of tasks may wait."""
        if self._waiter is None:
            self._waiter = asyncio.ensure_future(self._wait_once())
        return await asyncio.shield(self._waiter)

    async def _wait_once(self) -> ExitStatus:
        if self._proc is not None:
            if self._proc.poll() is None:
                await current().wait_exit(self.pid)  # readable on exit (a pidfd); reaps nothing
            status = ExitStatus.from_returncode(self._proc.wait())  # exited: reaped at once
            self._note(f"pid {self.pid} {status.describe()}")
            return status
        if self._ps is not None and alive(self._ps):
            await current().wait_exit(self.pid)
        return ExitStatus(None, None)

    def is_alive(self) -> bool:
        if self._proc is not None and self._proc.returncode is not None:
            return False
        return self._ps is not None and alive(self._ps)

    def tree(self) -> list[psutil.Process]:
        """The process and all its descendants that run now (empty once it has exited)."""
        if self._ps is None or not alive(self._ps):
            return []
        descendants = _descendants(self._ps)
        for proc in descendants:
            self._seen.setdefault(proc.pid, proc)
        return [self._ps, *descendants]

    def _known(self) -> list[psutil.Process]:
        """The root plus every descendant seen and still running (some may have left the
        tree: re-parented after their parent died, or escaped with setsid)."""
        self.tree()
        self._seen = {pid: proc for pid, proc in self._seen.items() if alive(proc)}
        return ([self._ps] if self._ps is not None else []) + list(self._seen.values())

    # --- stopping -------------------------------------------------------------------------
    async def stop(self, signal_name: str = "TERM", timeout: float = 10.0) -> StopResult:
        """Ask the tree to stop with `signal_name`; whatever still runs after `timeout` (or
        is left behind once the main process has exited) is killed. Returns once the whole
        tree is gone, or after giving up ~2 s later, naming the survivors."""
        platform = current()
        started = time.monotonic()
        known = self._known()
        self._note(f"stopping pid {self.pid} with SIG{signal_name} (timeout {timeout:g}s)")
        exited = True  # a root that is gone already: its leftovers are orphans, killed at once
        if self.is_alive():
            try:
                platform.send_stop(self.pid, signal_name, known, timeout)
            except OSError as exc:  # e.g. an adopted process that now belongs to another user
                log.warning("pid %s: cannot send SIG%s: %s", self.pid, signal_name, exc)
            exited = await _within(self.wait(), timeout)
            others = [proc for proc in known if proc.pid != self.pid]
            await _wait_gone(others, started + timeout - time.monotonic())
        known = self._known()
        escaped = [proc for proc in known if proc.pid != self.pid and alive(proc)]
        if exited and not escaped and not platform.group_alive(self.pid):
            killed: list[psutil.Process] = []  # a clean exit, nothing left: no tree to kill
        else:
            killed = await asyncio.to_thread(platform.kill_tree, self.pid, known)
        leftovers = sum(1 for proc in killed if proc.pid != self.pid)
        if killed:
            await _within(self.wait(), GIVE_UP_AFTER)
            # Our own child is awaited through its wait() only: a second waiter might reap it.
            await _wait_gone([proc for proc in killed if proc.pid != self.pid or self.adopted], GIVE_UP_AFTER)
            self._note(f"killed the process tree of pid {self.pid} ({len(killed)} processes)")
        survivors = tuple(sorted({proc.pid for proc in [*known, *killed] if alive(proc)}))
        if survivors:
            log.warning("pid %s: still running %.1fs after the tree kill: %s",
                        self.pid, GIVE_UP_AFTER, survivors)
        status = await self.wait() if not self.is_alive() else ExitStatus(None, None)
        return StopResult(status, not exited, leftovers, round(time.monotonic() - started, 4), survivors)

    async def end_leftovers(self) -> int:
        """After the main process ended by itself (a crash, kill -9, out of memory): kill what
        is left of its tree, its process group and every descendant seen, so no worker keeps
        serving old code or holding the port. How many processes were ended (usually 0, at the
        cost of one system call)."""
        platform = current()
        seen = [proc for proc in self._known() if proc.pid != self.pid]
        if not seen and not platform.group_alive(self.pid):
            return 0
        killed = [proc for proc in await asyncio.to_thread(platform.kill_tree, self.pid, self._known())
                  if proc.pid != self.pid]
        await _wait_gone(killed, GIVE_UP_AFTER)
        if killed:
            self._note(f"ended {len(killed)} processes that pid {self.pid} left behind")
        return len(killed)

    def kill(self) -> list[int]:
        """Kill the whole tree now, without waiting; the pids that were killed. Blocking (a
        short psutil sweep)."""
        return sorted(proc.pid for proc in current().kill_tree(self.pid, self._known()))

    # --- log markers ----------------------------------------------------------------------
    def _note(self, text: str) -> None:
        if self.log_path is None:
            return
        try:
            with open(self.log_path, "ab") as out:
                out.write(f"--- gateway: {text} at {_now()} ---\n".encode())
        except OSError as exc:
            log.warning("cannot write to %s: %s", self.log_path, exc)


async def _within(awaitable: Awaitable[object], timeout: float) -> bool:
    try:
        await wait_for(awaitable, max(timeout, 0.0))
        return True
    except TimeoutError:
        return False


async def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> bool:
    """Wait (on each process's exit event) until none of `procs` runs, at most `timeout`."""
    pending = [proc for proc in procs if alive(proc)]
    if not pending:
        return True
    if timeout <= 0:
        return False
    waits = asyncio.gather(*(current().wait_exit(proc.pid) for proc in pending))
    return await _within(waits, timeout)


def too_big(argv: Sequence[str], env: dict[str, str] | None) -> str:
    """Why the OS said "argument list too long": the command, or the environment (naming
    its largest variable)."""
    argv_size = sum(len(part.encode()) + 1 for part in argv)
    sizes = {key: len(key.encode()) + len(value.encode()) + 2 for key, value in (env or {}).items()}
    env_size = sum(sizes.values())
    if env_size > argv_size:
        largest = max(sizes, key=lambda key: sizes[key])
        return (f"the environment is too large for the OS ({env_size} bytes in {len(sizes)} variables; "
                f"the largest is {largest[:80]!r}, {sizes[largest]} bytes): make it smaller")
    return f"the command is too long for the OS ({argv_size} bytes): make it shorter"


def _same_command(cmdline: list[str], hint: list[str]) -> bool:
    """Does a running process's cmdline match what we started? With shell=True the hint is
    one command line: the process shows either the shell running it or (when the shell
    exec'd a simple command) the command itself."""
    if cmdline == hint:
        return True
    joined = " ".join(hint)
    if cmdline == current().shell_argv(joined) or " ".join(cmdline) == joined:
        return True
    try:
        return shlex.split(joined) == cmdline
    except ValueError:
        return False
