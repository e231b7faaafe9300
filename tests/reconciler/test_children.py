"""Child: real processes (tests/children/*.py), real signals, real log files. No mocks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from reconciler.engine.children import Child, ExitStatus, SpawnError
from reconciler.engine.health import port_answers
from reconciler.platform import current
from tests.fix_children import Reaper, gone, program

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, sessions and process groups")
WINDOWS = sys.platform == "win32"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


async def until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)


async def spawn(tmp_path: Path, argv: list[str], **kwargs: object) -> Child:
    """As the gateway starts a server: in its own group (POSIX) or job object (Windows)."""
    kwargs.setdefault("env", env())
    return await Child.spawn(argv, log_path=tmp_path / "logs" / "child.log",  # type: ignore[arg-type]
                             contain=lambda pid: current().contain(tmp_path, "test", pid), **kwargs)


async def test_spawn_writes_stdout_and_stderr_to_the_log(tmp_path: Path, reap: Reaper) -> None:
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    child = await spawn(tmp_path, [sys.executable, "-c", code])
    assert child.pid > 0 and child.create_time > 0 and not child.adopted
    assert await child.wait() == ExitStatus(0, None)
    text = (tmp_path / "logs" / "child.log").read_text()
    assert text.startswith("--- gateway: starting ")
    assert "to stdout" in text.splitlines() and "to stderr" in text.splitlines()
    assert f"pid {child.pid} started" in text and f"pid {child.pid} exited with code 0" in text


async def test_log_is_appended_across_runs(tmp_path: Path, reap: Reaper) -> None:
    for word in ("first", "second"):
        child = await spawn(tmp_path, [sys.executable, "-c", f"print({word!r})"])
        await child.wait()
    text = (tmp_path / "logs" / "child.log").read_text()
    assert text.index("first") < text.index("second")
    assert text.count("--- gateway: starting") == 2


async def test_env_port_and_cwd_reach_the_child(tmp_path: Path, reap: Reaper) -> None:
    child = await spawn(tmp_path, program("print_env", "PORT", "GREETING"), cwd=str(tmp_path),
                        env=env(PORT="8123", GREETING="hello there"))
    assert (await child.wait()).code == 0
    lines = (tmp_path / "logs" / "child.log").read_text().splitlines()
    line = next(line for line in lines if line.startswith("{"))
    assert json.loads(line) == {"cwd": str(tmp_path), "PORT": "8123", "GREETING": "hello there"}


async def test_wait_returns_the_exit_code_to_every_waiter(tmp_path: Path, reap: Reaper) -> None:
    child = await spawn(tmp_path, program("crash_after", 3, 0.2))
    assert child.is_alive()
    results = list(await asyncio.gather(child.wait(), child.wait(), child.wait()))
    assert results == [ExitStatus(3, None)] * 3
    assert await child.wait() == ExitStatus(3, None)  # again, later: cached
    assert results[0].describe() == "exited with code 3"
    assert not child.is_alive() and child.tree() == []


async def test_a_cancelled_waiter_does_not_cancel_the_others(tmp_path: Path, reap: Reaper) -> None:
    child = await spawn(tmp_path, program("crash_after", 0, 0.3))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(child.wait(), 0.05)
    assert await child.wait() == ExitStatus(0, None)


@posix_only
async def test_exit_by_signal_is_described(tmp_path: Path, reap: Reaper) -> None:
    child = await spawn(tmp_path, program("ticker"))
    os.kill(child.pid, signal.SIGKILL)
    status = await child.wait()
    assert status == ExitStatus(None, 9)
    assert status.describe() == "killed by signal 9 (SIGKILL)"
    assert ExitStatus(None, None).describe() == "exited (code unknown: adopted process)"


async def test_shell_command(tmp_path: Path, reap: Reaper) -> None:
    line = "echo word: %GREETING% & exit 4" if WINDOWS else 'echo "word: $GREETING" && exit 4'  # cmd.exe, /bin/sh
    child = await spawn(tmp_path, [line], shell=True, env=env(GREETING="hi"))
    assert (await child.wait()).code == 4
    assert "word: hi" in [said.strip() for said in (tmp_path / "logs" / "child.log").read_text().splitlines()]


async def test_stop_a_well_behaved_child_is_graceful(tmp_path: Path, reap: Reaper) -> None:
    port = free_port()
    started = time.monotonic()
    child = await spawn(tmp_path, program("http_echo", port), env=env(PORT=str(port)))
    while not await port_answers(port):
        assert time.monotonic() - started < 10, "http_echo never answered"
        await asyncio.sleep(0.005)
    print(f"\nhttp_echo: spawn to port answering: {(time.monotonic() - started) * 1000:.0f} ms")
    result = await child.stop("TERM", timeout=5)
    print(f"graceful stop took {result.seconds * 1000:.0f} ms")
    assert not result.escalated and result.leftovers_killed == 0 and result.survivors == ()
    # POSIX: SIGTERM; Windows: CTRL_C from a helper on its console (KeyboardInterrupt, not handled)
    assert result.exit == (ExitStatus(0xC000013A, None) if WINDOWS else ExitStatus(None, signal.SIGTERM))
    assert result.seconds < 2
    assert not child.is_alive() and not await port_answers(port)
    assert "stopping pid" in (tmp_path / "logs" / "child.log").read_text()


async def test_stop_with_int(tmp_path: Path, reap: Reaper) -> None:
    child = await spawn(tmp_path, program("ticker"))
    result = await child.stop("INT", timeout=5)
    assert not result.escalated
    assert result.exit.code in (1, 0xC000013A) or result.exit.signal == signal.SIGINT  # KeyboardInterrupt


@posix_only
@pytest.mark.alone  # how long the stop took
async def test_stop_escalates_and_leaves_nothing_of_a_stubborn_tree(tmp_path: Path, reap: Reaper) -> None:
    pidfile = tmp_path / "pids.json"
    child = await spawn(tmp_path, program("spawn_grandchild", pidfile))
    await until(pidfile.exists, what="the grandchildren to start")
    pids = json.loads(pidfile.read_text())
    escaped = psutil.Process(pids["escaped"])
    assert os.getpgid(pids["grandchild"]) == child.pid and os.getpgid(escaped.pid) != child.pid
    timeout = 0.5
    started = time.monotonic()
    result = await child.stop("TERM", timeout=timeout)
    elapsed = time.monotonic() - started
    left = [pid for pid in pids.values() if not gone(pid)]
    print(f"\nstubborn tree: stop(timeout={timeout}) returned after {elapsed * 1000:.0f} ms, left: {left}")
    assert result.escalated and result.leftovers_killed == 2 and result.survivors == ()
    assert result.exit == ExitStatus(None, signal.SIGKILL)
    assert left == []
    assert timeout <= elapsed < timeout + 1.0  # target: timeout + 0.2 s; generous for slow CI
    assert "killed the process tree" in (tmp_path / "logs" / "child.log").read_text()


async def test_stop_kills_what_a_dead_main_process_left_behind(tmp_path: Path, reap: Reaper) -> None:
    pidfile = tmp_path / "pid"
    code = (f"import subprocess, sys; p = subprocess.Popen({program('ignore_sigterm')!r}); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))")
    child = await spawn(tmp_path, [sys.executable, "-c", code])
    assert (await child.wait()).code == 0
    await until(lambda: pidfile.exists() and pidfile.read_text() != "", what="the pid file")
    orphan = int(pidfile.read_text())
    assert not gone(orphan)  # the main process exited; its child runs on in the group
    result = await child.stop("TERM", timeout=5)
    assert result.leftovers_killed == 1 and not result.escalated and result.exit == ExitStatus(0, None)
    assert gone(orphan)


async def test_kill_is_immediate(tmp_path: Path, reap: Reaper) -> None:
    child = await spawn(tmp_path, program("ignore_sigterm"))
    await until(lambda: "ignoring" in (tmp_path / "logs" / "child.log").read_text())
    assert child.kill() == [child.pid]
    ended = await asyncio.wait_for(child.wait(), 2)
    assert ended.code == 1 if WINDOWS else ended.signal == signal.SIGKILL  # Windows: the job's exit code


def _popen_own_session(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **current().spawn_kwargs())


def recorded(pid: int) -> dict[str, object]:
    """What a gateway records of a run it started (the state row's pid, create_time, start_mark)."""
    return {"create_time": psutil.Process(pid).create_time(), "start_mark": current().start_mark(pid)}


async def test_adopt_refuses_a_wrong_create_time_and_leaves_the_process_alone(reap: Reaper) -> None:
    proc = _popen_own_session(program("ignore_sigterm"))
    try:
        ctime = psutil.Process(proc.pid).create_time()
        assert Child.adopt(proc.pid, ctime + 1.0) is None  # what a reused pid looks like
        assert Child.adopt(proc.pid, ctime, argv_hint=["something", "else"], start_mark=recorded(proc.pid)["start_mark"]) is None
        assert proc.poll() is None
        child = Child.adopt(proc.pid, argv_hint=program("ignore_sigterm"), **recorded(proc.pid))
        assert child is not None and child.adopted and child.log_path is None
        assert abs(child.create_time - ctime) < 2.0  # the kernel's boot time moves by whole seconds with the clock
    finally:
        proc.kill()
        proc.wait()
    assert Child.adopt(proc.pid, ctime) is None  # gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the start mark is Linux's (elsewhere the create time is it)")
async def test_adopt_goes_by_the_start_mark_when_the_clock_was_set_since(reap: Reaper) -> None:
    proc = _popen_own_session(program("ignore_sigterm"))
    try:
        seen = recorded(proc.pid)
        mark = str(seen["start_mark"])
        boot, ticks = mark.split(":")
        assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip() and int(ticks) > 0
        # the clock was set back an hour since the record: psutil's create time moved with it
        child = Child.adopt(proc.pid, float(seen["create_time"]) + 3600, start_mark=mark)
        assert child is not None and child.start_mark == mark
        # the same create time but another run (a reused pid, or the same pid after a reboot)
        assert Child.adopt(proc.pid, float(seen["create_time"]), start_mark=f"{boot}:{int(ticks) + 1}") is None
        assert Child.adopt(proc.pid, float(seen["create_time"]), start_mark=f"another-boot:{ticks}") is None
        assert proc.poll() is None  # refusing touches nothing
        # a row written before the mark: told by its create time (read again should the clock move
        # between the read and the adoption), and the adopted child then carries the mark
        old = next(filter(None, (Child.adopt(proc.pid, psutil.Process(proc.pid).create_time()) for _ in range(3))), None)
        assert old is not None and old.start_mark == mark
    finally:
        proc.kill()
        proc.wait()


async def test_a_spawned_child_carries_its_start_mark(tmp_path: Path) -> None:
    child = await Child.spawn(program("crash_after", 0, 0.5), env=env(), log_path=tmp_path / "c.log")
    try:
        assert child.start_mark == current().start_mark(child.pid)
        assert (child.start_mark is not None) == sys.platform.startswith("linux")
    finally:
        await child.wait()
    assert current().start_mark(child.pid) is None  # gone: nothing to tell apart


async def test_adopted_process_exit_is_detected(reap: Reaper) -> None:
    proc = _popen_own_session(program("crash_after", 5, 0.5))
    try:
        child = Child.adopt(proc.pid, **recorded(proc.pid))
        assert child is not None and child.is_alive()
        started = time.monotonic()
        status = await asyncio.wait_for(child.wait(), 10)
        waited = (time.monotonic() - started) * 1000
        print(f"\nadopted exit detected after {waited:.0f} ms (process lived 500 ms)")
        assert status == ExitStatus(None, None)
        assert not child.is_alive()
    finally:
        proc.wait()
    assert proc.returncode == 5


@posix_only
async def test_adopt_matches_a_shell_command(reap: Reaper) -> None:
    line = f"{sys.executable} -c 'import time; time.sleep(30)'"
    proc = subprocess.Popen(["/bin/sh", "-c", line], start_new_session=True)
    try:
        child = Child.adopt(proc.pid, argv_hint=[line], **recorded(proc.pid))
        assert child is not None
        result = await child.stop("TERM", timeout=5)
        assert not result.escalated and result.exit == ExitStatus(None, None)
    finally:
        proc.wait()


async def test_child_survives_the_gateway_and_is_adopted_later(tmp_path: Path, reap: Reaper) -> None:
    log = tmp_path / "logs" / "ticker.log"
    helper = subprocess.run(
        [*program("spawn_and_die", log), *program("ticker", 0.02)],
        capture_output=True, text=True, timeout=30, env=env(),
    )
    assert helper.returncode == 9, helper.stderr  # the "gateway" died with os._exit(9)
    record = json.loads(helper.stdout)
    reap.track(record["pid"])
    assert not gone(record["pid"])
    size = log.stat().st_size
    await until(lambda: log.stat().st_size > size + 50, 5, "the orphaned child to keep logging")
    child = Child.adopt(record["pid"], record["create_time"], start_mark=record["start_mark"], log_path=log)
    assert child is not None
    result = await child.stop("TERM", timeout=5)
    assert not result.escalated and gone(record["pid"])
    assert "tick " in log.read_text()


async def test_spawn_errors_say_what_is_wrong(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    with pytest.raises(SpawnError, match=r"^cannot start 'no-such-program-x1': no such file or directory$"):
        await Child.spawn(["no-such-program-x1"], env=env(), log_path=log)
    with pytest.raises(SpawnError, match="^cannot start '/nope/prog': no such file or directory$"):
        await Child.spawn(["/nope/prog"], env=env(), log_path=log)
    with pytest.raises(SpawnError, match=f"^working folder {re.escape(str(tmp_path / 'missing'))} does not exist$"):
        await Child.spawn([sys.executable], cwd=str(tmp_path / "missing"), env=env(), log_path=log)
    with pytest.raises(SpawnError, match=f"^working folder {re.escape(str(log))} is not a folder$"):
        await Child.spawn([sys.executable], cwd=str(log), env=env(), log_path=log)
    not_executable = tmp_path / "plain.txt"
    not_executable.write_text("hi")
    refused = "it is not a program Windows can start" if WINDOWS else "permission denied"
    with pytest.raises(SpawnError, match=refused):
        await Child.spawn([str(not_executable)], env=env(), log_path=log)
    with pytest.raises(SpawnError, match="empty command"):
        await Child.spawn([], env=env(), log_path=log)


def test_a_process_older_than_its_parent_pid_is_not_in_the_tree(reap: Reaper):
    """On Windows a process keeps the pid of a parent that exited, and the pid is soon another
    process's: the tree walk must not take an older process for the newer one's child (a
    server's kill ended the tests' PostgreSQL under Wine, whose pg_ctl had had the server's pid)."""
    from reconciler.engine.children import descendants_in

    popens: list[subprocess.Popen[bytes]] = []

    def started() -> tuple[psutil.Process, float]:
        popens.append(subprocess.Popen(program("ticker", 1), stdout=subprocess.DEVNULL))
        reap.track(popens[-1].pid)
        ps = psutil.Process(popens[-1].pid)
        time.sleep(0.05)  # the next one is born later, also at the create time's resolution
        return ps, ps.create_time()

    try:
        stranger, stranger_born = started()
        server, server_born = started()
        child, child_born = started()
        # the table as Windows can show it: the stranger's parent pid is now the server's
        table = {server.pid: [(stranger, stranger_born), (child, child_born)]}
        assert [p.pid for p in descendants_in(table, server.pid, server_born)] == [child.pid]
    finally:
        for popen in popens:
            popen.kill()
            popen.wait()
