"""Real child processes in tests, and a "no child left behind" check.

The `reap` fixture remembers processes by pid *and* create time (a psutil.Process), never
by name. It tracks what the test hands it (`reap.track(pid)`), every process that appears
below the test process during the test, and every descendant of those it ever sees (a
background sweep every 50 ms catches grandchildren before they escape with setsid). At
teardown anything still running is killed, and the test fails naming it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from reconciler.engine.children import Table, descendants_in
from reconciler.platform import current

CHILDREN = Path(__file__).resolve().parent / "children"
SWEEP_EVERY = 0.05


def program(name: str, *args: object) -> list[str]:
    """argv running tests/children/NAME.py with this Python."""
    return [sys.executable, str(CHILDREN / f"{name}.py"), *map(str, args)]


def toml_str(value: object) -> str:
    """`value` (a path) as a TOML basic string, quotes included: a Windows path's backslashes are
    escaped (in "double quotes" TOML reads a backslash as the start of an escape)."""
    return json.dumps(str(value))


def private(path: Path) -> bool:
    """Readable by its owner only: mode 0600 on POSIX; on Windows a file is private by its folder's
    ACL (the user profile), not by mode bits, so there it only has to exist."""
    return path.exists() and (os.name != "posix" or path.stat().st_mode & 0o777 == 0o600)


def running(proc: psutil.Process) -> bool:
    """Runs (same pid and create time) and is not a zombie. Orphans killed in a container
    whose PID 1 does not reap stay zombies forever, so `pid_exists` alone is not "alive"."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def gone(pid: int) -> bool:
    """`psutil.pid_exists`, counting a zombie as gone."""
    if not psutil.pid_exists(pid):
        return True
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _console_host(proc: psutil.Process) -> bool:
    try:
        return sys.platform == "win32" and proc.name().lower() == "conhost.exe"
    except psutil.Error:
        return False


class Reaper:
    def __init__(self) -> None:
        self._me = psutil.Process(os.getpid())
        self._before = {proc.pid: proc for proc in self._descendants(self._me)}
        self._tracked: dict[tuple[int, str], psutil.Process] = {}
        self._ignored: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sweep_loop, name="reap-sweep", daemon=True)
        self._thread.start()

    @staticmethod
    def _key(proc: psutil.Process) -> tuple[int, str]:
        # one run of one pid; on Linux not the create time, which moves when the clock is set
        return proc.pid, current().start_mark(proc.pid) or repr(proc.create_time())

    @staticmethod
    def _descendants(proc: psutil.Process) -> list[psutil.Process]:
        # not psutil's children(recursive=True): it checks create times against the root only, so on
        # Windows a process whose dead parent's pid a test's child reused is taken for a grandchild
        # (the lane's reaper killed the session's PostgreSQL, started by a pg_ctl that had exited)
        try:
            table: Table = {}
            for other in psutil.process_iter(["ppid", "create_time"]):
                table.setdefault(other.info["ppid"], []).append((other, other.info["create_time"] or 0.0))
            return descendants_in(table, proc.pid, proc.create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []

    def track(self, pid: int | psutil.Process) -> None:
        """Remember a process (and, from now on, its descendants)."""
        try:
            proc = pid if isinstance(pid, psutil.Process) else psutil.Process(pid)
            with self._lock:
                self._tracked.setdefault(self._key(proc), proc)
        except psutil.NoSuchProcess:
            return
        self.sweep()

    def ignore(self, pid: int) -> None:
        """A process the test starts on purpose to outlive it (a session-wide server)."""
        try:
            proc = psutil.Process(pid)
            with self._lock:
                self._ignored.add(self._key(proc))
        except psutil.NoSuchProcess:
            pass

    def sweep(self) -> None:
        """Track every new descendant of the test process and of each tracked process."""
        with self._lock:
            roots = [self._me, *self._tracked.values()]
        found: list[psutil.Process] = []
        for root in roots:
            if root is self._me or running(root):
                found += self._descendants(root)
        with self._lock:
            for proc in found:
                try:
                    if self._before.get(proc.pid) is not None and self._before[proc.pid] == proc:
                        continue  # already running before the test started
                    self._tracked.setdefault(self._key(proc), proc)
                except psutil.NoSuchProcess:
                    pass

    def _sweep_loop(self) -> None:
        while not self._stop.wait(SWEEP_EVERY):
            self.sweep()

    def leftovers(self) -> list[psutil.Process]:
        self.sweep()
        with self._lock:
            procs = [proc for key, proc in self._tracked.items() if key not in self._ignored]
        return [proc for proc in procs if running(proc)]

    def finish(self) -> list[str]:
        """Stop sweeping, kill whatever is left, and describe it (empty: all clean)."""
        left = self.leftovers()
        hosts = [proc for proc in left if _console_host(proc)]
        if hosts:  # Windows' console host of a program ends a moment after the program does
            psutil.wait_procs(hosts, timeout=3)
            left = [proc for proc in left if running(proc)]
        self._stop.set()
        self._thread.join()
        described = []
        for proc in left:
            try:
                described.append(f"pid {proc.pid} ({' '.join(proc.cmdline())[:200]})")
                proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        psutil.wait_procs(left, timeout=5)
        return described


@pytest.fixture
def reap() -> Iterator[Reaper]:
    """Fails the test when a process it started is still running at teardown (after killing it)."""
    reaper = Reaper()
    yield reaper
    left = reaper.finish()
    if left:
        pytest.fail("processes left running by the test (now killed): " + "; ".join(left), pytrace=False)
