"""The platform layer: the Windows contract's pure parts (checked on any OS) and POSIX
process-group signalling on real processes."""

from __future__ import annotations

import asyncio
import os
import platform as platform_mod
import signal
import subprocess
import sys
import time
from typing import get_args

import psutil
import pytest

from reconciler import platform as platform_pkg
from reconciler.core.spec import SignalName
from reconciler.platform import current, wait_in_thread
from reconciler.platform.windows import CREATE_NO_WINDOW, WindowsPlatform, stop_method
from tests.fix_children import Reaper, gone, program

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


# --- selection ----------------------------------------------------------------------------
def test_current_is_chosen_once() -> None:
    assert current() is current()
    assert current().name == ("windows" if sys.platform == "win32" else "posix")


def test_only_the_platform_package_asks_which_os_it_is_on() -> None:
    root = os.path.dirname(os.path.dirname(platform_pkg.__file__))
    askers = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as source:
                    if "sys.platform" in source.read():
                        askers.append(os.path.relpath(path, root))
    assert askers == [os.path.join("platform", "__init__.py")]


# --- the Windows contract, checked here -----------------------------------------------------
def test_windows_spawn_flags() -> None:
    # a console of its own, no window, and not a new process group (which would disable CTRL_C)
    assert CREATE_NO_WINDOW == 0x08000000
    assert WindowsPlatform().spawn_kwargs() == {"creationflags": 0x08000000}


def test_windows_shell_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMSPEC", r"C:\Windows\system32\cmd.exe")
    assert WindowsPlatform().shell_argv("echo hi & exit 3") == [
        r"C:\Windows\system32\cmd.exe", "/d", "/s", "/c", "echo hi & exit 3"]
    monkeypatch.delenv("COMSPEC")
    assert WindowsPlatform().shell_argv("dir")[0] == "cmd.exe"


def test_windows_stop_signal_table_covers_every_spec_signal() -> None:
    table = {name: stop_method(name) for name in get_args(SignalName)}
    assert table == {"TERM": "ctrl-c", "INT": "ctrl-c", "HUP": "ctrl-c", "QUIT": "ctrl-c", "KILL": "kill",
                     "USR1": "ctrl-c", "USR2": "ctrl-c", "BREAK": "break"}
    assert stop_method("SIGTERM") == "ctrl-c"
    with pytest.raises(ValueError, match="'STOP' is not a stop signal"):
        stop_method("STOP")


def test_windows_does_not_bind_with_reuse_address() -> None:
    assert WindowsPlatform.reuse_address is False


# --- POSIX --------------------------------------------------------------------------------
@posix_only
def test_posix_signal_table_covers_every_spec_signal() -> None:
    from reconciler.platform.posix import PosixPlatform, to_signal

    assert {name: to_signal(name) for name in get_args(SignalName)} == {
        "TERM": signal.SIGTERM, "INT": signal.SIGINT, "HUP": signal.SIGHUP, "QUIT": signal.SIGQUIT,
        "KILL": signal.SIGKILL, "USR1": signal.SIGUSR1, "USR2": signal.SIGUSR2, "BREAK": signal.SIGTERM,
    }
    assert PosixPlatform().spawn_kwargs() == {"start_new_session": True}
    assert PosixPlatform().shell_argv("echo $HOME") == ["/bin/sh", "-c", "echo $HOME"]


def _group_with_member() -> tuple[subprocess.Popen[bytes], int]:
    """A group leader (own session) running a Python that starts one more process in its group."""
    code = ("import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(p.pid, flush=True); time.sleep(60)")
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert leader.stdout is not None
    member = int(leader.stdout.readline())
    leader.stdout.close()
    return leader, member


async def _until_gone(*pids: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[pid for pid in pids if not gone(pid)]}"
        await asyncio.sleep(0.01)


@posix_only
async def test_posix_send_stop_signals_the_whole_group(reap: Reaper) -> None:
    leader, member = _group_with_member()
    assert os.getpgid(member) == leader.pid
    current().send_stop(leader.pid, "TERM")
    assert leader.wait(5) == -signal.SIGTERM
    await _until_gone(member)


@posix_only
async def test_posix_break_means_term(reap: Reaper) -> None:
    leader, member = _group_with_member()
    current().send_stop(leader.pid, "BREAK")
    assert leader.wait(5) == -signal.SIGTERM
    await _until_gone(member)


@posix_only
async def test_posix_send_stop_reaches_known_processes_outside_the_group(reap: Reaper) -> None:
    leader, member = _group_with_member()
    escaped = subprocess.Popen(program("ticker", 1), stdout=subprocess.DEVNULL, start_new_session=True)
    current().send_stop(leader.pid, "TERM", [psutil.Process(escaped.pid)])
    assert leader.wait(5) == -signal.SIGTERM and escaped.wait(5) == -signal.SIGTERM
    await _until_gone(member)


@posix_only
async def test_posix_send_stop_to_a_process_that_does_not_lead_a_group_spares_the_group(reap: Reaper) -> None:
    # It shares *our* group: a killpg would stop this test run.
    proc = subprocess.Popen(program("ticker", 1), stdout=subprocess.DEVNULL)
    assert os.getpgid(proc.pid) == os.getpgid(0)
    current().send_stop(proc.pid, "TERM")
    assert proc.wait(5) == -signal.SIGTERM


@posix_only
async def test_posix_kill_tree_reaches_the_group_after_its_leader_is_gone(reap: Reaper) -> None:
    leader, member = _group_with_member()
    root = psutil.Process(leader.pid)
    leader.kill()
    leader.wait()  # the leader is reaped: only the orphaned member is left in the group
    killed = current().kill_tree(leader.pid, [root])
    assert [proc.pid for proc in killed] == [member]
    await _until_gone(member)


@pytest.mark.alone  # how long the wait took
async def test_wait_exit_returns_when_the_process_exits(reap: Reaper) -> None:
    proc = subprocess.Popen(program("crash_after", 0, 0.3), stdout=subprocess.DEVNULL)
    started = time.monotonic()
    await asyncio.wait_for(current().wait_exit(proc.pid), 5)
    waited = time.monotonic() - started
    assert 0.2 < waited < 3
    proc.wait()
    await asyncio.wait_for(current().wait_exit(proc.pid), 1)  # already gone: at once


async def test_wait_in_thread_fallback(reap: Reaper) -> None:
    proc = subprocess.Popen(program("crash_after", 0, 0.2), stdout=subprocess.DEVNULL)
    await asyncio.wait_for(wait_in_thread(proc.pid), 5)
    proc.wait()


# --- Windows job objects: the contract, checked here -----------------------------------------
def test_job_structures_have_the_x64_layout() -> None:
    import ctypes

    from reconciler.platform import windows_job as j

    if ctypes.sizeof(ctypes.c_void_p) != 8:  # pragma: no cover - a 32-bit Python
        pytest.skip("the layout checked is the 64-bit one")
    assert ctypes.sizeof(j.BasicAccounting) == 48
    assert ctypes.sizeof(j.BasicLimit) == 64 and j.BasicLimit.LimitFlags.offset == 16
    assert ctypes.sizeof(j.IoCounters) == 48
    assert ctypes.sizeof(j.ExtendedLimit) == 144 and j.ExtendedLimit.PeakJobMemoryUsed.offset == 136
    assert j.ProcessIdList.ProcessIdList.offset == 8
    assert (j.BASIC_ACCOUNTING, j.BASIC_PROCESS_ID_LIST, j.EXTENDED_LIMIT) == (1, 3, 9)
    assert j.LIMIT_KILL_ON_JOB_CLOSE == 0x2000 and j.PROCESS_SET_QUOTA | j.PROCESS_TERMINATE == 0x101


def test_job_names_are_per_data_folder_server_and_run() -> None:
    from pathlib import Path

    from reconciler.platform.windows_job import job_name

    home = Path(r"C:\Users\Ana\AppData\Local\omen-gateway")
    a = job_name(home, "blog", 4120)
    assert a == job_name(home, "blog", 4120)  # found again after a restart, from the recorded pid
    assert a.startswith("Local\\omen-gateway-") and "\\" not in a[len("Local\\"):] and len(a) < 260
    assert len({a, job_name(Path(r"D:\other"), "blog", 4120), job_name(home, "api", 4120),
                job_name(home, "blog", 4188)}) == 4  # a no-gap change runs two versions: two jobs


def test_job_accounting_members_and_the_survival_rule() -> None:
    from reconciler.platform import windows_job as j

    acct, ext, ids = j.BasicAccounting(), j.ExtendedLimit(), j.ProcessIdList()
    acct.TotalUserTime, acct.TotalKernelTime, acct.ActiveProcesses, acct.TotalProcesses = 15_000_000, 5_000_000, 2, 5
    ext.PeakJobMemoryUsed = 64 << 20
    assert j.figures(acct, ext) == j.JobFigures(cpu_seconds=2.0, active=2, total=5, peak_memory=64 << 20)
    ids.NumberOfAssignedProcesses = ids.NumberOfProcessIdsInList = 3
    ids.ProcessIdList[0], ids.ProcessIdList[1], ids.ProcessIdList[2] = 4120, 4188, 9001
    assert j.member_pids(ids) == [4120, 4188, 9001]
    assert j.survives_the_gateway(ext)  # a job the gateway creates: no limits set at all
    ext.BasicLimitInformation.LimitFlags = j.LIMIT_KILL_ON_JOB_CLOSE | j.LIMIT_BREAKAWAY_OK
    assert not j.survives_the_gateway(ext)


def test_without_a_job_the_windows_platform_falls_back_to_the_tree(reap: Reaper) -> None:
    from pathlib import Path

    leader, member = _group_with_member()
    win = WindowsPlatform()
    if sys.platform != "win32":
        assert win.contain(Path("/tmp"), "web", leader.pid) is False  # no job here: pid + create time
    killed = win.kill_tree(leader.pid, [psutil.Process(leader.pid)])
    assert {proc.pid for proc in killed} == {leader.pid, member}
    leader.wait(5)


# --- giving the C heap's free pages back ----------------------------------------------------
GLIBC = sys.platform.startswith("linux") and platform_mod.libc_ver()[0] == "glibc"


def test_release_memory_is_there_on_every_os() -> None:
    assert WindowsPlatform().release_memory() is False  # no malloc_trim in the Windows C runtime
    assert current().release_memory() is GLIBC  # macOS and musl: nothing to call, nothing done


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc_trim")
def test_release_memory_gives_freed_heap_pages_back_to_the_os() -> None:
    me, size = psutil.Process(), 4000  # over 512 bytes: malloc's, not pymalloc's
    blocks = [b"x" * size for _ in range(5000)]  # 20 MB of the C heap, written
    keep = blocks[-1]  # the last one stays: the heap cannot shrink from its end by itself
    del blocks
    before = me.memory_info().rss
    assert current().release_memory()
    assert before - me.memory_info().rss > 10 * 2**20
    assert len(keep) == size


async def test_the_daemon_gives_the_heap_back_on_a_beat() -> None:
    from reconciler.daemon import _release_memory_forever

    class Counting(type(current())):  # type: ignore[misc]  # the real platform, its calls counted
        calls = 0

        def release_memory(self) -> bool:
            self.calls += 1
            return bool(super().release_memory())

    platform = Counting()
    beat = asyncio.create_task(_release_memory_forever(platform, every=0.001))

    async def three_calls() -> None:
        while platform.calls < 3:
            await asyncio.sleep(0.001)

    try:
        await asyncio.wait_for(three_calls(), 30)  # a hang guard, not a timing
    finally:
        beat.cancel()
