"""`@pytest.mark.alone`: a test that measures time or CPU (a bound on how long a stop takes, a
spinning process's share of a core) runs while no other test of the session runs.

The suite runs in several pytest-xdist workers. Each test holds a lock file shared by the workers:
shared for an ordinary test, exclusive for an `alone` one (from its setup to its teardown). A second
lock, the turnstile, is taken by every test before it starts: an `alone` test keeps it while it waits
for the running tests to end, so new ones wait behind it instead of starving it. Consecutive `alone`
tests of one worker keep the exclusive lock between them, so the scheduler below sends them all to one
worker as one unit (else each would wait for the others' running tests to end, ~300 s of workers' time
a run): with `--dist loadfile`, a file's tests go to one worker, and the `alone` tests of every file
to one more. In one process (-n 0) there is nothing to do. Other programs on the machine (benchmarks,
other sessions) are not held back: only this session's tests.
"""

from __future__ import annotations

import ast
import functools
import os
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

import pytest

try:
    import fcntl
except ImportError:  # Windows: the same shared and exclusive locks through LockFileEx (below)
    fcntl = None  # type: ignore[assignment]

LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8  # fcntl's values
WAIT = 600.0  # seconds: a hang guard (a lock never freed), not a timing; the longest test is far shorter


def flock(file: IO[bytes], how: int) -> None:
    """fcntl.flock (shared, exclusive or unlock, never waiting); BlockingIOError when it is held."""
    if fcntl is not None:
        fcntl.flock(file, how)
        return
    import ctypes
    import msvcrt
    from ctypes import wintypes

    class Overlapped(ctypes.Structure):  # OVERLAPPED: the locked range starts at offset 0
        _fields_ = [("Internal", ctypes.c_void_p), ("InternalHigh", ctypes.c_void_p), ("Offset", wintypes.DWORD),
                    ("OffsetHigh", wintypes.DWORD), ("hEvent", wintypes.HANDLE)]

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle, at = wintypes.HANDLE(msvcrt.get_osfhandle(file.fileno())), Overlapped()  # type: ignore[attr-defined]
    if how & LOCK_UN:
        k32.UnlockFileEx(handle, 0, 1, 0, ctypes.byref(at))
        return
    flags = 0x1 | (0x2 if how & LOCK_EX else 0)  # LOCKFILE_FAIL_IMMEDIATELY, LOCKFILE_EXCLUSIVE_LOCK
    if not k32.LockFileEx(handle, flags, 0, 1, 0, ctypes.byref(at)):
        raise BlockingIOError(ctypes.get_last_error(), "the lock is held")  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "alone: measures time or CPU; runs while no other test of the session runs")


class Locks:
    def __init__(self, folder: Path, run: str) -> None:
        self.turnstile: IO[bytes] = open(folder / f"turnstile-{run}.lock", "ab")  # noqa: SIM115 - for the session
        self.tests: IO[bytes] = open(folder / f"tests-{run}.lock", "ab")  # noqa: SIM115
        self.exclusive = False  # this worker holds both locks for its `alone` tests

    @staticmethod
    def take(file: IO[bytes], how: int, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                flock(file, how | LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"waited {WAIT:.0f}s for {file.name} ({what}): a worker holds it") from None
                time.sleep(0.02)

    def before(self, alone: bool) -> None:
        if self.exclusive:
            return
        self.take(self.turnstile, LOCK_EX, "the turnstile")
        if alone:
            self.take(self.tests, LOCK_EX, "the other workers' tests to end")
            self.exclusive = True
        else:
            self.take(self.tests, LOCK_SH, "an alone test to end")
            flock(self.turnstile, LOCK_UN)

    def after(self, next_alone: bool) -> None:
        if self.exclusive and next_alone:
            return
        flock(self.tests, LOCK_UN)
        if self.exclusive:
            flock(self.turnstile, LOCK_UN)
            self.exclusive = False


LOCKS = pytest.StashKey[Locks]()


def _alone(item: pytest.Item | None) -> bool:
    return item is not None and item.get_closest_marker("alone") is not None


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: the wait is not part of the test's timeout
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    config = item.config
    if not hasattr(config, "workerinput"):  # not a pytest-xdist worker: no other test runs beside it
        return (yield)
    if LOCKS not in config.stash:  # a worker's basetemp is <the session's basetemp>/popen-<worker id>
        base = config.option.basetemp
        folder = Path(os.fspath(base)).parent if base else Path(tempfile.gettempdir())
        config.stash[LOCKS] = Locks(folder, config.workerinput["testrunuid"])  # type: ignore[attr-defined]
    locks = config.stash[LOCKS]
    locks.before(_alone(item))
    try:
        return (yield)
    finally:
        locks.after(_alone(nextitem))


@functools.cache
def alone_names(path: Path) -> frozenset[str]:
    """The test functions of a file written with `@pytest.mark.alone` (the controller of the workers
    collects nothing: it reads the file). One this misses still runs alone, by the lock, only not in
    the one unit."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return frozenset()
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     and any(ast.unparse(d) == "pytest.mark.alone" for d in node.decorator_list))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndAlone(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            file, _, name = nodeid.partition("::")
            if name.split("[")[0] in alone_names(config.rootpath / file):
                return "the alone tests"
            return super()._split_scope(nodeid)

    return FilesAndAlone(config, log)
